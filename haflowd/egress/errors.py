"""The errors egress control raises."""

from __future__ import annotations

from ..errors import SandboxUnavailable


class EgressUnavailable(SandboxUnavailable):
    """The proxy or the sidecar cannot start: the step fails before its agent does.

    There is no fallback to bridge networking; an agent that lists egress
    runs with it or not at all.
    """
