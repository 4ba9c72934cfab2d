"""The CONNECT-only proxy allows listed pairs to public (or exempt) addresses and refuses the rest."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import stat
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from haflowd.allowlist import Endpoint, parse_allowlist
from haflowd.egress.errors import EgressUnavailable
from haflowd.egress.proxy import (
    EgressEvent,
    EgressProxy,
    ProxyLimits,
    RequestRefused,
    Resolver,
    address_problem,
    parse_connect,
    system_resolver,
)

LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"),)


class TestParseConnect:
    """Request heads parse into a target or a refusal with the right status."""

    def test_connect(self) -> None:
        """A well-formed CONNECT names its target."""
        head = b"CONNECT api.test:443 HTTP/1.1\r\nHost: api.test:443\r\nUser-Agent: x\r\n\r\n"
        assert parse_connect(head) == Endpoint("api.test", 443)

    @pytest.mark.parametrize(
        ("head", "status"),
        [
            (b"GET http://api.test/ HTTP/1.1\r\nHost: api.test\r\n\r\n", 405),
            (b"GET / HTTP/1.1\r\n\r\n", 405),
            (b"connect api.test:443 HTTP/1.1\r\n\r\n", 405),
            (b"POST api.test:443 HTTP/1.1\r\n\r\n", 405),
            (b"CONNECT api.test:443@evil.test:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT http://api.test:443/ HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT [::1]:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT [2001:db8::1]:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT 203.0.113.7:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT API.TEST:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test.:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test:0 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test:99999 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test:443 HTTP/2.0\r\n\r\n", 400),
            (b"CONNECT  api.test:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test:443\r\n\r\n", 400),
            (b"CONNECT api.test:443 HTTP/1.1\r\nNoColon\r\n\r\n", 400),
            (b"CONNECT api.test:443 HTTP/1.1\r\n Folded: x\r\n\r\n", 400),
            (b"CONNECT api.test:443 HTTP/1.1\r\nX: \n\r\n\r\n", 400),
            (b"CONNECT api.t\xc3\xa9st:443 HTTP/1.1\r\n\r\n", 400),
            (b"CONNECT api.test:443 HTTP/1.1\r\n", 400),
            (b"CONNECT api.test:443 HTTP/1.1\r\n" + b"X: y\r\n" * 65 + b"\r\n", 431),
        ],
    )
    def test_refusals(self, head: bytes, status: int) -> None:
        """Non-CONNECT methods get 405, malformed requests and targets 400, too many fields 431."""
        with pytest.raises(RequestRefused) as info:
            parse_connect(head)
        assert info.value.status == status


class TestAddressProblem:
    """Only public addresses pass, unless their network is exempt."""

    @pytest.mark.parametrize(
        "address",
        [
            "127.0.0.1",
            "10.1.2.3",
            "172.17.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "2002:7f00:1::1",
            "2002:a00:1::1",
            "fec0::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::5db8:d822",
            "::7f00:1",
            "::a00:1",
        ],
    )
    def test_non_public(self, address: str) -> None:
        """Loopback, private, link-local, shared, multicast, reserved, unspecified and site-local addresses are refused,
        also when an IPv6 form embeds one (mapped, compatible, 6to4, NAT64) or hides it (Teredo)."""
        assert address_problem(ipaddress.ip_address(address)) is not None

    @pytest.mark.parametrize(
        "address", ["93.184.216.34", "2606:4700::1111", "::ffff:1.1.1.1", "2002:5db8:d822::1", "64:ff9b::5db8:d822"]
    )
    def test_public(self, address: str) -> None:
        """A public address passes."""
        assert address_problem(ipaddress.ip_address(address)) is None

    async def test_system_resolver(self) -> None:
        """The default resolver answers from the host (localhost comes from /etc/hosts, no traffic leaves)."""
        assert "127.0.0.1" in await system_resolver("localhost", 80)

    def test_exempt(self) -> None:
        """An address in an exempt network passes although it is private."""
        assert address_problem(ipaddress.ip_address("172.30.0.5"), [ipaddress.ip_network("172.30.0.0/16")]) is None


@pytest.fixture
async def echo() -> AsyncIterator[int]:
    """A TCP echo server on 127.0.0.1; yields its port."""

    async def serve(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while data := await r.read(65536):
                w.write(data)
                await w.drain()
        except ConnectionError:
            pass
        finally:
            w.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()


def resolver_for(answers: dict[str, Sequence[str]]) -> Resolver:
    """A resolver that knows only ``answers`` and fails like the system's for the rest."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if host not in answers:
            raise OSError(-2, "Name or service not known")
        return answers[host]

    return resolve


