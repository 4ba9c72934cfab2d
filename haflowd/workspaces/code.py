"""Code missions' workspace: the mission's own clone of the user's repository.

Layout under ``missions/<id>/``::

    repo.git/     the clone's git directory: never writable by an agent
    workspace/    its work tree: /workspace in a codegen step's sandbox

The clone is made when the first step that needs it runs (as part of that
run, with progress in its log), so creating a mission stays fast whatever
the repository's size. Codegen steps get the work tree read-write and the
git directory read-only at ``/workspace/.git`` (agents can read history,
``git status`` and ``git diff``; writes fail cleanly); other steps of a code
mission see the work tree read-only. After a codegen run that exits 0 every
change becomes one commit on the mission branch, authored by the agent.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path

import attrs

from ..errors import Conflict
from ..models import Delivery, MissionMeta, Project, WorkflowStep, WorkspaceMode
from ..sandbox.protocol import Mount
from ..store import Store
from .artifacts import ArtifactsWorkspace
from .clone import MissionClone, commit_all, create_clone
from .delivery import deliver
from .projects import mission_branch, resolve_ref, validate_project_path
from .protocol import WORKSPACE_TARGET, Collected, LogLine
from .snapshot import snapshot_worktree

GIT_DIR = "repo.git"
WORK_TREE = "workspace"


def clone_of(store: Store, mission: MissionMeta) -> MissionClone | None:
    """The mission's clone, or ``None`` before one was made (or for a mission without a project)."""
    if mission.branch is None or mission.base_commit is None:
        return None
    folder = store.mission_dir(mission.mission_id)
    git_dir = folder / GIT_DIR
    if not (git_dir / "HEAD").is_file():
        return None
    return MissionClone(git_dir, folder / WORK_TREE, mission.branch, mission.base_commit)


def _mount_point(path: Path) -> None:
    """An empty folder where the git directory is mounted (the tree may be mounted read-only above it)."""
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        path.unlink()
    path.mkdir(exist_ok=True)


@attrs.frozen
class CodeWorkspace:
    """A code mission's steps: the artifacts folder plus the mission's clone."""

    store: Store
    #: Looks a project up by id (raises when the user unlinked it since).
    project_of: Callable[[str], Project]
    #: HAFLOW_HOME: a project may not live inside it.
    home: Path

    def _artifacts(self) -> ArtifactsWorkspace:
        return ArtifactsWorkspace(self.store)

    async def ensure_clone(self, mission: MissionMeta, project: Project, log: LogLine) -> MissionClone:
        existing = clone_of(self.store, mission)
        if existing is not None:
            return existing
        assert mission.branch is not None and mission.base_commit is not None
        folder = self.store.mission_dir(mission.mission_id)
        log(f"materialising the workspace: cloning {project.path} at {mission.base_commit[:12]} onto {mission.branch}")
        started = time.monotonic()
        # A half-made clone from an interrupted run is started over.
        for leftover in (folder / GIT_DIR, folder / WORK_TREE):
            if leftover.exists():
                shutil.rmtree(leftover)
        clone = await create_clone(
            Path(project.path), mission.base_commit, folder / GIT_DIR, folder / WORK_TREE, mission.branch
        )
        log(f"workspace ready in {time.monotonic() - started:.1f} s")
        return clone

    async def prepare(self, mission: MissionMeta, step: WorkflowStep, run_id: str, log: LogLine) -> tuple[Mount, ...]:
        mounts = await self._artifacts().prepare(mission, step, run_id, log)
        if mission.project_id is None:
            return mounts
        project = self.project_of(mission.project_id)
        clone = await self.ensure_clone(mission, project, log)
        codegen = step.workspace_mode is WorkspaceMode.CODEGEN
        _mount_point(clone.work_tree / ".git")
        return (
            *mounts,
            Mount(clone.work_tree, WORKSPACE_TARGET, read_only=not codegen, name="workspace"),
            # The git directory is never the agent's to write: hooks, config
            # and attributes there would run code in the daemon's git.
            Mount(clone.git_dir, f"{WORKSPACE_TARGET}/.git", read_only=True, name="git-dir"),
        )

    async def collect(
        self, mission: MissionMeta, step: WorkflowStep, run_id: str, exit_code: int, log: LogLine
    ) -> Collected:
        if step.workspace_mode is not WorkspaceMode.CODEGEN:
            return await self._artifacts().collect(mission, step, run_id, exit_code, log)
        clone = clone_of(self.store, mission)
        if exit_code != 0 or clone is None:
            return Collected()
        agent = step.agent or "agent"
        result = await commit_all(
            clone,
            author_name=agent,
            author_email=f"{agent}@haflow.invalid",
            message=f"{step.name}: {mission.title}",
            run_id=run_id,
            step_id=step.step_id,
            log=log,
        )
        if result is None:
            log("the agent changed nothing: no commit")
            return Collected()
        changes = result.changes
        log(
            f"committed {result.sha[:12]} on {clone.branch}: {changes.files} files, "
            f"+{changes.insertions} -{changes.deletions}"
        )
        return Collected(commit=result.sha, changes=changes)

    def grown_folders(self, mission: MissionMeta) -> tuple[Path, ...]:
        # The work tree only: the git directory is mounted read-only.
        return (self.store.mission_dir(mission.mission_id) / WORK_TREE,)

    # -- Repositories -------------------------------------------------------

    async def validate(self, path: str) -> tuple[str, str | None]:
        resolved, default_branch = await validate_project_path(path, self.home)
        return str(resolved), default_branch

    async def resolve(self, project: Project, ref: str | None) -> str:
        return await resolve_ref(Path(project.path), ref or "HEAD")

    def branch_name(self, mission_type: str, title: str, mission_id: str) -> str:
        return mission_branch(mission_type, title, mission_id)

    async def deliver(self, mission: MissionMeta, project: Project, branch: str) -> Delivery:
        clone = clone_of(self.store, mission)
        if clone is None:
            raise Conflict("Nothing to deliver: no step has worked on the repository yet")
        return await deliver(clone, Path(project.path), branch)

    async def snapshot(self, mission: MissionMeta, parent: Path) -> Path | None:
        clone = clone_of(self.store, mission)
        if clone is None:
            return None
        return await snapshot_worktree(clone.work_tree, parent)
