"""The state machine of ``continue``, driven through the API with the fake sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.web.app import create_app
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, detail, until, wait_status
from tests.fakes import Behaviour, FakeSandbox
from tests.waiting import WAIT_SECONDS

AGENT_STEPS = ["cleanup", "research", "planning", "implementation"]


async def _true(value: bool) -> bool:
    return value


async def cont(client: AppClient, mission_id: str) -> int:
    status, _ = await api(client, "POST", f"/api/missions/{mission_id}/continue")
    return status


class TestStandardFeature:
    async def test_full_workflow_to_completed(self, client: AppClient, fake: FakeSandbox, home: Path) -> None:
        """A mission walks all 8 steps: agents run on continue and after each approval, gates wait."""
        meta = await create_mission(client)
        mid = meta["mission_id"]
        assert await cont(client, mid) == 200
        for index, step in enumerate(AGENT_STEPS):
            data = await wait_status(client, mid, "waiting_human")
            assert data["current_step"] == 2 * index + 1
            review = data["workflow"]["steps"][2 * index + 1]["reviewArtifact"]
            assert data["artifacts"][review].startswith(f"# {step} (by ")
            # A human edit at the gate reaches the next agent.
            edited = data["artifacts"][review] + f"\nreviewed at gate {index}\n"
            status, _ = await api(client, "PUT", f"/api/missions/{mid}/artifacts/{review}", json={"content": edited})
            assert status == 200
            assert await cont(client, mid) == 200
        data = await wait_status(client, mid, "completed")
        assert data["current_step"] == 8
        assert [r["step_id"] for r in data["runs"]] == AGENT_STEPS
        assert all(r["exit_code"] == 0 and "finished_at" in r for r in data["runs"])
        result = data["artifacts"]["implementation-result.json"]
        assert "reviewed at gate 2" in result and "reviewed at gate 0" in result and RAW_INPUT in result
        _, body = await api(client, "GET", "/api/missions")
        assert body["data"][0]["current_step_name"] == "Complete"
        assert body["data"][0]["status"] == "completed"
        assert await cont(client, mid) == 409
        for run in data["runs"]:
            log = (home / "missions" / mid / "logs" / f"{run['run_id']}.log").read_text()
            assert f"starting step {run['step_id']}" in log

    async def test_sandbox_spec(self, client: AppClient, fake: FakeSandbox, home: Path) -> None:
        """The agent gets the configured image, its argv filled in and only the artifacts folder mounted."""
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await wait_status(client, mid, "waiting_human")
        spec = fake.started[0]
        assert spec.image == "haflow-agent:0.1.0"
        assert spec.command == ("haflow-agent", "cleanup", "cleanup-agent", "raw-input.md", "structured-text.md")
        assert [(m.source, m.target) for m in spec.mounts] == [
            (home / "missions" / mid / "artifacts", "/mission/artifacts")
        ]
        assert spec.network is False and spec.workdir == "/mission"
        assert spec.labels == {"haflow.mission_id": mid, "haflow.run_id": spec.run_id, "haflow.step_id": "cleanup"}

    async def test_oneshot_workflow(self, client: AppClient) -> None:
        """The oneshot workflow is one agent step and one gate."""
        mid = (await create_mission(client, workflowId="oneshot"))["mission_id"]
        await cont(client, mid)
        data = await wait_status(client, mid, "waiting_human")
        assert data["artifacts"]["implementation-plan.md"].startswith("# draft")
        await cont(client, mid)
        data = await wait_status(client, mid, "completed")
        assert data["current_step"] == 2


class TestFailure:
    async def test_failure_then_retry(self, client: AppClient, fake: FakeSandbox) -> None:
        """A non-zero exit fails the mission with errors and last_error; continue retries it."""
        fake.behaviours["cleanup"] = Behaviour(exit_code=3)
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        data = await wait_status(client, mid, "failed")
        assert data["current_step"] == 0
        assert data["last_error"] == "Step 'Cleanup' failed: the agent exited with code 3."
        assert data["errors"] == [data["last_error"]]
        assert data["runs"][0]["exit_code"] == 3
        fake.behaviours["cleanup"] = Behaviour()
        assert await cont(client, mid) == 200
        data = await wait_status(client, mid, "waiting_human")
        assert "last_error" not in data
        assert data["errors"] == ["Step 'Cleanup' failed: the agent exited with code 3."]
        assert [r["exit_code"] for r in data["runs"]] == [3, 0]

    async def test_sandbox_that_cannot_start(self, client: AppClient, fake: FakeSandbox) -> None:
        """When the sandbox cannot start, the run fails (retryable) with the provider's advice, also in its log."""
        fake.unavailable = "Docker is not running: start it with 'sudo systemctl start docker'"
        mid = (await create_mission(client))["mission_id"]
        assert await cont(client, mid) == 200
        data = await wait_status(client, mid, "failed")
        assert "Docker is not running" in data["last_error"]
        _, body = await api(client, "GET", f"/api/missions/{mid}/runs/{data['runs'][0]['run_id']}/log")
        assert "[haflow] could not start: Docker is not running" in body["data"]
        assert "exit_code" not in data["runs"][0] and "finished_at" in data["runs"][0]