class Harness:
    """A proxy under test with its events collected."""

    def __init__(self, path: Path, echo_port: int, **kwargs: object) -> None:
        self.events: list[EgressEvent] = []
        allow = kwargs.pop("allowlist", parse_allowlist([f"api.test:{echo_port}"]))
        self.proxy = EgressProxy(
            path,
            allow,  # type: ignore[arg-type]
            resolver=kwargs.pop("resolver", resolver_for({"api.test": ["127.0.0.1"]})),  # type: ignore[arg-type]
            on_event=self.events.append,
            **kwargs,  # type: ignore[arg-type]
        )

    async def request(self, head: bytes) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
        """Send ``head`` and return the stream and the response head."""
        r, w = await asyncio.open_unix_connection(str(self.proxy.socket_path))
        w.write(head)
        status = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 5)
        return r, w, status


@pytest.fixture
async def harness(tmp_path: Path, echo: int) -> AsyncIterator[Harness]:
    h = Harness(tmp_path / "egress" / "proxy.sock", echo, exempt_networks=LOOPBACK)
    await h.proxy.start()
    yield h
    await h.proxy.close()


class TestEgressProxy:
    """The proxy relays allowed pairs, refuses the rest, reports every decision and tears down cleanly."""

    async def test_allowed_pair_relays(self, harness: Harness, echo: int) -> None:
        """CONNECT to a listed pair answers 200 and then splices bytes both ways."""
        r, w, head = await harness.request(f"CONNECT api.test:{echo} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 ")
        w.write(b"ping")
        assert await asyncio.wait_for(r.readexactly(4), 5) == b"ping"
        w.close()
        assert harness.events == [EgressEvent(f"api.test:{echo}", True, "allowed", 200, "127.0.0.1")]
        stats = harness.proxy.stats
        assert (stats.allowed, stats.refused, stats.bytes_up, stats.bytes_down) == (1, 0, 4, 4)

    async def test_bytes_sent_with_the_head_are_relayed(self, harness: Harness, echo: int) -> None:
        """Data pipelined right after the request head is not lost."""
        r, w, head = await harness.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\nearly".encode())
        assert head.startswith(b"HTTP/1.1 200 ")
        assert await asyncio.wait_for(r.readexactly(5), 5) == b"early"
        w.close()

    @pytest.mark.parametrize(
        ("request_head", "status", "reason"),
        [
            (b"CONNECT api.test:1 HTTP/1.1\r\n\r\n", 403, "not on the allowlist"),
            (b"CONNECT evil.test:{port} HTTP/1.1\r\n\r\n", 403, "not on the allowlist"),
            (b"CONNECT localhost:{port} HTTP/1.1\r\n\r\n", 403, "not on the allowlist"),
            (b"CONNECT 127.0.0.1:{port} HTTP/1.1\r\n\r\n", 400, "IP addresses"),
            (b"GET http://api.test:{port}/ HTTP/1.1\r\n\r\n", 405, "only CONNECT"),
            (b"CONNECT api.test:{port}@evil.test HTTP/1.1\r\n\r\n", 400, "host:port only"),
        ],
    )
    async def test_refused(self, harness: Harness, echo: int, request_head: bytes, status: int, reason: str) -> None:
        """Unlisted pairs, IP literals, plain HTTP and malformed targets are answered with a status and a reason."""
        r, w, head = await harness.request(request_head.replace(b"{port}", str(echo).encode()))
        assert head.startswith(f"HTTP/1.1 {status} ".encode())
        assert reason in (await asyncio.wait_for(r.read(), 5)).decode()
        w.close()
        [event] = harness.events
        assert (event.allowed, event.status) == (False, status)
        assert reason in event.reason
        assert harness.proxy.stats.refused == 1

    async def test_huge_head(self, harness: Harness) -> None:
        """A request head beyond the bound is answered 431 without reading it all."""
        _, w, head = await harness.request(b"CONNECT api.test:443 HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 431 ")
        w.close()

    async def test_header_timeout(self, tmp_path: Path, echo: int) -> None:
        """A client that never finishes its request is answered 408 after the header timeout."""
        h = Harness(tmp_path / "p.sock", echo, limits=ProxyLimits(header_timeout=0.2))
        async with h.proxy:
            _, w, head = await h.request(b"CONNECT api.test:443 HTTP/1.1\r\n")
            assert head.startswith(b"HTTP/1.1 408 ")
            w.close()

    @pytest.mark.parametrize(
        "answers",
        [
            ["127.0.0.1"],
            ["10.0.0.8"],
            ["169.254.169.254"],
            ["::1"],
            ["::ffff:192.168.0.1"],
            ["93.184.216.34", "10.0.0.8"],
        ],
    )
    async def test_resolver_private_answers_refused(self, tmp_path: Path, echo: int, answers: list[str]) -> None:
        """A listed name that resolves to any non-public address is refused with 403."""
        h = Harness(tmp_path / "p.sock", echo, resolver=resolver_for({"api.test": answers}))
        async with h.proxy:
            _, w, head = await h.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 403 ")
            w.close()
        assert "address" in h.events[0].reason

    async def test_unresolvable(self, tmp_path: Path, echo: int) -> None:
        """A listed name that does not resolve is answered 502."""
        h = Harness(tmp_path / "p.sock", echo, resolver=resolver_for({}))
        async with h.proxy:
            _, w, head = await h.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 502 ")
            w.close()

    async def test_local_port(self, tmp_path: Path, echo: int) -> None:
        """localhost:<listed local port> reaches the host's loopback without any exemption."""
        h = Harness(tmp_path / "p.sock", echo, allowlist=parse_allowlist([], [echo]))
        async with h.proxy:
            r, w, head = await h.request(f"CONNECT localhost:{echo} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 200 ")
            w.write(b"hi")
            assert await asyncio.wait_for(r.readexactly(2), 5) == b"hi"
            w.close()

    async def test_connection_cap(self, tmp_path: Path, echo: int) -> None:
        """Connections beyond the per-run cap are answered 503."""
        h = Harness(tmp_path / "p.sock", echo, exempt_networks=LOOPBACK, limits=ProxyLimits(max_connections=2))
        async with h.proxy:
            open_ = [await h.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode()) for _ in range(2)]
            _, w, head = await h.request(b"CONNECT api.test:443 HTTP/1.1\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 ")
            for _, ow, _ in open_:
                ow.close()
            w.close()

    async def test_idle_timeout(self, tmp_path: Path, echo: int) -> None:
        """A relay with no traffic either way is closed after the idle timeout."""
        h = Harness(tmp_path / "p.sock", echo, exempt_networks=LOOPBACK, limits=ProxyLimits(idle_timeout=0.3))
        async with h.proxy:
            r, w, head = await h.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode())
            assert head.startswith(b"HTTP/1.1 200 ")
            assert await asyncio.wait_for(r.read(), 5) == b""
            w.close()

    async def test_close_ends_relays(self, harness: Harness, echo: int) -> None:
        """Closing the proxy ends open relays and removes the socket; closing twice is fine."""
        r, w, _ = await harness.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode())
        assert harness.proxy.stats.active == 1
        await harness.proxy.close()
        assert await asyncio.wait_for(r.read(), 5) == b""
        assert harness.proxy.stats.active == 0
        assert not harness.proxy.socket_path.exists()
        await harness.proxy.close()
        w.close()

    async def test_permissions(self, harness: Harness) -> None:
        """The socket is 0600 in a folder of mode 0700."""
        path = harness.proxy.socket_path
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700

    async def test_stale_socket_replaced(self, tmp_path: Path, echo: int) -> None:
        """A socket left by an earlier proxy is replaced; a regular file is not."""
        path = tmp_path / "p.sock"
        with socket.socket(socket.AF_UNIX) as stale:
            stale.bind(str(path))
        async with Harness(path, echo).proxy as proxy:
            assert stat.S_ISSOCK(path.stat().st_mode) and proxy.stats.active == 0
        path.write_text("")
        with pytest.raises(EgressUnavailable, match="Not a socket"):
            await Harness(path, echo).proxy.start()

    async def test_path_too_long(self, tmp_path: Path, echo: int) -> None:
        """A socket path Linux cannot bind is refused up front."""
        with pytest.raises(EgressUnavailable, match="longer than"):
            await Harness(tmp_path / ("x" * 120), echo).proxy.start()


