"""Which adapter drives an agent file."""

from __future__ import annotations

from ..models import AdapterId, AgentSpec
from .command import CommandAdapter
from .protocol import AgentAdapter

_ADAPTERS: dict[AdapterId, AgentAdapter] = {AdapterId.COMMAND: CommandAdapter()}  # type: ignore[dict-item]


def adapter_for(spec: AgentSpec) -> AgentAdapter:
    """The adapter named by ``spec.adapter``."""
    return _ADAPTERS[spec.adapter]