class TestWatchFailures:
    async def test_broken_wait_fails_instead_of_hanging(
        self, client: AppClient, fake: FakeSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected error while watching a run fails the mission, so it never stays 'running'."""

        async def broken(self: FakeSandbox, sandbox_id: str) -> int:
            raise RuntimeError("boom")

        monkeypatch.setattr(FakeSandbox, "wait", broken)
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        data = await wait_status(client, mid, "failed")
        assert "Internal error" in data["last_error"] and "boom" not in data["last_error"]
        assert "finished_at" in data["runs"][0]

    async def test_unwritable_log_still_records_the_run(
        self, client: AppClient, fake: FakeSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the log cannot be written the run's result is still recorded and the mission moves on."""
        from haflowd.store import Store

        real_open = Store.open_log
        calls = []

        def failing_second_open(self: Store, mission_id: str, run_id: str) -> Any:
            calls.append(run_id)
            if len(calls) > 1:  # the first open only creates the file
                raise OSError(28, "No space left on device")
            return real_open(self, mission_id, run_id)

        monkeypatch.setattr(Store, "open_log", failing_second_open)
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        data = await wait_status(client, mid, "waiting_human")
        assert data["runs"][0]["exit_code"] == 0

    async def test_unwritable_run_file_fails_the_start(
        self, client: AppClient, fake: FakeSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """If the run file cannot be written, no sandbox starts and the mission fails (retryable), not stuck."""
        from haflowd.store import Store

        def disk_full(self: Store, mission_id: str, run: Any) -> Any:
            raise OSError(28, "No space left on device")

        mid = (await create_mission(client))["mission_id"]
        with monkeypatch.context() as patch:
            patch.setattr(Store, "save_run", disk_full)
            assert await cont(client, mid) == 200
        data = await detail(client, mid)
        assert data["status"] == "failed"
        assert "No space left on device" in data["last_error"]
        assert fake.started == []
        assert await cont(client, mid) == 200
        await wait_status(client, mid, "waiting_human")


class TestBackgroundStart:
    async def test_continue_answers_before_a_slow_start(self, client: AppClient, fake: FakeSandbox) -> None:
        """continue answers once the run is recorded, while the sandbox start still hangs; the run then proceeds."""
        fake.start_gate = asyncio.Event()
        mid = (await create_mission(client))["mission_id"]
        async with asyncio.timeout(WAIT_SECONDS):  # the start never ends unless the test lets it
            assert await cont(client, mid) == 200
        data = await detail(client, mid)
        assert data["status"] == "running_code_agent"
        (run,) = data["runs"]
        assert "container_id" not in run and "finished_at" not in run
        assert fake.started == []
        assert await cont(client, mid) == 409
        fake.start_gate.set()
        data = await wait_status(client, mid, "waiting_human")
        assert data["runs"][0]["exit_code"] == 0

    async def test_cancel_during_a_slow_start(self, client: AppClient, fake: FakeSandbox) -> None:
        """cancel while the sandbox is still starting stops it as soon as it exists; continue retries."""
        fake.start_gate = asyncio.Event()
        mid = (await create_mission(client))["mission_id"]
        assert await cont(client, mid) == 200
        canceller = asyncio.create_task(api(client, "POST", f"/api/missions/{mid}/cancel"))
        await asyncio.sleep(0.1)
        fake.start_gate.set()
        status, _ = await canceller
        assert status == 200
        data = await wait_status(client, mid, "failed")
        assert "Cancelled" in data["last_error"]
        assert all(run.exit_code is not None for run in fake.runs.values())
        fake.start_gate = None
        assert await cont(client, mid) == 200
        await wait_status(client, mid, "waiting_human")


class TestLocks:
    async def test_unknown_ids_create_no_locks(self, client: AppClient) -> None:
        """Requests naming missions that do not exist leave no lock behind (a scanner cannot grow memory)."""
        from haflowd.web.keys import ENGINE

        engine = client.app[ENGINE]
        for i in range(50):
            status, _ = await api(client, "POST", f"/api/missions/m-{i:08x}/continue")
            assert status == 404
        assert len(engine._locks) == 0


class TestConflicts:
    async def test_continue_while_running_is_409(self, client: AppClient, fake: FakeSandbox) -> None:
        """continue while an agent runs answers 409 and starts nothing more."""
        fake.behaviours["cleanup"] = Behaviour(gate=asyncio.Event())
        mid = (await create_mission(client))["mission_id"]
        assert await cont(client, mid) == 200
        status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 409
        assert "running" in body["error"]
        await until(lambda: _true(len(fake.started) == 1))
        await asyncio.sleep(0.1)
        assert len(fake.started) == 1

    async def test_concurrent_continues_start_one_run(self, client: AppClient, fake: FakeSandbox) -> None:
        """20 simultaneous continue calls on a ready mission start exactly one run."""
        fake.behaviours["cleanup"] = Behaviour(gate=asyncio.Event())
        mid = (await create_mission(client))["mission_id"]
        statuses = await asyncio.gather(*(cont(client, mid) for _ in range(20)))
        assert sorted(statuses) == [200] + [409] * 19
        await until(lambda: _true(len(fake.started) == 1))
        await asyncio.sleep(0.1)
        assert len(fake.started) == 1
        assert len((await detail(client, mid))["runs"]) == 1

    async def test_concurrent_approvals_advance_once(self, client: AppClient, fake: FakeSandbox) -> None:
        """Simultaneous approvals of a gate advance exactly one step."""
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await wait_status(client, mid, "waiting_human")
        fake.behaviours["research"] = Behaviour(gate=asyncio.Event())
        statuses = await asyncio.gather(*(cont(client, mid) for _ in range(10)))
        assert sorted(statuses) == [200] + [409] * 9
        data = await detail(client, mid)
        assert data["current_step"] == 2 and len(data["runs"]) == 2


class TestCancelAndComplete:
    async def test_cancel_fails_and_continue_retries(self, client: AppClient, fake: FakeSandbox) -> None:
        """cancel stops the run (recorded with its exit code), fails the mission, and continue retries."""
        fake.behaviours["cleanup"] = Behaviour(gate=asyncio.Event())
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await until(lambda: _true(len(fake.started) == 1))
        status, body = await api(client, "POST", f"/api/missions/{mid}/cancel")
        assert (status, body["data"]) == (200, None)
        data = await detail(client, mid)
        assert data["status"] == "failed"
        assert "Cancelled" in data["last_error"]
        assert data["runs"][0]["exit_code"] == 137
        assert all(r.removed for r in fake.runs.values())
        fake.behaviours["cleanup"] = Behaviour()
        assert await cont(client, mid) == 200
        await wait_status(client, mid, "waiting_human")

    async def test_cancel_without_a_run_is_409(self, client: AppClient) -> None:
        """cancel when nothing runs answers 409."""
        mid = (await create_mission(client))["mission_id"]
        status, _ = await api(client, "POST", f"/api/missions/{mid}/cancel")
        assert status == 409

    async def test_mark_completed_stops_the_running_step(self, client: AppClient, fake: FakeSandbox) -> None:
        """mark-completed stops a running step first, then completes the mission."""
        fake.behaviours["cleanup"] = Behaviour(gate=asyncio.Event())
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await until(lambda: _true(len(fake.started) == 1))
        status, body = await api(client, "POST", f"/api/missions/{mid}/mark-completed")
        assert (status, body["data"]) == (200, None)
        data = await detail(client, mid)
        assert data["status"] == "completed"
        assert data["current_step"] == 8
        assert data["errors"] == []
        assert data["runs"][0]["exit_code"] == 137
        assert "current_log_tail" not in data
        assert await cont(client, mid) == 409

    async def test_mark_completed_from_a_gate(self, client: AppClient) -> None:
        """mark-completed at a human gate completes the mission."""
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await wait_status(client, mid, "waiting_human")
        status, _ = await api(client, "POST", f"/api/missions/{mid}/mark-completed")
        assert status == 200
        _, body = await api(client, "GET", "/api/missions")
        assert body["data"][0]["status"] == "completed"
        assert body["data"][0]["current_step_name"] == "Complete"


class TestRestart:
    async def test_reattach_without_lost_or_doubled_lines(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """A daemon restart mid-run re-attaches: the run finishes and each log line is there once."""
        gate = asyncio.Event()
        lines = tuple(f"progress {i}\n".encode() for i in range(5))
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=lines)
        client = await aiohttp_client(create_app(config, sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await until(lambda: _has_tail(client, mid, "starting step"))
        await client.close()  # the daemon stops; the sandbox keeps running

        gate.set()  # the agent goes on while nobody watches
        await until(lambda: _exited(fake))
        client = await aiohttp_client(create_app(config, sandbox=fake))
        data = await wait_status(client, mid, "waiting_human")
        run = data["runs"][0]
        assert run["exit_code"] == 0
        log = (config.missions_dir / mid / "logs" / f"{run['run_id']}.log").read_bytes()
        expected = b"[agent] cleanup-agent starting step cleanup\n" + b"".join(lines)
        assert log == expected + b"[agent] wrote structured-text.md\n"
        assert all(r.removed for r in fake.runs.values())

    async def test_reattach_redacts_secrets(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """After a restart the re-attached run's output is still redacted: the secret is looked up again by name."""
        import json

        value = "sk-restart-0123456789abcdef"
        monkeypatch.setenv("HAFLOW_TEST_KEY", value)
        folder = config.home / "workflows" / "agents"
        folder.mkdir(parents=True)
        command = ["haflow-agent", "{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"]
        agent = {"agent_id": "cleanup-agent", "command": command, "secrets": ["HAFLOW_TEST_KEY"]}
        (folder / "cleanup-agent.json").write_text(json.dumps(agent))
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=(f"key {value} twice {value}\n".encode(),))
        client = await aiohttp_client(create_app(config, sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await until(lambda: _has_tail(client, mid, "starting step"))
        await client.close()

        gate.set()
        await until(lambda: _exited(fake))
        client = await aiohttp_client(create_app(config, sandbox=fake))
        data = await wait_status(client, mid, "waiting_human")
        log = (config.missions_dir / mid / "logs" / f"{data['runs'][0]['run_id']}.log").read_bytes()
        assert log == (
            b"[agent] cleanup-agent starting step cleanup\n"
            b"key [redacted] twice [redacted]\n"
            b"[agent] wrote structured-text.md\n"
        )
        assert fake.started[0].secrets == {"HAFLOW_TEST_KEY": value}

    async def test_orphans_are_removed_at_start(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """Sandboxes labelled for a mission that no longer exists are removed at start-up."""
        from haflowd.sandbox import SandboxSpec

        await fake.start(
            SandboxSpec(
                mission_id="m-00000000",
                run_id="r-00000000",
                step_id="cleanup",
                image="x",
                command=("haflow-agent", "cleanup", "a", "", "out.md"),
                mounts=(),
            )
        )
        await aiohttp_client(create_app(config, sandbox=fake))
        assert fake.live() == []

    async def test_vanished_sandbox_fails_the_mission(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """If the sandbox of a running step is gone after a restart, the mission fails and can retry."""
        fake.behaviours["cleanup"] = Behaviour(gate=asyncio.Event())
        client = await aiohttp_client(create_app(config, sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        await cont(client, mid)
        await client.close()
        for run in fake.runs.values():
            run.removed = True
        client = await aiohttp_client(create_app(config, sandbox=FakeSandbox()))
        data = await detail(client, mid)
        assert data["status"] == "failed"
        assert "disappeared" in data["last_error"]
        assert "finished_at" in data["runs"][0]


async def _has_tail(client: AppClient, mid: str, text: str) -> bool:
    return text in (await detail(client, mid)).get("current_log_tail", "")


async def _exited(fake: FakeSandbox) -> bool:
    return all(r.exit_code is not None for r in fake.runs.values())


class TestFullDisk:
    async def test_full_disk_after_exit_0_fails_the_mission(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A result that cannot be saved after exit 0 (disk full) fails the mission, retryably, never running."""
        import errno
        import json
        import os

        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        client = await aiohttp_client(create_app(config, sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        assert await cont(client, mid) == 200
        await until(lambda: _has_tail(client, mid, "starting step"))

        def full(*args: Any, **kwargs: Any) -> None:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        monkeypatch.setattr(os, "replace", full)
        gate.set()
        data = await wait_status(client, mid, "failed", "waiting_human")
        assert data["status"] == "failed"
        assert "disk under HAFLOW_HOME is full" in data["last_error"]
        on_disk = json.loads((config.missions_dir / mid / "mission.json").read_text())
        assert on_disk["status"] == "running_code_agent"  # what start-up repairs

        monkeypatch.undo()
        fake.behaviours.clear()
        assert await cont(client, mid) == 200
        data = await wait_status(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human", data.get("last_error")

    async def test_running_without_a_run_file_is_repaired_at_start(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox
    ) -> None:
        """A mission left running_code_agent without any run file fails at start-up, and continue retries it."""
        import json

        client = await aiohttp_client(create_app(config, sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        await client.close()
        path = config.missions_dir / mid / "mission.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "status": "running_code_agent"}))

        client = await aiohttp_client(create_app(config, sandbox=fake))
        data = await detail(client, mid)
        assert data["status"] == "failed"
        assert "stopped while this step was starting" in data["last_error"]
        assert json.loads(path.read_text())["status"] == "failed"
        assert await cont(client, mid) == 200
        data = await wait_status(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human"
