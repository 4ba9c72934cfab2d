"""Serving the app: one listening socket, a cap on open connections, a clean stop on signals.

Any local account can open connections to the daemon; each costs a file
descriptor. Past the cap new connections are closed at once (one log line
per burst, not a traceback per accept), so the daemon never reaches its
descriptor limit and keeps serving the connections it has. The soft limit
is raised to the hard one where the system allows it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import resource
import signal
import ssl
import time
from typing import Any

import attrs
from aiohttp import web

log = logging.getLogger(__name__)

#: Descriptors kept free for files, pipes to Docker and git, and the log.
RESERVED_FDS = 256
#: Seconds between two "connections capped" log lines.
CAP_LOG_INTERVAL = 10.0


def raise_fd_limit() -> int:
    """Raise the soft descriptor limit to the hard one; return the limit in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    return soft


def connection_cap(fd_limit: int) -> int:
    """How many client connections to hold at once below ``fd_limit``."""
    return max(16, fd_limit - RESERVED_FDS)


class _Refused(asyncio.Protocol):
    """A connection over the cap: closed as soon as it is accepted."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.close()


@attrs.define
class CappedFactory:
    """The protocol factory of the listening socket: aiohttp's server, up to ``limit`` connections."""

    server: web.Server
    limit: int
    refused: int = 0
    _last_log: float = 0.0

    def __call__(self) -> asyncio.BaseProtocol:
        if len(self.server.connections) >= self.limit:
            self.refused += 1
            now = time.monotonic()
            if now - self._last_log >= CAP_LOG_INTERVAL:
                self._last_log = now
                log.warning("daemon.connections_capped", extra={"limit": self.limit, "refused": self.refused})
            return _Refused()
        return self.server()


async def serve(
    app: web.Application,
    host: str,
    port: int,
    *,
    max_connections: int | None = None,
    ssl_context: ssl.SSLContext | None = None,
    **runner_args: Any,
) -> None:
    """Run ``app`` on ``host:port`` (HTTPS with ``ssl_context``) until SIGINT or SIGTERM.

    Raises OSError if it cannot listen.
    """
    limit = max_connections or connection_cap(raise_fd_limit())
    runner = web.AppRunner(app, handle_signals=False, **runner_args)
    await runner.setup()
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    server: asyncio.Server | None = None
    try:
        factory = CappedFactory(runner.server, limit) if runner.server is not None else None
        assert factory is not None
        server = await loop.create_server(factory, host, port, reuse_address=True, backlog=128, ssl=ssl_context)
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
        log.info(
            "daemon.listening",
            extra={"host": host, "port": port, "max_connections": limit, "tls": ssl_context is not None},
        )
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        if server is not None:
            server.close()
        await runner.cleanup()
