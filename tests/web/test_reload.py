"""Reloading workflow and agent files (SIGHUP, ``haflowd reload``) without dropping running steps."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from haflowd.catalog import Catalog
from haflowd.web.keys import ENGINE
from haflowd.web.reload import PID_FILE, merge_in_use, reload_definitions
from tests.conftest import AppClient, api, create_mission, until, wait_status
from tests.daemon_support import Daemon, child_env, poll
from tests.fakes import Behaviour, FakeSandbox

EXTRA = {
    "workflow_id": "quick-fix",
    "name": "Quick Fix",
    "steps": [
        {
            "step_id": "plan",
            "name": "Plan",
            "type": "agent",
            "agent": "planning-agent",
            "inputArtifact": "raw-input.md",
            "outputArtifact": "implementation-plan.md",
        },
        {"step_id": "review", "name": "Review", "type": "human-gate", "reviewArtifact": "implementation-plan.md"},
    ],
}


def write_workflow(home: Path, data: object, name: str = "quick-fix.json") -> Path:
    path = home / "workflows" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


async def workflow_ids(client: AppClient) -> set[str]:
    _, body = await api(client, "GET", "/api/workflows")
    return {w["workflow_id"] for w in body["data"]}


class TestReloadInProcess:
    async def test_new_workflow_appears(self, client: AppClient, home: Path) -> None:
        """A workflow file added after start-up is served after a reload."""
        assert "quick-fix" not in await workflow_ids(client)
        write_workflow(home, EXTRA)
        assert reload_definitions(client.app) is True
        assert "quick-fix" in await workflow_ids(client)
        mission = await create_mission(client, workflowId="quick-fix")
        _, body = await api(client, "GET", "/api/missions")
        assert body["data"][0]["current_step_name"] == "Plan" and mission["workflow_id"] == "quick-fix"

    async def test_bad_file_keeps_the_old_catalog(
        self, client: AppClient, home: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """A broken file is logged with its path and the daemon keeps what it had."""
        before = client.app[ENGINE].catalog
        path = write_workflow(home, '{"workflow_id": "broken"')
        with caplog.at_level(logging.ERROR, logger="haflowd.web.reload"):
            assert reload_definitions(client.app) is False
        assert client.app[ENGINE].catalog is before
        failed = [r for r in caplog.records if r.getMessage() == "reload.failed"]
        assert failed and str(path) in failed[0].error  # type: ignore[attr-defined]

    async def test_running_step_survives(self, client: AppClient, fake: FakeSandbox, home: Path) -> None:
        """A step running during a reload finishes and the mission moves on as usual."""
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        mission_id = (await create_mission(client))["mission_id"]
        await api(client, "POST", f"/api/missions/{mission_id}/continue")
        await until(lambda: _has_run(fake))
        write_workflow(home, EXTRA)
        assert reload_definitions(client.app) is True
        gate.set()
        found = await wait_status(client, mission_id, "waiting_human")
        assert found["current_step"] == 1 and found["runs"][0]["exit_code"] == 0

    async def test_workflow_in_use_is_kept(self, client: AppClient, home: Path) -> None:
        """Deleting the file of a workflow an unfinished mission uses does not strand that mission."""
        path = write_workflow(home, EXTRA)
        reload_definitions(client.app)
        mission_id = (await create_mission(client, workflowId="quick-fix"))["mission_id"]
        path.unlink()
        assert reload_definitions(client.app) is True
        status, body = await api(client, "GET", f"/api/missions/{mission_id}")
        assert status == 200 and body["data"]["workflow"]["workflow_id"] == "quick-fix"

    async def test_workflow_of_a_completed_mission_is_kept(self, client: AppClient, home: Path) -> None:
        """A completed mission's page still opens after its workflow file is deleted and reloaded."""
        path = write_workflow(home, EXTRA)
        reload_definitions(client.app)
        mission_id = (await create_mission(client, workflowId="quick-fix"))["mission_id"]
        status, _ = await api(client, "POST", f"/api/missions/{mission_id}/mark-completed")
        assert status == 200
        path.unlink()
        assert reload_definitions(client.app) is True
        status, body = await api(client, "GET", f"/api/missions/{mission_id}")
        assert status == 200 and body["data"]["workflow"]["workflow_id"] == "quick-fix"


async def _has_run(fake: FakeSandbox) -> bool:
    return bool(fake.live())


class TestMergeInUse:
    def test_only_used_definitions_are_carried_over(self, client: AppClient) -> None:
        """Workflows no mission uses disappear with their files; used ones stay with their agents."""
        old = client.app[ENGINE].catalog
        new = Catalog(
            workflows={"standard-feature": old.workflows["standard-feature"]},
            agents={k: v for k, v in old.agents.items() if k != "planning-agent"},
        )
        merged = merge_in_use(new, old, used={"oneshot"})
        assert set(merged.workflows) == {"standard-feature", "oneshot"}
        assert "planning-agent" in merged.agents
        assert set(merge_in_use(new, old, used=set()).workflows) == {"standard-feature"}


class TestSignals:
    def test_sighup_via_reload_command(self, tmp_path: Path) -> None:
        """haflowd reload signals the daemon of HAFLOW_HOME, which then serves the new workflow."""
        home = tmp_path / "home"
        with Daemon(home=home) as daemon:
            assert (daemon.home / PID_FILE).read_text().strip() == str(daemon.proc.pid)  # type: ignore[union-attr]
            write_workflow(home, EXTRA)
            done = subprocess.run(
                [sys.executable, "-m", "haflowd", "reload", "--home", str(home)],
                capture_output=True,
                text=True,
                env=child_env(),
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            assert f"pid {daemon.proc.pid}" in done.stdout  # type: ignore[union-attr]

            def served() -> bool:
                _, body = daemon.request("GET", "/api/workflows")
                return "quick-fix" in {w["workflow_id"] for w in body["data"]}

            poll(served)
        assert "reload.done" in daemon.stderr

    @pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
    def test_stops_cleanly(self, tmp_path: Path, sig: signal.Signals) -> None:
        """SIGTERM and SIGINT stop the daemon with exit code 0, no traceback, and remove the pid file."""
        daemon = Daemon(home=tmp_path / "home").start()
        assert daemon.request("GET", "/api/health")[0] == 200
        assert daemon.stop(sig) == 0
        assert "Traceback" not in daemon.stderr
        assert "daemon.stopping" in daemon.stderr
        assert not (daemon.home / PID_FILE).exists()

    def test_reload_without_daemon(self, tmp_path: Path) -> None:
        """haflowd reload with no daemon running says so and fails."""
        done = subprocess.run(
            [sys.executable, "-m", "haflowd", "reload", "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert done.returncode == 1 and "No haflowd is running" in done.stderr
