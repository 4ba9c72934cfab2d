"""Whole missions through the HTTP API, with agent steps in real Docker containers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.sandbox import Limits, SandboxSpec
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.protocol import instance_id
from haflowd.web.app import create_app
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, detail, until, wait_status
from tests.docker_support import OWNED_INSTANCES, SESSION_INSTANCE, haflow_containers

pytestmark = pytest.mark.docker

AGENT_ARGS = ["{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"]
#: An agent that prints a line, then waits until the artifact ``go`` exists.
SLOW = 'echo "[agent] waiting for go"; until [ -f go ]; do sleep 0.05; done; exec haflow-agent "$@"'
#: An agent that fails with code 7 until the artifact ``fixed`` exists.
FLAKY = '[ -f fixed ] && exec haflow-agent "$@"; exec haflow-agent --fail 7 "$@"'
#: ``make_client(sandbox=None, **config_changes)``: a client of the daemon over real Docker.
MakeClient = Callable[..., Awaitable[AppClient]]


def write_agent(home: Path, agent_id: str, script: str, **fields: Any) -> None:
    """Override a built-in agent with a shell script (run in /mission/artifacts)."""
    folder = home / "workflows" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    command = ["sh", "-c", f"cd /mission/artifacts && {{ {script}; }}", "sh", *AGENT_ARGS]
    definition = {"agent_id": agent_id, "command": command, "memory": "128m", "pids_limit": 64, **fields}
    (folder / f"{agent_id}.json").write_text(json.dumps(definition))


@pytest.fixture
def docker_config(home: Path, docker_image: str) -> Config:
    return Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, agent_image=docker_image)


@pytest.fixture
def instance(home: Path) -> str:
    """The provider instance of the test's HAFLOW_HOME, as the daemon computes it."""
    OWNED_INSTANCES.add(instance_id(home))
    return instance_id(home)


@pytest.fixture
def provider(docker_image: str, instance: str) -> DockerProvider:
    return DockerProvider(default_image=docker_image, instance=instance)


@pytest.fixture
async def make_client(aiohttp_client: AiohttpClient, docker_config: Config, provider: DockerProvider) -> MakeClient:
    """Build the daemon over real Docker (after the test wrote its agent files)."""

    async def make(sandbox: DockerProvider | None = None, **changes: Any) -> AppClient:
        config = attrs.evolve(docker_config, **changes)
        return await aiohttp_client(create_app(config, sandbox=sandbox or provider))

    return make


async def advance(client: AppClient, mission_id: str, *statuses: str) -> dict[str, Any]:
    status, body = await api(client, "POST", f"/api/missions/{mission_id}/continue")
    assert status == 200, body
    return await wait_status(client, mission_id, *statuses)


async def save(client: AppClient, mission_id: str, filename: str, content: str) -> None:
    status, body = await api(
        client, "PUT", f"/api/missions/{mission_id}/artifacts/{filename}", json={"content": content}
    )
    assert status == 200, body


async def no_containers_left() -> bool:
    """Finished runs' containers are removed right after the mission moves on."""
    return haflow_containers() == []


def log_of(home: Path, mission_id: str, run_id: str) -> str:
    return (home / "missions" / mission_id / "logs" / f"{run_id}.log").read_text()


