"""The UI's files are served from memory: an upgrade that rewrites them on disk never reaches a running daemon."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.web.app import STATIC, create_app
from tests.conftest import AppClient
from tests.fakes import FakeSandbox


@pytest.fixture
def static(tmp_path: Path) -> Path:
    """A copy of the shipped UI the test may change under the running daemon."""
    copy = tmp_path / "static"
    shutil.copytree(STATIC, copy)
    return copy


@pytest.fixture
async def ui(aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox, static: Path) -> AppClient:
    return await aiohttp_client(create_app(config, sandbox=fake, static=static))


def names(static: Path) -> list[str]:
    return sorted(p.relative_to(static).as_posix() for p in static.rglob("*") if p.is_file())


class TestServedFromMemory:
    async def test_files_removed_after_start_are_still_served(self, ui: AppClient, static: Path) -> None:
        """Every file is served byte for byte as it was at start-up, after the folder was emptied on disk."""
        before = {name: (static / name).read_bytes() for name in names(static)}
        assert "js/main.js" in before and "index.html" in before
        shutil.rmtree(static)
        for name, body in before.items():
            resp = await ui.get(f"/static/{name}")
            assert resp.status == 200, name
            assert await resp.read() == body, name
        index = await ui.get("/")
        assert index.status == 200 and await index.read() == before["index.html"]

    async def test_files_rewritten_after_start_keep_the_old_content(self, ui: AppClient, static: Path) -> None:
        """A file truncated or replaced on disk (a half-done pip install) is still served whole, unchanged."""
        main_js = (static / "js/main.js").read_bytes()
        first = await ui.get("/static/js/main.js")
        (static / "js/main.js").write_bytes(b"")
        (static / "app.css").write_text("/* the next version */")
        again = await ui.get("/static/js/main.js")
        assert await again.read() == main_js
        assert again.headers["ETag"] == first.headers["ETag"]
        assert b"next version" not in await (await ui.get("/static/app.css")).read()

    async def test_a_file_added_after_start_is_not_served(self, ui: AppClient, static: Path) -> None:
        """Only the start-up version's files exist: one that appears later is a 404."""
        (static / "js/new.js").write_text("export {};")
        assert (await ui.get("/static/js/new.js")).status == 404


class TestHeaders:
    @pytest.mark.parametrize(
        ("path", "media"),
        [
            ("/", "text/html"),
            ("/static/index.html", "text/html"),
            ("/static/app.css", "text/css"),
            ("/static/js/main.js", "text/javascript"),
        ],
    )
    async def test_content_types(self, ui: AppClient, path: str, media: str) -> None:
        """Each file carries its own type, text in UTF-8, and must be revalidated (no-cache)."""
        resp = await ui.get(path)
        assert resp.status == 200
        assert resp.content_type == media
        assert resp.charset == "utf-8"
        assert resp.headers["Cache-Control"] == "no-cache"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"

    async def test_etag_revalidation(self, ui: AppClient) -> None:
        """The ETag answers 304 with no body; another ETag gets the file."""
        resp = await ui.get("/static/js/main.js")
        etag = resp.headers["ETag"]
        same = await ui.get("/static/js/main.js", headers={"If-None-Match": etag})
        assert same.status == 304 and await same.read() == b""
        assert same.headers["ETag"] == etag
        other = await ui.get("/static/js/main.js", headers={"If-None-Match": '"stale"'})
        assert other.status == 200 and await other.read() == await resp.read()

    async def test_last_modified_revalidation(self, ui: AppClient) -> None:
        """If-Modified-Since with the served date answers 304."""
        resp = await ui.get("/static/app.css")
        again = await ui.get("/static/app.css", headers={"If-Modified-Since": resp.headers["Last-Modified"]})
        assert again.status == 304

    @pytest.mark.parametrize(
        "path", ["/static/nope.js", "/static/js", "/static/../config.py", "/static/js/../../app.py"]
    )
    async def test_unknown_paths_are_404(self, ui: AppClient, path: str) -> None:
        """Only the UI's own files are served: folders, unknown names and climbing paths are 404."""
        assert (await ui.get(path)).status == 404

    async def test_no_folder_no_ui(
        self, aiohttp_client: Any, config: Config, fake: FakeSandbox, tmp_path: Path
    ) -> None:
        """Without a UI folder the daemon still serves its API and answers 404 at /."""
        client = await aiohttp_client(create_app(config, sandbox=fake, static=tmp_path / "missing"))
        assert (await client.get("/")).status == 404
        assert (await client.get("/api/health")).status == 200
