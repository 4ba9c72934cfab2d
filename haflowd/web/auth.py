"""Who may talk to the daemon: the token, the login cookie and the ``Host`` check.

Every ``/api`` request needs the token, loopback included: any local account
can reach ``127.0.0.1``, and with code missions a request can plant a branch
in the user's repositories. The token is ``HAFLOW_TOKEN``, else
``HAFLOW_HOME/token`` (mode 0600, generated at the first start). Scripts send
``Authorization: Bearer <token>``; the CLI client reads the token file
itself. The bundled UI is opened once through the login URL the daemon
prints (``http://127.0.0.1:4000/?token=...``, as Jupyter does), which sets an
HttpOnly, SameSite=Strict cookie and redirects to a clean address.

The cookie stands for the user only on the daemon's own pages. Cookies are
not scoped by port and ``127.0.0.1:8899`` is the same *site* as
``127.0.0.1:4000``, so SameSite does not keep it from a page served on
another loopback port (a dev server previewing code an agent wrote): such a
page could POST ``continue`` or ``deliver`` without a body and the browser
would attach the cookie. So a request authenticated by the cookie alone is
served only when the browser says it comes from the daemon's own origin:
its ``Origin``, when sent, is the daemon's, and its ``Sec-Fetch-Site``, when
sent, is ``same-origin`` (or ``none``, a page the user opened by hand, for
reads); a write whose browser sends ``Sec-Fetch-Site`` must send ``Origin``
too. Clients that send neither (``curl``) are not browsers a page can steer.
Front ends on other origins send the bearer token, which a page cannot add
without a CORS preflight and which it does not know.

``HAFLOW_AUTH=none`` turns authentication off on loopback, for single-user
machines and clients that cannot send a token.

The ``Host`` check defeats DNS rebinding: a page on ``evil.example`` whose
name is re-pointed at 127.0.0.1 can reach a loopback daemon, but its
requests still say ``Host: evil.example``. Only loopback names, the bind
address, names listed in ``HAFLOW_ALLOWED_HOSTS`` and (when bound to a
wildcard address) IP literals, which no rebinding attack can produce, are
accepted.

The two transfer routes (``/api/transfers/in`` and ``/out``, marked
``auth="ticket"`` beside their handlers) are the one exception to the token
rule: a pod has no daemon token and its handler accepts only a one-time
ticket. The ``Host`` check applies to them as to everything else.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import attrs
from aiohttp import web

from ..config import LOOPBACK_HOSTS, Config
from ..errors import Forbidden, HaflowError, Unauthorized
from .described import ticket_route
from .keys import CONFIG

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_FILE = "token"  # noqa: S105 - a file name
#: The login cookie of the bundled UI.
COOKIE = "haflow_token"
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", "[::]", ""})  # noqa: S104 - names, not a bind


def token_path(config: Config) -> Path:
    return config.home / TOKEN_FILE


def read_token_file(path: Path) -> str | None:
    """The token stored at ``path``, or ``None`` if there is none."""
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return None
    return token or None


def ensure_token(config: Config) -> tuple[Config, str | None]:
    """Give an exposed daemon a token; return the config and a newly made token.

    The second value is only set when a token was generated just now.
    Configs without authentication (``HAFLOW_AUTH=none`` on loopback) come
    back unchanged.
    """
    if config.token is not None or (config.auth == "none" and config.is_loopback):
        return config, None
    path = token_path(config)
    existing = read_token_file(path)
    if existing is not None:
        return attrs.evolve(config, token=existing), None
    config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    log.info("auth.token_created", extra={"path": str(path)})
    return attrs.evolve(config, token=token), token


def token_matches(header: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header carries ``token``, in constant time."""
    if not header:
        return False
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode(), token.encode())