class TestCloseDuringRefusal:
    """Closing the proxy ends connections it is still refusing, with no traceback (issue 18, finding 10)."""

    async def test_close_ends_refusals_quietly(
        self, tmp_path: Path, echo: int, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A refusal under way when close() runs is ended by it; nothing is left running and nothing logs an error."""
        caplog.set_level(logging.DEBUG)
        refusing = asyncio.Event()
        original = EgressProxy._refuse

        async def slow_refuse(self: EgressProxy, writer: asyncio.StreamWriter, status: int, reason: str) -> None:
            refusing.set()  # a client too slow to take its 503
            await asyncio.Event().wait()
            await original(self, writer, status, reason)

        monkeypatch.setattr(EgressProxy, "_refuse", slow_refuse)
        h = Harness(tmp_path / "p.sock", echo, exempt_networks=LOOPBACK, limits=ProxyLimits(max_connections=1))
        await h.proxy.start()
        _, held, head = await h.request(f"CONNECT api.test:{echo} HTTP/1.1\r\n\r\n".encode())
        assert head.startswith(b"HTTP/1.1 200 ")
        r, w = await asyncio.open_unix_connection(str(h.proxy.socket_path))  # over the cap: refused
        await asyncio.wait_for(refusing.wait(), 5)

        await asyncio.wait_for(h.proxy.close(), 10)
        accepting = [t for t in asyncio.all_tasks() if "EgressProxy._accept" in repr(t.get_coro())]
        assert accepting == []
        assert await asyncio.wait_for(r.read(), 5) == b""
        await asyncio.sleep(0.05)  # a done callback that failed would have logged by now
        for record in caplog.records:
            assert record.levelno < logging.WARNING and record.exc_info is None, record.getMessage()
        held.close()
        w.close()
