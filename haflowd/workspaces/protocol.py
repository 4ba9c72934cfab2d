"""The seam between the engine and what a step's sandbox sees.

A :class:`Workspace` prepares a step's files before its sandbox starts
(materialising a git clone takes time: that happens here, as part of the
run, with progress in the run's log), names the mounts the sandbox gets,
and collects the results once the sandbox exited (a codegen step's changes
become a commit). The engine picks one per step by its ``workspaceMode``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from ..models import Changes, Delivery, MissionMeta, Project, WorkflowStep
from ..sandbox.protocol import Mount

#: Writes one line of progress into the run's log.
LogLine = Callable[[str], None]

#: Where agents find the mission's artifacts, and a codegen step its work tree.
ARTIFACTS_TARGET = "/mission/artifacts"
WORKSPACE_TARGET = "/workspace"


@attrs.frozen
class Collected:
    """What a finished run left behind."""

    commit: str | None = None
    changes: Changes | None = None
    #: Why the run's output is unusable; fails the step even on exit 0.
    problem: str | None = None


@runtime_checkable
class Workspace(Protocol):
    """One kind of place a step works in."""

    async def prepare(self, mission: MissionMeta, step: WorkflowStep, run_id: str, log: LogLine) -> tuple[Mount, ...]:
        """Make the step's files ready and return what the sandbox mounts.

        Raises :class:`~haflowd.errors.HaflowError` with a message for the
        run's log when it cannot.
        """

    async def collect(
        self, mission: MissionMeta, step: WorkflowStep, run_id: str, exit_code: int, log: LogLine
    ) -> Collected:
        """Look at what the run left (called once the sandbox exited)."""

    def grown_folders(self, mission: MissionMeta) -> tuple[Path, ...]:
        """Host folders besides the artifacts that a run may write to, for the mission's disk quota.

        Counted by their growth: what they held when the run started (a
        checkout of the user's repository) is not the agent's writing.
        """


@runtime_checkable
class Repositories(Protocol):
    """What the engine asks of the users' repositories for code missions.

    Implementations read the user's repository and never write to it, but
    for :meth:`deliver`, which only adds (or fast-forwards) one branch.
    """

    async def validate(self, path: str) -> tuple[str, str | None]:
        """Check a path to link; return the resolved path and its default branch (400 with the problem)."""

    async def resolve(self, project: Project, ref: str | None) -> str:
        """The full sha of ``ref`` (default: HEAD) in the project's repository (400 if none)."""

    def branch_name(self, mission_type: str, title: str, mission_id: str) -> str:
        """The mission branch: ``<type>/<slug>-<8 hex>``."""

    async def deliver(self, mission: MissionMeta, project: Project, branch: str) -> Delivery:
        """Create ``branch`` in the user's repository at the mission's last commit."""

    async def snapshot(self, mission: MissionMeta, parent: Path) -> Path | None:
        """A throwaway copy of the mission's work tree under ``parent`` (``None`` before there is one)."""
