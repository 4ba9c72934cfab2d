"""The workspaces' protocol: both workspace kinds satisfy Workspace, and the code workspace Repositories."""

from __future__ import annotations

from pathlib import Path

from haflowd.models import Project
from haflowd.store import Store
from haflowd.workspaces.artifacts import ArtifactsWorkspace
from haflowd.workspaces.code import CodeWorkspace
from haflowd.workspaces.protocol import Collected, Repositories, Workspace


def no_project(project_id: str) -> Project:
    raise LookupError(project_id)


class TestImplementations:
    def test_artifacts_workspace(self, tmp_path: Path) -> None:
        """The artifacts folder is a Workspace."""
        assert isinstance(ArtifactsWorkspace(Store(tmp_path)), Workspace)

    def test_code_workspace(self, tmp_path: Path) -> None:
        """A code mission's clone is a Workspace and answers for the users' Repositories."""
        code = CodeWorkspace(Store(tmp_path), no_project, tmp_path)
        assert isinstance(code, Workspace)
        assert isinstance(code, Repositories)

    def test_collected_defaults_to_nothing(self) -> None:
        """A run that left nothing is no commit, no changes and no problem."""
        assert Collected() == Collected(commit=None, changes=None, problem=None)
