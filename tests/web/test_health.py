"""GET /api/health: version, uptime, sandbox engine and missions folder, cheaply."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from haflowd import __version__
from haflowd.config import Config
from haflowd.web import health
from haflowd.web.app import create_app
from tests.conftest import api, create_mission
from tests.fakes import FakeSandbox

KEYS = {"status", "version", "uptime_seconds", "docker", "missions_dir_writable", "missions"}


class TestHealth:
    async def test_healthy_daemon(self, client: TestClient) -> None:
        """A daemon with a working sandbox and missions folder is ok."""
        status, body = await api(client, "GET", "/api/health")
        data = body["data"]
        assert status == 200 and set(data) == KEYS
        assert data["status"] == "ok" and data["version"] == __version__
        assert data["docker"] is True and data["missions_dir_writable"] is True
        assert isinstance(data["uptime_seconds"], float | int) and data["uptime_seconds"] >= 0
        assert data["missions"] == {}

    async def test_counts_missions_by_status(self, client: TestClient) -> None:
        """missions counts every mission under its status."""
        await create_mission(client)
        await create_mission(client)
        _, body = await api(client, "GET", "/api/health")
        assert body["data"]["missions"] == {"ready": 2}

    async def test_no_docker_is_degraded(self, client: TestClient, fake: FakeSandbox) -> None:
        """An unavailable sandbox engine gives docker false and status degraded, still 200."""
        fake.unavailable = "no engine"
        status, body = await api(client, "GET", "/api/health")
        assert status == 200
        assert (body["data"]["docker"], body["data"]["status"]) == (False, "degraded")

    async def test_missions_folder_not_writable(self, client: TestClient, home: Path) -> None:
        """A missions folder that cannot take a file is reported."""
        missions = home / "missions"
        shutil.rmtree(missions)
        missions.write_text("not a folder")
        _, body = await api(client, "GET", "/api/health")
        assert (body["data"]["missions_dir_writable"], body["data"]["status"]) == (False, "degraded")

    async def test_check_result_is_reused(self, aiohttp_client: Any, config: Config) -> None:
        """Polling health does not run the sandbox check on every request."""
        sandbox = SlowSandbox()
        sandbox.release.set()
        client = await aiohttp_client(create_app(config, sandbox=sandbox))
        for _ in range(5):
            await api(client, "GET", "/api/health")
        assert sandbox.checks == 1

    async def test_slow_check_does_not_hold_the_answer(
        self, aiohttp_client: Any, config: Config, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A check that hangs answers with the last known result instead of waiting for it."""
        monkeypatch.setattr(health, "CHECK_WAIT", 0.01)
        sandbox = SlowSandbox()
        client = await aiohttp_client(create_app(config, sandbox=sandbox))
        status, body = await api(client, "GET", "/api/health")
        assert status == 200 and body["data"]["docker"] is False
        status, body = await api(client, "GET", "/api/health")
        assert sandbox.checks == 1


@attrs.define
class SlowSandbox(FakeSandbox):
    """A fake whose check counts its calls and waits for ``release``."""

    checks: int = 0
    release: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def check(self) -> None:
        self.checks += 1
        await self.release.wait()


class TestPrivacy:
    async def test_no_secrets_or_paths(self, client: TestClient, home: Path) -> None:
        """Health carries neither the data folder's path nor anything configured."""
        resp = await client.get("/api/health")
        assert str(home) not in await resp.text()
