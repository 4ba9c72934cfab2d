"""The typed app keys: one distinct key per thing the app holds, each filled by the factory."""

from __future__ import annotations

from aiohttp import web

from haflowd.web import keys
from tests.conftest import AppClient

ALL = [
    keys.CONFIG,
    keys.ENGINE,
    keys.STORE,
    keys.PROJECTS,
    keys.DEFINITIONS,
    keys.SANDBOX,
    keys.LIST_CACHE,
    keys.TRANSFERS,
]


class TestKeys:
    def test_keys_are_distinct_app_keys(self) -> None:
        """Every key is an aiohttp AppKey, and no two share a name."""
        assert all(isinstance(key, web.AppKey) for key in ALL)
        assert len({repr(key) for key in ALL}) == len(ALL)

    def test_every_key_in_the_module_is_listed(self) -> None:
        """The list above is every key the module defines."""
        defined = [value for value in vars(keys).values() if isinstance(value, web.AppKey)]
        assert len(defined) == len(ALL)

    async def test_the_app_holds_every_key(self, client: AppClient) -> None:
        """The app factory fills every key."""
        assert all(key in client.app for key in ALL)
