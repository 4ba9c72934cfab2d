"""Soak: many concurrent steps through a real daemon, then count what their logs lost.

Starts ``python -m haflowd serve`` as a child process on a throw-away
HAFLOW_HOME (the real Docker provider), overrides the first step's agent
with one that prints ``--lines`` numbered lines and then runs the stand-in
agent, creates ``--steps`` missions and continues them all at once. While
they run it polls ``GET /api/missions`` and samples the daemon's RSS and
the docker CLI helpers it runs. Prints:

- lines lost and lines repeated over all run logs (both must be 0)
- p50/p99/max latency of ``GET /api/missions`` during the run
- peak daemon RSS, peak number and total RSS of its docker CLI children
- wall time from the first continue to the last step recorded

- each failed step with its mission's error

The daemon gets a token (``HAFLOW_TOKEN``, sent as ``Authorization:
Bearer``), as every daemon needs one by default. ``--missions N`` first
writes N idle missions straight into the home in the store's format (a
daemon with a long history), in seconds rather than N API calls. The
figures go to ``--out`` (default ``soak-<time>.txt``) as well as to the
terminal, and the daemon's own log is kept next to it
(``<out>.daemon.log``).

Not run by the test suite. Needs a Docker engine and the agent image
(built from the host's busybox if missing).

usage: PYTHONPATH=. python bench/soak.py [--steps 100] [--lines 2000] [--missions 0] [--image TAG] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from haflowd.clock import utcnow
from haflowd.convert import dumps
from haflowd.ids import new_mission_id
from haflowd.models import MissionMeta, MissionStatus, MissionType
from haflowd.sandbox.docker.standin_image import ensure_image
from haflowd.store import ARTIFACTS, LOGS, MISSION_FILE, RUNS

ARGS = ["{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"]
LINE = re.compile(rb"^soak (\d+)$")


def write_agent(home: Path, lines: int) -> None:
    """The first step's agent prints ``lines`` numbered lines, then does its work quietly."""
    script = (
        f'i=0; while [ $i -lt {lines} ]; do i=$((i+1)); echo "soak $i"; done; exec haflow-agent "$@" >/dev/null 2>&1'
    )
    folder = home / "workflows" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    definition = {
        "agent_id": "cleanup-agent",
        "command": ["sh", "-c", f"cd /mission/artifacts && {{ {script}; }}", "sh", *ARGS],
        "memory": "64m",
        "pids_limit": 32,
    }
    (folder / "cleanup-agent.json").write_text(json.dumps(definition))


def precreate(home: Path, count: int) -> float:
    """Write ``count`` idle missions into ``home``'s store (as ``Store.create`` lays them out); return seconds."""
    began = time.perf_counter()
    root = home / "missions"
    root.mkdir(parents=True, exist_ok=True)
    now = utcnow()
    made: set[str] = set()
    while len(made) < count:
        mission_id = new_mission_id()
        if mission_id in made:
            # Ids are 32 random bits: among 10,000, a repeat is likely enough (about 1 %).
            continue
        made.add(mission_id)
        meta = MissionMeta(
            mission_id=mission_id,
            title="Old mission",
            type=MissionType.FEATURE,
            workflow_id="standard-feature",
            current_step=0,
            status=MissionStatus.READY,
            created_at=now,
            updated_at=now,
            errors=(),
        )
        folder = root / mission_id
        for sub in (ARTIFACTS, RUNS, LOGS):
            (folder / sub).mkdir(parents=True)
        (folder / ARTIFACTS / "raw-input.md").write_text("An old mission.\n")
        (folder / MISSION_FILE).write_bytes(dumps(meta).encode())
    return time.perf_counter() - began


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def docker_children(pid: int) -> dict[int, str]:
    """The docker CLI processes among ``pid``'s children, with their subcommand."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    found = {}
    for child in children:
        try:
            argv = Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if os.path.basename(argv[0]) == b"docker":
            found[child] = argv[1].decode(errors="replace") if len(argv) > 1 else ""
    return found


def count_lines(log: Path, expected: int) -> tuple[int, int]:
    """Lines lost and lines repeated in one run's log."""
    seen: dict[int, int] = {}
    with log.open("rb") as f:
        for line in f:
            m = LINE.match(line.rstrip(b"\n"))
            if m:
                n = int(m.group(1))
                seen[n] = seen.get(n, 0) + 1
    lost = sum(1 for n in range(1, expected + 1) if n not in seen)
    repeated = sum(c - 1 for c in seen.values() if c > 1)
    return lost, repeated


