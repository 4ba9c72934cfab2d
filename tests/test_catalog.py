"""Workflow and agent definitions as data: shipped, overridden, and rejected when wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from haflowd.catalog import builtin_dir, load_catalog
from haflowd.errors import InvalidDefinition
from haflowd.models import StepType
from haflowd.placeholders import expand


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


class TestBuiltin:
    def test_shipped_definitions_load(self) -> None:
        """The shipped folder holds standard-feature, oneshot and the four v0 agents."""
        catalog = load_catalog([builtin_dir()])
        assert {"standard-feature", "oneshot"} <= set(catalog.workflows)
        assert set(catalog.agents) >= {"cleanup-agent", "research-agent", "planning-agent", "impl-agent"}
        steps = catalog.workflows["standard-feature"].steps
        assert [s.type for s in steps] == [StepType.AGENT, StepType.HUMAN_GATE] * 4


class TestUserFolder:
    def test_user_workflow_is_added_and_agent_overridden(self, tmp_path: Path) -> None:
        """HAFLOW_HOME/workflows adds workflows and replaces agents with the same id."""
        user = tmp_path / "workflows"
        write(
            user / "quick.json",
            {
                "workflow_id": "quick",
                "name": "Quick",
                "steps": [{"step_id": "g", "name": "Gate", "type": "human-gate", "reviewArtifact": "raw-input.md"}],
            },
        )
        write(user / "agents" / "cleanup-agent.json", {"agent_id": "cleanup-agent", "command": ["true"]})
        catalog = load_catalog([builtin_dir(), user])
        assert catalog.workflows["quick"].steps[0].review_artifact == "raw-input.md"
        assert catalog.agents["cleanup-agent"].command == ("true",)
        assert catalog.agents["research-agent"].command[0] == "haflow-agent"


class TestInvalid:
    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ("{not json", "invalid JSON"),
            ({"workflow_id": "x", "name": "X", "steps": []}, "at least one step"),
            (
                {"workflow_id": "x", "name": "X", "steps": [{"step_id": "a", "name": "A", "type": "robot"}]},
                "$.steps[0].type",
            ),
            ({"workflow_id": "x", "name": "X", "stepz": []}, "stepz"),
            (
                {
                    "workflow_id": "x",
                    "name": "X",
                    "steps": [
                        {"step_id": "a", "name": "A", "type": "agent", "agent": "ghost-agent", "outputArtifact": "o.md"}
                    ],
                },
                "unknown agent 'ghost-agent'",
            ),
            (
                {
                    "workflow_id": "x",
                    "name": "X",
                    "steps": [
                        {
                            "step_id": "a",
                            "name": "A",
                            "type": "agent",
                            "agent": "impl-agent",
                            "outputArtifact": "../o.md",
                        }
                    ],
                },
                "output_artifact must not contain '..'",
            ),
            (
                {
                    "workflow_id": "x",
                    "name": "X",
                    "steps": [
                        {"step_id": "a", "name": "A", "type": "human-gate"},
                        {"step_id": "a", "name": "B", "type": "human-gate"},
                    ],
                },
                "unique",
            ),
        ],
    )
    def test_bad_workflow_file_names_file_and_problem(self, tmp_path: Path, content: Any, problem: str) -> None:
        """A broken workflow file fails loading with its path and what is wrong."""
        path = write(tmp_path / "workflows" / "broken.json", content)
        with pytest.raises(InvalidDefinition) as info:
            load_catalog([builtin_dir(), tmp_path / "workflows"])
        assert str(path) in info.value.message
        assert problem in info.value.message

    @pytest.mark.parametrize(
        ("content", "problem"),
        [
            ({"agent_id": "a", "command": []}, "command"),
            ({"agent_id": "a", "command": ["x", "{secret}"]}, "unknown placeholder {secret}"),
            ({"agent_id": "a", "command": ["x"], "cpus": 0}, "cpus"),
            ({"agent_id": "a", "command": ["x"], "env": {"K": 1}}, "$.env"),
            ({"agent_id": "a", "command": ["x"], "netwrok": True}, "netwrok"),
        ],
    )
    def test_bad_agent_file_names_file_and_problem(self, tmp_path: Path, content: Any, problem: str) -> None:
        """A broken agent file fails loading with its path and what is wrong."""
        path = write(tmp_path / "workflows" / "agents" / "a.json", content)
        with pytest.raises(InvalidDefinition) as info:
            load_catalog([builtin_dir(), tmp_path / "workflows"])
        assert str(path) in info.value.message
        assert problem in info.value.message


class TestExpand:
    def test_only_known_placeholders_are_filled(self) -> None:
        """Placeholders are plain substitutions, not format strings."""
        assert expand("{input_artifact}:{x.__class__}", {"input_artifact": "a.md", "x": "?"}) == "a.md:{x.__class__}"
