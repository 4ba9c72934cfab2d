"""The seam between the engine and what a step's sandbox sees.

A :class:`Workspace` prepares a step's files before its sandbox starts
(materialising a git clone takes time: that happens here, as part of the
run, with progress in the run's log), names the mounts the sandbox gets,
and collects the results once the sandbox exited (a codegen step's changes
become a commit). The engine picks one per step by its ``workspaceMode``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import attrs

from ..models import Changes, MissionMeta, WorkflowStep
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