async def soak(steps: int, lines: int, image: str, missions_before: int, out: Path) -> int:
    await ensure_image("docker", image, build_if_missing=True)
    report: list[str] = []
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="haflow-soak-") as tmp:
        home = Path(tmp) / "home"
        write_agent(home, lines)
        if missions_before:
            took = await asyncio.to_thread(precreate, home, missions_before)
            report.append(f"home with {missions_before} missions written in {took:.1f} s")
        port = free_port()
        token = secrets.token_urlsafe(32)
        env = {
            **os.environ,
            "HAFLOW_TOKEN": token,
            "HAFLOW_HOME": str(home),
            "HAFLOW_AGENT_IMAGE": image,
            "PORT": str(port),
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH")])
            ),
        }
        daemon_log_path = out.with_name(out.name + ".daemon.log")
        log = daemon_log_path.open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "haflowd", "serve"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        try:
            headers = {"Authorization": f"Bearer {token}"}
            async with aiohttp.ClientSession(headers=headers) as http:

                async def call(method: str, path: str, **kwargs: Any) -> Any:
                    async with http.request(method, base + path, **kwargs) as resp:
                        body = await resp.json()
                        if resp.status >= 400:
                            raise RuntimeError(f"{method} {path}: {resp.status} {body}")
                        return body["data"]

                for _ in range(1200):
                    try:
                        await call("GET", "/api/missions")
                        break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                payload = {"title": "Soak", "type": "feature", "rawInput": "Soak the daemon.\n"}
                missions = [(await call("POST", "/api/missions", json=payload))["mission_id"] for _ in range(steps)]

                latencies: list[float] = []
                peak = {"daemon": 0, "helpers": 0, "helpers_rss": 0, "followers": 0, "followers_rss": 0}
                kinds: dict[str, int] = {}
                done = asyncio.Event()

                async def sample() -> None:
                    while not done.is_set():
                        t0 = time.perf_counter()
                        await call("GET", "/api/missions")
                        latencies.append(time.perf_counter() - t0)
                        helpers = docker_children(proc.pid)
                        peak["daemon"] = max(peak["daemon"], rss_kib(proc.pid))
                        peak["helpers"] = max(peak["helpers"], len(helpers))
                        peak["helpers_rss"] = max(peak["helpers_rss"], sum(rss_kib(p) for p in helpers))
                        # What stays while steps run: logs -f per step, one events stream.
                        lasting = [p for p, kind in helpers.items() if kind in ("logs", "events")]
                        peak["followers"] = max(peak["followers"], len(lasting))
                        peak["followers_rss"] = max(peak["followers_rss"], sum(rss_kib(p) for p in lasting))
                        for kind in set(helpers.values()):
                            kinds[kind] = max(kinds.get(kind, 0), list(helpers.values()).count(kind))
                        await asyncio.sleep(0.05)

                sampler = asyncio.create_task(sample())
                started = time.perf_counter()
                await asyncio.gather(*(call("POST", f"/api/missions/{m}/continue") for m in missions))
                pending = set(missions)
                while pending:
                    for m in list(pending):
                        found = await call("GET", f"/api/missions/{m}")
                        if found["status"] in ("waiting_human", "failed"):
                            pending.discard(m)
                    await asyncio.sleep(0.5)
                wall = time.perf_counter() - started
                done.set()
                await sampler

                lost = repeated = failed = 0
                for m in missions:
                    found = await call("GET", f"/api/missions/{m}")
                    if found["status"] != "waiting_human":
                        failed += 1
                        failures.append(f"  {m}: {found['status']}: {found.get('last_error', '(no error recorded)')}")
                    if not found.get("runs"):
                        lost += lines
                        continue
                    run_id = found["runs"][0]["run_id"]
                    a, b = count_lines(home / "missions" / m / "logs" / f"{run_id}.log", lines)
                    lost += a
                    repeated += b
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()
        daemon_log = daemon_log_path.read_bytes()
        reconciled = daemon_log.count(b"run.log_reconciled")
        finished = daemon_log.count(b"run.finished")

    ms = sorted(x * 1000 for x in latencies)
    p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
    report.append(f"steps {steps} x {lines} lines, wall {wall:.1f} s, failed steps {failed}")
    report.extend(failures)
    report.append(
        f"lines lost {lost}, lines repeated {repeated} (logs changed by reconciling: {reconciled} of {finished} runs)"
    )
    report.append(
        f"GET /api/missions during the run: n={len(ms)} p50 {statistics.median(ms):.1f} ms "
        f"p99 {p99:.1f} ms max {ms[-1]:.1f} ms"
    )
    report.append(f"daemon peak RSS {peak['daemon'] / 1024:.1f} MiB")
    report.append(
        f"docker CLI helpers: peak {peak['helpers']} processes, peak total RSS {peak['helpers_rss'] / 1024:.1f} MiB"
    )
    lasting_rss = peak["followers_rss"] / 1024
    report.append(f"  of which lasting (logs -f, events): peak {peak['followers']}, peak RSS {lasting_rss:.1f} MiB")
    report.append("  peak by subcommand: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    report.append(f"daemon log: {daemon_log_path}")
    text = "\n".join(report) + "\n"
    out.write_text(text)
    print(text, end="")
    return 0 if lost == repeated == failed == 0 else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--missions", type=int, default=0, help="idle missions written into the home first")
    parser.add_argument("--image", default="haflow-agent:test")
    parser.add_argument("--out", type=Path, default=None, help="the figures (default: soak-<time>.txt)")
    args = parser.parse_args()
    out = args.out or Path(f"soak-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}.txt")
    return asyncio.run(soak(args.steps, args.lines, args.image, args.missions, out.resolve()))


if __name__ == "__main__":
    sys.exit(main())
