"""Today's behaviour as an adapter: run the agent file's own ``command``.

This is what agent files without an ``adapter`` get (the v0 stand-in and any
home-made script): the command's placeholders are filled in, its output is
the log as it is, and exit code 0 is success.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ..models import AdapterId
from ..placeholders import expand
from .protocol import Invocation, Outcome, StepContext

#: The environment variable naming the reviewer's feedback artifact, if any.
FEEDBACK_ENV = "HAFLOW_FEEDBACK_ARTIFACT"


def placeholder_values(ctx: StepContext) -> dict[str, str]:
    """The values of the command placeholders for one step."""
    return {
        "mission_id": ctx.mission_id,
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "step_name": ctx.step_name,
        "agent_id": ctx.agent.agent_id,
        "input_artifact": ctx.input_artifact or "",
        "output_artifact": ctx.output_artifact or "",
        "feedback_artifact": ctx.feedback_artifact or "",
    }


@attrs.define
class PlainParser:
    """Passes every line through; the exit code decides."""

    def feed(self, line: str) -> Sequence[str]:
        return [line]

    def finish(self, exit_code: int) -> Outcome:
        # The engine names the exit code itself.
        return Outcome(success=exit_code == 0)


@attrs.define
class CommandAdapter:
    """Runs ``agent.command`` with its placeholders filled in."""

    adapter_id: str = AdapterId.COMMAND.value
    structured: bool = False

    def invocation(self, ctx: StepContext) -> Invocation:
        values = placeholder_values(ctx)
        env = dict(ctx.agent.env)
        if ctx.feedback_artifact:
            env[FEEDBACK_ENV] = ctx.feedback_artifact
        return Invocation(
            command=tuple(expand(item, values) for item in ctx.agent.command),
            env=env,
            secrets=ctx.agent.secrets,
        )

    def parser(self) -> PlainParser:
        return PlainParser()
