"""Hostile agents in real Docker containers: what they leave in their folders cannot hurt the daemon.

Each agent is data: a ``sh -c`` script overriding cleanup-agent in the
test's HAFLOW_HOME (see :func:`tests.e2e.test_docker_e2e.write_agent`).
"""

from __future__ import annotations

import asyncio
import json
import resource
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import AppClient, api, create_mission, until, wait_status
from tests.e2e.test_docker_e2e import (
    MakeClient,
    advance,
    docker_config,
    instance,
    make_client,
    no_containers_left,
    provider,
    write_agent,
)

pytestmark = pytest.mark.docker

OUTPUT = "structured-text.md"
#: The most one request may take: a FIFO or a huge file must never block an answer (a block is forever;
#: the bound leaves room for a loaded machine).
REQUEST_SECONDS = 30.0


async def get(client: AppClient, path: str) -> tuple[int, bytes]:
    """One GET, bounded in time, its whole body read."""
    async with asyncio.timeout(REQUEST_SECONDS):
        resp = await client.get(path)
        return resp.status, await resp.read()


async def hammer(client: AppClient, mission_id: str, rounds: int) -> list[tuple[str, int, bytes]]:
    """Ask the detail, the rendered and the raw output ``rounds`` times each."""
    answers = []
    paths = (
        f"/api/missions/{mission_id}",
        f"/api/missions/{mission_id}/artifacts/{OUTPUT}/html",
        f"/api/missions/{mission_id}/artifacts/{OUTPUT}",
    )
    for _ in range(rounds):
        for path in paths:
            status, body = await get(client, path)
            answers.append((path, status, body))
    return answers


