"""Token auth and the DNS-rebinding Host check, with auth on and off."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.errors import HaflowError
from haflowd.web.app import create_app
from haflowd.web.auth import check_exposure, ensure_token, host_allowed, token_matches, token_path
from tests.conftest import AppClient, api
from tests.fakes import FakeSandbox

TOKEN = "t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
async def guarded(aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox) -> AppClient:
    """The API of a daemon that has a token (on loopback)."""
    return await aiohttp_client(create_app(attrs.evolve(config, token=TOKEN), sandbox=fake))


@pytest.fixture
async def exposed(aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox) -> AppClient:
    """The API of a daemon listening on every address, with a token and one configured origin."""
    exposed = attrs.evolve(
        config, host="0.0.0.0", token=TOKEN, cors_origins=("https://phone.example",), allowed_hosts=("box.vpn",)
    )
    return await aiohttp_client(create_app(exposed, sandbox=fake))


class TestTokenMatching:
    @pytest.mark.parametrize(
        ("header", "ok"),
        [
            (f"Bearer {TOKEN}", True),
            (f"bearer {TOKEN}", True),
            (f"Bearer {TOKEN}x", False),
            (f"Basic {TOKEN}", False),
            ("Bearer ", False),
            (TOKEN, False),
            ("", False),
            (None, False),
        ],
    )
    def test_header_forms(self, header: str | None, ok: bool) -> None:
        """Only 'Bearer <the token>' matches (scheme case-insensitive)."""
        assert token_matches(header, TOKEN) is ok


class TestAuthOff:
    async def test_auth_none_needs_no_token(self, client: AppClient) -> None:
        """With HAFLOW_AUTH=none on loopback the API answers without credentials."""
        status, body = await api(client, "GET", "/api/missions")
        assert (status, body["data"]) == (200, [])


class TestAuthByDefault:
    def test_default_config_requires_a_token(self, home: Path) -> None:
        """Authentication is on by default, loopback included: no token, no app."""
        config = Config.from_env({}, home=home, port=0)
        assert config.auth == "token" and config.is_loopback
        with pytest.raises(HaflowError, match="HAFLOW_AUTH=none"):
            create_app(config, sandbox=FakeSandbox())

    def test_loopback_default_generates_a_token(self, home: Path) -> None:
        """On loopback the default config gets a generated 0600 token file too."""
        config, made = ensure_token(Config.from_env({}, home=home, port=0))
        assert made is not None and config.token == made
        assert token_path(config).stat().st_mode & 0o777 == 0o600

    def test_auth_none_off_loopback_still_needs_a_token(self, home: Path) -> None:
        """HAFLOW_AUTH=none does not open an exposed daemon."""
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, host="0.0.0.0")
        with pytest.raises(HaflowError, match="without a token"):
            check_exposure(config)

    async def test_login_url_sets_a_strict_http_only_cookie(self, guarded: AppClient) -> None:
        """/?token=... sets an HttpOnly SameSite=Strict cookie, redirects to a clean address, and the cookie works."""
        status, _ = await api(guarded, "GET", "/api/missions")
        assert status == 401
        resp = await guarded.get(f"/?token={TOKEN}", allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/"
        cookie = resp.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "haflow_token=" in cookie
        status, body = await api(guarded, "GET", "/api/missions")
        assert (status, body["data"]) == (200, [])

    async def test_wrong_login_token_is_refused(self, guarded: AppClient) -> None:
        """A login address with a wrong token sets no cookie."""
        resp = await guarded.get("/?token=wrong", allow_redirects=False)
        assert resp.status == 401 and "Set-Cookie" not in resp.headers
        status, _ = await api(guarded, "GET", "/api/missions")
        assert status == 401

    @pytest.mark.parametrize("path", ["/", "/api/health", "/static/js/main.js", "/api/nope"])
    async def test_no_framing(self, guarded: AppClient, path: str) -> None:
        """Every answer forbids framing by another site with HTTP headers."""
        resp = await guarded.get(path, headers=BEARER)
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]


class TestAuthOn:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/api/missions"),
            ("GET", "/api/health"),
            ("GET", "/api/openapi.json"),
            ("GET", "/api/workflows"),
            ("POST", "/api/missions/m-00000000/continue"),
            ("GET", "/api/no-such-route"),
        ],
    )
    async def test_missing_token_is_401_in_the_envelope(self, guarded: AppClient, method: str, path: str) -> None:
        """Every /api route, even unknown ones, answers 401 in the envelope without the token."""
        status, body = await api(guarded, method, path)
        assert status == 401
        assert "Bearer" in body["error"]

    async def test_wrong_token_is_401(self, guarded: AppClient) -> None:
        """A wrong token is refused like a missing one."""
        status, _ = await api(guarded, "GET", "/api/missions", headers={"Authorization": "Bearer nope"})
        assert status == 401

    async def test_right_token_passes(self, guarded: AppClient) -> None:
        """With the token the API works as usual."""
        status, body = await api(guarded, "GET", "/api/missions", headers=BEARER)
        assert (status, body["data"]) == (200, [])

    async def test_ui_needs_no_token(self, guarded: AppClient) -> None:
        """The web UI page itself loads without the token (it asks for it)."""
        resp = await guarded.get("/")
        assert resp.status == 200

    async def test_preflight_needs_no_token(self, exposed: AppClient) -> None:
        """A CORS preflight from a configured origin succeeds without credentials."""
        resp = await exposed.options(
            "/api/missions",
            headers={
                "Origin": "https://phone.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "Authorization, Content-Type",
            },
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://phone.example"


class TestExposure:
    def test_exposed_without_token_is_refused(self, config: Config) -> None:
        """create_app refuses a non-loopback address without a token."""
        with pytest.raises(HaflowError, match="without a token"):
            create_app(attrs.evolve(config, host="0.0.0.0"), sandbox=FakeSandbox())

    def test_loopback_needs_no_token(self, config: Config) -> None:
        """Loopback configs pass the exposure check without a token."""
        check_exposure(config)
        check_exposure(attrs.evolve(config, host="::1"))

    def test_token_is_generated_once_with_0600(self, config: Config) -> None:
        """An exposed daemon without HAFLOW_TOKEN generates a 0600 token file, then reuses it."""
        exposed = attrs.evolve(config, host="0.0.0.0")
        first, shown = ensure_token(exposed)
        assert shown is not None and first.token == shown and len(shown) >= 32
        path = token_path(config)
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(config.home.stat().st_mode) == 0o700
        again, shown_again = ensure_token(exposed)
        assert (again.token, shown_again) == (shown, None)

    def test_configured_token_wins(self, config: Config) -> None:
        """HAFLOW_TOKEN is used as is and nothing is written."""
        exposed = attrs.evolve(config, host="0.0.0.0", token="given")
        assert ensure_token(exposed) == (exposed, None)
        assert not config.home.exists()

    def test_loopback_generates_nothing(self, config: Config) -> None:
        """On loopback no token is made up."""
        assert ensure_token(config) == (config, None)
        assert not config.home.exists()

    def test_token_from_environment(self, tmp_path: Path) -> None:
        """HAFLOW_TOKEN, HAFLOW_ALLOWED_HOSTS and the limits are read from the environment; the token is not in repr."""
        config = Config.from_env(
            {
                "HAFLOW_HOME": str(tmp_path),
                "HAFLOW_TOKEN": "abc",
                "HAFLOW_ALLOWED_HOSTS": "box.vpn, phone.lan",
                "HAFLOW_MAX_BODY_BYTES": "1000",
                "HAFLOW_MAX_ARTIFACTS": "7",
                "HAFLOW_MAX_MISSION_BYTES": "9000",
            }
        )
        assert config.token == "abc" and "abc" not in repr(config)
        assert config.allowed_hosts == ("box.vpn", "phone.lan")
        assert (config.max_body_bytes, config.max_artifacts, config.max_mission_bytes) == (1000, 7, 9000)


class TestHostHeader:
    @pytest.mark.parametrize(
        "host",
        [
            "127.0.0.1:4000",
            "localhost:4000",
            "LOCALHOST",
            "[::1]:4000",
            "127.0.0.2",
            "app.localhost:4000",
            "localhost.",
        ],
    )
    def test_loopback_names_pass(self, config: Config, host: str) -> None:
        """Loopback names and addresses are accepted on a loopback daemon."""
        assert host_allowed(host, config)

    @pytest.mark.parametrize(
        "host",
        ["evil.example", "evil.example:4000", "127.0.0.1.evil.example", "localhost.evil", "10.0.0.5:4000", "", None],
    )
    def test_other_names_are_refused(self, config: Config, host: str | None) -> None:
        """Any other name (a rebinding attacker's domain) is refused on a loopback daemon."""
        assert not host_allowed(host, config)

    def test_configured_names_pass(self, config: Config) -> None:
        """HAFLOW_ALLOWED_HOSTS adds names."""
        assert host_allowed("box.vpn:4000", attrs.evolve(config, allowed_hosts=("box.vpn",)))

    def test_bind_address_passes(self, config: Config) -> None:
        """The address the daemon is bound to is accepted; other IPs are not."""
        bound = attrs.evolve(config, host="100.64.0.7", token="x")
        assert host_allowed("100.64.0.7:4000", bound)
        assert not host_allowed("100.64.0.8:4000", bound)

    def test_wildcard_bind_accepts_ip_literals_only(self, config: Config) -> None:
        """Bound to 0.0.0.0, any IP literal is fine (no rebinding without a name), names are not."""
        wild = attrs.evolve(config, host="0.0.0.0", token="x")
        assert host_allowed("192.168.1.20:4000", wild)
        assert not host_allowed("evil.example:4000", wild)

    async def test_rebinding_request_is_403_in_the_envelope(self, client: AppClient) -> None:
        """An /api request naming a foreign host answers 403 in the envelope."""
        status, body = await api(client, "GET", "/api/missions", headers={"Host": "evil.example:4000"})
        assert status == 403
        assert "HAFLOW_ALLOWED_HOSTS" in body["error"]

    async def test_rebinding_ui_request_is_403(self, client: AppClient) -> None:
        """The UI is not served under a foreign host name either."""
        resp = await client.get("/", headers={"Host": "evil.example"})
        assert resp.status == 403

    async def test_host_is_checked_before_the_token(self, exposed: AppClient) -> None:
        """An exposed daemon refuses a foreign name even with the right token."""
        status, _ = await api(exposed, "GET", "/api/missions", headers={"Host": "evil.example", **BEARER})
        assert status == 403
        status, _ = await api(exposed, "GET", "/api/missions", headers={"Host": "box.vpn:4000", **BEARER})
        assert status == 200


class TestCorsWhenExposed:
    async def test_loopback_origin_is_not_trusted(self, exposed: AppClient) -> None:
        """Once exposed, a loopback origin is no longer trusted by default."""
        status, _ = await api(exposed, "GET", "/api/missions", headers={"Origin": "http://localhost:3000", **BEARER})
        assert status == 403

    async def test_configured_origin_is_allowed(self, exposed: AppClient) -> None:
        """A configured origin gets its CORS answer."""
        resp = await exposed.get("/api/missions", headers={"Origin": "https://phone.example", **BEARER})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://phone.example"
        assert json.loads(await resp.read())["success"] is True


async def _create(client: AppClient, headers: dict[str, str]) -> dict[str, Any]:
    payload = {"title": "Dark mode", "type": "feature", "rawInput": "Add a dark mode."}
    status, body = await api(client, "POST", "/api/missions", json=payload, headers=headers)
    assert status == 201, body
    data: dict[str, Any] = body["data"]
    return data


class TestCookieOnlyFromOurPages:
    """The login cookie acts only for the daemon's own origin; other origins need the bearer token."""

    @pytest.fixture
    async def logged_in(self, guarded: AppClient) -> AppClient:
        resp = await guarded.get(f"/?token={TOKEN}", allow_redirects=False)
        assert resp.status == 303
        return guarded

    @staticmethod
    def own(client: AppClient) -> str:
        return f"http://{client.host}:{client.port}"

    @pytest.mark.parametrize(
        "headers",
        [
            {"Origin": "http://127.0.0.1:8899", "Sec-Fetch-Site": "same-site"},
            {"Origin": "http://127.0.0.1:8899"},
            {"Origin": "null"},
            {"Sec-Fetch-Site": "same-site"},
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "none"},
        ],
        ids=["other-port", "other-port-no-fetch-metadata", "null-origin", "same-site", "cross-site", "none-write"],
    )
    async def test_cookie_write_from_another_origin_is_403(self, logged_in: AppClient, headers: dict[str, str]) -> None:
        """A bodyless POST with the cookie from another loopback port (or any page) is refused; nothing changes."""
        created = await _create(logged_in, BEARER)
        mission_id = created["mission_id"]
        status, body = await api(logged_in, "POST", f"/api/missions/{mission_id}/mark-completed", headers=headers)
        assert status == 403 and "Bearer" in body["error"]
        status, body = await api(logged_in, "GET", f"/api/missions/{mission_id}", headers=BEARER)
        assert body["data"]["status"] == "ready"

    async def test_cookie_read_from_another_origin_is_403(self, logged_in: AppClient) -> None:
        """A credentialed GET from another loopback port is refused too (its answer is not the page's to read)."""
        headers = {"Origin": "http://127.0.0.1:8899", "Sec-Fetch-Site": "same-site"}
        status, _ = await api(logged_in, "GET", "/api/missions", headers=headers)
        assert status == 403
        status, _ = await api(logged_in, "GET", "/api/missions", headers={"Sec-Fetch-Site": "same-site"})
        assert status == 403

    async def test_cookie_from_our_own_pages_works(self, logged_in: AppClient) -> None:
        """The bundled UI (same origin: Origin on writes, Sec-Fetch-Site same-origin) keeps working with the cookie."""
        created = await _create(logged_in, BEARER)
        same = {"Origin": self.own(logged_in), "Sec-Fetch-Site": "same-origin"}
        status, _ = await api(logged_in, "POST", f"/api/missions/{created['mission_id']}/mark-completed", headers=same)
        assert status == 200
        status, _ = await api(logged_in, "GET", "/api/missions", headers={"Sec-Fetch-Site": "same-origin"})
        assert status == 200
        # An address typed by hand (a raw artifact opened in a tab) is a read the user made.
        status, _ = await api(logged_in, "GET", "/api/missions", headers={"Sec-Fetch-Site": "none"})
        assert status == 200

    async def test_cookie_without_browser_headers_works(self, logged_in: AppClient) -> None:
        """curl with the cookie (no Origin, no Sec-Fetch-Site) keeps working: no page can steer it."""
        created = await _create(logged_in, BEARER)
        status, _ = await api(logged_in, "POST", f"/api/missions/{created['mission_id']}/mark-completed")
        assert status == 200

    async def test_browser_write_without_origin_is_403(self, logged_in: AppClient) -> None:
        """A browser (it sends Sec-Fetch-Site) writing without Origin is not trusted with the cookie."""
        status, _ = await api(
            logged_in, "POST", "/api/missions/m-00000000/continue", headers={"Sec-Fetch-Site": "same-origin"}
        )
        assert status == 403

    async def test_bearer_from_another_loopback_origin_works(self, logged_in: AppClient) -> None:
        """A front end on another loopback port sends the bearer token and is served (cookie or not)."""
        headers = {"Origin": "http://127.0.0.1:5173", "Sec-Fetch-Site": "same-site", **BEARER}
        created = await _create(logged_in, headers)
        status, _ = await api(logged_in, "POST", f"/api/missions/{created['mission_id']}/continue", headers=headers)
        assert status == 200
