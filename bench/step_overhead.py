"""How much time haflowd adds around an agent step, beside a bare ``docker run``.

Runs the daemon in-process (the real API over HTTP, the real Docker
provider) on a throw-away HAFLOW_HOME with a workflow of N trivial agent
steps, each followed by a human gate, and drives it with ``continue``.
Container start and exit times come from ``docker events``; the time the
next state was saved is the mission's ``updated_at``. Prints medians:

- continue -> container running   (API, run files, ``docker run -d``)
- container exit -> state saved   (``docker wait``, log drain, ``docker rm``)
- continue -> state saved         (the whole step as a user sees it)
- bare ``docker run --rm``        (the same image and command, nothing else)

usage: PYTHONPATH=. python bench/step_overhead.py [--steps N] [--image TAG]
(from the repository root; or with haflowd installed, without PYTHONPATH)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from haflowd.config import Config
from haflowd.sandbox.docker.local import DockerProvider, run_cli
from haflowd.sandbox.docker.standin_image import ensure_image
from haflowd.sandbox.protocol import instance_id
from haflowd.web.app import create_app

COMMAND = ["haflow-agent", "{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"]


def write_definitions(home: Path, steps: int) -> None:
    folder = home / "workflows"
    (folder / "agents").mkdir(parents=True)
    agent = {"agent_id": "bench-agent", "command": COMMAND, "memory": "64m", "pids_limit": 32}
    (folder / "agents" / "bench-agent.json").write_text(json.dumps(agent))
    workflow_steps: list[dict[str, Any]] = []
    for i in range(steps):
        workflow_steps.append(
            {
                "step_id": f"step-{i}",
                "name": f"Step {i}",
                "type": "agent",
                "agent": "bench-agent",
                "inputArtifact": "raw-input.md",
                "outputArtifact": f"out-{i}.md",
            }
        )
        workflow_steps.append({"step_id": f"gate-{i}", "name": f"Gate {i}", "type": "human-gate"})
    workflow = {"workflow_id": "bench", "name": "Bench", "steps": workflow_steps}
    (folder / "bench.json").write_text(json.dumps(workflow))


def parse_time(value: str) -> int:
    """An API timestamp as Unix nanoseconds."""
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)


class Events:
    """``docker events`` for one instance's containers: start and die times by run id."""

    def __init__(self, docker: str, instance: str) -> None:
        self.docker = docker
        self.instance = instance
        self.times: dict[tuple[str, str], int] = {}
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Events:
        self.proc = await asyncio.create_subprocess_exec(
            self.docker,
            "events",
            "--filter",
            f"label=haflow.instance={self.instance}",
            "--filter",
            "type=container",
            "--format",
            "{{json .}}",
            stdout=asyncio.subprocess.PIPE,
        )
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        self.proc.kill()
        await self.proc.wait()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            run_id = event["Actor"]["Attributes"].get("haflow.run_id", "")
            self.times[(run_id, event["Action"])] = int(event["timeNano"])
            self.changed.set()

    async def get(self, run_id: str, action: str) -> int:
        while (run_id, action) not in self.times:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)
        return self.times[(run_id, action)]


async def call(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    async with client.request(method, path, **kwargs) as resp:
        body = await resp.json()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {body['error']}")
        return body["data"]


async def haflow_steps(docker: str, image: str, steps: int) -> list[dict[str, float]]:
    """Time each step; a bare run goes before each, so both see the same load."""
    bare_folder = Path(tempfile.mkdtemp(prefix="haflow-bench-bare-"))
    (bare_folder / "raw-input.md").write_text("x\n")
    bare_folder.chmod(0o777)
    home = Path(tempfile.mkdtemp(prefix="haflow-bench-"))
    write_definitions(home, steps)
    config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, agent_image=image, docker=docker)
    instance = instance_id(home)
    app = create_app(config, sandbox=DockerProvider(docker=docker, default_image=image, instance=instance))
    results = []
    async with TestClient(TestServer(app)) as client, Events(docker, instance) as events:
        payload = {"title": "bench", "type": "feature", "rawInput": "x\n", "workflowId": "bench"}
        mission_id = (await call(client, "POST", "/api/missions", json=payload))["mission_id"]
        for i in range(steps):
            bare = await bare_run(docker, image, bare_folder, i)
            # From "ready", then from each gate: approving it starts the next step.
            sent = time.time_ns()
            await call(client, "POST", f"/api/missions/{mission_id}/continue")
            while True:
                found = await call(client, "GET", f"/api/missions/{mission_id}")
                if found["status"] in ("waiting_human", "failed"):
                    break
                await asyncio.sleep(0.002)
            if found["status"] == "failed":
                raise RuntimeError(found["last_error"])
            run_id = found["runs"][-1]["run_id"]
            started = await events.get(run_id, "start")
            died = await events.get(run_id, "die")
            saved = parse_time(found["updated_at"])
            results.append(
                {
                    "continue_to_running": (started - sent) / 1e6,
                    "exit_to_saved": (saved - died) / 1e6,
                    "continue_to_saved": (saved - sent) / 1e6,
                    "bare": bare,
                }
            )
    return results


async def bare_run(docker: str, image: str, folder: Path, i: int) -> float:
    """Milliseconds of one plain ``docker run --rm`` of the same agent command."""
    argv = [
        docker,
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        f"type=bind,src={folder},dst=/mission/artifacts",
        image,
        "haflow-agent",
        f"step-{i}",
        "bench-agent",
        "raw-input.md",
        f"out-{i}.md",
    ]
    began = time.perf_counter()
    result = await run_cli(argv, limit=120)
    if result.returncode != 0:
        raise RuntimeError(result.error)
    return (time.perf_counter() - began) * 1000


async def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--image", default=Config.from_env({}, home=Path(".")).agent_image)
    parser.add_argument("--docker", default="docker")
    args = parser.parse_args(argv)
    await ensure_image(args.docker, args.image)

    steps = await haflow_steps(args.docker, args.image, args.steps)

    def median(key: str) -> float:
        return statistics.median(s[key] for s in steps)

    bare_median = median("bare")
    print(f"{args.steps} steps of a trivial agent ({args.image}), medians in ms:")
    print(f"  continue -> container running   {median('continue_to_running'):8.1f}")
    print(f"  container exit -> state saved   {median('exit_to_saved'):8.1f}")
    print(f"  continue -> state saved         {median('continue_to_saved'):8.1f}")
    print(f"  bare docker run --rm            {bare_median:8.1f}")
    print(f"  overhead beyond bare docker run {median('continue_to_saved') - bare_median:8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main(sys.argv[1:])))
