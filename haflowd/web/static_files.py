"""The UI's files, read into memory once at start-up and served from there.

An upgrade (``pip install`` of a new version) replaces the files on disk while
the old daemon still runs; serving from memory keeps the running daemon on its
own version's UI instead of half-written or vanished files.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import attrs
from aiohttp import web

from .auth import login

#: Types by suffix, fixed here rather than read from the host's mime.types (which differs between machines).
TYPES = {
    ".html": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}


@attrs.frozen
class StaticFile:
    """One file's bytes and the headers that describe them."""

    body: bytes
    content_type: str
    charset: str | None
    etag: str
    last_modified: datetime

    @classmethod
    def read(cls, path: Path) -> StaticFile:
        body = path.read_bytes()
        content_type = TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        charset = "utf-8" if content_type.startswith("text/") or content_type == "application/json" else None
        mtime = datetime.fromtimestamp(int(path.stat().st_mtime), UTC)
        return cls(body, content_type, charset, hashlib.sha256(body).hexdigest()[:32], mtime)

    def response(self, request: web.Request) -> web.Response:
        """The file, or 304 when the browser's copy (by ETag, else by date) is this one."""
        if request.if_none_match is not None:
            fresh = any(tag.value in (self.etag, "*") for tag in request.if_none_match)
        else:
            since = request.if_modified_since
            fresh = since is not None and self.last_modified <= since
        resp = web.Response(
            status=304 if fresh else 200,
            body=None if fresh else self.body,
            content_type=None if fresh else self.content_type,
            charset=None if fresh else self.charset,
            # index.html names js/main.js and app.css at fixed addresses (and the modules each other): after an
            # upgrade the browser must ask again (a cheap 304 while nothing changed).
            headers={"Cache-Control": "no-cache"},
        )
        resp.etag = self.etag
        resp.last_modified = self.last_modified
        return resp


def read_tree(root: Path) -> dict[str, StaticFile]:
    """Every regular file under ``root``, by its ``/``-separated path relative to it."""
    return {
        path.relative_to(root).as_posix(): StaticFile.read(path)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }


@attrs.define
class StaticFiles:
    """The UI at ``/`` and ``/static/...``, loaded from ``root`` when the app starts."""

    root: Path
    files: Mapping[str, StaticFile] = attrs.field(factory=dict)

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/", self._index)
        app.router.add_get("/static/{path:.+}", self._file)
        app.cleanup_ctx.append(self._load)

    async def _load(self, app: web.Application) -> AsyncIterator[None]:
        self.files = await asyncio.to_thread(read_tree, self.root)
        yield

    async def _index(self, request: web.Request) -> web.StreamResponse:
        await login(request)
        return self._serve(request, "index.html")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        return self._serve(request, request.match_info["path"])

    def _serve(self, request: web.Request, name: str) -> web.StreamResponse:
        found = self.files.get(name)
        if found is None:
            raise web.HTTPNotFound()
        return found.response(request)
