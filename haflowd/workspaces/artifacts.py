"""Today's workspace: the mission's artifacts folder, and nothing else."""

from __future__ import annotations

from pathlib import Path

import attrs

from ..agentfiles import is_regular
from ..models import MissionMeta, WorkflowStep
from ..sandbox.protocol import Mount
from ..store import Store
from .protocol import ARTIFACTS_TARGET, Collected, LogLine


@attrs.frozen
class ArtifactsWorkspace:
    """Mounts ``missions/<id>/artifacts`` read-write at ``/mission/artifacts``."""

    store: Store

    async def prepare(self, mission: MissionMeta, step: WorkflowStep, run_id: str, log: LogLine) -> tuple[Mount, ...]:
        return (Mount(self.store.artifacts_dir(mission.mission_id), ARTIFACTS_TARGET, name="artifacts"),)

    async def collect(
        self, mission: MissionMeta, step: WorkflowStep, run_id: str, exit_code: int, log: LogLine
    ) -> Collected:
        if exit_code != 0 or not step.output_artifact:
            return Collected()
        path = self.store.artifacts_dir(mission.mission_id) / step.output_artifact
        if not is_regular(path):
            what = "is missing" if not path.exists() and not path.is_symlink() else "is not a regular file"
            return Collected(problem=f"Step '{step.name}' exited 0 but its output {step.output_artifact} {what}.")
        return Collected()

    def grown_folders(self, mission: MissionMeta) -> tuple[Path, ...]:
        return ()
