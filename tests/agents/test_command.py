"""The command adapter: today's agent files, unchanged."""

from __future__ import annotations

import pytest

from haflowd.agents.command import FEEDBACK_ENV, CommandAdapter
from haflowd.agents.protocol import Outcome
from haflowd.models import AgentSpec
from haflowd.placeholders import expand
from tests.agents.conftest import step

V0 = AgentSpec(
    agent_id="cleanup-agent",
    command=("haflow-agent", "{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"),
    env={"LANG": "C"},
)


class TestInvocation:
    def test_v0_command(self) -> None:
        """The v0 stand-in's placeholders are filled in; there is no prompt on stdin."""
        inv = CommandAdapter().invocation(step(V0))
        assert inv.command == ("haflow-agent", "cleanup", "cleanup-agent", "raw-input.md", "structured-text.md")
        assert inv.env == {"LANG": "C"}
        assert inv.stdin is None and inv.secrets == ()

    def test_every_placeholder(self) -> None:
        """All eight placeholders expand, several in one argument too."""
        spec = AgentSpec(
            agent_id="a",
            command=(
                "{mission_id}/{run_id}",
                "{step_id}:{step_name}",
                "{agent_id}",
                "{input_artifact}",
                "{output_artifact}",
                "{feedback_artifact}",
            ),
        )
        inv = CommandAdapter().invocation(step(spec, feedback_artifact="feedback.md"))
        assert inv.command == (
            "m-0001/r-0001",
            "cleanup:Cleanup",
            "a",
            "raw-input.md",
            "structured-text.md",
            "feedback.md",
        )

    def test_feedback_env(self) -> None:
        """With feedback, HAFLOW_FEEDBACK_ARTIFACT names it; without, it is absent."""
        assert FEEDBACK_ENV not in CommandAdapter().invocation(step(V0)).env
        inv = CommandAdapter().invocation(step(V0, feedback_artifact="feedback-r-0001.md"))
        assert inv.env[FEEDBACK_ENV] == "feedback-r-0001.md"

    @pytest.mark.parametrize(
        ("template", "expanded"),
        [
            ("{unknown}", "{unknown}"),
            ("{step_id.__class__}", "{step_id.__class__}"),
            ("{step_id!r}", "{step_id!r}"),
            ("{{step_id}}", "{cleanup}"),
            ("{0}", "{0}"),
            ("{}", "{}"),
        ],
    )
    def test_no_format_string_injection(self, template: str, expanded: str) -> None:
        """Only {name} of a known name expands; other braces stay as written."""
        assert expand(template, {"step_id": "cleanup"}) == expanded

    def test_values_are_not_expanded_again(self) -> None:
        """A value holding a placeholder is inserted literally."""
        assert expand("{step_name}", {"step_name": "{step_id}", "step_id": "x"}) == "{step_id}"

    def test_secrets_pass_by_name(self) -> None:
        """An agent file's secrets are passed on as names."""
        spec = AgentSpec(agent_id="a", command=("true",), secrets=("TOKEN",))
        assert CommandAdapter().invocation(step(spec)).secrets == ("TOKEN",)


class TestParser:
    def test_lines_pass_through(self) -> None:
        """Every line is logged as it is."""
        parser = CommandAdapter().parser()
        assert parser.feed("[agent] starting") == ["[agent] starting"]
        assert parser.feed('{"type": "x"}') == ['{"type": "x"}']

    @pytest.mark.parametrize(
        ("code", "outcome"),
        [
            (0, Outcome(success=True)),
            (3, Outcome(success=False)),
        ],
    )
    def test_exit_code_decides(self, code: int, outcome: Outcome) -> None:
        """Exit code 0 is success, anything else a failure (the engine names the code)."""
        assert CommandAdapter().parser().finish(code) == outcome

    def test_not_structured(self) -> None:
        """The command adapter's output is plain text."""
        assert CommandAdapter().structured is False and CommandAdapter().adapter_id == "command"
