"""Workflow and agent definitions: JSON data files, loaded and checked once.

Built-in definitions ship with the package (the repository's top-level
``workflows/`` folder); ``HAFLOW_HOME/workflows/`` adds to them or replaces
one with the same id. Agents live in an ``agents/`` subfolder of either.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import attrs

from .allowlist import parse_allowlist
from .config import Config
from .convert import converter, describe
from .errors import HaflowError, InvalidDefinition
from .models import AgentSpec, StepType, Workflow
from .placeholders import PLACEHOLDERS, placeholders_in

DEFAULT_WORKFLOW = "standard-feature"
#: The default workflow of a mission on a project, when it is defined.
CODE_WORKFLOW = "code-feature"
AGENTS = "agents"


def builtin_dir() -> Path:
    """The shipped definitions: inside the installed package, else the checkout."""
    here = Path(__file__).parent
    installed = here / "definitions"
    return installed if installed.is_dir() else here.parent / "workflows"


@attrs.frozen
class Catalog:
    """Every workflow and agent the daemon knows, by id."""

    workflows: dict[str, Workflow]
    agents: dict[str, AgentSpec]

    def workflow(self, workflow_id: str) -> Workflow | None:
        return self.workflows.get(workflow_id)


@attrs.define
class Definitions:
    """The catalog in force; a reload swaps it in one assignment.

    ``generation`` grows with every swap, so readers can cache what they
    derive from the catalog.
    """

    catalog: Catalog
    generation: int = 0

    def replace(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.generation += 1


def _json_files(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.json") if p.is_file())


def _load(path: Path, cls: type) -> object:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidDefinition(path, f"cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise InvalidDefinition(path, f"invalid JSON: {exc}") from None
    try:
        return converter.structure(data, cls)
    except Exception as exc:
        raise InvalidDefinition(path, describe(exc, cls)) from None


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _check_agent(path: Path, agent: AgentSpec) -> None:
    """What the converter cannot see: env names, secret names, the egress allowlist."""
    for name in (*agent.env, *agent.secrets):
        if not _ENV_NAME.match(name):
            raise InvalidDefinition(path, f"not a valid environment variable name: {name!r}")
    for name, value in agent.env.items():
        if any(c in value for c in "\n\r\0"):
            raise InvalidDefinition(path, f"env {name} holds a line break")
    if agent.egress or agent.local_ports:
        if agent.network:
            raise InvalidDefinition(path, "'network': true and 'egress' exclude each other")
        try:
            parse_allowlist(agent.egress, agent.local_ports)
        except HaflowError as exc:
            raise InvalidDefinition(path, exc.message) from None


def load_definitions(config: Config) -> Catalog:
    """Built-in workflows and agents, then the user's; raises on a bad file."""
    return load_catalog([builtin_dir(), config.user_workflows_dir])


def load_catalog(folders: Iterable[Path]) -> Catalog:
    """Load definitions from ``folders``, later folders overriding earlier ones.

    Raises :class:`InvalidDefinition` naming the file and the problem.
    """
    workflows: dict[str, tuple[Path, Workflow]] = {}
    agents: dict[str, tuple[Path, AgentSpec]] = {}
    for folder in folders:
        for path in _json_files(folder):
            wf = _load(path, Workflow)
            assert isinstance(wf, Workflow)
            workflows[wf.workflow_id] = (path, wf)
        for path in _json_files(folder / AGENTS):
            agent = _load(path, AgentSpec)
            assert isinstance(agent, AgentSpec)
            for item in agent.command:
                unknown = placeholders_in(item) - PLACEHOLDERS
                if unknown:
                    raise InvalidDefinition(path, f"unknown placeholder {{{sorted(unknown)[0]}}} in command")
            _check_agent(path, agent)
            agents[agent.agent_id] = (path, agent)
    for path, wf in workflows.values():
        for step in wf.steps:
            if step.type is StepType.AGENT and step.agent not in agents:
                raise InvalidDefinition(path, f"step {step.step_id!r} names unknown agent {step.agent!r}")
    if DEFAULT_WORKFLOW not in workflows:
        raise InvalidDefinition(" + ".join(str(f) for f in folders), f"no {DEFAULT_WORKFLOW!r} workflow found")
    return Catalog(
        workflows={k: wf for k, (_, wf) in workflows.items()},
        agents={k: a for k, (_, a) in agents.items()},
    )
