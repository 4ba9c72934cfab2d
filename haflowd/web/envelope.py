"""The API's envelope (``{"success", "data", "error"}``) and the HTTP status of each kind of error.

Every ``/api`` answer but a stream or a download is built here: handlers
return :func:`envelope`, and :func:`envelope_middleware` turns whatever
they (or the guards in front of them) raise into :func:`error_response`
with the status of :data:`STATUS_OF`. The guards (``auth``,
``browser_guard``) and ``transfers_api`` raise :class:`HaflowError` kinds
and never write an envelope of their own.
"""

from __future__ import annotations

import errno
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from .. import errors
from ..errors import HaflowError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: The HTTP status of each kind of error the core raises (most specific first).
STATUS_OF: tuple[tuple[type[HaflowError], int], ...] = (
    (errors.BadRequest, 400),
    (errors.Unauthorized, 401),
    (errors.Forbidden, 403),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.PayloadTooLarge, 413),
    (errors.UnsupportedMediaType, 415),
    (errors.Unprocessable, 422),
    (errors.StorageReadOnly, 503),
    (errors.StorageFull, 507),
)

#: What a client sees of an error nobody meant (the details go to the daemon's log).
INTERNAL_ERROR = "Internal server error (details are in the daemon log)"


def status_of(exc: HaflowError) -> int:
    return next((status for kind, status in STATUS_OF if isinstance(exc, kind)), 500)


def envelope(data: Any = None, *, status: int = 200) -> web.Response:
    """A success: ``data`` (already in its wire form) in the envelope."""
    body = json.dumps({"success": True, "data": data, "error": None}, ensure_ascii=False, separators=(",", ":"))
    return web.Response(body=body.encode(), status=status, content_type="application/json")


def envelope_bytes(data_json: bytes) -> bytes:
    """The body :func:`envelope` would write around ``data_json``, a value already serialized (compactly)."""
    return b'{"success":true,"data":' + data_json + b',"error":null}'


def error_response(status: int, message: str) -> web.Response:
    """A failure: ``message`` in the envelope, with ``status``."""
    body = json.dumps({"success": False, "data": None, "error": message}, ensure_ascii=False)
    return web.Response(body=body.encode(), status=status, content_type="application/json")


#: Errors of the disk under HAFLOW_HOME, said in words a user can act on.
_STORAGE_ERRORS: dict[int, HaflowError] = {
    errno.ENOSPC: errors.StorageFull("The disk under HAFLOW_HOME is full (disk full); free some space and retry"),
    errno.EDQUOT: errors.StorageFull(
        "The disk quota under HAFLOW_HOME is used up (disk full); free some space and retry"
    ),
    errno.EROFS: errors.StorageReadOnly(
        "HAFLOW_HOME is on a read-only file system; everything can still be read, nothing can be changed"
    ),
}


def storage_error(exc: OSError) -> HaflowError | None:
    """The error to answer for an ``OSError`` of the disk (full, quota, read-only), if it is one."""
    return _STORAGE_ERRORS.get(exc.errno) if exc.errno is not None else None


@web.middleware
async def envelope_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every ``/api`` failure answers in the envelope; nothing leaks a stack trace."""
    try:
        return await handler(request)
    except HaflowError as exc:
        return error_response(status_of(exc), exc.message)
    except OSError as exc:
        # The one place a full or read-only disk becomes a 507 or 503, whichever handler wrote.
        if (mapped := storage_error(exc)) is None:
            log.exception("api.unexpected_error", extra={"method": request.method, "path": request.path})
            return error_response(500, INTERNAL_ERROR)
        log.warning("api.storage_error", extra={"path": request.path, "error": exc.strerror})
        return error_response(status_of(mapped), mapped.message)
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
        return error_response(500, INTERNAL_ERROR)
