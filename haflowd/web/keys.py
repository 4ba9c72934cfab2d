"""Typed keys of what the application holds, shared by the factory and the handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from .api import ListCache
    from ..config import Config
    from ..engine import Engine

CONFIG: web.AppKey[Config] = web.AppKey("config")
ENGINE: web.AppKey[Engine] = web.AppKey("engine")
LIST_CACHE: web.AppKey[ListCache] = web.AppKey("list_cache")
