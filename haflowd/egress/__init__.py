"""Egress control: networked agents reach the ``host:port`` pairs they list and nothing else.

The agent container has no network of its own: it joins the network
namespace of a sidecar started with ``--network none`` (:mod:`.sidecar`), so
the pair has only loopback. A static relay in the sidecar hands every
connection to a CONNECT-only proxy the daemon serves on a per-run Unix socket
(:mod:`.proxy`), which allows exact pairs from an :class:`.allowlist.Allowlist`.
See ``docs/egress.md``.
"""
