"""A CONNECT-only proxy on a per-run Unix socket, allowing exact ``host:port`` pairs.

The sidecar's relay hands it every connection the agent makes. Each one must
open with ``CONNECT host:port HTTP/1.1`` for a pair on the run's
:class:`~.allowlist.Allowlist`; the proxy resolves the name itself, refuses
names that resolve to loopback, private, link-local, multicast, reserved or
unspecified addresses, and only then splices bytes both ways. Anything else
gets a short HTTP error and an :class:`EgressEvent` saying why.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import stat
from collections.abc import Awaitable, Callable, Iterable, Sequence
from pathlib import Path

import attrs

from ..allowlist import Allowlist, Endpoint, InvalidAllowlist, parse_target
from .errors import EgressUnavailable

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
#: Resolves ``(host, port)`` to address strings; tests inject their own.
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]
#: Called once per connection with the decision taken on it.
EventSink = Callable[["EgressEvent"], None]

#: Longest ``sun_path`` Linux accepts, less its terminating NUL.
MAX_SOCKET_PATH = 107
_MAX_HEADERS = 64
_READ_SIZE = 64 * 1024
_REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@attrs.frozen
class EgressEvent:
    """One connection the proxy allowed or refused, for the run's log and counters.

    ``target`` is what the agent asked for (made printable and cut to 200
    characters), ``address`` the address connected to when allowed.
    """

    target: str
    allowed: bool
    reason: str
    status: int
    address: str | None = None


@attrs.frozen
class EgressStats:
    """Counters of one proxy: decisions so far, open connections, bytes relayed each way."""

    allowed: int = 0
    refused: int = 0
    active: int = 0
    bytes_up: int = 0
    bytes_down: int = 0


@attrs.frozen
class ProxyLimits:
    """Bounds on what one run's agent can make the proxy do."""

    max_connections: int = 64
    max_header_bytes: int = 8192
    header_timeout: float = 10.0
    connect_timeout: float = 10.0
    idle_timeout: float = 300.0


class RequestRefused(Exception):
    """A request the proxy answers with ``status`` and a short ``reason``."""

    def __init__(self, status: int, reason: str, target: str = "") -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.target = target


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def parse_connect(head: bytes) -> Endpoint:
    """The target of a CONNECT request head (up to and including the blank line).

    Raises :class:`RequestRefused`: 405 for any other method (plain HTTP is
    never proxied), 400 for anything malformed, including every target that
    is not an exact ``host:port`` (:func:`~.allowlist.parse_target`).
    """
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        raise RequestRefused(400, "the request is not ASCII") from None
    if not text.endswith("\r\n\r\n"):
        raise RequestRefused(400, "the request head is incomplete")
    lines = text[:-4].split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise RequestRefused(400, "malformed request line", _printable(lines[0]))
    method, target, version = parts
    if method != "CONNECT":
        raise RequestRefused(405, "only CONNECT is allowed", _printable(target))
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise RequestRefused(400, "unsupported HTTP version", _printable(target))
    if len(lines) - 1 > _MAX_HEADERS:
        raise RequestRefused(431, "too many header fields", _printable(target))
    for line in lines[1:]:
        name, colon, _ = line.partition(":")
        if not colon or not name or name != name.strip() or "\n" in line or "\r" in line:
            raise RequestRefused(400, "malformed header field", _printable(target))
    try:
        return parse_target(target)
    except InvalidAllowlist as e:
        raise RequestRefused(400, e.message, _printable(target)) from None


_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# Never translated to the public internet: RFC 8215's local-use NAT64 prefix,
# Teredo (its client address is obfuscated, so what it reaches cannot be
# checked) and the deprecated site-local range.
_REFUSED_V6 = (
    (ipaddress.ip_network("64:ff9b:1::/48"), "local-use NAT64"),
    (ipaddress.ip_network("2001::/32"), "Teredo"),
    (ipaddress.ip_network("fec0::/10"), "site-local"),
)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries and reaches: mapped, compatible, 6to4 or NAT64."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    packed = int(address)
    if address in _NAT64 or (packed >> 32 == 0 and packed > 1):
        # NAT64 (RFC 6052) and the deprecated IPv4-compatible form ``::a.b.c.d``.
        return ipaddress.IPv4Address(packed & 0xFFFFFFFF)
    return None


