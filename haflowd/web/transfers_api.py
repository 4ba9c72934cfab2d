"""The transfer routes: a pod fetches a run's areas and hands the writable ones back, by one-time ticket.

``GET /api/transfers/in`` answers the areas of the ticket as one tar stream
(``application/x-tar``, entries owned by the ticket's uid:gid, packed in a
thread and streamed through a pipe: nothing is staged on disk, the event
loop never waits on the disk). ``PUT /api/transfers/out`` takes the
writable areas back as one tar stream: the body goes to a temp file under a
hard cap (every writable area's ``max_bytes`` plus each entry's tar
overhead: 413 beyond), is vetted as a whole (422 for a refused archive,
every area untouched), then unpacked in a thread (204).

Both take ``Authorization: Bearer <ticket token>`` and nothing else: not the
daemon's token, not the login cookie (the middlewares waive those for routes
marked ``auth="ticket"``; the ``Host`` and ``Origin`` checks still apply).
A missing, unknown, expired, revoked or used token is 401, the same answer
for each. The ticket is used up when claimed: an IN download that breaks
off cannot be retried with the same token (the pod fails and the run is
retried with fresh tickets).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
from pathlib import Path
from typing import IO

from aiohttp import web

from ..errors import PayloadTooLarge, SandboxError, Unauthorized, Unprocessable, UnsupportedMediaType
from ..sandbox.areas import AreaPlan, pack_areas, unpack_areas, vet_areas
from ..sandbox.kubernetes.transfers import Direction, Ticket, TransferTickets
from ..sandbox.unpack import UnpackError
from ..store import TMP_PREFIX
from .described import described
from .keys import TRANSFERS

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

TAR = "application/x-tar"
IN_PATH = "/api/transfers/in"
OUT_PATH = "/api/transfers/out"
#: Bytes moved per step between the pipe, the socket and the disk.
CHUNK = 256 * 1024
#: Bytes of an upload gathered before one write to disk (one thread hop each).
FLUSH_BYTES = 1024 * 1024
#: One answer for every token that does not open a transfer: which of them it was stays unsaid.
NO_TICKET = (
    "This transfer needs its one-time token as 'Authorization: Bearer <token>'; "
    "unknown, expired, revoked and used tokens are all refused"
)
TICKET_ERRORS = {
    401: "No transfer token, or one that is unknown, expired, revoked or used (the same answer for each).",
    403: "The Origin or Host header is not allowed.",
}


def _bearer(request: web.Request) -> str:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(NO_TICKET)
    return token.strip()


async def _claim(request: web.Request, token: str, direction: Direction) -> Ticket:
    ticket = await asyncio.to_thread(request.app[TRANSFERS].claim, token, direction)
    if ticket is None:
        raise Unauthorized(NO_TICKET)
    return ticket


# -- in: the areas to the pod -------------------------------------------------------


def _pack(plans: tuple[AreaPlan, ...], uid: int, gid: int, fd: int) -> None:
    with os.fdopen(fd, "wb") as out:
        pack_areas(plans, out, uid, gid)


def _packer(plans: tuple[AreaPlan, ...], uid: int, gid: int, fd: int) -> asyncio.Future[None]:
    """Run :func:`_pack` in a thread of its own; the future settles when it ends.

    Not the default executor: a download lasts as long as the pod takes to
    read it, and a few slow pods must not hold every worker the daemon's
    other file I/O runs on.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if future.done():
            return
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            _pack(plans, uid, gid, fd)
        except BaseException as e:  # handed to the loop, which decides
            error = e
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits any more
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="haflow-transfer-in", daemon=True).start()
    return future


def _retrieve(task: asyncio.Future[None]) -> None:
    # A packer stopped by a closed pipe (the client went away) is expected; nobody awaits it then.
    if not task.cancelled() and (exc := task.exception()) is not None and not isinstance(exc, BrokenPipeError):
        log.warning("transfer.pack_failed", extra={"error": str(exc)})


