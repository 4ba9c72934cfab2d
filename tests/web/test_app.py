"""The app factory: the composition root wires each wing, guards the API and sets the security headers."""

from __future__ import annotations

from pathlib import Path
from typing import cast

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.engine import Engine
from haflowd.errors import HaflowError
from haflowd.models import WorkspaceMode
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.web.app import create_app
from haflowd.web.keys import CONFIG, ENGINE, SANDBOX, STORE
from haflowd.workspaces.artifacts import ArtifactsWorkspace
from haflowd.workspaces.code import CodeWorkspace
from tests.conftest import AppClient, api
from tests.fakes import FakeSandbox


class TestComposition:
    def test_nothing_touches_the_disk_until_start_up(self, config: Config, fake: FakeSandbox, home: Path) -> None:
        """Building the app creates no HAFLOW_HOME."""
        app = create_app(config, sandbox=fake)
        assert app[CONFIG] is config
        assert not home.exists()

    def test_given_sandbox_is_used(self, config: Config, fake: FakeSandbox) -> None:
        """A sandbox passed in is the engine's; none passed means the configured provider."""
        assert create_app(config, sandbox=fake)[SANDBOX] is fake
        assert isinstance(create_app(config)[SANDBOX], DockerProvider)

    def test_workspace_modes_map_to_their_kinds(self, config: Config, fake: FakeSandbox) -> None:
        """Document steps get the artifacts workspace, codegen ones the code workspace, on the app's store."""
        app = create_app(config, sandbox=fake)
        engine: Engine = app[ENGINE]
        workspaces = engine.launcher.workspaces
        assert isinstance(workspaces[WorkspaceMode.DOCUMENT], ArtifactsWorkspace)
        assert isinstance(workspaces[WorkspaceMode.CODEGEN], CodeWorkspace)
        assert engine.repositories is cast(object, workspaces[WorkspaceMode.CODEGEN])
        assert engine.store is app[STORE]

    def test_exposed_without_token_is_refused(self, home: Path) -> None:
        """A non-loopback daemon without a token is refused when built."""
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, host="0.0.0.0")
        with pytest.raises(HaflowError, match="without a token"):
            create_app(config)


class TestServing:
    async def test_security_headers(self, client: AppClient) -> None:
        """Every answer forbids framing and sniffing."""
        resp = await client.get("/api/health")
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Content-Security-Policy"] == "frame-ancestors 'none'"

    async def test_unknown_api_path_is_an_enveloped_404(self, client: AppClient) -> None:
        """A path under /api that no route serves is a 404 in the envelope."""
        status, _ = await api(client, "GET", "/api/no-such-thing")
        assert status == 404

    async def test_cors_preflight_for_an_allowed_origin(self, client: AppClient) -> None:
        """A loopback page's preflight is answered for the missions' routes."""
        resp = await client.options(
            "/api/missions",
            headers={"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST"},
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"

    async def test_no_cors_for_transfer_routes(self, client: AppClient) -> None:
        """The transfer routes serve pods, not pages: no preflight is granted."""
        resp = await client.options(
            "/api/transfers/out",
            headers={"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "PUT"},
        )
        assert "Access-Control-Allow-Origin" not in resp.headers

    async def test_static_folder_is_optional(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox, tmp_path: Path
    ) -> None:
        """Without a UI folder the API still serves."""
        client = await aiohttp_client(create_app(config, sandbox=fake, static=tmp_path / "none"))
        status, _ = await api(client, "GET", "/api/missions")
        assert status == 200
