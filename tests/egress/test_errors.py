"""The egress wing's error: a sandbox that cannot be reached, so a step fails before its agent."""

from __future__ import annotations

from haflowd.egress.errors import EgressUnavailable
from haflowd.errors import HaflowError, SandboxError, SandboxUnavailable


class TestEgressUnavailable:
    def test_is_a_sandbox_unavailable(self) -> None:
        """EgressUnavailable is handled as the engine's SandboxUnavailable, with its message."""
        error = EgressUnavailable("proxy socket folder is not private")
        assert isinstance(error, SandboxUnavailable)
        assert isinstance(error, SandboxError) and isinstance(error, HaflowError)
        assert error.message == "proxy socket folder is not private"