def _hostname(host_header: str) -> str:
    """The name part of a ``Host`` header, lower case, without port or brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        host = host.partition(":")[0]
    return host.rstrip(".")


def _ip(name: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(name)
    except ValueError:
        return None


def host_allowed(host_header: str | None, config: Config) -> bool:
    """Whether a request's ``Host`` names this daemon and not a rebinding attacker's domain."""
    if not host_header:
        return False
    name = _hostname(host_header)
    if name == "localhost" or name.endswith(".localhost") or name in LOOPBACK_HOSTS:
        return True
    allowed = {_hostname(h) for h in config.allowed_hosts}
    if name in allowed or "*" in allowed:
        return True
    ip = _ip(name)
    if ip is None:
        return False
    if ip.is_loopback:
        return True
    bind = _hostname(config.host)
    if bind in WILDCARD_HOSTS:
        return True
    bind_ip = _ip(bind)
    return bind_ip is not None and bind_ip == ip


def check_exposure(config: Config) -> None:
    """Refuse a config that would serve the API without a token where one is needed."""
    if not config.is_loopback and not config.token:
        raise HaflowError(
            f"Refusing to listen on {config.host} without a token: set HAFLOW_TOKEN "
            "or let 'haflowd serve' generate one into HAFLOW_HOME/token."
        )
    if config.auth == "token" and not config.token:
        raise HaflowError(
            "Authentication is on (the default) but there is no token: set HAFLOW_TOKEN, let "
            "'haflowd serve' generate HAFLOW_HOME/token, or set HAFLOW_AUTH=none on a single-user machine."
        )


def login_url(config: Config) -> str:
    """The address that logs a browser in to the bundled UI."""
    host = f"[{config.host}]" if ":" in config.host else config.host
    if host in WILDCARD_HOSTS or host == "[::]":
        host = "127.0.0.1"
    base = f"{'https' if config.tls else 'http'}://{host}:{config.port}/"
    return f"{base}?token={config.token}" if config.token else base


#: Methods that change nothing: a page that can only send them learns nothing (CORS hides the answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _credentials(request: web.Request, token: str) -> str | None:
    """``"bearer"``, ``"cookie"`` or ``None``: how the request proves it holds the token."""
    if token_matches(request.headers.get("Authorization"), token):
        return "bearer"
    cookie = request.cookies.get(COOKIE)
    if cookie is not None and hmac.compare_digest(cookie.encode(), token.encode()):
        return "cookie"
    return None


def own_origin(origin: str, request: web.Request) -> bool:
    """Whether ``origin`` is the daemon's own: the ``host:port`` the request was sent to (its ``Host``)."""
    try:
        parts = urlsplit(origin)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path or parts.query or not parts.netloc:
        return False
    return parts.netloc.lower() == request.host.lower()


def cookie_problem(request: web.Request) -> str | None:
    """Why a request carrying only the login cookie does not come from the daemon's own pages, if it does not."""
    origin = request.headers.get("Origin")
    site = request.headers.get("Sec-Fetch-Site")
    safe = request.method in SAFE_METHODS
    if origin is not None and not own_origin(origin, request):
        return f"it comes from {origin}"
    if site is not None and site != "same-origin" and not (safe and site == "none"):
        return f"the browser says it comes from a {site} page"
    if site is not None and origin is None and not safe:
        return "the browser sent no Origin with a write"
    return None


def _ticket_route(request: web.Request) -> bool:
    return ticket_route(request.match_info.handler)


async def login(request: web.Request) -> None:
    """``GET /?token=...``: set the login cookie and redirect to a clean address (raised); else nothing."""
    given = request.query.get("token")
    token = request.app[CONFIG].token
    if given is None or token is None:
        return
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise web.HTTPUnauthorized(text="Wrong token in the login address: use the one haflowd printed.")
    response = web.HTTPSeeOther("/")
    response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/", max_age=400 * 24 * 3600)
    raise response


@web.middleware
async def auth_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuse rebinding ``Host`` names (403), requests without the token (401), the cookie off our pages (403)."""
    config = request.app[CONFIG]
    is_api = request.path.startswith("/api")
    if not host_allowed(request.headers.get("Host"), config):
        message = (
            f"Host {request.headers.get('Host', '')!r} is not allowed; "
            "add it to HAFLOW_ALLOWED_HOSTS to reach the daemon under that name"
        )
        if is_api:
            raise Forbidden(message)
        raise web.HTTPForbidden(text=message)
    # CORS preflights carry no credentials by design; browser_guard vets their origin.
    # A transfer route (a pod fetching or handing back a run's areas) holds no daemon
    # token: its handler accepts its one-time ticket and nothing else.
    if config.token is not None and is_api and request.method != "OPTIONS" and not _ticket_route(request):
        credentials = _credentials(request, config.token)
        if credentials is None:
            raise Unauthorized(
                "Missing or wrong token: send 'Authorization: Bearer <token>' (the token is in "
                "HAFLOW_HOME/token), or open the login address haflowd printed"
            )
        if credentials == "cookie" and (problem := cookie_problem(request)) is not None:
            raise Forbidden(
                f"The login cookie is accepted only from haflowd's own pages, and {problem}; "
                "another front end must send 'Authorization: Bearer <token>'"
            )
    return await handler(request)
