"""The agents' protocol: every shipped adapter, its parsers and the prompt library satisfy it."""

from __future__ import annotations

import pytest

from haflowd.agents.prompts import PromptLibrary
from haflowd.agents.protocol import AgentAdapter, OutputParser, PromptChooser
from haflowd.agents.registry import adapter_for
from haflowd.models import AdapterId, AgentSpec


def spec(adapter: AdapterId) -> AgentSpec:
    return AgentSpec(agent_id="a", adapter=adapter, command=("true",))


class TestAdapters:
    @pytest.mark.parametrize("adapter", list(AdapterId))
    def test_every_adapter_is_an_agent_adapter(self, adapter: AdapterId) -> None:
        """Each adapter id's adapter satisfies AgentAdapter and names its own id."""
        found = adapter_for(spec(adapter))
        assert isinstance(found, AgentAdapter)
        assert found.adapter_id == adapter.value

    @pytest.mark.parametrize("adapter", list(AdapterId))
    def test_every_parser_has_feed_and_finish(self, adapter: AdapterId) -> None:
        """Each adapter's parser has the OutputParser methods and gives a fresh one per call."""
        found = adapter_for(spec(adapter))
        parser: OutputParser = found.parser()
        assert callable(parser.feed) and callable(parser.finish)
        assert found.parser() is not parser


class TestPromptChooser:
    def test_prompt_library_is_a_prompt_chooser(self) -> None:
        """The shipped prompt library is what launch asks for a step's template."""
        assert isinstance(PromptLibrary(), PromptChooser)
