"""Allowlist entries are exact lowercase host:port pairs; everything else is refused by name."""

from __future__ import annotations

import pytest

from haflowd.allowlist import (
    PROXY_PORT,
    Allowlist,
    Endpoint,
    InvalidAllowlist,
    parse_allowlist,
    parse_endpoint,
    parse_target,
)

MALFORMED = [
    ("api.test:443@evil", "userinfo"),
    ("user@api.test:443", "userinfo"),
    ("api.test", "port is missing"),
    ("api.test:", "not a port"),
    ("API.test:443", "lowercase"),
    ("api.test.:443", "end with a dot"),
    ("api.test:0", "not a port"),
    ("api.test:99999", "not a port"),
    ("api.test:0443", "not a port"),
    ("api.test:+443", "not a port"),
    ("api.test:44 3", "host:port only"),
    ("http://api.test:443", "host:port only"),
    ("api.test:443/path", "host:port only"),
    ("[::1]:443", "IPv6"),
    ("::1:443", "full DNS name"),
    ("[2001:db8::1]:443", "IPv6"),
    ("127.0.0.1:443", "IP addresses"),
    ("127.1:443", "IP addresses"),
    ("0x7f000001.0x1:443", "IP addresses"),
    ("2130706433:443", "full DNS name"),
    ("*.test:443", "wildcard"),
    ("api..test:443", "DNS label"),
    ("-api.test:443", "DNS label"),
    ("api_x.test:443", "DNS label"),
    ("api.test%00:443", "host:port only"),
    ("a" * 64 + ".test:443", "DNS label"),
    (("a" * 60 + ".") * 5 + "test:443", "253"),
    ("bücher.test:443", "DNS label"),
    ("", "port is missing"),
]


class TestParseEndpoint:
    """Allowlist entries parse into exact pairs or fail with a reason naming the fault."""

    def test_valid_entry(self) -> None:
        """A lowercase DNS name with a port parses to that pair."""
        assert parse_endpoint("api.anthropic.com:443") == Endpoint("api.anthropic.com", 443)

    @pytest.mark.parametrize(("entry", "reason"), MALFORMED)
    def test_malformed_entries_are_refused(self, entry: str, reason: str) -> None:
        """Each malformed entry is refused with an error that quotes it and says why."""
        with pytest.raises(InvalidAllowlist, match=reason) as info:
            parse_endpoint(entry)
        assert repr(entry) in info.value.message

    def test_localhost_belongs_under_local_ports(self) -> None:
        """localhost:port is not an entry; the error points at local_ports."""
        with pytest.raises(InvalidAllowlist, match="local_ports"):
            parse_endpoint("localhost:11434")

    @pytest.mark.parametrize("entry", [443, None, b"api.test:443", ["api.test:443"]])
    def test_non_strings_are_refused(self, entry: object) -> None:
        """An entry that is not a string is refused."""
        with pytest.raises(InvalidAllowlist, match="must be a string"):
            parse_endpoint(entry)

    def test_localhost_is_a_target(self) -> None:
        """As a CONNECT target, localhost:port parses (the local-ports case)."""
        assert parse_target("localhost:11434") == Endpoint("localhost", 11434)


class TestParseAllowlist:
    """An agent definition's lists become an Allowlist, or an error naming the bad entry."""

    def test_entries_and_local_ports(self) -> None:
        """Pairs and local ports are kept as sets."""
        allow = parse_allowlist(["api.test:443", "api.test:443", "b.test:8443"], [11434])
        assert allow == Allowlist(frozenset({Endpoint("api.test", 443), Endpoint("b.test", 8443)}), frozenset({11434}))

    @pytest.mark.parametrize("port", [0, 65536, -1, "11434", True, 1.5, PROXY_PORT])
    def test_bad_local_ports(self, port: object) -> None:
        """A local port must be an int in range and not the proxy's own port."""
        with pytest.raises(InvalidAllowlist, match="local port"):
            parse_allowlist([], [port])

    def test_a_string_is_not_a_list(self) -> None:
        """A bare string is refused instead of being read character by character."""
        with pytest.raises(InvalidAllowlist, match="lists"):
            parse_allowlist("api.test:443")

    def test_too_many_entries(self) -> None:
        """An allowlist is bounded."""
        with pytest.raises(InvalidAllowlist, match="at most"):
            parse_allowlist([f"h{i}.test:443" for i in range(33)])

    def test_empty(self) -> None:
        """No entries means no egress at all."""
        assert parse_allowlist().empty


class TestAllows:
    """The matcher allows exact pairs and listed local ports only."""

    allow = parse_allowlist(["api.test:443"], [11434])

    @pytest.mark.parametrize(
        ("target", "allowed"),
        [
            (Endpoint("api.test", 443), True),
            (Endpoint("api.test", 80), False),
            (Endpoint("evil.test", 443), False),
            (Endpoint("sub.api.test", 443), False),
            (Endpoint("localhost", 11434), True),
            (Endpoint("localhost", 443), False),
            (Endpoint("localhost", 3128), False),
        ],
    )
    def test_matches(self, target: Endpoint, allowed: bool) -> None:
        """Only a listed pair or localhost with a listed local port matches."""
        assert self.allow.allows(target) is allowed
