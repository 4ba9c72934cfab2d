"""The adapter registry: an agent file's adapter picks the class."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.gemini import GeminiAdapter
from haflowd.agents.prompts import PromptLibrary
from haflowd.agents.protocol import AgentAdapter
from haflowd.agents.registry import adapter_for
from haflowd.catalog import builtin_dir, load_catalog
from haflowd.models import AdapterId, AgentSpec


class TestAdapterFor:
    @pytest.mark.parametrize("adapter", list(AdapterId))
    def test_every_adapter(self, adapter: AdapterId) -> None:
        """Every AdapterId has an adapter implementing the protocol under the same id."""
        spec = AgentSpec(agent_id="a", adapter=adapter, command=("true",))
        found = adapter_for(spec)
        assert isinstance(found, AgentAdapter)
        assert found.adapter_id == adapter.value

    def test_prompt_library_is_passed(self, tmp_path: Path) -> None:
        """The caller's prompt library (the user's folder first) reaches the adapter."""
        library = PromptLibrary.for_home(tmp_path)
        found = adapter_for(AgentSpec(agent_id="a", adapter=AdapterId.GEMINI), prompts=library)
        assert isinstance(found, GeminiAdapter) and found.prompts is library


class TestShippedAgents:
    @pytest.mark.parametrize("agent_id", ["claude-code", "codex", "gemini", "opencode", "aider"])
    def test_real_agent_files(self, agent_id: str) -> None:
        """Each real agent file loads, names its pinned image, needs 2 GB and a secret, and has no network."""
        spec = load_catalog([builtin_dir()]).agents[agent_id]
        assert spec.adapter.value == agent_id
        assert spec.image is not None and spec.image.startswith(f"haflow-agent-{agent_id}:")
        assert spec.memory == "2g"
        assert spec.secrets and spec.network is False
        assert spec.command == ()
        assert adapter_for(spec).adapter_id == agent_id

    def test_override_switches_a_v0_agent(self, tmp_path: Path) -> None:
        """A user file named like a v0 agent with an adapter replaces the stand-in (the one-line switch)."""
        agents = tmp_path / "agents"
        agents.mkdir()
        (agents / "planning-agent.json").write_text(
            '{"agent_id": "planning-agent", "adapter": "claude-code", "image": "haflow-agent-claude-code:2.1.331",'
            ' "memory": "2g", "secrets": ["ANTHROPIC_API_KEY"]}'
        )
        spec = load_catalog([builtin_dir(), tmp_path]).agents["planning-agent"]
        assert adapter_for(spec).adapter_id == "claude-code"
