"""The values haflow deals in. Pure data: no I/O and no JSON here.

Field names follow the wire contract's snake_case; the few camelCase names
of the contract are mapped in :mod:`haflowd.convert`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from .ids import (
    EXECUTION_ID,
    FILENAME,
    MAX_FILENAME_BYTES,
    MISSION_ID,
    PROJECT_ID,
    RUN_ID,
    filename_problem,
    is_mission_id,
    is_run_id,
)

# Facts for the API description (haflowd.web.openapi) that the types do not
# carry, kept beside the validators that enforce them.
_NON_BLANK = {"openapi": {"minLength": 1, "pattern": r"\S"}}
_FILENAME = {"openapi": {"pattern": FILENAME, "maxLength": MAX_FILENAME_BYTES}}
_MISSION_ID = {"openapi": {"pattern": MISSION_ID}}
_RUN_ID = {"openapi": {"pattern": RUN_ID}}


#: Bounds of what a request may carry (the API description states them): names,
#: paths, refs and commands reach file systems, git and sandboxes, where a NUL
#: byte or a megabyte is an error; each is refused at the door with a 400.
MAX_TITLE_CHARS = 500
MAX_NAME_CHARS = 200
MAX_ID_CHARS = 100
MAX_PATH_CHARS = 4096
MAX_REF_CHARS = 255
MAX_IMAGE_CHARS = 512
#: A command is one argument of ``sh -c``: far below Linux's 128 KiB per argument.
MAX_COMMAND_CHARS = 16 * 1024
#: The longest a review command may run, in milliseconds (two hours).
MAX_COMMAND_TIMEOUT_MS = 2 * 60 * 60 * 1000
#: JSON Schema of a string without NUL bytes, and of one that is besides not blank.
NO_NUL = r"^[^\u0000]*$"
NO_NUL_NON_BLANK = r"^[^\u0000]*[^\u0000\s][^\u0000]*$"


def _line(max_chars: int, *, required: bool = False) -> dict[str, Any]:
    """``attrs.field`` arguments of a one-line field: no NUL byte, at most ``max_chars``, non-blank if required.

    The validator refuses what the metadata tells the API description.
    """

    def check(_: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
        if value is None:
            return
        if "\0" in value:
            raise ValueError(f"{attribute.name} must not contain a NUL byte")
        if len(value) > max_chars:
            raise ValueError(f"{attribute.name} is longer than {max_chars} characters")
        if required and not value.strip():
            raise ValueError(f"{attribute.name} must not be empty")

    facts = {"minLength": 1, "pattern": NO_NUL_NON_BLANK} if required else {"pattern": NO_NUL}
    return {"validator": check, "metadata": {"openapi": {**facts, "maxLength": max_chars}}}


class MissionType(enum.StrEnum):
    FEATURE = "feature"
    FIX = "fix"
    BUGFIX = "bugfix"
    HOTFIX = "hotfix"
    ENHANCE = "enhance"


class MissionStatus(enum.StrEnum):
    DRAFT = "draft"
    READY = "ready"
    WAITING_HUMAN = "waiting_human"
    RUNNING_CODE_AGENT = "running_code_agent"
    RUNNING_ROOT_LLM = "running_root_llm"
    WAITING_CODE_REVIEW = "waiting_code_review"
    FAILED = "failed"
    COMPLETED = "completed"


RUNNING_STATUSES = frozenset({MissionStatus.RUNNING_CODE_AGENT, MissionStatus.RUNNING_ROOT_LLM})


class StepType(enum.StrEnum):
    AGENT = "agent"
    HUMAN_GATE = "human-gate"
    CODE_REVIEW = "code-review"


class WorkspaceMode(enum.StrEnum):
    DOCUMENT = "document"
    CODEGEN = "codegen"


def _non_empty(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not value.strip():
        raise ValueError(f"{attribute.name} must not be empty")


def _artifact_name(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and (problem := filename_problem(value)) is not None:
        raise ValueError(f"{attribute.name} {problem}")


def _mission_id(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not is_mission_id(value):
        raise ValueError(f"not a mission id: {value!r}")


def _run_id(_: object, __: attrs.Attribute[str], value: str) -> None:
    if not is_run_id(value):
        raise ValueError(f"not a run id: {value!r}")


@attrs.frozen
class WorkflowStep:
    step_id: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)
    name: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)
    type: StepType
    agent: str | None = None
    input_artifact: str | None = attrs.field(default=None, validator=_artifact_name, metadata=_FILENAME)
    output_artifact: str | None = attrs.field(default=None, validator=_artifact_name, metadata=_FILENAME)
    review_artifact: str | None = attrs.field(default=None, validator=_artifact_name, metadata=_FILENAME)
    workspace_mode: WorkspaceMode | None = None
    quick_commands: tuple[str, ...] | None = None

    def __attrs_post_init__(self) -> None:
        if self.type is StepType.AGENT and (not self.agent or not self.output_artifact):
            raise ValueError(f"agent step {self.step_id!r} needs 'agent' and 'outputArtifact'")


@attrs.frozen
class Workflow:
    workflow_id: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)
    name: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)
    steps: tuple[WorkflowStep, ...] = attrs.field(metadata={"openapi": {"minItems": 1}})

    @steps.validator
    def _check_steps(self, _: attrs.Attribute[tuple[WorkflowStep, ...]], steps: tuple[WorkflowStep, ...]) -> None:
        if not steps:
            raise ValueError("a workflow needs at least one step")
        ids = [s.step_id for s in steps]
        if len(set(ids)) != len(ids):
            raise ValueError("step ids must be unique")

    def step_name(self, index: int) -> str:
        """The contract's ``current_step_name``: "Complete" past the last step."""
        return self.steps[index].name if 0 <= index < len(self.steps) else "Complete"


