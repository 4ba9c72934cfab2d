"""Reloading workflow and agent files without a restart, and the pid file that allows it.

``SIGHUP`` (``systemctl --user reload haflowd``, or ``haflowd reload``,
which signals the pid in ``HAFLOW_HOME/haflowd.pid``) loads every
definition again and swaps the engine's catalog in one assignment. Running
steps keep going: their watchers only look definitions up when they need
them. A file that fails to load leaves the old catalog in place and is
logged. A workflow (and its agents) still used by a mission is kept even
when its file is gone, so that mission can finish and its page still opens.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from ..catalog import Catalog, load_definitions
from ..config import Config
from ..errors import HaflowError
from .keys import CONFIG, DEFINITIONS, STORE

log = logging.getLogger(__name__)

PID_FILE = "haflowd.pid"


def pid_path(config: Config) -> Path:
    return config.home / PID_FILE


def merge_in_use(new: Catalog, old: Catalog, used: set[str]) -> Catalog:
    """``new``, plus the workflows of ``used`` (and their agents) that only ``old`` has."""
    workflows = dict(new.workflows)
    agents = dict(new.agents)
    for workflow_id in sorted(used - set(new.workflows)):
        workflow = old.workflow(workflow_id)
        if workflow is None:
            continue
        workflows[workflow_id] = workflow
        log.warning("reload.workflow_kept", extra={"workflow_id": workflow_id, "reason": "used by a mission"})
    for workflow in workflows.values():
        for step in workflow.steps:
            if step.agent and step.agent not in agents and step.agent in old.agents:
                agents[step.agent] = old.agents[step.agent]
                log.warning("reload.agent_kept", extra={"agent_id": step.agent, "reason": "used by a workflow"})
    return Catalog(workflows=workflows, agents=agents)


def reload_definitions(app: web.Application) -> bool:
    """Swap in freshly loaded definitions; keep the old ones if any file is bad."""
    definitions = app[DEFINITIONS]
    try:
        fresh = load_definitions(app[CONFIG])
    except HaflowError as exc:
        log.error("reload.failed", extra={"error": exc.message})
        return False
    except Exception as exc:
        log.error("reload.failed", extra={"error": f"{type(exc).__name__}: {exc}"})
        return False
    # Completed missions too: their page still shows the workflow they followed.
    used = {m.workflow_id for m in app[STORE].metas()}
    definitions.replace(merge_in_use(fresh, definitions.catalog, used))
    log.info(
        "reload.done",
        extra={"workflows": len(definitions.catalog.workflows), "agents": len(definitions.catalog.agents)},
    )
    return True


async def lifecycle(app: web.Application) -> AsyncIterator[None]:
    """A ``cleanup_ctx``: handle SIGHUP and hold the pid file while the daemon runs."""
    config = app[CONFIG]
    loop = asyncio.get_running_loop()
    handled = False
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        # Only the main thread of a Unix process can take signals.
        loop.add_signal_handler(signal.SIGHUP, reload_definitions, app)
        handled = True
    path = pid_path(config)
    if handled:
        config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(f"{os.getpid()}\n")
    try:
        yield
    finally:
        log.info("daemon.stopping", extra={"pid": os.getpid()})
        if handled:
            loop.remove_signal_handler(signal.SIGHUP)
            with contextlib.suppress(OSError):
                if path.read_text().strip() == str(os.getpid()):
                    path.unlink()


def running_pid(config: Config) -> int | None:
    """The pid of the daemon using ``config.home``, or ``None`` if none runs."""
    try:
        pid = int(pid_path(config).read_text().strip())
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, but someone else's
    return pid


def signal_reload(config: Config) -> int:
    """Send SIGHUP to the daemon of ``config.home``; return its pid."""
    pid = running_pid(config)
    if pid is None:
        raise HaflowError(f"No haflowd is running for {config.home} (no live pid in {pid_path(config)})")
    os.kill(pid, signal.SIGHUP)
    return pid