class TestHostileOutput:
    @pytest.mark.timeout(120)
    async def test_symlink_race_never_leaks(self, make_client: MakeClient, home: Path, tmp_path: Path) -> None:
        """An agent swapping its output between a file and a link to a root-only host file never gets it served."""
        secret = tmp_path / "host-secret.txt"
        secret.write_text("TOP-SECRET-" + "s" * 32)
        secret.chmod(0o600)
        write_agent(
            home,
            "cleanup-agent",
            "while [ ! -f stop ]; do "
            f"echo public > o.tmp; mv -f o.tmp {OUTPUT}; ln -sf {secret} o.lnk; mv -f o.lnk {OUTPUT}; "
            f"done; rm -f {OUTPUT}; echo public > {OUTPUT}",
        )
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        await advance(client, mid, "running_code_agent")
        answers = await hammer(client, mid, 150)
        (home / "missions" / mid / "artifacts" / "stop").write_text("")
        found = await wait_status(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert not [a for a in answers if b"TOP-SECRET" in a[2]]
        statuses = {(path.rsplit("/", 1)[-1], status) for path, status, _ in answers}
        assert {status for _, status in statuses} <= {200, 404}
        assert (f"/api/missions/{mid}".rsplit("/", 1)[-1], 200) in statuses
        await until(no_containers_left)

    @pytest.mark.timeout(120)
    async def test_fifo_output_never_blocks(self, make_client: MakeClient, home: Path) -> None:
        """A FIFO as output never blocks the detail, html or raw answers, and the step fails saying why."""
        write_agent(home, "cleanup-agent", f"mkfifo {OUTPUT}; until [ -f go ]; do sleep 0.05; done")
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        await advance(client, mid, "running_code_agent")
        await until(lambda: _is_fifo(home / "missions" / mid / "artifacts" / OUTPUT))
        for path, status, body in await hammer(client, mid, 3):
            if path.endswith(mid):
                assert status == 200 and OUTPUT not in json.loads(body)["data"]["artifacts"]
            else:
                assert status == 404, body
        (home / "missions" / mid / "artifacts" / "go").write_text("")
        found = await wait_status(client, mid, "failed", "waiting_human")
        assert found["last_error"] == f"Step 'Cleanup' exited 0 but its output {OUTPUT} is not a regular file."
        await until(no_containers_left)

    @pytest.mark.timeout(180)
    async def test_one_gib_artifact(self, make_client: MakeClient, home: Path) -> None:
        """A 1 GiB output: the detail stays small with a marker, the raw endpoint streams all of it."""
        gib = 1024**3
        write_agent(home, "cleanup-agent", f"truncate -s 1G {OUTPUT}")
        client = await make_client(max_mission_bytes=2 * gib)
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        status, body = await get(client, f"/api/missions/{mid}")
        # 256 KiB of the file, whose NUL bytes JSON writes as \u0000 (6 bytes each).
        assert status == 200 and len(body) < 2 * 1024 * 1024
        assert f"of {gib} bytes" in found["artifacts"][OUTPUT]
        status, body = await get(client, f"/api/missions/{mid}/artifacts/{OUTPUT}/html")
        assert status == 200 and len(body) < 16 * 1024 * 1024
        # The daemon runs in this process: its peak memory must not grow by the file's size.
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        async with asyncio.timeout(120):
            resp = await client.get(f"/api/missions/{mid}/artifacts/{OUTPUT}")
            assert resp.status == 200
            total = 0
            async for chunk in resp.content.iter_chunked(1024 * 1024):
                assert len(chunk) <= 1024 * 1024
                total += len(chunk)
        assert total == gib
        assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before < 256 * 1024 * 1024
        await until(no_containers_left)

    @pytest.mark.timeout(120)
    async def test_deeply_nested_folders(self, make_client: MakeClient, home: Path) -> None:
        """1,200 nested folders left by an agent do not stop the next step from starting."""
        write_agent(
            home,
            "cleanup-agent",
            "i=0; while [ $i -lt 1200 ]; do mkdir d && cd d; i=$((i+1)); done; cd /mission/artifacts; "
            'exec haflow-agent "$@"',
        )
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        try:
            found = await advance(client, mid, "waiting_human", "failed")
            assert found["status"] == "waiting_human", found.get("last_error")
            found = await advance(client, mid, "waiting_human", "failed")  # the gate
            assert found["current_step"] == 2 or found["status"] == "waiting_human"
            found = await wait_status(client, mid, "waiting_human", "failed")
            assert found["status"] == "waiting_human", found.get("last_error")
            assert found["current_step"] == 3
        finally:
            # pytest's own clean-up recurses and would fail on this depth.
            subprocess.run(["rm", "-rf", str(home / "missions" / mid / "artifacts" / "d")], check=False)
        await until(no_containers_left)

    @pytest.mark.timeout(120)
    async def test_file_name_not_utf8(self, make_client: MakeClient, home: Path) -> None:
        """A file name that is not valid UTF-8 is left out of the detail, which answers 200."""
        write_agent(home, "cleanup-agent", 'printf x > "$(printf \'bad\\377name\')"; exec haflow-agent "$@"')
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert b"bad\xffname" in [
            p.name.encode("utf-8", "surrogateescape") for p in (home / "missions" / mid / "artifacts").iterdir()
        ]
        status, _ = await api(client, "GET", f"/api/missions/{mid}")
        assert status == 200
        assert sorted(found["artifacts"]) == ["raw-input.md", OUTPUT]
        await until(no_containers_left)


class TestQuota:
    @pytest.mark.timeout(120)
    async def test_past_the_quota_then_exit_0(self, make_client: MakeClient, home: Path) -> None:
        """An agent that writes past the quota and exits before the next count still fails, its output removed."""
        write_agent(home, "cleanup-agent", f"head -c 3000000 /dev/zero > {OUTPUT}")
        client = await make_client(max_mission_bytes=1024 * 1024)
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert "over the mission's disk quota" in found["last_error"]
        assert not (home / "missions" / mid / "artifacts" / OUTPUT).exists()
        await until(no_containers_left)

    @pytest.mark.timeout(120)
    async def test_writing_past_the_quota_stops_the_run(self, make_client: MakeClient, home: Path) -> None:
        """An agent writing past HAFLOW_MAX_MISSION_BYTES is stopped, its output removed, the mission failed."""
        write_agent(home, "cleanup-agent", f"while true; do head -c 65536 /dev/zero >> {OUTPUT}; sleep 0.01; done")
        client = await make_client(max_mission_bytes=1024 * 1024)
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert "over the mission's disk quota" in found["last_error"]
        assert "> 1048576 (HAFLOW_MAX_MISSION_BYTES)" in found["last_error"]
        assert not (home / "missions" / mid / "artifacts" / OUTPUT).exists()
        (run,) = found["runs"]
        assert run["exit_code"] in (137, 143)
        await until(no_containers_left)


async def _is_fifo(path: Path) -> bool:
    import stat

    try:
        return stat.S_ISFIFO(path.lstat().st_mode)
    except FileNotFoundError:
        return False


def _unused(*_: Any) -> None:
    """Keeps linters from dropping the imported fixtures."""
    _unused(docker_config, instance, make_client, provider)