@attrs.frozen
class Limits:
    """Resource ceilings of one sandbox; the defaults are every agent's defaults."""

    memory: str = "512m"
    cpus: float = 1.0
    pids: int = 256
    timeout_seconds: float = 1800.0


DEFAULT_LIMITS = Limits()


class AdapterId(enum.StrEnum):
    """The agent CLIs haflow knows how to drive (``adapter`` in agent files)."""

    COMMAND = "command"
    CLAUDE_CODE = "claude-code"
    CODEX = "codex"
    GEMINI = "gemini"
    OPENCODE = "opencode"
    AIDER = "aider"


@attrs.frozen
class Usage:
    """Tokens (and cost, where the CLI reports it) one run or mission used."""

    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None

    def __add__(self, other: Usage) -> Usage:
        def plus(a: float | None, b: float | None) -> float | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        cached = plus(self.cached_input_tokens, other.cached_input_tokens)
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            cached_input_tokens=None if cached is None else int(cached),
            cost_usd=plus(self.cost_usd, other.cost_usd),
            model=self.model if self.model == other.model else None,
        )


@attrs.frozen
class AgentSpec:
    """How to run one agent: an entry of ``workflows/agents/*.json``.

    ``command`` items may contain the placeholders ``{mission_id}``,
    ``{run_id}``, ``{step_id}``, ``{step_name}``, ``{agent_id}``,
    ``{input_artifact}`` and ``{output_artifact}``; ``image`` ``None`` means
    the daemon's configured agent image.
    """

    agent_id: str = attrs.field(validator=_non_empty)
    command: tuple[str, ...] = ()
    name: str | None = None
    adapter: AdapterId = AdapterId.COMMAND
    model: str | None = None
    #: Names of environment variables the agent needs; values come from the daemon.
    secrets: tuple[str, ...] = ()
    #: A prompt template name in ``workflows/prompts/`` (default: per step kind).
    prompt: str | None = None
    max_turns: int | None = None
    max_budget_usd: float | None = None
    #: An OpenAI-compatible endpoint (local models through aider/opencode).
    base_url: str | None = None
    #: Exact ``host:port`` pairs the agent may reach (through the egress proxy).
    egress: tuple[str, ...] = ()
    #: Ports of the daemon's host the agent may reach (a local model server).
    local_ports: tuple[int, ...] = ()
    image: str | None = None
    env: Mapping[str, str] = attrs.field(factory=dict)
    network: bool = False
    memory: str = DEFAULT_LIMITS.memory
    cpus: float = attrs.field(default=DEFAULT_LIMITS.cpus, validator=attrs.validators.gt(0))
    pids_limit: int = attrs.field(default=DEFAULT_LIMITS.pids, validator=attrs.validators.gt(0))
    timeout_seconds: float = attrs.field(default=DEFAULT_LIMITS.timeout_seconds, validator=attrs.validators.gt(0))

    @property
    def limits(self) -> Limits:
        return Limits(memory=self.memory, cpus=self.cpus, pids=self.pids_limit, timeout_seconds=self.timeout_seconds)

    def __attrs_post_init__(self) -> None:
        if self.adapter is AdapterId.COMMAND and not self.command:
            raise ValueError(f"agent {self.agent_id!r} needs a 'command' (or an 'adapter')")


@attrs.frozen
class Changes:
    """What one commit changed."""

    files: int
    insertions: int
    deletions: int


@attrs.frozen
class Delivery:
    """Where a mission's branch was delivered in the user's repository."""

    branch: str
    commit: str
    delivered_at: datetime


@attrs.frozen
class MissionMeta:
    mission_id: str = attrs.field(validator=_mission_id, metadata=_MISSION_ID)
    title: str
    type: MissionType
    workflow_id: str
    current_step: int = attrs.field(metadata={"openapi": {"minimum": 0}})
    status: MissionStatus
    created_at: datetime
    updated_at: datetime
    errors: tuple[str, ...]
    last_error: str | None = None
    project_id: str | None = None
    branch: str | None = None
    base_commit: str | None = None
    delivered: Delivery | None = None
    #: The sum of the usage its runs reported (docs/contract/AGENTS.md's ``MissionDetail.usage``).
    usage: Usage | None = None


