"""Route handlers of ``/api`` (the envelope and error statuses are :mod:`.envelope`'s)."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import json
import re

from aiohttp import web

from ..agentfiles import iter_chunks
from ..catalog import Catalog
from ..clock import format_timestamp
from ..convert import converter, structure_request
from ..errors import BadRequest, NotFound
from ..ids import check_filename
from ..models import (
    CreateMissionRequest,
    MissionDetail,
    MissionListItem,
    MissionMeta,
    SaveArtifactRequest,
    Workflow,
)
from ..store import Store, read_chunk
from .described import described
from .envelope import envelope, envelope_bytes
from .keys import CONFIG, DEFINITIONS, ENGINE, LIST_CACHE, STORE

routes = web.RouteTableDef()

#: The most of a run's log that ``/log`` returns (at most 1 MiB read).
LOG_LIMIT_CHARS = 256 * 1024
GZIP_MIN_BYTES = 64 * 1024
#: The most of a run's log one ``?offset=`` answer carries.
LOG_PAGE_BYTES = 1024 * 1024


async def read_json(request: web.Request) -> object:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise
    if not raw:
        raise BadRequest("Request body must be a JSON object")
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"Malformed JSON body: {exc}") from None
    except RecursionError:
        raise BadRequest("Malformed JSON body: nested too deeply") from None
    except ValueError as exc:
        # Python refuses integers of more than 4,300 digits (CVE-2020-10735).
        raise BadRequest(f"Malformed JSON body: a number is too long ({exc})") from None
    _check_text(value)
    return value


def _check_text(value: object) -> None:
    """Refuse strings that are not valid Unicode (a lone surrogate from a ``\\ud800`` escape)."""
    stack: list[tuple[str, object]] = [("$", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            names: list[tuple[str, object]] = [(path, item)]
        elif isinstance(item, dict):
            names = [(f"{path}.{key}", key) for key in item]
            stack.extend((f"{path}.{key}", v) for key, v in item.items())
        elif isinstance(item, list):
            names = []
            stack.extend((f"{path}[{i}]", v) for i, v in enumerate(item))
        else:
            continue
        for where, text in names:
            try:
                str(text).encode("utf-8")
            except UnicodeEncodeError:
                shown = where.encode("utf-8", errors="backslashreplace").decode()
                raise BadRequest(
                    f"Invalid request: text that is not valid Unicode (a lone surrogate) @ {shown}"
                ) from None


# -- missions -----------------------------------------------------------------


#: The most missions one page of ``GET /api/missions?limit=`` holds, and its size when only a cursor is given.
MAX_PAGE = 1000
DEFAULT_PAGE = 100
#: A page size: 1 to MAX_PAGE, no leading zero.
_LIMIT = re.compile(r"[1-9][0-9]{0,2}|1000")
#: Where a page ends: the last mission's updated_at (digits of its timestamp) and id, the order pages follow.
_CURSOR = re.compile(r"[0-9]{8}T[0-9]{9}Z_m-[0-9a-f]{8}")
#: The response headers of a page that has a next one.
NEXT_CURSOR = "X-Next-Cursor"


@routes.get("/api/missions")
@described(
    "List missions, newest first; with limit or cursor, one page of them",
    response=list[MissionListItem],
    errors={400: "limit is not a whole number from 1 to 1000, or cursor is not one this daemon gave."},
    query={
        "limit": (
            {"type": "string", "pattern": f"^(?:{_LIMIT.pattern})$"},
            f"Page size, 1 to {MAX_PAGE}: the newest missions (by updated_at, then mission_id) first. "
            f"Without limit and cursor the whole list comes in one answer.",
        ),
        "cursor": (
            {"type": "string", "pattern": f"^{_CURSOR.pattern}$"},
            f"Where the next page starts: the {NEXT_CURSOR} header of the page before (opaque). "
            f"Without limit, pages of {DEFAULT_PAGE}.",
        ),
    },
    headers={
        NEXT_CURSOR: (
            {"type": "string"},
            "Only on a page (limit or cursor given) that has a next one: the cursor of the next page.",
        ),
        "Link": ({"type": "string"}, 'The next page\'s address, as `<...>; rel="next"`, beside X-Next-Cursor.'),
    },
)
async def list_missions(request: web.Request) -> web.Response:
    store, definitions = request.app[STORE], request.app[DEFINITIONS]
    cache = request.app[LIST_CACHE]
    key = (store.version, definitions.generation)
    if "limit" in request.query or "cursor" in request.query:
        return _page(request, key)
    if cache.key != key:
        catalog = definitions.catalog
        metas = sorted(store.metas(), key=lambda m: m.updated_at, reverse=True)
        data = json.dumps(
            converter.unstructure([_item(catalog, m) for m in metas]), ensure_ascii=False, separators=(",", ":")
        )
        cache.update(key, envelope_bytes(data.encode()))
    if len(cache.body) > GZIP_MIN_BYTES and "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(
            body=cache.gzipped,
            content_type="application/json",
            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"},
        )
    return web.Response(body=cache.body, content_type="application/json", headers={"Vary": "Accept-Encoding"})


def _item(catalog: Catalog, m: MissionMeta) -> MissionListItem:
    return MissionListItem(
        mission_id=m.mission_id,
        title=m.title,
        type=m.type,
        status=m.status,
        current_step_name=_step_name(catalog, m),
        updated_at=m.updated_at,
        cost_usd=m.usage.cost_usd if m.usage is not None else None,
    )


def _page(request: web.Request, key: tuple[int, int]) -> web.Response:
    """One page of the list: the missions before the cursor, newest first (a total order: updated_at, mission_id)."""
    raw_limit = request.query.get("limit")
    limit = DEFAULT_PAGE
    if raw_limit is not None:
        if _LIMIT.fullmatch(raw_limit) is None:
            raise BadRequest(f"limit must be a whole number from 1 to {MAX_PAGE}")
        limit = int(raw_limit)
    cache = request.app[LIST_CACHE]
    if cache.order_key != key:
        cache.order, cache.order_key = sorted(request.app[STORE].metas(), key=_order_key), key
    order: list[MissionMeta] = cache.order
    end = len(order)
    if (raw_cursor := request.query.get("cursor")) is not None:
        end = bisect.bisect_left(order, _decode_cursor(raw_cursor), key=_order_key)
    metas = order[max(0, end - limit) : end][::-1]
    catalog = request.app[DEFINITIONS].catalog
    response = envelope(converter.unstructure([_item(catalog, m) for m in metas]))
    if end > limit:
        cursor = _order_key(metas[-1])
        response.headers[NEXT_CURSOR] = cursor
        response.headers["Link"] = f'</api/missions?limit={limit}&cursor={cursor}>; rel="next"'
    return response


def _order_key(meta: MissionMeta) -> str:
    """``20260123T100000000Z_m-0123abcd``: sorts as (updated_at, mission_id); a page's cursor is its last key."""
    stamp = format_timestamp(meta.updated_at).translate({ord("-"): None, ord(":"): None, ord("."): None})
    return f"{stamp}_{meta.mission_id}"


