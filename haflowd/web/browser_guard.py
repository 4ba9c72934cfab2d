"""What a browser may ask of the daemon.

Any web page the user visits can send requests to ``127.0.0.1:4000``. So a
request that carries an ``Origin`` is served only when that origin is the
daemon's own, a loopback origin (while the daemon itself is on loopback) or
one configured explicitly; and a write with a body must be JSON, which a
page cannot send cross-origin without a CORS preflight we would refuse.
The transfer routes (``auth="ticket"``) take a tar body instead; the
``Origin`` rule holds for them all the same.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web

from ..config import LOOPBACK_HOSTS, Config
from ..errors import Forbidden, UnsupportedMediaType
from .described import ticket_route
from .keys import CONFIG

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def origin_allowed(origin: str, config: Config, request_host: str | None) -> bool:
    if origin in config.cors_origins:
        return True
    try:
        parts = urlsplit(origin)
        host = parts.hostname
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or parts.path or parts.query:
        return False
    if config.is_loopback and host in LOOPBACK_HOSTS:
        return True
    # Same origin: the UI served by this daemon under whatever name it was reached.
    return request_host is not None and parts.netloc.lower() == request_host.lower()


def _has_body(request: web.Request) -> bool:
    return bool(request.content_length) or request.headers.get("Transfer-Encoding", "").lower() == "chunked"


@web.middleware
async def browser_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    if not request.path.startswith("/api"):
        return await handler(request)
    origin = request.headers.get("Origin")
    if origin is not None and not origin_allowed(origin, request.app[CONFIG], request.host):
        raise Forbidden(f"Origin {origin!r} is not allowed to use this API")
    # A transfer route takes a tar stream from a pod, which sends no Origin (a
    # browser would, and is stopped above); its handler checks the media type.
    if request.method in WRITE_METHODS and _has_body(request) and not ticket_route(request.match_info.handler):
        if request.content_type != "application/json":
            raise UnsupportedMediaType("Request bodies must be sent as application/json")
    return await handler(request)
