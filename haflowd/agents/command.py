"""The ``command`` adapter: an agent file's own argv, output shown as it comes."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..placeholders import expand
from .protocol import Invocation, Outcome, StepContext


class PlainOutput:
    """Output is already readable; success is exit code 0."""

    def feed(self, line: str) -> Sequence[str]:
        return (line,)

    def finish(self, exit_code: int) -> Outcome:
        return Outcome(success=exit_code == 0)


@attrs.frozen
class CommandAdapter:
    """Runs ``command`` with its placeholders filled in (today's stand-in agents)."""

    adapter_id: str = "command"
    structured: bool = False

    def invocation(self, ctx: StepContext) -> Invocation:
        values = {
            "mission_id": ctx.mission_id,
            "run_id": ctx.run_id,
            "step_id": ctx.step_id,
            "step_name": ctx.step_name,
            "agent_id": ctx.agent.agent_id,
            "input_artifact": ctx.input_artifact or "",
            "output_artifact": ctx.output_artifact or "",
            "feedback_artifact": ctx.feedback_artifact or "",
        }
        env = dict(ctx.agent.env)
        if ctx.feedback_artifact:
            env["HAFLOW_FEEDBACK_ARTIFACT"] = ctx.feedback_artifact
        return Invocation(
            command=tuple(expand(item, values) for item in ctx.agent.command),
            env=env,
            secrets=ctx.agent.secrets,
        )

    def parser(self) -> PlainOutput:
        return PlainOutput()
