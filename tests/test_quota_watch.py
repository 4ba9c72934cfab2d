"""The mission's disk quota while a step runs: counting folders, and stopping a run that writes past it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import attrs
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.quota_watch import QuotaWatch, tree_bytes
from haflowd.web.app import create_app
from tests.conftest import api, create_mission, until, wait_status
from tests.fakes import Behaviour, FakeSandbox

#: A folder name that takes 1,200 levels well past PATH_MAX (4,096 bytes).
NAME = "d" * 10


class TestTreeBytes:
    def test_counts_every_entry_without_following_links(self, tmp_path: Path) -> None:
        """Files, folders and links count by their own size; a link's target does not."""
        (tmp_path / "a").write_bytes(b"x" * 1000)
        (tmp_path / "sub" / "deeper").mkdir(parents=True)
        (tmp_path / "sub" / "deeper" / "b").write_bytes(b"y" * 500)
        outside = tmp_path.parent / f"{tmp_path.name}-outside"
        outside.write_bytes(b"z" * 100_000)
        (tmp_path / "link").symlink_to(outside)
        folders = sum(os.lstat(p).st_size for p in (tmp_path / "sub", tmp_path / "sub" / "deeper"))
        assert tree_bytes(tmp_path) == 1500 + folders + len(str(outside))

    def test_stops_early_once_over(self, tmp_path: Path) -> None:
        """Counting stops at the first entry that takes the total over the limit."""
        for i in range(100):
            (tmp_path / f"f{i}").write_bytes(b"x" * 100)
        assert 1000 < tree_bytes(tmp_path, limit=1000) <= 1100

    def test_any_depth_is_counted(self, tmp_path: Path) -> None:
        """A file under 1,200 nested folders (past PATH_MAX) is counted, with open descriptors returned."""
        before = len(os.listdir("/proc/self/fd"))
        fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(1200):
                os.mkdir(NAME, dir_fd=fd)
                child = os.open(NAME, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
            out = os.open("big", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
            os.ftruncate(out, 10_000_000)
            os.close(out)
            assert tree_bytes(tmp_path) > 10_000_000
            assert tree_bytes(tmp_path, limit=5_000_000) > 5_000_000
            assert len(os.listdir("/proc/self/fd")) == before + 1
        finally:
            # Removed bottom up: pytest's own clean-up would recurse too deep.
            os.unlink("big", dir_fd=fd)
            while os.fstat(fd).st_ino != tmp_path.stat().st_ino:
                up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = up
                os.rmdir(NAME, dir_fd=fd)
            os.close(fd)

    def test_missing_folder_is_empty(self, tmp_path: Path) -> None:
        """A folder that does not exist (yet) holds nothing."""
        assert tree_bytes(tmp_path / "nope") == 0


class TestQuotaWatch:
    async def test_reports_once_over_and_counts_only_growth(self, tmp_path: Path) -> None:
        """Only what was added to a grown folder counts, and the watch reports once, over the limit."""
        artifacts, tree = tmp_path / "artifacts", tmp_path / "tree"
        artifacts.mkdir()
        tree.mkdir()
        (tree / "checkout").write_bytes(b"c" * 10_000)  # larger than the quota, but there before
        reports: list[int] = []

        async def over(used: int) -> None:
            reports.append(used)

        watch = QuotaWatch(folders=(artifacts,), grown=(tree,), limit=2000, on_over=over, interval=0.01)
        watch.start()
        await asyncio.sleep(0.1)
        assert reports == []
        (artifacts / "a").write_bytes(b"a" * 1000)
        (tree / "new").write_bytes(b"n" * 1500)
        await until(lambda: _true(bool(reports)))
        await asyncio.sleep(0.05)
        assert len(reports) == 1 and reports[0] > 2000
        await watch.cancel()


async def _true(value: bool) -> bool:
    return value


class TestEngine:
    async def test_a_run_writing_past_the_quota_is_stopped(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """A run whose output grows past HAFLOW_MAX_MISSION_BYTES is stopped, its output removed, the mission failed."""
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        client = await aiohttp_client(create_app(attrs.evolve(config, max_mission_bytes=1_000_000), sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        status, _ = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 200
        await until(lambda: _true(bool(fake.runs)))
        output = config.missions_dir / mid / "artifacts" / "structured-text.md"
        output.write_bytes(b"x" * 2_000_000)  # what the agent writes
        data = await wait_status(client, mid, "failed", "waiting_human")
        assert data["status"] == "failed"
        assert "over the mission's disk quota" in data["last_error"]
        assert "> 1000000 (HAFLOW_MAX_MISSION_BYTES)" in data["last_error"]
        assert "its output structured-text.md was removed" in data["last_error"]
        assert not output.exists()
        assert all(r.exit_code is not None for r in fake.runs.values())

    async def test_a_run_within_the_quota_goes_on(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """A run that stays within the quota is not stopped, however long it runs."""
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        client = await aiohttp_client(create_app(attrs.evolve(config, max_mission_bytes=1_000_000), sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        await api(client, "POST", f"/api/missions/{mid}/continue")
        await until(lambda: _true(bool(fake.runs)))
        (config.missions_dir / mid / "artifacts" / "notes.md").write_bytes(b"x" * 1000)
        await asyncio.sleep(1.2)
        gate.set()
        data = await wait_status(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human", data.get("last_error")
