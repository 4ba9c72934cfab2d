"""What a browser may ask: foreign origins are refused (403), bodies must be JSON (415)."""

from __future__ import annotations

from pathlib import Path

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.web.app import create_app
from haflowd.web.browser_guard import origin_allowed
from tests.conftest import RAW_INPUT, AppClient, api
from tests.fakes import FakeSandbox

MISSION = {"title": "Dark mode", "type": "feature", "rawInput": RAW_INPUT}


class TestOrigin:
    async def test_foreign_origin_is_403(self, client: AppClient) -> None:
        """A request from another site's page is refused before its handler runs."""
        status, body = await api(client, "GET", "/api/missions", headers={"Origin": "https://evil.example"})
        assert status == 403
        assert body["error"] == "Origin 'https://evil.example' is not allowed to use this API"

    async def test_foreign_origin_cannot_write(self, client: AppClient) -> None:
        """A foreign page's write is refused and creates nothing."""
        status, _ = await api(client, "POST", "/api/missions", json=MISSION, headers={"Origin": "http://evil.example"})
        assert status == 403
        status, body = await api(client, "GET", "/api/missions")
        assert body["data"] == []

    async def test_loopback_origin_is_allowed(self, client: AppClient) -> None:
        """A page on loopback (the UI's dev server) may call a loopback daemon."""
        status, _ = await api(client, "GET", "/api/missions", headers={"Origin": "http://127.0.0.1:5173"})
        assert status == 200

    async def test_same_origin_is_allowed(self, client: AppClient) -> None:
        """The UI served by this daemon, under the Host it was reached by, may call."""
        host = f"{client.host}:{client.port}"
        status, _ = await api(client, "GET", "/api/missions", headers={"Origin": f"http://{host}"})
        assert status == 200

    async def test_no_origin_is_not_a_browser_page(self, client: AppClient) -> None:
        """A request without Origin (curl, the CLI) is not checked for one."""
        status, _ = await api(client, "GET", "/api/missions")
        assert status == 200

    async def test_outside_the_api_is_not_guarded(self, client: AppClient) -> None:
        """Paths outside ``/api`` (the UI's files) are not refused for their Origin."""
        resp = await client.get("/", headers={"Origin": "https://evil.example"})
        assert resp.status != 403


class TestContentType:
    async def test_form_body_is_415(self, client: AppClient) -> None:
        """A write whose body is not JSON (what a cross-site form sends) is 415."""
        status, body = await api(
            client,
            "POST",
            "/api/missions",
            data="title=x",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert status == 415
        assert body["error"] == "Request bodies must be sent as application/json"

    async def test_text_plain_is_415(self, client: AppClient) -> None:
        """``text/plain``, which needs no CORS preflight, is refused too."""
        status, _ = await api(
            client, "POST", "/api/missions", data='{"title": "x"}', headers={"Content-Type": "text/plain"}
        )
        assert status == 415

    async def test_json_body_passes(self, client: AppClient) -> None:
        """A JSON body reaches its handler."""
        status, _ = await api(client, "POST", "/api/missions", json=MISSION)
        assert status == 201


class TestOriginAllowed:
    @pytest.mark.parametrize(
        ("origin", "allowed"),
        [
            ("http://localhost:3000", True),
            ("https://[::1]:8443", True),
            ("http://127.0.0.1", True),
            ("https://evil.example", False),
            ("ftp://127.0.0.1", False),
            ("http://127.0.0.1/path", False),
            ("http://127.0.0.1:99999", False),
            ("null", False),
            ("http://daemon.lan:4000", True),
            ("http://DAEMON.lan:4000", True),
        ],
    )
    def test_origins(self, home: Path, origin: str, allowed: bool) -> None:
        """Loopback pages and the daemon's own origin are allowed; other sites, schemes and shapes are not."""
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0)
        assert origin_allowed(origin, config, "daemon.lan:4000") is allowed

    def test_configured_origin(self, home: Path) -> None:
        """An origin listed in ``HAFLOW_CORS_ORIGINS`` is allowed as written."""
        config = Config.from_env(
            {"HAFLOW_AUTH": "none", "HAFLOW_CORS_ORIGINS": "https://ui.example"}, home=home, port=0
        )
        assert origin_allowed("https://ui.example", config, None)
        assert not origin_allowed("https://other.example", config, None)

    async def test_configured_origin_over_http(
        self, aiohttp_client: AiohttpClient, home: Path, fake: FakeSandbox
    ) -> None:
        """A configured origin is served by the API."""
        config = Config.from_env(
            {"HAFLOW_AUTH": "none", "HAFLOW_CORS_ORIGINS": "https://ui.example"}, home=home, port=0
        )
        client = await aiohttp_client(create_app(config, sandbox=fake))
        status, _ = await api(client, "GET", "/api/missions", headers={"Origin": "https://ui.example"})
        assert status == 200
