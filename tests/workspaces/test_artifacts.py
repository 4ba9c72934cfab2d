"""A plain mission's workspace is its artifacts folder and nothing else."""

from __future__ import annotations

from pathlib import Path

from haflowd.clock import utcnow
from haflowd.models import MissionMeta, MissionStatus, MissionType
from haflowd.store import Store
from haflowd.workspaces.artifacts import ArtifactsWorkspace


class TestGrownFolders:
    def test_no_folder_beyond_the_artifacts(self, tmp_path: Path) -> None:
        """A run of a plain mission may write only its artifacts, which the quota counts whole."""
        now = utcnow()
        meta = MissionMeta("m-0000abcd", "T", MissionType.FEATURE, "wf", 0, MissionStatus.READY, now, now, ())
        assert ArtifactsWorkspace(Store(tmp_path)).grown_folders(meta) == ()
