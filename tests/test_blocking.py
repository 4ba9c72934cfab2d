"""Reads that grow with data never run on the event loop (blockbuster raises if they do)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster

from tests.conftest import AppClient, api, create_mission, detail, until, wait_status
from tests.fakes import Behaviour, FakeSandbox

#: Blocking calls that move file content: the ones whose cost grows with the data.
CONTENT_IO = ("os.read", "io.BufferedReader.read", "io.TextIOWrapper.read", "io.BufferedWriter.write", "os.write")


@pytest.fixture
def content_io_forbidden() -> Iterator[BlockBuster]:
    """Make every content read or write on the event loop's thread raise BlockingError."""
    bb = BlockBuster()
    for name in CONTENT_IO:
        # Records of a few hundred bytes (mission.json, run files) are written in place.
        bb.functions[name].can_block_in("haflowd/store.py", {"_write_record", "_read_record"})
        # The fake agent is the container, not the daemon.
        bb.functions[name].can_block_in("tests/fakes.py", "_act")
        bb.functions[name].activate()
    try:
        yield bb
    finally:
        bb.deactivate()


class TestNoBlockingReads:
    async def test_large_artifacts_and_logs_are_read_off_the_loop(
        self, client: AppClient, fake: FakeSandbox, home: Path, content_io_forbidden: BlockBuster
    ) -> None:
        """Detail, rendering, the raw artifact, saves and log pages of large files all read and write off the loop."""
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        mid = (await create_mission(client))["mission_id"]
        content_io_forbidden.deactivate()
        artifacts = home / "missions" / mid / "artifacts"
        (artifacts / "big.md").write_text("# big\n" + "word " * 1_000_000)
        for name in CONTENT_IO:
            content_io_forbidden.functions[name].activate()
        assert (await detail(client, mid))["artifacts"]["big.md"].startswith("# big")
        status, body = await api(client, "GET", f"/api/missions/{mid}/artifacts/big.md/html")
        assert status == 200 and body["data"]["html"].startswith("<h1>big</h1>")
        status, _ = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/notes.md", json={"content": "x" * 1_000_000}
        )
        assert status == 200
        await api(client, "POST", f"/api/missions/{mid}/continue")
        data = await detail(client, mid)
        run_id = data["runs"][0]["run_id"]
        await until(lambda: _logged(client, mid, run_id))
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log?offset=0")
        assert status == 200 and "starting step cleanup" in body["data"]["text"]
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log")
        assert status == 200 and "starting step cleanup" in body["data"]
        gate.set()
        await wait_status(client, mid, "waiting_human")


async def _logged(client: AppClient, mission_id: str, run_id: str) -> bool:
    _, body = await api(client, "GET", f"/api/missions/{mission_id}/runs/{run_id}/log?offset=0")
    return "starting step" in body["data"]["text"]