def address_problem(address: IPAddress, exempt: Iterable[IPNetwork] = ()) -> str | None:
    """Why the proxy must not connect to ``address``, or None if it is public (or ``exempt``).

    An IPv6 form that embeds an IPv4 address (mapped, compatible, 6to4, NAT64)
    is judged by the address it embeds, since that is what it reaches.
    """
    plain: IPAddress = address
    if isinstance(address, ipaddress.IPv6Address):
        plain = _embedded_ipv4(address) or address
    if any(plain in net for net in exempt if net.version == plain.version):
        return None
    if isinstance(plain, ipaddress.IPv6Address):
        for net, name in _REFUSED_V6:
            if plain in net:
                return f"resolves to a {name} address ({address})"
    for kind in ("loopback", "link_local", "multicast", "unspecified", "private", "reserved"):
        if getattr(plain, f"is_{kind}"):
            return f"resolves to a {kind.replace('_', '-')} address ({plain})"
    if not plain.is_global:
        return f"resolves to a non-public address ({plain})"
    return None


async def system_resolver(host: str, port: int) -> list[str]:
    """Resolve ``host`` with the daemon host's resolver (TCP addresses, both families)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _private_folder(folder: Path) -> None:
    """Create ``folder`` 0700 if missing; refuse an existing one that is a symlink or open to others.

    Never chmods: a folder someone swapped for a symlink must not make the
    daemon change the mode of whatever it points to.
    """
    try:
        os.mkdir(folder, 0o700)
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fchmod(fd, 0o700)  # whatever the umask; just made by us
        finally:
            os.close(fd)
        return
    except FileExistsError:
        pass
    st = folder.lstat()
    if not stat.S_ISDIR(st.st_mode):
        raise EgressUnavailable(f"The egress socket's folder is not a folder (a symlink?), refusing it: {folder}")
    if st.st_mode & 0o077:
        raise EgressUnavailable(
            f"The egress socket's folder {folder} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700; refusing it."
        )


def _response(status: int, reason: str) -> bytes:
    body = (reason + "\n").encode("ascii", "replace")
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


@attrs.define(eq=False)
class EgressProxy:
    """Serves one run's egress on the Unix socket ``socket_path``.

    ``resolver`` maps names to addresses (default: the host's); addresses in
    ``exempt_networks`` pass the public-address check (tests put their own
    bridge here; so can a user with a model gateway on a private network).
    ``on_event`` hears every decision. Start with :meth:`start`; :meth:`close`
    ends every relay and removes the socket, and may be called any number of
    times.
    """

    socket_path: Path = attrs.field(converter=Path)
    allowlist: Allowlist
    resolver: Resolver = system_resolver
    on_event: EventSink | None = None
    limits: ProxyLimits = ProxyLimits()
    exempt_networks: tuple[IPNetwork, ...] = ()
    #: Where a listed local port is connected: the daemon host's loopback.
    local_address: str = "127.0.0.1"
    _server: asyncio.AbstractServer | None = attrs.field(default=None, init=False)
    _tasks: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    _refusing: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    _stats: EgressStats = attrs.field(factory=EgressStats, init=False)
    _closed: bool = attrs.field(default=False, init=False)

    @property
    def stats(self) -> EgressStats:
        """The counters so far."""
        return attrs.evolve(self._stats, active=len(self._tasks))

    async def start(self) -> None:
        """Listen on the socket, in a folder of mode 0700 created if missing.

        An existing folder must be a real folder (not a symlink) open to
        nobody but its owner; it is never chmodded. A stale socket left by
        an earlier daemon is replaced. Raises :class:`EgressUnavailable` if
        the socket cannot be served.
        """
        if self._server is not None:
            return
        path = self.socket_path
        if len(os.fsencode(path)) > MAX_SOCKET_PATH:
            raise EgressUnavailable(f"The egress socket path is longer than {MAX_SOCKET_PATH} bytes: {path}")
        try:
            _private_folder(path.parent)
            with contextlib.suppress(FileNotFoundError):
                if not stat.S_ISSOCK(path.lstat().st_mode):
                    raise EgressUnavailable(f"Not a socket, refusing to replace it: {path}")
                path.unlink()
            self._server = await asyncio.start_unix_server(
                self._accept, path=str(path), limit=self.limits.max_header_bytes
            )
            path.chmod(0o600)
        except OSError as e:
            await self.close()
            raise EgressUnavailable(f"The egress proxy cannot listen on {path}: {e.strerror}") from None
        self._closed = False
        logger.info("egress.proxy_started", extra={"socket": str(path)})

    async def close(self) -> None:
        """Stop listening, end every open relay and every refusal under way, and remove the socket."""
        self._closed = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        tasks = [*self._tasks, *self._refusing]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()
            with contextlib.suppress(OSError):
                if stat.S_ISSOCK(self.socket_path.lstat().st_mode):
                    self.socket_path.unlink()
            logger.info("egress.proxy_closed", extra={"socket": str(self.socket_path), **attrs.asdict(self.stats)})

    async def __aenter__(self) -> EgressProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _emit(self, event: EgressEvent) -> None:
        if event.allowed:
            self._stats = attrs.evolve(self._stats, allowed=self._stats.allowed + 1)
        else:
            self._stats = attrs.evolve(self._stats, refused=self._stats.refused + 1)
        logger.info(
            "egress.allowed" if event.allowed else "egress.refused",
            extra={"target": event.target, "reason": event.reason, "address": event.address},
        )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                logger.exception("egress.event_sink_failed")

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        refusing = self._closed or len(self._tasks) >= self.limits.max_connections
        # Tracked either way, so that close() ends refusals too.
        (self._refusing if refusing else self._tasks).add(task)
        try:
            if refusing:
                self._emit(EgressEvent("", False, "too many connections", 503))
                await self._refuse(writer, 503, "too many connections")
            else:
                await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except asyncio.CancelledError:
            # close() ended this connection: the server's task ends quietly
            # (a cancelled one would log a traceback in the loop's handler).
            if not self._closed:
                raise
        finally:
            self._tasks.discard(task)
            self._refusing.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _refuse(self, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
        with contextlib.suppress(Exception):
            writer.write(_response(status, reason))
            await asyncio.wait_for(writer.drain(), 5.0)
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(self.limits.header_timeout):
                head = await reader.readuntil(b"\r\n\r\n")
            target = parse_connect(head)
            label = str(target)
            if not self.allowlist.allows(target):
                raise RequestRefused(403, "not on the allowlist", label)
            upstream_reader, upstream_writer, address = await self._connect(target)
        except TimeoutError:
            self._emit(EgressEvent("", False, "no request in time", 408))
            await self._refuse(writer, 408, "no request in time")
            return
        except asyncio.LimitOverrunError:
            self._emit(EgressEvent("", False, "request head too large", 431))
            await self._refuse(writer, 431, "request head too large")
            return
        except asyncio.IncompleteReadError as e:
            if e.partial:
                self._emit(EgressEvent("", False, "incomplete request", 400))
            return
        except RequestRefused as e:
            self._emit(EgressEvent(e.target, False, e.reason, e.status))
            await self._refuse(writer, e.status, e.reason)
            return
        self._emit(EgressEvent(label, True, "allowed", 200, address))
        try:
            writer.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await self._relay(reader, writer, upstream_reader, upstream_writer)
        finally:
            upstream_writer.close()
            with contextlib.suppress(Exception):
                await upstream_writer.wait_closed()

    async def _addresses(self, target: Endpoint) -> list[str]:
        if self.allowlist.is_local(target):
            return [self.local_address]  # deliberately loopback: a listed local port
        label = str(target)
        try:
            async with asyncio.timeout(self.limits.connect_timeout):
                answers = list(await self.resolver(target.host, target.port))
        except (OSError, TimeoutError):
            raise RequestRefused(502, "cannot resolve the host", label) from None
        if not answers:
            raise RequestRefused(502, "cannot resolve the host", label)
        for answer in answers:
            try:
                address = ipaddress.ip_address(answer.split("%", 1)[0])
            except ValueError:
                raise RequestRefused(502, "the resolver gave no address", label) from None
            # One bad answer refuses the name: a mixed answer is how rebinding starts.
            problem = address_problem(address, self.exempt_networks)
            if problem:
                raise RequestRefused(403, problem, label)
        return answers

    async def _connect(self, target: Endpoint) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, str]:
        label = str(target)
        last = "cannot connect"
        for address in await self._addresses(target):
            try:
                async with asyncio.timeout(self.limits.connect_timeout):
                    r, w = await asyncio.open_connection(address, target.port, limit=_READ_SIZE)
                return r, w, address
            except TimeoutError:
                last = "connecting timed out"
            except OSError as e:
                last = f"cannot connect ({e.strerror or 'error'})"
        raise RequestRefused(504 if last == "connecting timed out" else 502, last, label)

    async def _relay(
        self,
        client_reader: asyncio.StreamReader,
        client_writer: asyncio.StreamWriter,
        upstream_reader: asyncio.StreamReader,
        upstream_writer: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        idle = self.limits.idle_timeout

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, up: bool) -> None:
            nonlocal last
            while True:
                try:
                    async with asyncio.timeout(idle):
                        data = await src.read(_READ_SIZE)
                except TimeoutError:
                    if loop.time() - last >= idle:
                        raise
                    continue
                if not data:
                    if dst.can_write_eof():
                        with contextlib.suppress(OSError):
                            dst.write_eof()
                    return
                last = loop.time()
                dst.write(data)
                await dst.drain()
                if up:
                    self._stats = attrs.evolve(self._stats, bytes_up=self._stats.bytes_up + len(data))
                else:
                    self._stats = attrs.evolve(self._stats, bytes_down=self._stats.bytes_down + len(data))

        pumps = [
            asyncio.ensure_future(pump(client_reader, upstream_writer, True)),
            asyncio.ensure_future(pump(upstream_reader, client_writer, False)),
        ]
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for p in pumps:
                p.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