def _decode_cursor(cursor: str) -> str:
    if _CURSOR.fullmatch(cursor) is None:
        raise BadRequest("cursor is not one this daemon gave: use the X-Next-Cursor header of the page before")
    return cursor


def _step_name(catalog: Catalog, meta: MissionMeta) -> str:
    workflow = catalog.workflow(meta.workflow_id)
    return workflow.step_name(meta.current_step) if workflow else "Unknown workflow"


@routes.get("/api/missions/{mission_id}")
@described(
    "A mission with its workflow, artifacts, runs and live log tail",
    response=MissionDetail,
    errors={404: "Unknown mission."},
)
async def get_mission(request: web.Request) -> web.Response:
    store = request.app[STORE]
    engine = request.app[ENGINE]
    meta = store.get(request.match_info["mission_id"])
    workflow = engine.workflow_of(meta)
    detail = await asyncio.to_thread(_detail, store, meta, workflow, request.app[CONFIG].log_tail_chars)
    return envelope(converter.unstructure(detail))


def _detail(store: Store, meta: MissionMeta, workflow: Workflow, tail_chars: int) -> MissionDetail:
    # Blocking reads of files agents may have written: off the event loop.
    runs = store.runs(meta.mission_id)
    open_runs = [r for r in runs if r.finished_at is None]
    tail = store.log_tail(meta.mission_id, open_runs[-1].run_id, tail_chars) if open_runs else None
    return MissionDetail(
        meta=meta,
        workflow=workflow,
        artifacts=store.artifacts(meta.mission_id),
        runs=tuple(runs),
        current_log_tail=tail,
    )


