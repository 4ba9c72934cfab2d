"""A code mission's workspace: its clone's work tree beside the artifacts."""

from __future__ import annotations

from pathlib import Path

from haflowd.clock import utcnow
from haflowd.models import MissionMeta, MissionStatus, MissionType, Project
from haflowd.store import Store
from haflowd.workspaces.code import CodeWorkspace


def _no_project(project_id: str) -> Project:
    raise AssertionError(project_id)


class TestGrownFolders:
    def test_work_tree_grows(self, tmp_path: Path) -> None:
        """The quota counts the growth of the mission's work tree, and not its git directory (mounted read-only)."""
        now = utcnow()
        meta = MissionMeta(
            "m-0000abcd", "T", MissionType.FEATURE, "wf", 0, MissionStatus.READY, now, now, (), project_id="p-1"
        )
        store = Store(tmp_path / "missions")
        workspace = CodeWorkspace(store, _no_project, tmp_path)
        assert workspace.grown_folders(meta) == (store.mission_dir("m-0000abcd") / "workspace",)
