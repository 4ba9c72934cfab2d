"""Route handlers of ``/api`` and the middleware that wraps every answer in the envelope."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import attrs
from aiohttp import web

from .keys import CONFIG, ENGINE, LIST_CACHE
from ..convert import converter, structure_request
from ..errors import BadRequest, HaflowError, NotFound
from ..ids import check_filename, new_mission_id
from ..models import (
    CreateMissionRequest,
    MissionDetail,
    MissionListItem,
    MissionMeta,
    MissionStatus,
    SaveArtifactRequest,
)
from ..quota import check_artifact_write
from ..store import read_chunk
from ..catalog import DEFAULT_WORKFLOW

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: The most of a run's log that ``/log`` returns (at most 1 MiB read).
LOG_LIMIT_CHARS = 256 * 1024
#: The most bytes one ``/log?offset=N`` answer carries.
LOG_CHUNK_BYTES = 256 * 1024
GZIP_MIN_BYTES = 64 * 1024


def envelope(data: Any = None, *, status: int = 200) -> web.Response:
    body = json.dumps(
        {"success": True, "data": data, "error": None}, ensure_ascii=False, separators=(",", ":")
    )
    return web.Response(body=body.encode(), status=status, content_type="application/json")


def error_response(status: int, message: str) -> web.Response:
    body = json.dumps({"success": False, "data": None, "error": message}, ensure_ascii=False)
    return web.Response(body=body.encode(), status=status, content_type="application/json")


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/api`` failure answers in the envelope; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except HaflowError as exc:
        return error_response(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400 or not request.path.startswith("/api"):
            raise
        message = {
            404: f"Not found: {request.method} {request.path}",
            405: f"Method {request.method} not allowed on {request.path}",
            413: "Request body too large",
        }.get(exc.status, exc.reason)
        response = error_response(exc.status, message)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    except Exception:
        log.exception("api.unexpected_error", extra={"method": request.method, "path": request.path})
        return error_response(500, "Internal server error (details are in the daemon log)")


async def read_json(request: web.Request) -> object:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    if not raw:
        raise BadRequest("Request body must be a JSON object")
    try:
        return json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Malformed JSON body: {exc}") from None


def _now() -> datetime:
    return datetime.now(UTC)


# -- missions -----------------------------------------------------------------


@attrs.define
class ListCache:
    """The encoded mission list, rebuilt only after something changed."""

    key: tuple[int, int] = (-1, -1)
    body: bytes = b""
    _gzipped: bytes | None = None

    def update(self, key: tuple[int, int], body: bytes) -> None:
        self.key, self.body, self._gzipped = key, body, None

    @property
    def gzipped(self) -> bytes:
        # Thousands of missions make megabytes of JSON polled every 2 s;
        # compressed once per change it is a few dozen kilobytes.
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped


@routes.get("/api/missions")
async def list_missions(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    cache = request.app[LIST_CACHE]
    key = (engine.store.version, id(engine.catalog))
    if cache.key != key:
        metas = sorted(engine.store.metas(), key=lambda m: m.updated_at, reverse=True)
        items = [
            MissionListItem(
                mission_id=m.mission_id,
                title=m.title,
                type=m.type,
                status=m.status,
                current_step_name=_step_name(engine, m),
                updated_at=m.updated_at,
            )
            for m in metas
        ]
        data = json.dumps(converter.unstructure(items), ensure_ascii=False, separators=(",", ":"))
        cache.update(key, b'{"success":true,"data":' + data.encode() + b',"error":null}')
    if len(cache.body) > GZIP_MIN_BYTES and "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=cache.gzipped,
            content_type="application/json",
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return web.Response(body=cache.body, content_type="application/json", headers={"Vary": "Accept-Encoding"})


def _step_name(engine: Any, meta: MissionMeta) -> str:
    workflow = engine.catalog.workflow(meta.workflow_id)
    return workflow.step_name(meta.current_step) if workflow else "Unknown workflow"


@routes.get("/api/missions/{mission_id}")
async def get_mission(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    store = engine.store
    meta = store.get(request.match_info["mission_id"])
    runs = store.runs(meta.mission_id)
    tail = None
    open_runs = [r for r in runs if r.finished_at is None]
    if open_runs:
        tail = store.log_tail(meta.mission_id, open_runs[-1].run_id, request.app[CONFIG].log_tail_chars)
    detail = MissionDetail(
        meta=meta,
        workflow=engine.workflow_of(meta),
        artifacts=store.artifacts(meta.mission_id),
        runs=tuple(runs),
        current_log_tail=tail,
    )
    return envelope(converter.unstructure(detail))


@routes.post("/api/missions")
async def create_mission(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    req = structure_request(await read_json(request), CreateMissionRequest)
    workflow_id = req.workflow_id or DEFAULT_WORKFLOW
    if engine.catalog.workflow(workflow_id) is None:
        known = ", ".join(sorted(engine.catalog.workflows))
        raise BadRequest(f"Invalid request: unknown workflow @ $.workflowId (known: {known})")
    now = _now()
    meta = MissionMeta(
        mission_id=new_mission_id(),
        title=req.title.strip(),
        type=req.type,
        workflow_id=workflow_id,
        current_step=0,
        status=MissionStatus.READY,
        created_at=now,
        updated_at=now,
        errors=(),
    )
    engine.store.create(meta, req.raw_input)
    log.info("mission.created", extra={"mission_id": meta.mission_id, "workflow_id": workflow_id})
    return envelope(converter.unstructure(meta), status=201)


@routes.put("/api/missions/{mission_id}/artifacts/{filename}")
async def save_artifact(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    mission_id = request.match_info["mission_id"]
    engine.store.get(mission_id)
    filename = check_filename(request.match_info["filename"])
    req = structure_request(await read_json(request), SaveArtifactRequest)
    async with engine.mission_lock(mission_id):
        check_artifact_write(
            engine.store.artifacts_dir(mission_id), filename, len(req.content.encode()), request.app[CONFIG]
        )
        engine.store.write_artifact(mission_id, filename, req.content)
        meta = engine.store.get(mission_id)
        engine.store.save(attrs.evolve(meta, updated_at=_now()))
    log.info("artifact.saved", extra={"mission_id": mission_id, "artifact": filename})
    return envelope(None)


@routes.get("/api/missions/{mission_id}/artifacts/{filename}/html")
async def render_artifact(request: web.Request) -> web.Response:
    from ..render import render_artifact as render

    store = request.app[ENGINE].store
    mission_id = request.match_info["mission_id"]
    store.get(mission_id)
    filename = check_filename(request.match_info["filename"])
    return envelope({"html": render(filename, store.read_artifact(mission_id, filename))})


@routes.get("/api/missions/{mission_id}/runs/{run_id}/log")
async def run_log(request: web.Request) -> web.Response:
    store = request.app[ENGINE].store
    mission_id = request.match_info["mission_id"]
    store.get(mission_id)
    run = store.get_run(mission_id, request.match_info["run_id"])
    raw_offset = request.query.get("offset")
    if raw_offset is None:
        return envelope(store.log_tail(mission_id, run.run_id, LOG_LIMIT_CHARS))
    if not raw_offset.isascii() or not raw_offset.isdigit():
        raise BadRequest("Invalid request: offset must be a whole number of bytes @ offset")
    offset = int(raw_offset)
    path = store.log_path(mission_id, run.run_id)
    data, size = await asyncio.to_thread(read_chunk, path, offset, LOG_CHUNK_BYTES)
    return envelope(
        {
            "text": data.decode("utf-8", errors="replace"),
            "offset": offset,
            "next_offset": offset + len(data),
            "size": size,
        }
    )


@routes.post("/api/missions/{mission_id}/continue")
async def continue_mission(request: web.Request) -> web.Response:
    await request.app[ENGINE].continue_mission(request.match_info["mission_id"])
    return envelope(None)


@routes.post("/api/missions/{mission_id}/cancel")
async def cancel_mission(request: web.Request) -> web.Response:
    await request.app[ENGINE].cancel(request.match_info["mission_id"])
    return envelope(None)


@routes.post("/api/missions/{mission_id}/mark-completed")
async def mark_completed(request: web.Request) -> web.Response:
    await request.app[ENGINE].mark_completed(request.match_info["mission_id"])
    return envelope(None)


@routes.get("/api/workflows")
async def list_workflows(request: web.Request) -> web.Response:
    catalog = request.app[ENGINE].catalog
    return envelope([converter.unstructure(w) for w in catalog.workflows.values()])


@routes.route("*", "/api/{tail:.*}")
async def unknown_api(request: web.Request) -> web.Response:
    # The catch-all matches every method, so a known path asked with the
    # wrong method lands here too: that is a 405, not a 404.
    allowed: set[str] = set()
    for resource in request.app.router.resources():
        if resource is not request.match_info.route.resource:
            _, methods = await resource.resolve(request)
            allowed |= methods
    allowed.discard("OPTIONS")
    if allowed:
        raise web.HTTPMethodNotAllowed(request.method, sorted(allowed))
    raise NotFound(f"Not found: {request.method} {request.path}")
