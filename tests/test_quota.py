"""Limits: request body cap, artifacts per mission (count and total size), HAFLOW_HOME permissions."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.errors import Conflict, PayloadTooLarge
from haflowd.quota import check_artifact_write, usage
from haflowd.web.app import create_app
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, detail
from tests.fakes import FakeSandbox


@pytest.fixture
async def small(aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox) -> AppClient:
    """A daemon with tiny limits: 2 KiB bodies, 3 artifacts, 1000 bytes per mission."""
    limited = attrs.evolve(config, max_body_bytes=2048, max_artifacts=3, max_mission_bytes=1000)
    return await aiohttp_client(create_app(limited, sandbox=fake))


def put(client: AppClient, mission_id: str, name: str, content: str) -> Any:
    return api(client, "PUT", f"/api/missions/{mission_id}/artifacts/{name}", json={"content": content})


class TestBodyLimit:
    async def test_oversized_body_is_413_in_the_envelope(self, small: AppClient) -> None:
        """A body over max_body_bytes answers 413 in the envelope, before any handler work."""
        status, body = await api(
            small, "POST", "/api/missions", json={"title": "t", "type": "feature", "rawInput": "x" * 4096}
        )
        assert status == 413
        assert body["error"] == "Request body too large"
        status, body = await api(small, "GET", "/api/missions")
        assert body["data"] == []

    async def test_body_under_the_limit_passes(self, small: AppClient) -> None:
        """A body under the cap is served normally."""
        mission = await create_mission(small, rawInput="x" * 500)
        assert mission["status"] == "ready"

    def test_default_is_five_megabytes(self, tmp_path: Path) -> None:
        """Without HAFLOW_MAX_BODY_BYTES, bodies are capped at 5 MiB."""
        assert Config.from_env({"HAFLOW_HOME": str(tmp_path)}).max_body_bytes == 5 * 1024 * 1024


class TestArtifactQuota:
    async def test_too_many_artifacts_is_409(self, small: AppClient) -> None:
        """A mission holding max_artifacts files refuses a new one with a clear message."""
        mission_id = (await create_mission(small, rawInput="short"))["mission_id"]
        assert (await put(small, mission_id, "a.md", "a"))[0] == 200
        assert (await put(small, mission_id, "b.md", "b"))[0] == 200
        status, body = await put(small, mission_id, "c.md", "c")
        assert status == 409
        assert "already has 3 artifacts" in body["error"] and "HAFLOW_MAX_ARTIFACTS" in body["error"]
        assert set((await detail(small, mission_id))["artifacts"]) == {"raw-input.md", "a.md", "b.md"}

    async def test_overwriting_at_the_count_limit_is_fine(self, small: AppClient) -> None:
        """Replacing an existing artifact does not count as a new one."""
        mission_id = (await create_mission(small, rawInput="short"))["mission_id"]
        await put(small, mission_id, "a.md", "a")
        await put(small, mission_id, "b.md", "b")
        status, _ = await put(small, mission_id, "a.md", "changed")
        assert status == 200

    async def test_total_size_over_the_cap_is_413(self, small: AppClient) -> None:
        """Artifacts that would exceed max_mission_bytes in total answer 413 and are not written."""
        mission_id = (await create_mission(small, rawInput="r" * 100))["mission_id"]
        assert (await put(small, mission_id, "a.md", "a" * 800))[0] == 200
        status, body = await put(small, mission_id, "b.md", "b" * 200)
        assert status == 413
        assert "HAFLOW_MAX_MISSION_BYTES" in body["error"] and "1100 bytes" in body["error"]
        assert "b.md" not in (await detail(small, mission_id))["artifacts"]

    async def test_shrinking_an_artifact_is_always_allowed(self, small: AppClient) -> None:
        """The size check counts the replaced file's new size, not old plus new."""
        mission_id = (await create_mission(small, rawInput="r" * 100))["mission_id"]
        await put(small, mission_id, "a.md", "a" * 800)
        assert (await put(small, mission_id, "a.md", "a" * 850))[0] == 200

    def test_usage_ignores_hidden_files_and_folders(self, tmp_path: Path) -> None:
        """Temp files (dot names) and folders do not count."""
        (tmp_path / "a.md").write_text("abc")
        (tmp_path / ".a.md.1234.tmp").write_text("x" * 100)
        (tmp_path / "sub").mkdir()
        assert usage(tmp_path) == {"a.md": 3}
        assert usage(tmp_path / "missing") == {}

    async def test_multibyte_content_counts_bytes(self, small: AppClient) -> None:
        """Sizes are UTF-8 bytes, not characters: 451 'é' are 902 bytes."""
        mission_id = (await create_mission(small, rawInput="r" * 100))["mission_id"]
        raw = json.dumps({"content": "é" * 451}, ensure_ascii=False).encode()
        status, body = await api(
            small,
            "PUT",
            f"/api/missions/{mission_id}/artifacts/a.md",
            data=raw,
            headers={"Content-Type": "application/json"},
        )
        assert status == 413 and "1002 bytes" in body["error"]

    def test_quota_errors_are_haflow_errors(self, tmp_path: Path, config: Config) -> None:
        """The checks raise the error types the envelope middleware knows."""
        (tmp_path / "a.md").write_text("abc")
        with pytest.raises(PayloadTooLarge):
            check_artifact_write(tmp_path, "b.md", 8, attrs.evolve(config, max_mission_bytes=10))
        with pytest.raises(Conflict):
            check_artifact_write(tmp_path, "b.md", 1, attrs.evolve(config, max_artifacts=1))
        check_artifact_write(tmp_path, "a.md", 10, attrs.evolve(config, max_artifacts=1, max_mission_bytes=10))


class TestHomePermissions:
    async def test_home_is_created_0700(self, aiohttp_client: AiohttpClient, tmp_path: Path, fake: FakeSandbox) -> None:
        """A missing HAFLOW_HOME (and its parents) is created at start-up, readable only by its owner."""
        home = tmp_path / "deep" / "haflow"
        client = await aiohttp_client(
            create_app(Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0), sandbox=fake)
        )
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        payload = {"title": "t", "type": "fix", "rawInput": RAW_INPUT}
        status, _ = await api(client, "POST", "/api/missions", json=payload)
        assert status == 201
