"""Typed keys of what the application holds; handlers take what they need from here."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from ..catalog import Definitions
    from ..config import Config
    from ..engine import Engine
    from ..projects import ProjectStore
    from ..sandbox.kubernetes.transfers import TransferTickets
    from ..sandbox.protocol import SandboxProvider
    from ..store import Store
    from .list_cache import ListCache

CONFIG: web.AppKey[Config] = web.AppKey("config")
#: Every change of a mission goes through the engine.
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
#: Reads of missions go straight to the store.
STORE: web.AppKey[Store] = web.AppKey("store")
PROJECTS: web.AppKey[ProjectStore] = web.AppKey("projects")
DEFINITIONS: web.AppKey[Definitions] = web.AppKey("definitions")
SANDBOX: web.AppKey[SandboxProvider] = web.AppKey("sandbox")
LIST_CACHE: web.AppKey[ListCache] = web.AppKey("list_cache")
#: One-time tickets of pods' transfers (``/api/transfers/in`` and ``/out``).
TRANSFERS: web.AppKey[TransferTickets] = web.AppKey("transfers")
