"""Review commands are bounded like agent steps: disk, files, log and the room of all code workspaces."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import attrs
import pytest

from haflowd.clock import utcnow
from haflowd.errors import StorageFull
from haflowd.executions import EXECUTIONS, Executions, check_new_code_mission, check_workspace_room
from haflowd.models import Execution, ExecutionStatus, MissionMeta, MissionStatus, MissionType
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.protocol import instance_id
from haflowd.store import Store
from haflowd.workspaces.snapshot import snapshot_worktree
from tests.conftest import until
from tests.docker_support import OWNED_INSTANCES

MISSION = "m-0000e0e0"
MIB = 1024 * 1024


def code_meta(mission_id: str = MISSION) -> MissionMeta:
    now = utcnow()
    return MissionMeta(
        mission_id=mission_id,
        title="t",
        type=MissionType.FEATURE,
        workflow_id="code-feature",
        current_step=0,
        status=MissionStatus.WAITING_CODE_REVIEW,
        created_at=now,
        updated_at=now,
        errors=(),
        project_id="p-0000e0e0",
    )


def fingerprint(tree: Path) -> dict[str, str]:
    return {
        str(p.relative_to(tree)): hashlib.sha256(p.read_bytes()).hexdigest() for p in tree.rglob("*") if p.is_file()
    }


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(tmp_path / "missions")
    store.create(code_meta(), "raw")
    store.load()
    return store


@pytest.fixture
def work_tree(store: Store) -> Path:
    tree = store.mission_dir(MISSION) / "workspace"
    (tree / "src").mkdir(parents=True)
    (tree / "README.md").write_text("# Demo\n")
    (tree / "src" / "big.bin").write_bytes(b"x" * (2 * MIB))
    return tree


@pytest.fixture
async def provider(docker_image: str, tmp_path: Path) -> AsyncIterator[DockerProvider]:
    OWNED_INSTANCES.add(instance_id(tmp_path))
    provider = DockerProvider(default_image=docker_image, instance=instance_id(tmp_path))
    yield provider
    await provider.aclose()


async def run(executions: Executions, store: Store, work_tree: Path, command: str, image: str) -> Execution:
    """Run ``command`` on a copy of ``work_tree`` and return its finished execution."""

    async def snapshot(meta: MissionMeta, parent: Path) -> Path | None:
        return await snapshot_worktree(work_tree, parent)

    started = await executions.start(store.get(MISSION), command, timeout_ms=120_000, image=image, snapshot=snapshot)

    async def finished() -> bool:
        # Cleaned up too: the mission is freed as soon as the result is recorded, before the copy goes.
        return executions.running(MISSION) is None and executions.settled(started.id)

    await until(finished, timeout=120)
    return await asyncio.to_thread(executions.get, MISSION, started.id)


def copies(store: Store) -> list[str]:
    """What is left in the mission's executions folder besides records and logs."""
    folder = store.mission_dir(MISSION) / EXECUTIONS
    return sorted(p.name for p in folder.iterdir() if p.suffix not in (".json", ".log"))


@pytest.mark.docker
class TestOnDocker:
    @pytest.mark.timeout(180)
    async def test_a_command_writing_past_the_quota_is_stopped(
        self, store: Store, work_tree: Path, provider: DockerProvider, docker_image: str
    ) -> None:
        """A command filling its copy is stopped over the mission quota, says so, and its copy goes; the tree stays."""
        before = fingerprint(work_tree)
        executions = Executions(store=store, sandbox=provider, limit=4 * MIB)
        # Writes 1 MiB files without end (the copy's own 2 MiB do not count).
        command = "i=0; while true; do head -c 1048576 /dev/zero > junk$i; i=$((i+1)); done"
        found = await run(executions, store, work_tree, command, docker_image)
        assert found.status is ExecutionStatus.FAILED
        assert "[haflow] stopped: over the mission's disk quota" in found.output
        assert "> 4194304 (HAFLOW_MAX_MISSION_BYTES)" in found.output
        assert copies(store) == []
        assert fingerprint(work_tree) == before

    @pytest.mark.timeout(180)
    async def test_a_command_making_too_many_files_is_stopped(
        self, store: Store, work_tree: Path, provider: DockerProvider, docker_image: str
    ) -> None:
        """Empty files cost no bytes but count: past the file cap the command is stopped and its copy removed."""
        executions = Executions(store=store, sandbox=provider, max_files=300)
        command = "i=0; while true; do : > empty$i; i=$((i+1)); done"
        found = await run(executions, store, work_tree, command, docker_image)
        assert found.status is ExecutionStatus.FAILED
        assert "new files > 300 (HAFLOW_MAX_COMMAND_FILES)" in found.output
        assert copies(store) == []

    @pytest.mark.timeout(180)
    async def test_output_is_capped(
        self, store: Store, work_tree: Path, provider: DockerProvider, docker_image: str
    ) -> None:
        """A command printing more than the log cap keeps the cap's worth, a note, and completes."""
        executions = Executions(store=store, sandbox=provider, log_bytes=10_000)
        found = await run(executions, store, work_tree, "yes 0123456789 | head -c 200000", docker_image)
        assert found.status is ExecutionStatus.COMPLETED
        log = (store.mission_dir(MISSION) / EXECUTIONS / f"{found.id}.log").read_bytes()
        assert log.startswith(b"0123456789\n") and b"[haflow] output cut at 10000 bytes" in log
        assert len(log) < 10_200
        assert copies(store) == []

    @pytest.mark.timeout(180)
    async def test_a_command_within_the_quota_completes(
        self, store: Store, work_tree: Path, provider: DockerProvider, docker_image: str
    ) -> None:
        """Writing under the quota is fine: the command completes, its copy goes, the work tree stays."""
        before = fingerprint(work_tree)
        executions = Executions(store=store, sandbox=provider, limit=4 * MIB)
        found = await run(executions, store, work_tree, "head -c 1048576 /dev/zero > one; cat README.md", docker_image)
        assert found.status is ExecutionStatus.COMPLETED and found.exit_code == 0
        assert "# Demo" in found.output and "quota" not in found.output
        assert copies(store) == []
        assert fingerprint(work_tree) == before


class TestWorkspaceRoom:
    def test_within_the_cap(self, store: Store, work_tree: Path) -> None:
        """Code missions' folders plus what comes under the cap pass."""
        check_workspace_room(store, MIB, 10 * MIB)

    def test_over_the_cap_says_so(self, store: Store, work_tree: Path) -> None:
        """Past the cap of all code workspaces the error names the sizes and the setting."""
        with pytest.raises(StorageFull, match=r"over the limit of 3145728 \(HAFLOW_MAX_WORKSPACE_BYTES\)"):
            check_workspace_room(store, 2 * MIB, 3 * MIB)

    def test_a_new_code_mission_counts_its_repository(self, store: Store, work_tree: Path, tmp_path: Path) -> None:
        """A new code mission is estimated by its repository's size."""
        repo = tmp_path / "repo"
        repo.mkdir()
        (repo / "data").write_bytes(b"y" * (2 * MIB))
        check_new_code_mission(store, repo, 6 * MIB)
        with pytest.raises(StorageFull, match="HAFLOW_MAX_WORKSPACE_BYTES"):
            check_new_code_mission(store, repo, 4 * MIB)

    def test_missions_without_a_project_do_not_count(self, store: Store, tmp_path: Path) -> None:
        """Only code missions' folders count."""
        meta = code_meta("m-0000e0e1")
        store.create(attrs.evolve(meta, project_id=None), "x" * (2 * MIB))
        store.load()
        check_workspace_room(store, 0, MIB)
