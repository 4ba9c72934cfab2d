"""Exit codes of all runs from one ``docker events`` stream: one helper process per running step."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from haflowd.sandbox import Limits, SandboxError, SandboxSpec
from haflowd.sandbox.docker.local import DockerProvider
from tests.conftest import create_mission, detail, until, wait_status
from tests.docker_support import SESSION_INSTANCE
from tests.e2e.test_docker_e2e import SLOW, docker_config, instance, make_client, provider, write_agent

pytestmark = pytest.mark.docker

#: The real-Docker daemon fixtures this module shares with test_docker_e2e.
DOCKER_FIXTURES = (docker_config, instance, make_client, provider)


def docker_children() -> list[int]:
    """This process's live docker CLI children (Linux /proc)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(OSError):  # a worker thread that just ended
            pids.update(int(p) for p in (task / "children").read_text().split())
    found = []
    for pid in pids:
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if os.path.basename(argv0) == b"docker":
            found.append(pid)
    return found


def events_pids() -> list[int]:
    return [p for p in docker_children() if b"\0events\0" in Path(f"/proc/{p}/cmdline").read_bytes()]


@pytest.fixture
def own_provider(docker_image: str) -> DockerProvider:
    return DockerProvider(default_image=docker_image, instance=SESSION_INSTANCE)


@pytest.fixture
async def run(own_provider: DockerProvider) -> Any:
    """Start ``sh -c script`` containers; remove them all afterwards."""
    ids: list[str] = []

    async def start(script: str) -> str:
        spec = SandboxSpec(
            mission_id="m-0000abcd",
            run_id="r-" + uuid.uuid4().hex[:8],
            step_id="cleanup",
            image="haflow-agent:test",
            command=("sh", "-c", script),
            limits=Limits(memory="64m", cpus=0.5, pids=16),
        )
        ids.append(await own_provider.start(spec))
        return ids[-1]

    yield start
    for sandbox_id in ids:
        await own_provider.remove(sandbox_id)


class TestExitWatch:
    async def test_many_waits_share_one_stream(self, own_provider: DockerProvider, run: Any) -> None:
        """Twenty concurrent waits get each container's own exit code through a single docker events process."""
        ids = [await run(f"sleep 8; exit {code}") for code in range(20)]
        waits = [asyncio.create_task(own_provider.wait(i)) for i in ids]
        # Each wait inspects its container once; then only the stream is left.
        await until(lambda: _true(len(docker_children()) == 1))
        assert len(events_pids()) == 1
        assert await asyncio.gather(*waits) == list(range(20))
        assert not own_provider.exits.streaming
        assert events_pids() == []

    async def test_already_exited(self, own_provider: DockerProvider, run: Any) -> None:
        """A container that exited before anyone waited answers from one inspect."""
        sandbox_id = await run("exit 5")
        await until(lambda: _exited(sandbox_id))
        assert await own_provider.wait(sandbox_id) == 5

    async def test_stream_restarted_when_killed(self, own_provider: DockerProvider, run: Any) -> None:
        """If the docker events process dies, a new one takes over and the exit is still learnt."""
        sandbox_id = await run("sleep 6; exit 3")
        waiter = asyncio.create_task(own_provider.wait(sandbox_id))
        await until(lambda: _true(bool(events_pids())))
        (first,) = events_pids()
        os.kill(first, signal.SIGKILL)
        await until(lambda: _true(bool(events_pids()) and events_pids() != [first]))
        assert await asyncio.wait_for(waiter, 30) == 3

    async def test_removed_while_waiting(self, own_provider: DockerProvider, run: Any) -> None:
        """A container removed while waited on ends the wait (its exit code or a SandboxError), never hangs."""
        sandbox_id = await run("sleep 600")
        waiter = asyncio.create_task(own_provider.wait(sandbox_id))
        await until(lambda: _true(bool(events_pids())))
        await own_provider.remove(sandbox_id)
        try:
            assert await asyncio.wait_for(waiter, 30) in (137, 143)
        except SandboxError:
            pass


class TestHelpersPerStep:
    @pytest.mark.timeout(300)
    async def test_one_helper_per_running_step(self, make_client: Any, home: Path) -> None:
        """With ten steps running, the daemon has at most eleven docker CLI children (logs -f each, one events)."""
        n = 10
        write_agent(home, "cleanup-agent", SLOW)
        client = await make_client()
        missions = [(await create_mission(client))["mission_id"] for _ in range(n)]
        for mission_id in missions:
            await client.post(f"/api/missions/{mission_id}/continue")

        async def all_running() -> bool:
            tails = [(await detail(client, m)).get("current_log_tail", "") for m in missions]
            return all("waiting for go" in t for t in tails)

        await until(all_running, timeout=120)
        counts = []
        for _ in range(20):
            counts.append(len(docker_children()))
            await asyncio.sleep(0.05)
        print(f"docker CLI children with {n} running steps: max {max(counts)}")
        assert max(counts) <= n + 1
        for mission_id in missions:
            (home / "missions" / mission_id / "artifacts" / "go").write_text("")
        for mission_id in missions:
            found = await wait_status(client, mission_id, "waiting_human", "failed", timeout=120)
            assert found["status"] == "waiting_human", found.get("last_error")


async def _true(value: bool) -> bool:
    return value


async def _exited(sandbox_id: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        "docker", "inspect", "--format", "{{.State.Status}}", sandbox_id, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    return out.strip() == b"exited"