class TestStandardFeature:
    async def test_whole_workflow(self, make_client: MakeClient, home: Path) -> None:
        """Four real agent runs and four gates take a mission to completed, a human edit flowing on."""
        client = await make_client()
        mission = await create_mission(client)
        mid = mission["mission_id"]

        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert found["current_step"] == 1
        structured = found["artifacts"]["structured-text.md"]
        assert structured == f"# Output of step cleanup by cleanup-agent\n\n{RAW_INPUT}"

        edited = "# Structured by a human\n\nDark mode, but only for admins.\n"
        await save(client, mid, "structured-text.md", edited)
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["current_step"] == 3
        assert found["artifacts"]["research-output.md"] == (f"# Output of step research by research-agent\n\n{edited}")

        found = await advance(client, mid, "waiting_human", "failed")
        assert found["current_step"] == 5
        plan = found["artifacts"]["implementation-plan.md"]
        assert plan.startswith("# Output of step planning by planning-agent\n\n# Output of step research")
        assert "only for admins" in plan

        found = await advance(client, mid, "waiting_human", "failed")
        assert found["current_step"] == 7
        result = json.loads(found["artifacts"]["implementation-result.json"])
        assert result["step_id"] == "implementation"
        assert result["agent"] == "impl-agent"
        assert result["input"] == plan

        found = await advance(client, mid, "completed")
        assert found["current_step"] == 8
        assert found["errors"] == []
        runs = found["runs"]
        assert [r["step_id"] for r in runs] == ["cleanup", "research", "planning", "implementation"]
        for run in runs:
            assert run["exit_code"] == 0
            assert "finished_at" in run and "container_id" in run
            log = log_of(home, mid, run["run_id"])
            assert log.startswith("[agent] ") and log.endswith(
                " done: wrote "
                + {
                    "cleanup": "structured-text.md",
                    "research": "research-output.md",
                    "planning": "implementation-plan.md",
                    "implementation": "implementation-result.json",
                }[run["step_id"]]
                + "\n"
            )
        await until(no_containers_left)

    async def test_log_tail_while_running(self, make_client: MakeClient, home: Path) -> None:
        """current_log_tail shows a slow agent's output while it still runs."""
        write_agent(home, "cleanup-agent", SLOW)
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        status, _ = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 200

        async def tail_shows_progress() -> bool:
            found = await detail(client, mid)
            assert found["status"] == "running_code_agent"
            return "[agent] waiting for go" in found.get("current_log_tail", "")

        await until(tail_shows_progress)
        status, _ = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 409
        # Files the agent may be using cannot be written through the API while it runs.
        status, body = await api(client, "PUT", f"/api/missions/{mid}/artifacts/go", json={"content": ""})
        assert status == 409 and "running" in body["error"]
        (home / "missions" / mid / "artifacts" / "go").write_text("")
        found = await wait_status(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human"
        assert "current_log_tail" not in found
        await until(no_containers_left)


class TestAgentSetup:
    async def test_image_built_on_first_step(
        self, make_client: MakeClient, provider: DockerProvider, home: Path
    ) -> None:
        """A missing agent image is built by the daemon when the first step needs it."""
        tag = f"haflow-agent:e2e-{instance_id(home)}"
        client = await make_client(agent_image=tag, sandbox=attrs.evolve(provider, default_image=tag))
        try:
            mid = (await create_mission(client))["mission_id"]
            found = await advance(client, mid, "waiting_human", "failed")
            assert found["status"] == "waiting_human", found.get("last_error")
            assert found["artifacts"]["structured-text.md"].startswith("# Output of step cleanup")
        finally:
            subprocess.run(["docker", "rmi", "--force", tag], capture_output=True, check=False)
        await until(no_containers_left)

    async def test_env_secret_reaches_agent_only(
        self, make_client: MakeClient, home: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """An agent's env value reaches the agent but no mission file and no daemon log."""
        secret = "sk-" + os.urandom(12).hex()
        write_agent(
            home, "cleanup-agent", 'echo "key length ${#API_KEY}"; exec haflow-agent "$@"', env={"API_KEY": secret}
        )
        caplog.set_level("DEBUG")
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        run_id = found["runs"][0]["run_id"]
        assert log_of(home, mid, run_id).startswith(f"key length {len(secret)}\n")
        mission_files = [p for p in (home / "missions").rglob("*") if p.is_file()]
        assert mission_files
        assert not [p for p in mission_files if secret.encode() in p.read_bytes()]
        assert caplog.records
        assert not [r for r in caplog.records if secret in repr(vars(r))]
        await until(no_containers_left)


class TestFailures:
    async def test_failing_agent_then_retry(self, make_client: MakeClient, home: Path) -> None:
        """A failing agent fails the mission; continue retries the step, which then succeeds."""
        write_agent(home, "cleanup-agent", FLAKY)
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert found["status"] == "failed"
        assert found["last_error"] == "Step 'Cleanup' failed: the agent exited with code 7."
        assert found["errors"] == [found["last_error"]]
        assert "structured-text.md" not in found["artifacts"]

        await save(client, mid, "fixed", "yes")
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human"
        assert "last_error" not in found
        assert [r["exit_code"] for r in found["runs"]] == [7, 0]
        assert "failing on purpose with exit code 7" in log_of(home, mid, found["runs"][0]["run_id"])
        await until(no_containers_left)

    async def test_cancel(self, make_client: MakeClient, home: Path) -> None:
        """Cancel stops the running container, fails the mission saying so, and continue retries."""
        write_agent(home, "cleanup-agent", SLOW)
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        await advance(client, mid, "running_code_agent")
        await until(lambda: _tail_has(client, mid, "waiting for go"))

        status, body = await api(client, "POST", f"/api/missions/{mid}/cancel")
        assert status == 200, body
        found = await detail(client, mid)
        assert found["status"] == "failed"
        assert "ancel" in found["last_error"]
        (run,) = found["runs"]
        assert run["exit_code"] in (137, 143)
        await until(no_containers_left)

        await save(client, mid, "go", "")
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human"

    async def test_time_limit(self, make_client: MakeClient, home: Path) -> None:
        """A run outliving its agent's time limit is stopped and the mission fails saying so."""
        # The limit counts from the run's start, before the engine started the container: 10 s, not 1 s, so
        # that "started" is printed in time also on a loaded machine.
        write_agent(home, "cleanup-agent", "echo started; sleep 600", timeout_seconds=10)
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert found["status"] == "failed"
        assert "time limit" in found["last_error"]
        (run,) = found["runs"]
        assert run["exit_code"] in (137, 143)
        assert log_of(home, mid, run["run_id"]) == "started\n"
        await until(no_containers_left)

    async def test_missing_image(self, make_client: MakeClient, home: Path) -> None:
        """A missing image that may not be built fails the step with advice, not a hang."""
        provider = DockerProvider(build_if_missing=False, instance=instance_id(home))
        client = await make_client(agent_image="haflow-agent:never-built", sandbox=provider)
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert "haflowd image build" in found["last_error"]
        assert "exit_code" not in found["runs"][0]
        await until(no_containers_left)

    async def test_missing_docker(self, make_client: MakeClient) -> None:
        """Without a docker CLI the step fails saying to install Docker."""
        client = await make_client(sandbox=DockerProvider(docker="/nonexistent/docker"))
        mid = (await create_mission(client))["mission_id"]
        found = await advance(client, mid, "failed", "waiting_human")
        assert "Install Docker" in found["last_error"]

    async def test_orphans_removed_at_start(
        self, make_client: MakeClient, provider: DockerProvider, docker_image: str
    ) -> None:
        """At start-up the daemon removes its containers whose mission does not exist, no others."""
        spec = SandboxSpec(
            mission_id="m-deadbeef",
            run_id="r-deadbeef",
            step_id="cleanup",
            image=docker_image,
            command=("sleep", "600"),
            limits=Limits(memory="64m", pids=16),
        )
        sandbox_id = await provider.start(spec)
        other = DockerProvider(instance=SESSION_INSTANCE)
        others_id = await other.start(attrs.evolve(spec, run_id="r-0ddba11"))
        try:
            await make_client()
            assert sandbox_id not in haflow_containers()
            assert others_id in haflow_containers()
        finally:
            await provider.remove(sandbox_id)
            await other.remove(others_id)


async def _tail_has(client: AppClient, mission_id: str, text: str) -> bool:
    return text in (await detail(client, mission_id)).get("current_log_tail", "")


# -- a real daemon process ---------------------------------------------------

#: Prints lines 1-5, waits for ``phase2``, prints 6-10, waits for ``phase3``,
#: prints 11-15, then runs the stand-in agent.
PHASED = (
    "n=0; for phase in phase1 phase2 phase3; do "
    "[ $phase = phase1 ] || until [ -f $phase ]; do sleep 0.05; done; "
    'for i in 1 2 3 4 5; do n=$((n+1)); echo "line $n"; done; done; '
    'exec haflow-agent "$@"'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Daemon:
    """``python -m haflowd serve`` as a child process, spoken to over HTTP."""

    def __init__(self, home: Path, image: str, logfile: Path) -> None:
        self.home = home
        self.image = image
        self.logfile = logfile
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            **os.environ,
            "HAFLOW_HOME": str(self.home),
            "HAFLOW_AGENT_IMAGE": self.image,
            "PORT": str(self.port),
            "HAFLOW_AUTH": "none",
        }
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "haflowd", "serve"], env=env, stdout=log, stderr=log)
        await until(self._answers)

    async def _answers(self) -> bool:
        assert self.proc is not None
        assert self.proc.poll() is None, self.logfile.read_text()
        try:
            await self.call("GET", "/api/missions")
        except aiohttp.ClientConnectionError:
            return False
        return True

    async def call(self, method: str, path: str, **kwargs: Any) -> Any:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.base + path, **kwargs) as resp:
                body = await resp.json()
                assert resp.status < 400, body
                return body["data"]

    async def until_status(self, mission_id: str, *statuses: str) -> dict[str, Any]:
        found: dict[str, Any] = {}

        async def reached() -> bool:
            found.update(await self.call("GET", f"/api/missions/{mission_id}"))
            return found["status"] in statuses

        await until(reached)
        return found

    async def kill(self, sig: int) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        return await asyncio.to_thread(self.proc.wait, 30)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
