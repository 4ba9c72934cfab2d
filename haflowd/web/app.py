"""The application factory: one aiohttp app hosting the API, the UI and the supervisor."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp_cors
from aiohttp import web

from .. import __version__
from ..agents.prompts import PromptLibrary
from ..agents.registry import adapter_for
from ..catalog import Catalog, Definitions, load_definitions
from ..config import Config
from ..egress import runtime as egress_runtime
from ..engine import Engine
from ..launch import Launcher
from ..models import WorkspaceMode
from ..projects import ProjectStore
from ..sandbox.kubernetes.transfers import tickets_in
from ..sandbox.protocol import SandboxProvider
from ..sandbox.registry import provider_for
from ..store import Store
from ..workspaces.artifacts import ArtifactsWorkspace
from ..workspaces.code import CodeWorkspace
from . import code_api, health, openapi, transfers_api
from .api import NEXT_CURSOR, routes
from .auth import auth_guard, check_exposure
from .browser_guard import browser_guard
from .described import ticket_route
from .envelope import envelope_middleware
from .keys import CONFIG, DEFINITIONS, ENGINE, LIST_CACHE, PROJECTS, SANDBOX, STORE, TRANSFERS
from .list_cache import ListCache
from .static_files import StaticFiles

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


def create_app(
    config: Config,
    *,
    sandbox: SandboxProvider | None = None,
    catalog: Catalog | None = None,
    static: Path = STATIC,
) -> web.Application:
    """Build the daemon. Nothing touches the disk or Docker until start-up.

    ``static`` is the UI's folder, read into memory at start-up and served from there.
    """
    check_exposure(config)
    app = web.Application(
        middlewares=[envelope_middleware, auth_guard, browser_guard],
        client_max_size=config.max_body_bytes,
    )
    store = Store(config.missions_dir)
    projects = ProjectStore(config.projects_dir)
    definitions = Definitions(catalog or load_definitions(config))
    # Before the sandbox: a provider whose pods share no disk issues tickets here.
    transfers = tickets_in(config.home)
    sandbox = sandbox or provider_for(config, transfers)
    code = CodeWorkspace(store, projects.get, config.home)
    # The user's templates first: they win over the shipped ones.
    prompts = PromptLibrary.for_home(config.home)
    launcher = Launcher(
        store=store,
        config=config,
        definitions=definitions,
        workspaces={WorkspaceMode.DOCUMENT: ArtifactsWorkspace(store), WorkspaceMode.CODEGEN: code},
        adapter_for=functools.partial(adapter_for, prompts=prompts),
        prompts=prompts,
    )
    engine = Engine(
        store=store,
        definitions=definitions,
        sandbox=sandbox,
        config=config,
        launcher=launcher,
        projects=projects,
        repositories=code,
    )
    app[CONFIG] = config
    app[ENGINE] = engine
    app[STORE] = store
    app[PROJECTS] = projects
    app[DEFINITIONS] = definitions
    app[SANDBOX] = sandbox
    app[LIST_CACHE] = ListCache()
    app[TRANSFERS] = transfers
    app.cleanup_ctx.append(_supervisor)

    # Before ``routes``: its catch-all answers every other /api path with 404.
    health.setup(app)
    app.router.add_routes(openapi.routes)
    app.router.add_routes(code_api.routes)
    app.router.add_routes(transfers_api.routes)
    app.router.add_routes(routes)
    if static.is_dir():
        StaticFiles(static).setup(app)
    app.on_response_prepare.append(_security_headers)

    # Which origins may call is decided by browser_guard; aiohttp-cors speaks
    # the CORS protocol (preflights, response headers) for those it lets in.
    cors = aiohttp_cors.setup(
        app,
        defaults={
            "*": aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
                allow_credentials=False,
                allow_headers=("Content-Type", "Authorization"),
                # A page of GET /api/missions names the next one here: front ends on other origins read it.
                expose_headers=(NEXT_CURSOR, "Link"),
                allow_methods=("GET", "POST", "PUT", "DELETE", "OPTIONS"),
                max_age=600,
            )
        },
    )
    for route in list(app.router.routes()):
        if route.method != "*" and route.resource is not None and str(route.resource.canonical).startswith("/api"):
            if not ticket_route(route.handler):  # pods, not browsers, use the transfer routes
                cors.add(route)
    return app


async def _supervisor(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    engine = app[ENGINE]
    config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
    if config.sandbox == "docker":
        # Refuses to start when another local user could have prepared the egress sockets' folder.
        await asyncio.to_thread(egress_runtime.check_at_start, config.home)
    count = app[STORE].load()
    app[PROJECTS].load()
    log.info("daemon.started", extra={"version": __version__, "missions": count, "home": str(config.home)})
    # Before the engine re-attaches runs (whose provider may issue tickets): tickets that
    # expired while the daemon was down, and the temp files of a crash.
    await asyncio.to_thread(app[TRANSFERS].sweep)
    await engine.start()
    yield
    await engine.close()
    # A provider holding connections (the Kubernetes API client, Docker's event stream) closes them; runs keep going.
    await app[SANDBOX].aclose()


async def _security_headers(request: web.Request, response: web.StreamResponse) -> None:
    # As HTTP headers, not only a meta tag: no other site may frame the UI.
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    if "Content-Security-Policy" not in response.headers:
        response.headers["Content-Security-Policy"] = "frame-ancestors 'none'"
