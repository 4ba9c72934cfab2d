"""The models: frozen values whose validators refuse bad ids and names, and that survive the converter."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from haflowd.convert import converter
from haflowd.models import (
    DEFAULT_LIMITS,
    AdapterId,
    AgentSpec,
    Changes,
    Commit,
    CreateMissionRequest,
    Delivery,
    Execution,
    ExecutionStatus,
    GitDiff,
    GitFile,
    GitStatus,
    Limits,
    MissionListItem,
    MissionStatus,
    MissionType,
    Project,
    StepRun,
    StepType,
    Usage,
    Workflow,
    WorkflowStep,
    WorkspaceMode,
)

timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
text = st.text(min_size=1, max_size=30)
words = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
filenames = st.from_regex(r"[a-z][a-z0-9_\-]{0,10}\.md", fullmatch=True)
counts = st.integers(0, 10**9)
shas = st.from_regex(r"[0-9a-f]{40}", fullmatch=True)
costs = st.floats(0, 1000, allow_nan=False)

usages = st.builds(
    Usage,
    input_tokens=counts,
    output_tokens=counts,
    cached_input_tokens=st.none() | counts,
    cost_usd=st.none() | costs,
    model=st.none() | text,
)
steps = st.builds(
    WorkflowStep,
    step_id=words,
    name=text.filter(str.strip),
    type=st.sampled_from(StepType),
    agent=words,
    input_artifact=st.none() | filenames,
    output_artifact=filenames,
    review_artifact=st.none() | filenames,
    workspace_mode=st.none() | st.sampled_from(WorkspaceMode),
    quick_commands=st.none() | st.lists(text, max_size=3).map(tuple),
)
workflows = st.builds(
    Workflow,
    workflow_id=words,
    name=text.filter(str.strip),
    steps=st.lists(steps, min_size=1, max_size=4, unique_by=lambda s: s.step_id).map(tuple),
)
agents = st.builds(
    AgentSpec,
    agent_id=words,
    command=st.lists(text, min_size=1, max_size=3).map(tuple),
    name=st.none() | text,
    adapter=st.sampled_from(AdapterId),
    model=st.none() | text,
    secrets=st.lists(st.from_regex(r"[A-Z_][A-Z0-9_]{0,8}", fullmatch=True), max_size=3).map(tuple),
    egress=st.lists(st.just("api.example.com:443"), max_size=1).map(tuple),
    local_ports=st.lists(st.integers(1, 65535), max_size=2).map(tuple),
    env=st.dictionaries(st.from_regex(r"[A-Z]{1,6}", fullmatch=True), text, max_size=3),
    network=st.booleans(),
    cpus=st.floats(0.1, 64, allow_nan=False),
    pids_limit=st.integers(1, 4096),
    timeout_seconds=st.floats(1, 86400, allow_nan=False),
)
projects = st.builds(
    Project,
    project_id=st.from_regex(r"p-[0-9a-f]{8}", fullmatch=True),
    name=text,
    path=text,
    created_at=timestamps,
    default_branch=st.none() | text,
    test_command=st.none() | text,
    image=st.none() | text,
)
executions = st.builds(
    Execution,
    id=st.from_regex(r"exec-[0-9a-f]{8}", fullmatch=True),
    command=text,
    status=st.sampled_from(ExecutionStatus),
    output=st.text(max_size=50),
    started_at=timestamps,
    exit_code=st.none() | st.integers(0, 255),
    finished_at=st.none() | timestamps,
)
list_items = st.builds(
    MissionListItem,
    mission_id=st.from_regex(r"m-[0-9a-f]{8}", fullmatch=True),
    title=text,
    type=st.sampled_from(MissionType),
    status=st.sampled_from(MissionStatus),
    current_step_name=text,
    updated_at=timestamps,
    cost_usd=st.none() | costs,
)
git_statuses = st.builds(
    GitStatus,
    has_changes=st.booleans(),
    files=st.lists(st.builds(GitFile, path=text, status=st.sampled_from("AMDRT")), max_size=3).map(tuple),
    summary=st.text(max_size=30),
)
commits = st.builds(
    Commit,
    sha=shas,
    message=text,
    author=text,
    created_at=timestamps,
    files=counts,
    insertions=counts,
    deletions=counts,
    run_id=st.none() | st.from_regex(r"r-[0-9a-f]{8}", fullmatch=True),
    step_id=st.none() | words,
)
VALUES = st.one_of(
    usages,
    workflows,
    agents,
    projects,
    executions,
    list_items,
    git_statuses,
    commits,
    st.builds(GitDiff, diff=st.text(max_size=50), truncated=st.booleans()),
    st.builds(Changes, files=counts, insertions=counts, deletions=counts),
    st.builds(Delivery, branch=text, commit=shas, delivered_at=timestamps),
    st.builds(
        CreateMissionRequest,
        title=text.filter(str.strip),
        type=st.sampled_from(MissionType),
        raw_input=text.filter(str.strip),
    ),
)


class TestRoundTrip:
    @given(VALUES)
    def test_through_json_and_back(self, value: Any) -> None:
        """Every model survives unstructure, JSON and structure, and omits its absent optionals."""
        data = converter.unstructure(value)
        assert converter.structure(json.loads(json.dumps(data)), type(value)) == value
        assert None not in data.values()


class TestValidators:
    @pytest.mark.parametrize("mission_id", ["r-1", "R-0123ABCD", "m-0123abcd", "../x"])
    def test_step_run_refuses_a_bad_id(self, mission_id: str) -> None:
        """A run refuses an id that is not a run id."""
        with pytest.raises(ValueError, match="not a run id"):
            StepRun(step_id="s", run_id=mission_id, started_at=datetime.now(UTC))

    @pytest.mark.parametrize("name", ["../etc/passwd", ".hidden", "a/b"])
    def test_step_refuses_a_bad_artifact_name(self, name: str) -> None:
        """A workflow step cannot name an artifact that could leave the mission folder."""
        with pytest.raises(ValueError, match="output_artifact"):
            WorkflowStep(step_id="s", name="S", type=StepType.AGENT, output_artifact=name)

    def test_blank_title_is_refused(self) -> None:
        """A mission request with a blank title is refused."""
        with pytest.raises(ValueError, match="title must not be empty"):
            CreateMissionRequest(title="  ", type=MissionType.FEATURE, raw_input="x")

    def test_workflow_needs_unique_steps(self) -> None:
        """A workflow needs at least one step, with unique ids."""
        step = WorkflowStep(step_id="s", name="S", type=StepType.HUMAN_GATE)
        with pytest.raises(ValueError, match="at least one step"):
            Workflow(workflow_id="w", name="W", steps=())
        with pytest.raises(ValueError, match="unique"):
            Workflow(workflow_id="w", name="W", steps=(step, step))

    def test_command_agent_needs_a_command(self) -> None:
        """An agent run by its own command must have one."""
        with pytest.raises(ValueError, match="needs a 'command'"):
            AgentSpec(agent_id="a")

    def test_values_are_frozen(self) -> None:
        """Models are changed with ``attrs.evolve``, never in place."""
        usage = Usage()
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            usage.input_tokens = 1  # type: ignore[misc]
        assert attrs.evolve(usage, input_tokens=1).input_tokens == 1


class TestBehaviour:
    def test_step_name_past_the_end_is_complete(self) -> None:
        """A workflow names its steps by index, and "Complete" past the last."""
        workflow = Workflow(
            workflow_id="w", name="W", steps=(WorkflowStep(step_id="s", name="Plan", type=StepType.HUMAN_GATE),)
        )
        assert [workflow.step_name(i) for i in (0, 1, -1)] == ["Plan", "Complete", "Complete"]

    def test_usage_adds_up(self) -> None:
        """Usages add field by field; unknown stays unknown, and a mixed model is none."""
        a = Usage(input_tokens=1, output_tokens=2, cost_usd=0.5, model="x")
        b = Usage(input_tokens=3, output_tokens=4, cached_input_tokens=5, model="y")
        assert a + b == Usage(input_tokens=4, output_tokens=6, cached_input_tokens=5, cost_usd=0.5, model=None)
        assert (Usage() + Usage()).cost_usd is None

    def test_agent_limits_default_to_every_agents(self) -> None:
        """An agent's limits default to ``DEFAULT_LIMITS`` and follow its own fields."""
        agent = AgentSpec(agent_id="a", command=("true",))
        assert agent.limits == DEFAULT_LIMITS
        assert AgentSpec(agent_id="a", command=("true",), pids_limit=9).limits == Limits(pids=9)
