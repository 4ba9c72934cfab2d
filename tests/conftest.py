"""Shared fixtures: a temp HAFLOW_HOME, a fake sandbox, and the API over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeAlias

import pytest
from aiohttp.test_utils import TestClient
from aiohttp.web import Application, Request
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.web.app import create_app
from tests.fakes import FakeSandbox
from tests.waiting import WAIT_SECONDS, eventually

#: Real-Docker fixtures (docker_image), shared by the tests of tests/sandbox/docker/ and tests/e2e/.
pytest_plugins = ["tests.docker_support", "tests.remote_engine", "tests.sandbox.kubernetes.kube_support"]

#: The test client of a haflowd app: what ``client`` and ``aiohttp_client(app)`` give.
AppClient: TypeAlias = TestClient[Request, Application]

RAW_INPUT = "Add a dark mode toggle to the settings page."


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test's own ``timeout`` marker may raise pytest-timeout's bound, never lower it below the default.

    The default (pyproject) is sized for a busy machine; markers written for an idle one must not undercut it.
    """
    default = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    for item in items:
        marker = item.get_closest_marker("timeout")
        if default and marker is not None and marker.args and 0 < float(marker.args[0]) < default:
            item.add_marker(pytest.mark.timeout(default), append=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "haflow-home"


@pytest.fixture
def config(home: Path) -> Config:
    # Authentication has its own tests (test_auth.py); elsewhere it would only add noise.
    return Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0)


@pytest.fixture
def fake() -> FakeSandbox:
    return FakeSandbox()


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox) -> AppClient:
    return await aiohttp_client(create_app(config, sandbox=fake))


async def api(client: AppClient, method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    """Call the API and return (status, envelope), checking the envelope's shape."""
    resp = await client.request(method, path, **kwargs)
    assert resp.content_type == "application/json"
    body = json.loads(await resp.read())
    assert set(body) == {"success", "data", "error"}
    if resp.status < 400:
        assert body["success"] is True and body["error"] is None
    else:
        assert body["success"] is False and body["data"] is None
        assert isinstance(body["error"], str) and body["error"]
    return resp.status, body


async def create_mission(client: AppClient, **fields: Any) -> dict[str, Any]:
    payload = {"title": "Dark mode", "type": "feature", "rawInput": RAW_INPUT, **fields}
    status, body = await api(client, "POST", "/api/missions", json=payload)
    assert status == 201, body
    data: dict[str, Any] = body["data"]
    return data


async def detail(client: AppClient, mission_id: str) -> dict[str, Any]:
    status, body = await api(client, "GET", f"/api/missions/{mission_id}")
    assert status == 200, body
    data: dict[str, Any] = body["data"]
    return data


async def until(check: Callable[[], Awaitable[bool]], *, timeout: float = WAIT_SECONDS, interval: float = 0.02) -> None:
    """Wait until ``check()`` is true; fail by name if it never is (:func:`tests.waiting.eventually`)."""
    await eventually(check, timeout=timeout, interval=interval)


async def wait_status(
    client: AppClient, mission_id: str, *statuses: str, timeout: float = WAIT_SECONDS
) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def reached() -> bool:
        found.clear()
        found.update(await detail(client, mission_id))
        return found["status"] in statuses

    what = f"mission {mission_id} to be {' or '.join(statuses)}"
    await eventually(reached, timeout=timeout, interval=0.02, what=what)
    return found