# No HEAD: it would use the token up for nothing.
@routes.get(IN_PATH, allow_head=False)
@described(
    "A run's areas as one tar stream (aN/ per area), for the pod's init container; the token is used up",
    media=TAR,
    errors=TICKET_ERRORS,
    tag="transfers",
    auth="ticket",
)
async def transfer_in(request: web.Request) -> web.StreamResponse:
    ticket = await _claim(request, _bearer(request), "in")
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    reader = asyncio.StreamReader(limit=CHUNK)
    pipe: IO[bytes] = os.fdopen(read_fd, "rb", buffering=0)
    try:
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), pipe)
    except BaseException:
        pipe.close()
        os.close(write_fd)
        raise
    packing = _packer(ticket.plans, ticket.uid, ticket.gid, write_fd)
    response: web.StreamResponse | None = None
    try:
        chunk = await reader.read(CHUNK)
        if not chunk:
            await packing  # it stopped before its first byte: its error is still ours to answer
            raise SandboxError(f"The areas of run {ticket.run_id} could not be packed")
        response = web.StreamResponse(headers={"Content-Type": TAR, "Cache-Control": "no-store"})
        await response.prepare(request)
        while chunk:
            await response.write(chunk)
            chunk = await reader.read(CHUNK)
        await packing
        await response.write_eof()
        return response
    except Exception as exc:
        if response is None or not response.prepared:
            if isinstance(exc, OSError):
                raise SandboxError(f"The areas of run {ticket.run_id} could not be packed: {exc.strerror}") from None
            raise
        # Half a tar stream is out: only a broken connection tells the pod it is not whole.
        log.warning("transfer.in_broken_off", extra={"run_id": ticket.run_id, "error": str(exc)})
        if request.transport is not None:
            request.transport.abort()
        return response
    finally:
        # Closing our end stops a packer still writing (BrokenPipeError in its thread).
        transport.close()
        # Also when already done: an error nobody awaited must still be read (and logged).
        packing.add_done_callback(_retrieve)


# -- out: the writable areas back from the pod ---------------------------------------


def _open_upload(folder: Path) -> tuple[Path, IO[bytes]]:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Named like the tickets' temp files, so a sweep at start-up removes what a crash left.
    path = folder / f"{TMP_PREFIX}upload-{secrets.token_hex(8)}.tar"
    return path, open(path, "xb")  # closed by the caller


def _discard(path: Path, out: IO[bytes]) -> None:
    out.close()
    path.unlink(missing_ok=True)


async def _receive(request: web.Request, folder: Path, cap: int) -> Path:
    """The request's body in a temp file under ``folder``; 413 past ``cap`` bytes."""
    path, out = await asyncio.to_thread(_open_upload, folder)
    size = 0
    pending: list[bytes] = []
    pending_bytes = 0
    try:
        async for chunk in request.content.iter_chunked(CHUNK):
            size += len(chunk)
            if size > cap:
                raise PayloadTooLarge(f"The upload is larger than its areas may be ({cap} bytes with tar overhead)")
            pending.append(chunk)
            pending_bytes += len(chunk)
            if pending_bytes >= FLUSH_BYTES:
                await asyncio.to_thread(out.write, b"".join(pending))
                pending, pending_bytes = [], 0
        await asyncio.to_thread(out.write, b"".join(pending))
        await asyncio.to_thread(out.close)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(_discard, path, out))
        raise
    return path


def _vet_and_unpack(archive: Path, plans: tuple[AreaPlan, ...]) -> None:
    try:
        vet_areas(archive, plans)
    except UnpackError as e:
        raise Unprocessable(f"The archive was refused and no area was changed: {e.message}") from None
    unpack_areas(archive, plans)


@routes.put(OUT_PATH)
@described(
    "Hand a run's writable areas back as one tar stream (aN/ per area), from the pod's collect container",
    status=204,
    body_media=TAR,
    errors={
        **TICKET_ERRORS,
        413: "Larger than the writable areas may be (their max_bytes and each entry's tar overhead).",
        415: "The body is not application/x-tar.",
        422: "The archive was refused (a name outside its area, too many entries or bytes); no area was changed.",
    },
    tag="transfers",
    auth="ticket",
)
async def transfer_out(request: web.Request) -> web.Response:
    token = _bearer(request)
    # Before the claim: a malformed request does not use the token up.
    if request.content_type != TAR:
        raise UnsupportedMediaType(f"Send the areas as {TAR}")
    ticket = await _claim(request, token, "out")
    tickets: TransferTickets = request.app[TRANSFERS]
    cap = ticket.upload_cap
    if request.content_length is not None and request.content_length > cap:
        raise PayloadTooLarge(f"The upload is larger than its areas may be ({cap} bytes with tar overhead)")
    archive = await _receive(request, tickets.root, cap)
    try:
        await asyncio.to_thread(_vet_and_unpack, archive, ticket.plans)
    except UnpackError as e:
        # Vetted, yet unpacking failed (the disk?): some areas may be back already.
        raise SandboxError(f"Could not bring back the areas of run {ticket.run_id}: {e.message}") from None
    finally:
        await asyncio.to_thread(archive.unlink, missing_ok=True)
    log.info("transfer.out_done", extra={"run_id": ticket.run_id})
    return web.Response(status=204)
