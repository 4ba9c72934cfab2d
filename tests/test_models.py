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
    CreateMissionRequest,
    Limits,
    MissionDetail,
    MissionType,
    StepRun,
    StepType,
    Usage,
    Workflow,
    WorkflowStep,
)
from tests.test_convert import text
from tests.web.test_openapi import INSTANCES

words = st.from_regex(r"[a-z][a-z0-9_]{0,10}", fullmatch=True)
# Agent files are the one model the API document does not describe (its strategies are INSTANCES).
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

#: Every model: the API document's (one strategy each, shared with its tests) and agent files.
#: A mission's detail is only ever sent (its meta is flattened into it), never read back.
VALUES = st.one_of(*(strategy for model, strategy in INSTANCES.items() if model is not MissionDetail), agents)


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
