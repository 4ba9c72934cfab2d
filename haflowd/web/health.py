"""``GET /api/health``: is the daemon fit to run missions?

Cheap enough to poll every few seconds: the sandbox check runs at most once
per :data:`CHECK_TTL` seconds, one at a time, and the answer never waits
for it longer than :data:`CHECK_WAIT` seconds (a slow check reports the
last known result and keeps running in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections import Counter

import attrs
from aiohttp import web

from .. import __version__
from ..sandbox.protocol import SandboxError
from .described import described
from .envelope import envelope
from .keys import CONFIG, SANDBOX, STORE

CHECK_TTL = 10.0
CHECK_WAIT = 5.0

routes = web.RouteTableDef()


@attrs.define
class Health:
    """What the health endpoint remembers between requests."""

    started: float = attrs.field(factory=time.monotonic)
    docker: bool = False
    checked_at: float | None = None
    _check: asyncio.Task[bool] | None = None

    async def docker_ok(self, sandbox: object) -> bool:
        now = time.monotonic()
        fresh = self.checked_at is not None and now - self.checked_at < CHECK_TTL
        if not fresh and self._check is None:
            self._check = asyncio.create_task(self._run_check(sandbox))
        if self._check is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._check), CHECK_WAIT)
        return self.docker

    async def _run_check(self, sandbox: object) -> bool:
        try:
            await sandbox.check()  # type: ignore[attr-defined]
            ok = True
        except SandboxError:
            ok = False
        finally:
            self._check = None
        self.docker, self.checked_at = ok, time.monotonic()
        return ok

    async def close(self) -> None:
        if self._check is not None:
            self._check.cancel()
            await asyncio.gather(self._check, return_exceptions=True)


HEALTH: web.AppKey[Health] = web.AppKey("health", Health)


def setup(app: web.Application) -> None:
    """Register the route and the state it keeps (before the catch-all ``/api`` route)."""
    app[HEALTH] = Health()
    app.router.add_routes(routes)

    async def _close(app: web.Application) -> None:
        await app[HEALTH].close()

    app.on_cleanup.append(_close)


def writable(folder: os.PathLike[str] | str) -> bool:
    """Whether a file can be created in ``folder`` right now."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".health-"):
            return True
    except OSError:
        return False


@routes.get("/api/health")
@described("Daemon health: version, uptime, sandbox engine, missions folder", response="Health", tag="daemon")
async def health(request: web.Request) -> web.Response:
    state = request.app[HEALTH]
    docker = await state.docker_ok(request.app[SANDBOX])
    missions_ok = writable(request.app[CONFIG].missions_dir)
    statuses = Counter(meta.status.value for meta in request.app[STORE].metas())
    return envelope(
        {
            "status": "ok" if docker and missions_ok else "degraded",
            "version": __version__,
            "uptime_seconds": round(time.monotonic() - state.started, 3),
            "docker": docker,
            "missions_dir_writable": missions_ok,
            "missions": dict(sorted(statuses.items())),
        }
    )
