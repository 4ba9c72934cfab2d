"""Latency of the API the UI polls, over large homes.

Builds HAFLOW_HOME folders with 1,000 and 10,000 missions (each with a few
artifacts and runs) plus one mission whose running step has a 1 GiB (sparse)
log, starts a real daemon process on each, and prints:

- start-up time (process spawn to first answered request),
- median and p99 latency of ``GET /api/missions``,
- median and p99 latency of ``GET /api/missions/:id`` for the 1 GiB-log mission.

The daemon runs with a sandbox provider that reports that one run as still
running (so ``current_log_tail`` is read on every request) and starts nothing.

    python bench/api_list.py [--requests 300] [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from haflowd.convert import dumps  # noqa: E402
from haflowd.models import MissionMeta, MissionStatus, MissionType, StepRun  # noqa: E402

BIG_MISSION = "m-b16b16b1"
BIG_RUN = "r-b16b16b1"


def build_home(home: Path, count: int) -> None:
    missions = home / "missions"
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        mission_id = f"m-{i:08x}"
        folder = missions / mission_id
        for sub in ("artifacts", "runs", "logs"):
            (folder / sub).mkdir(parents=True)
        when = base + timedelta(seconds=i)
        meta = MissionMeta(
            mission_id=mission_id,
            title=f"Mission {i}",
            type=MissionType.FEATURE,
            workflow_id="standard-feature",
            current_step=i % 9,
            status=MissionStatus.WAITING_HUMAN,
            created_at=when,
            updated_at=when,
            errors=(),
        )
        (folder / "mission.json").write_text(dumps(meta))
        for name in ("raw-input.md", "structured-text.md", "research-output.md"):
            (folder / "artifacts" / name).write_text(f"# {name}\n\n" + "Some text. " * 50)
        for r in range(2):
            run = StepRun(step_id="cleanup", run_id=f"r-{i:06x}{r:02x}", started_at=when, finished_at=when, exit_code=0)
            (folder / "runs" / f"{run.run_id}.json").write_text(dumps(run))
            (folder / "logs" / f"{run.run_id}.log").write_text("[agent] line\n" * 20)
    folder = missions / BIG_MISSION
    for sub in ("artifacts", "runs", "logs"):
        (folder / sub).mkdir(parents=True)
    now = datetime.now(UTC)
    meta = MissionMeta(
        mission_id=BIG_MISSION,
        title="Huge log",
        type=MissionType.FIX,
        workflow_id="standard-feature",
        current_step=0,
        status=MissionStatus.RUNNING_CODE_AGENT,
        created_at=now,
        updated_at=now,
        errors=(),
    )
    (folder / "mission.json").write_text(dumps(meta))
    (folder / "artifacts" / "raw-input.md").write_text("input")
    run = StepRun(step_id="cleanup", run_id=BIG_RUN, started_at=now, container_id="idle")
    (folder / "runs" / f"{BIG_RUN}.json").write_text(dumps(run))
    with (folder / "logs" / f"{BIG_RUN}.log").open("wb") as f:
        f.truncate(1024**3)
        f.seek(0, os.SEEK_END)
        f.write(b"the last line of a 1 GiB log\n")


DAEMON = """
import asyncio, sys
from aiohttp import web
from haflowd.web.app import create_app
from haflowd.config import Config
from haflowd.sandbox import SandboxInfo

class Idle:
    async def check(self): pass
    async def start(self, spec): raise RuntimeError("bench starts nothing")
    async def output(self, sandbox_id):
        await asyncio.Event().wait()
        yield b""
    async def wait(self, sandbox_id):
        await asyncio.Event().wait()
    async def stop(self, sandbox_id, *, grace_seconds=3.0): pass
    async def remove(self, sandbox_id): pass
    async def list(self):
        return [SandboxInfo("idle", "%s", "%s", "cleanup", True)]
    async def aclose(self): pass

config = Config.from_env({"HAFLOW_AUTH": "none"}, home=sys.argv[1], port=int(sys.argv[2]))
web.run_app(create_app(config, sandbox=Idle()), host="127.0.0.1", port=config.port, print=None)
""".replace("%s", BIG_MISSION, 1).replace("%s", BIG_RUN, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def measure(url: str, n: int) -> list[float]:
    times = []
    async with aiohttp.ClientSession() as session:
        for _ in range(10):
            async with session.get(url) as resp:
                await resp.read()
        for _ in range(n):
            t0 = time.perf_counter()
            async with session.get(url) as resp:
                await resp.read()
                assert resp.status == 200, resp.status
            times.append((time.perf_counter() - t0) * 1000)
    return times


async def wait_up(url: str, deadline: float) -> None:
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.01)
    raise RuntimeError("daemon did not come up")


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def run_size(count: int, requests: int) -> None:
    with tempfile.TemporaryDirectory(prefix="haflow-bench-") as tmp:
        home = Path(tmp)
        t0 = time.perf_counter()
        build_home(home, count)
        print(f"\n{count:>6} missions (+1 with a 1 GiB log); home built in {time.perf_counter() - t0:.1f} s")
        port = free_port()
        base = f"http://127.0.0.1:{port}/api"
        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-c", DAEMON, str(home), str(port)],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            asyncio.run(wait_up(f"{base}/missions", time.monotonic() + 120))
            startup = time.perf_counter() - start
            print(f"  start-up (spawn to first answer):      {startup * 1000:8.0f} ms")
            lst = asyncio.run(measure(f"{base}/missions", requests))
            print(f"  GET /api/missions          p50 {statistics.median(lst):7.2f} ms   p99 {pct(lst, 99):7.2f} ms")
            det = asyncio.run(measure(f"{base}/missions/{BIG_MISSION}", requests))
            print(f"  GET /api/missions/:id 1GiB p50 {statistics.median(det):7.2f} ms   p99 {pct(det, 99):7.2f} ms")
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--sizes", default="1000,10000")
    args = parser.parse_args()
    print(f"haflowd API latency, {os.cpu_count()} cores, {args.requests} sequential keep-alive requests each")
    for size in (int(s) for s in args.sizes.split(",")):
        run_size(size, args.requests)


if __name__ == "__main__":
    main()
