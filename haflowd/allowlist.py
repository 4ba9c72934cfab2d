"""Which ``host:port`` pairs a networked agent may reach, parsed strictly.

Entries are exact lowercase DNS names with a port (``"api.anthropic.com:443"``):
no wildcards, no IP literals, no userinfo, no trailing dot. ``local_ports``
name ports of a model server on the daemon's own host, which the agent reaches
as ``127.0.0.1:<port>`` (the proxy is asked for ``localhost:<port>``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from .errors import BadRequest

#: The host name the proxy is asked for when a listed local port is meant.
LOCAL_HOST = "localhost"
#: The port the sidecar's relay serves the proxy on inside the agent's namespace;
#: a local port cannot also be it.
PROXY_PORT = 3128
#: Most pairs (and, separately, local ports) one agent may list.
MAX_ENTRIES = 32

_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_PORT = re.compile(r"[1-9][0-9]{0,4}\Z")


class InvalidAllowlist(BadRequest):
    """An allowlist entry is malformed; raised when an agent definition loads."""


@attrs.frozen(order=True)
class Endpoint:
    """One pair an agent may connect to: an exact DNS name and a TCP port."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


@attrs.frozen
class Allowlist:
    """The pairs and local ports one agent may reach; empty means no egress at all."""

    endpoints: frozenset[Endpoint] = frozenset()
    local_ports: frozenset[int] = frozenset()

    def allows(self, target: Endpoint) -> bool:
        """Whether a CONNECT to ``target`` is allowed: a listed pair or ``localhost:<listed port>``."""
        if target.host == LOCAL_HOST:
            return target.port in self.local_ports
        return target in self.endpoints

    def is_local(self, target: Endpoint) -> bool:
        """Whether ``target`` means the daemon's host (connected to 127.0.0.1 deliberately)."""
        return target.host == LOCAL_HOST

    @property
    def empty(self) -> bool:
        """Whether nothing at all is allowed."""
        return not self.endpoints and not self.local_ports


def host_problem(host: str) -> str | None:
    """Why ``host`` is not an exact lowercase DNS name, or None if it is one.

    At least two labels, letters, digits and inner hyphens only, and a last
    label that is not all digits, so no spelling of an IPv4 address
    (``127.1``, ``0x7f000001``, ``2130706433``) gets through; brackets and
    colons never do, so neither does IPv6.
    """
    if not host:
        return "the host is empty"
    if host != host.lower():
        return "the host must be lowercase"
    if host.endswith("."):
        return "the host must not end with a dot"
    if len(host) > 253:
        return "the host is longer than 253 characters"
    labels = host.split(".")
    if len(labels) < 2:
        return "the host must be a full DNS name such as api.example.com"
    for label in labels:
        if not _LABEL.match(label):
            return f"{label!r} is not a DNS label (letters, digits and inner hyphens, at most 63)"
    if labels[-1].isdigit() or labels[-1].startswith("0x"):
        return "IP addresses are not allowed; name the host"
    return None


def port_problem(text: str) -> str | None:
    """Why ``text`` is not a decimal TCP port 1-65535, or None if it is one."""
    if not _PORT.match(text) or int(text) > 65535:
        return f"{text!r} is not a port between 1 and 65535"
    return None


def parse_target(text: str) -> Endpoint:
    """Parse ``host:port`` strictly; :class:`InvalidAllowlist` says what is wrong.

    ``localhost`` is accepted as a host here (it is how the local-ports case is
    asked for); :func:`parse_endpoint` refuses it in allowlist entries.
    """
    if any(c in text for c in "@/?#[]\\ \t\r\n*%"):
        raise InvalidAllowlist(f"{text!r}: give host:port only (no scheme, path, userinfo, wildcard or IPv6)")
    host, sep, port = text.rpartition(":")
    if not sep:
        raise InvalidAllowlist(f"{text!r}: the port is missing (host:port)")
    problem = port_problem(port) or (None if host == LOCAL_HOST else host_problem(host))
    if problem:
        raise InvalidAllowlist(f"{text!r}: {problem}")
    return Endpoint(host, int(port))


def parse_endpoint(entry: object) -> Endpoint:
    """Parse one allowlist entry ``"host:port"``."""
    if not isinstance(entry, str):
        raise InvalidAllowlist(f"{entry!r}: an entry must be a string host:port")
    target = parse_target(entry)
    if target.host == LOCAL_HOST:
        raise InvalidAllowlist(f"{entry!r}: list a model server on this machine under local_ports instead")
    return target


def parse_local_port(entry: object) -> int:
    """Parse one ``local_ports`` entry: an integer port other than the proxy's own."""
    if isinstance(entry, bool) or not isinstance(entry, int) or not 1 <= entry <= 65535:
        raise InvalidAllowlist(f"local port {entry!r}: must be an integer between 1 and 65535")
    if entry == PROXY_PORT:
        raise InvalidAllowlist(f"local port {entry}: reserved for the egress proxy itself")
    return entry


def parse_allowlist(entries: Iterable[object] = (), local_ports: Iterable[object] = ()) -> Allowlist:
    """Build an :class:`Allowlist` from an agent definition's ``egress`` and ``local_ports`` lists.

    Raises :class:`InvalidAllowlist` naming the first bad entry.
    """
    if isinstance(entries, str | bytes) or isinstance(local_ports, str | bytes):
        raise InvalidAllowlist("egress entries and local ports must be lists")
    endpoints = [parse_endpoint(e) for e in entries]
    ports = [parse_local_port(p) for p in local_ports]
    if len(endpoints) > MAX_ENTRIES or len(ports) > MAX_ENTRIES:
        raise InvalidAllowlist(f"at most {MAX_ENTRIES} egress entries and {MAX_ENTRIES} local ports")
    return Allowlist(frozenset(endpoints), frozenset(ports))
