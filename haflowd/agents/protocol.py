"""The seam between the engine and the agent CLIs it runs.

An :class:`AgentAdapter` knows one CLI: it turns a step into the exact
headless command line (:class:`Invocation`) and reads the CLI's output
stream back as readable log lines and an :class:`Outcome`. It runs nothing
itself and touches no files: the engine hands it a :class:`StepContext`
and feeds it the sandbox's output one line at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, runtime_checkable

import attrs

from ..models import AgentSpec, Usage

#: The agent's final message is cut to this many characters on the wire.
MAX_RESULT_CHARS = 4096


@attrs.frozen
class StepContext:
    """Everything an adapter may know about the step it is asked to run.

    Paths are as the agent sees them inside its sandbox.
    """

    mission_id: str
    mission_title: str
    mission_type: str
    run_id: str
    step_id: str
    step_name: str
    agent: AgentSpec
    #: The step kind the default prompt is chosen by: "cleanup", "research",
    #: "planning", "implementation", ... (the step id without digits, or the
    #: agent's own ``prompt``).
    prompt: str
    input_artifact: str | None = None
    output_artifact: str | None = None
    #: The input artifact's text (bounded by the engine).
    input_text: str = ""
    feedback_artifact: str | None = None
    feedback_text: str | None = None
    codegen: bool = False
    artifacts_dir: str = "/mission/artifacts"
    workspace_dir: str = "/workspace"


@attrs.frozen
class Invocation:
    """What the sandbox runs for one step.

    ``env`` values are plain settings (they may appear in ``docker inspect``);
    ``secrets`` are only *names*, whose values the engine takes from the
    daemon and passes without ever writing them down. ``stdin`` is the
    prompt, fed to the command's standard input.
    """

    command: tuple[str, ...]
    env: Mapping[str, str] = attrs.field(factory=dict)
    secrets: tuple[str, ...] = ()
    stdin: str | None = None


@attrs.frozen
class Outcome:
    """How a run ended, by the CLI's own signals (exit code included)."""

    success: bool
    #: Why it failed, in the CLI's words where it gave any.
    error: str | None = None
    usage: Usage | None = None
    #: The agent's final message, at most :data:`MAX_RESULT_CHARS`.
    result: str | None = None


class OutputParser(Protocol):
    """Reads one run's output; one parser per run, fed in order."""

    def feed(self, line: str) -> Sequence[str]:
        """Take one output line (without its newline); return readable log lines.

        Must never raise: a malformed or unexpected line is returned as text.
        """

    def finish(self, exit_code: int) -> Outcome:
        """The verdict once the sandbox exited with ``exit_code``."""


@runtime_checkable
class AgentAdapter(Protocol):
    """One agent CLI."""

    #: The ``adapter`` value of agent files that use this adapter.
    adapter_id: str
    #: Whether the output is JSON events worth keeping raw beside the log.
    structured: bool

    def invocation(self, ctx: StepContext) -> Invocation:
        """The CLI's headless command line, environment and prompt for this step."""

    def parser(self) -> OutputParser:
        """A fresh parser for one run's output."""


@runtime_checkable
class PromptChooser(Protocol):
    """Names the prompt template of a step whose agent names none (the agents' prompt library knows which exist)."""

    def default_prompt(self, step_id: str, *, codegen: bool) -> str:
        """The template for step ``step_id``; ``codegen`` when the step edits a work tree (may read files: blocking)."""