@routes.post("/api/missions")
@described(
    "Create a mission (status ready, step 0); writes artifacts/raw-input.md",
    request=CreateMissionRequest,
    response=MissionMeta,
    status=201,
    errors={
        400: "Malformed JSON, or a missing or invalid field (named in `error`).",
        409: "As many missions as HAFLOW_MAX_MISSIONS allows (or code missions as HAFLOW_MAX_CODE_WORKSPACES).",
        413: "Body over the size cap.",
        415: "A request body that is not application/json.",
    },
)
async def create_mission(request: web.Request) -> web.Response:
    req = structure_request(await read_json(request), CreateMissionRequest)
    meta = await request.app[ENGINE].create_mission(req)
    return envelope(converter.unstructure(meta), status=201)


@routes.put("/api/missions/{mission_id}/artifacts/{filename}")
@described(
    "Save an artifact (the human's edit at a review gate)",
    request=SaveArtifactRequest,
    errors={
        400: "Malformed JSON, a bad body or a bad file name (named in `error`).",
        404: "Unknown mission.",
        409: "The mission cannot change its artifacts now.",
        413: "Body over the size cap, or the mission's artifacts over their total cap.",
        415: "A request body that is not application/json.",
    },
)
async def save_artifact(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    filename = check_filename(request.match_info["filename"])
    req = structure_request(await read_json(request), SaveArtifactRequest)
    await engine.save_artifact(mission_id, filename, req.content)
    return envelope(None)


@routes.get("/api/missions/{mission_id}/artifacts/{filename}/html")
@described(
    "An artifact rendered as safe HTML (Markdown without raw HTML, escaped JSON/text)",
    response="RenderedArtifact",
    errors={400: "A bad file name.", 404: "Unknown mission or artifact."},
)
async def render_artifact(request: web.Request) -> web.Response:
    from ..render import render_artifact as render

    store = request.app[STORE]
    mission_id = request.match_info["mission_id"]
    store.get(mission_id)
    filename = check_filename(request.match_info["filename"])
    # Reading and rendering both grow with the file: off the event loop.
    text = await asyncio.to_thread(store.read_artifact, mission_id, filename)
    return envelope({"html": await asyncio.to_thread(render, filename, text)})


#: Media types of raw artifacts by extension; anything else is a download.
RAW_MEDIA = {
    ".md": "text/markdown; charset=utf-8",
    ".markdown": "text/markdown; charset=utf-8",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
    ".log": "text/plain; charset=utf-8",
}
OCTET_STREAM = "application/octet-stream"


@routes.get("/api/missions/{mission_id}/artifacts/{filename}")
@described(
    "An artifact's whole file, streamed as it is on disk (text types by extension, anything else as a download)",
    errors={400: "A bad file name.", 404: "Unknown mission, or no regular file of that name."},
    enveloped=False,
    media=(*dict.fromkeys(RAW_MEDIA.values()), OCTET_STREAM),
)
async def raw_artifact(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    mission_id = request.match_info["mission_id"]
    store.get(mission_id)
    filename = check_filename(request.match_info["filename"])
    chunks = iter_chunks(store.artifact_path(mission_id, filename))
    try:
        # The first read opens the file (a symlink, FIFO or folder is refused there).
        first = await asyncio.to_thread(next, chunks, b"")
    except OSError:
        chunks.close()
        raise NotFound(f"Artifact not found: {filename}") from None
    media = next((m for ext, m in RAW_MEDIA.items() if filename.lower().endswith(ext)), OCTET_STREAM)
    response = web.StreamResponse(headers={"Content-Type": media, "X-Content-Type-Options": "nosniff"})
    if media == OCTET_STREAM:
        quoted = filename.replace("\\", "_").replace('"', "_")
        response.headers["Content-Disposition"] = f'attachment; filename="{quoted}"'
    try:
        await response.prepare(request)
        if request.method == "HEAD":
            return response
        data = first
        while data:
            await response.write(data)
            # Each chunk is read off the event loop: a 1 GiB file never blocks other answers.
            data = await asyncio.to_thread(next, chunks, b"")
        await response.write_eof()
    finally:
        # A client gone mid-read leaves a read running in its thread: the
        # generator then closes its file when that read returns and it is freed.
        with contextlib.suppress(ValueError):
            chunks.close()
    return response


@routes.get("/api/missions/{mission_id}/runs/{run_id}/log")
@described(
    "The log of one run: its tail, or one page from a byte offset",
    response="RunLog",
    errors={400: "offset is not a whole number.", 404: "Unknown mission or run."},
    query={
        "offset": (
            {"type": "string", "pattern": "^[0-9]{1,19}$"},
            "Byte offset to read from; the answer says the next one (at most 1 MiB per page, whole characters).",
        )
    },
)
async def run_log(request: web.Request) -> web.Response:
    """The run's log: its tail, or with ``?offset=N`` the bytes from N on (one page)."""
    store = request.app[STORE]
    mission_id = request.match_info["mission_id"]
    store.get(mission_id)
    run = store.get_run(mission_id, request.match_info["run_id"])
    if "offset" not in request.query:
        return envelope(await asyncio.to_thread(store.log_tail, mission_id, run.run_id, LOG_LIMIT_CHARS))
    raw = request.query["offset"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 19:
        raise BadRequest("offset must be a byte offset: a whole number >= 0")
    offset = int(raw)
    path = store.log_path(mission_id, run.run_id)
    data, size = await asyncio.to_thread(read_chunk, path, offset, LOG_PAGE_BYTES)
    return envelope(
        {
            "text": data.decode("utf-8", errors="replace"),
            "offset": offset,
            "next_offset": offset + len(data),
            "size": size,
        }
    )


@routes.post("/api/missions/{mission_id}/continue")
@described(
    "Approve the human gate, or start (retry) the agent step",
    errors={404: "Unknown mission.", 409: "An agent step is already running, or the mission is completed."},
)
async def continue_mission(request: web.Request) -> web.Response:
    await request.app[ENGINE].continue_mission(request.match_info["mission_id"])
    return envelope(None)


@routes.post("/api/missions/{mission_id}/cancel")
@described(
    "Stop the running agent step; the mission fails and continue retries it",
    errors={404: "Unknown mission.", 409: "No agent step is running."},
)
async def cancel_mission(request: web.Request) -> web.Response:
    await request.app[ENGINE].cancel(request.match_info["mission_id"])
    return envelope(None)


@routes.post("/api/missions/{mission_id}/mark-completed")
@described(
    "Force the mission to completed, stopping a running step first",
    errors={404: "Unknown mission.", 409: "The mission cannot be completed now."},
)
async def mark_completed(request: web.Request) -> web.Response:
    await request.app[ENGINE].mark_completed(request.match_info["mission_id"])
    return envelope(None)


@routes.get("/api/workflows")
@described("Every known workflow", response=list[Workflow], tag="workflows")
async def list_workflows(request: web.Request) -> web.Response:
    catalog = request.app[DEFINITIONS].catalog
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