async def daemon(home: Path, docker_image: str, instance: str, tmp_path: Path) -> AsyncIterator[Daemon]:
    d = Daemon(home, docker_image, tmp_path / "daemon.log")
    yield d
    d.close()


class TestRestart:
    @pytest.mark.timeout(180)
    async def test_kill_9_mid_run(self, daemon: Daemon, home: Path) -> None:
        """After kill -9 mid-run and a restart the mission completes with every log line exactly once."""
        write_agent(home, "cleanup-agent", PHASED)
        await daemon.start()
        payload = {"title": "Restart", "type": "feature", "rawInput": RAW_INPUT}
        mid = (await daemon.call("POST", "/api/missions", json=payload))["mission_id"]
        await daemon.call("POST", f"/api/missions/{mid}/continue")
        artifacts = home / "missions" / mid / "artifacts"

        async def tail_has(text: str) -> bool:
            return text in (await daemon.call("GET", f"/api/missions/{mid}")).get("current_log_tail", "")

        await until(lambda: tail_has("line 5\n"))
        assert await daemon.kill(signal.SIGKILL) == -signal.SIGKILL
        (container,) = haflow_containers()

        # While no daemon watches, the agent goes on writing.
        (artifacts / "phase2").write_text("")

        async def container_printed(text: str) -> bool:
            out = subprocess.run(["docker", "logs", container], capture_output=True, check=True)
            return text in out.stdout.decode()

        await until(lambda: container_printed("line 10\n"))

        await daemon.start()
        await until(lambda: tail_has("line 10\n"))
        (artifacts / "phase3").write_text("")  # the API refuses writes while a step runs
        found = await daemon.until_status(mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")

        (run,) = found["runs"]
        assert run["exit_code"] == 0
        lines = log_of(home, mid, run["run_id"]).splitlines()
        assert lines[:15] == [f"line {i}" for i in range(1, 16)]
        assert lines[15:] == [
            "[agent] cleanup-agent starting step cleanup",
            "[agent] reading input raw-input.md...",
            "[agent] working on 0 lines...",
            "[agent] writing output structured-text.md...",
            "[agent] done: wrote structured-text.md",
        ]

        for gate in (1, 3, 5, 7):
            assert found["current_step"] == gate
            await daemon.call("POST", f"/api/missions/{mid}/continue")
            found = await daemon.until_status(mid, "waiting_human", "completed", "failed")
            assert found["status"] != "failed", found.get("last_error")
        assert found["status"] == "completed"
        assert [r["exit_code"] for r in found["runs"]] == [0, 0, 0, 0]
        await until(no_containers_left)
        assert await daemon.kill(signal.SIGTERM) == 0

    @pytest.mark.timeout(180)
    async def test_sigterm_mid_run(self, daemon: Daemon, home: Path) -> None:
        """SIGTERM stops the daemon cleanly, the container keeps running, and a restart re-attaches."""
        write_agent(home, "cleanup-agent", SLOW)
        await daemon.start()
        payload = {"title": "Restart", "type": "feature", "rawInput": RAW_INPUT}
        mid = (await daemon.call("POST", "/api/missions", json=payload))["mission_id"]
        await daemon.call("POST", f"/api/missions/{mid}/continue")
        await until(lambda: _daemon_tail_has(daemon, mid, "waiting for go"))

        assert await daemon.kill(signal.SIGTERM) == 0
        assert len(haflow_containers()) == 1

        await daemon.start()
        (home / "missions" / mid / "artifacts" / "go").write_text("")  # the API refuses writes while a step runs
        found = await daemon.until_status(mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        (run,) = found["runs"]
        log = log_of(home, mid, run["run_id"])
        assert log.count("[agent] waiting for go\n") == 1
        assert log.endswith("[agent] done: wrote structured-text.md\n")
        await until(no_containers_left)
        assert await daemon.kill(signal.SIGTERM) == 0


async def _daemon_tail_has(daemon: Daemon, mission_id: str, text: str) -> bool:
    found = await daemon.call("GET", f"/api/missions/{mission_id}")
    return text in found.get("current_log_tail", "")


# -- a GiB of output ---------------------------------------------------------------------------
# The json-file driver keeps only the end of such output (64 MiB x 4 files);
# reconciling the followed log with it after the exit must not cut the log.
# Slow (a GiB through the engine) but run in CI: the only test of the
# reconciler against a real engine's rotation.

GIB = 1 << 30
#: 999 zeros and a newline, again and again, cut at exactly one GiB.
LINE = b"0" * 999 + b"\n"
FLOOD = 'yes "$(printf %0999d 0)" | head -c 1073741824; cp "$3" "$4"'


def output_after_notes(path: Path) -> tuple[int, bool]:
    """Where the output starts (after the daemon's notes) and whether the rest is exactly the flood."""
    size = path.stat().st_size
    start = size - GIB
    if start < 0:
        return start, False
    with path.open("rb") as f:
        notes = f.read(start)
        if (notes and not notes.endswith(b"\n")) or LINE[:20] in notes:
            return start, False
        chunk = LINE * 1024
        left = GIB
        while left:
            want = f.read(min(left, len(chunk)))
            if want != chunk[: len(want)]:
                return start, False
            left -= len(want)
    return start, True


def engine_version() -> str:
    out = subprocess.run(["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, check=False)
    return out.stdout.decode().strip()


#: Docker 20.10's ``docker logs --follow`` on a rotating json-file repeats stretches and loses
#: output around rotations (measured here: 1,159,570,000 bytes followed for 1 GiB printed, 236,261,824
#: stored; paced 10 MB with 1 MB x 2 files: 7,662,900 followed). No reconciling brings back what
#: neither the follower nor the engine kept. Not strict: a lucky run may see no rotation race.
FOLLOWER_LOSES_ROTATED_OUTPUT = pytest.mark.xfail(
    engine_version().startswith("20."),
    reason="Docker 20.10's log follower repeats and loses output around json-file rotations",
    strict=False,
)


class TestLogVolume:
    @pytest.mark.timeout(1200)
    @FOLLOWER_LOSES_ROTATED_OUTPUT
    async def test_a_gib_of_identical_lines_is_kept_whole(self, make_client: MakeClient, home: Path) -> None:
        """An agent printing 1 GiB of identical lines leaves a log of its notes and exactly that GiB."""
        write_agent(home, "cleanup-agent", FLOOD)
        client = await make_client()
        mid = (await create_mission(client))["mission_id"]
        began = time.monotonic()
        status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 200, body
        found = await wait_status(client, mid, "waiting_human", "failed", timeout=15 * 60)
        took = time.monotonic() - began
        assert found["status"] == "waiting_human", found.get("last_error")
        run_id = found["runs"][-1]["run_id"]
        log_path = home / "missions" / mid / "logs" / f"{run_id}.log"
        start, exact = await asyncio.to_thread(output_after_notes, log_path)
        print(f"1 GiB run: {took:.0f} s to waiting_human, notes {start} bytes")
        assert start >= 0, f"the log lost {-start} bytes of the GiB"
        assert exact, "the log is not the notes followed by exactly the GiB of identical lines"


#: Output shapes, each 10 bursts of 10,000 lines of 100 bytes (10 MB in all), paced so
#: the follower keeps up while the engine (1 MB x 2 files) keeps only the last fifth.
SHAPES: dict[str, tuple[str, Callable[[int], bytes]]] = {
    "uniform": ('printf "%099d\\n", 0', lambda n: b"0" * 99 + b"\n"),
    "counter-mod-10": ('printf "%099d\\n", n % 10', lambda n: b"%099d\n" % (n % 10)),
    "header-every-other-line": (
        'printf (n % 2 ? "%099d\\n" : "tick%095d\\n"), n',
        lambda n: (b"%099d\n" if n % 2 else b"tick%095d\n") % n,
    ),
}
BURSTS, BURST_LINES = 10, 10_000


class TestLogShapes:
    @pytest.mark.timeout(300)
    @FOLLOWER_LOSES_ROTATED_OUTPUT
    @pytest.mark.parametrize("shape", list(SHAPES))
    async def test_output_rotated_by_the_engine_is_kept_whole(
        self, make_client: MakeClient, home: Path, docker_image: str, instance: str, shape: str
    ) -> None:
        """Uniform, periodic or header-like output far longer than the engine keeps leaves the whole log."""
        awk_print, line = SHAPES[shape]
        program = f"BEGIN {{ for (i = 0; i < {BURST_LINES}; i++) {{ n = j * {BURST_LINES} + i; {awk_print} }} }}"
        script = f'for j in $(seq 0 {BURSTS - 1}); do awk -v j=$j \'{program}\'; sleep 0.5; done; cp "$3" "$4"'
        write_agent(home, "cleanup-agent", script)
        small = DockerProvider(default_image=docker_image, instance=instance, log_max_size="1m", log_max_files=2)
        client = await make_client(sandbox=small)
        mid = (await create_mission(client))["mission_id"]
        status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 200, body
        found = await wait_status(client, mid, "waiting_human", "failed", timeout=240)
        assert found["status"] == "waiting_human", found.get("last_error")
        expected = b"".join(line(n) for n in range(BURSTS * BURST_LINES))
        log = (home / "missions" / mid / "logs" / f"{found['runs'][-1]['run_id']}.log").read_bytes()
        notes = log[: len(log) - len(expected)]
        assert log.endswith(expected) and line(0) not in notes, (len(log), len(expected))