@attrs.frozen
class StepRun:
    step_id: str
    run_id: str = attrs.field(validator=_run_id, metadata=_RUN_ID)
    started_at: datetime
    finished_at: datetime | None = None
    exit_code: int | None = None
    #: What the sandbox provider called it (``container_id`` on the wire).
    sandbox_id: str | None = None
    #: The commit a codegen step's changes became, and their size.
    commit: str | None = None
    changes: Changes | None = None
    usage: Usage | None = None
    #: The agent's final message (at most 4 Ki characters).
    result: str | None = None
    #: The reviewer's feedback artifact this run answers (a request for changes).
    feedback_artifact: str | None = attrs.field(default=None, metadata={"wire": False})
    #: Bytes of the output file written before the sandbox's first byte
    #: (the daemon's own notes); kept on disk for re-attaching, not on the wire.
    output_offset: int | None = attrs.field(default=None, metadata={"wire": False})


@attrs.frozen
class MissionListItem:
    mission_id: str = attrs.field(metadata=_MISSION_ID)
    title: str
    type: MissionType
    status: MissionStatus
    current_step_name: str
    updated_at: datetime
    cost_usd: float | None = None


@attrs.frozen
class MissionDetail:
    """``MissionMeta`` plus what the mission view needs; flattened on the wire."""

    meta: MissionMeta
    workflow: Workflow
    artifacts: Mapping[str, str]
    runs: tuple[StepRun, ...]
    current_log_tail: str | None = attrs.field(
        default=None, metadata={"openapi": {"description": "The last characters of the log of the run in progress."}}
    )


@attrs.frozen
class CreateMissionRequest:
    title: str = attrs.field(**_line(MAX_TITLE_CHARS, required=True))
    type: MissionType
    raw_input: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)
    workflow_id: str | None = attrs.field(default=None, **_line(MAX_ID_CHARS))
    #: A linked project makes this a code mission on that repository.
    project_id: str | None = attrs.field(default=None, **_line(MAX_ID_CHARS))
    #: What the mission branch starts from (default: the repository's HEAD).
    base_ref: str | None = attrs.field(default=None, **_line(MAX_REF_CHARS))


@attrs.frozen
class SaveArtifactRequest:
    content: str


@attrs.frozen
class Project:
    """A user's git repository, linked so missions can work on it (never written by linking)."""

    project_id: str = attrs.field(metadata={"openapi": {"pattern": PROJECT_ID}})
    name: str
    #: Absolute path of the user's repository.
    path: str
    created_at: datetime
    default_branch: str | None = None
    test_command: str | None = None
    image: str | None = None


class ExecutionStatus(enum.StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


@attrs.frozen
class Execution:
    """A command run in a sandbox on a copy of a mission's work tree (camelCase on the wire)."""

    id: str = attrs.field(metadata={"openapi": {"pattern": EXECUTION_ID}})
    command: str
    status: ExecutionStatus
    output: str
    started_at: datetime
    exit_code: int | None = None
    finished_at: datetime | None = None
    #: The sandbox it runs in; on disk, for re-attaching after a restart.
    sandbox_id: str | None = attrs.field(default=None, metadata={"wire": False})


@attrs.frozen
class LinkProjectRequest:
    path: str = attrs.field(**_line(MAX_PATH_CHARS, required=True))
    name: str | None = attrs.field(default=None, **_line(MAX_NAME_CHARS))
    test_command: str | None = attrs.field(default=None, **_line(MAX_COMMAND_CHARS))
    image: str | None = attrs.field(default=None, **_line(MAX_IMAGE_CHARS))


@attrs.frozen
class RunCommandRequest:
    command: str = attrs.field(**_line(MAX_COMMAND_CHARS, required=True))
    #: Milliseconds.
    timeout: int | None = attrs.field(
        default=None,
        validator=attrs.validators.optional([attrs.validators.gt(0), attrs.validators.le(MAX_COMMAND_TIMEOUT_MS)]),
        metadata={"openapi": {"minimum": 1, "maximum": MAX_COMMAND_TIMEOUT_MS}},
    )


@attrs.frozen
class RequestChangesRequest:
    feedback: str = attrs.field(validator=_non_empty, metadata=_NON_BLANK)


@attrs.frozen
class DeliverRequest:
    branch: str | None = attrs.field(default=None, **_line(MAX_REF_CHARS))


@attrs.frozen
class GitFile:
    path: str
    #: git's letter: A, M, D, R or T.
    status: str


@attrs.frozen
class GitStatus:
    """The mission branch plus uncommitted work, against the base commit (``hasChanges`` on the wire)."""

    has_changes: bool
    files: tuple[GitFile, ...]
    summary: str
    #: More files changed than are listed (the summary counts them all); omitted when false.
    truncated: bool = False


@attrs.frozen
class GitDiff:
    diff: str
    #: The diff went past its bound and was cut at a line end.
    truncated: bool = False


@attrs.frozen
class Commit:
    sha: str
    message: str
    #: ``Name <email>``.
    author: str
    created_at: datetime
    files: int
    insertions: int
    deletions: int
    run_id: str | None = None
    step_id: str | None = None


@attrs.frozen
class ExecutionStarted:
    execution_id: str


@attrs.frozen
class Delivered:
    branch: str
    commit: str
