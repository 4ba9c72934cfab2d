"""The missions list is encoded once per change, and gzipped at most once per encoding."""

from __future__ import annotations

import gzip

from haflowd.web.keys import LIST_CACHE
from haflowd.web.list_cache import ListCache
from tests.conftest import AppClient, create_mission


class TestListCache:
    def test_starts_empty_under_a_key_no_store_has(self) -> None:
        """A new cache holds nothing under a key that never matches a real version."""
        cache = ListCache()
        assert (cache.key, cache.body) == ((-1, -1), b"")

    def test_gzipped_once_per_body(self) -> None:
        """The gzipped body is computed once, is the body compressed, and is redone after an update."""
        cache = ListCache()
        cache.update((1, 0), b'{"data": []}' * 100)
        first = cache.gzipped
        assert cache.gzipped is first
        assert gzip.decompress(first) == cache.body
        cache.update((2, 0), b"other")
        assert gzip.decompress(cache.gzipped) == b"other"

    def test_gzip_is_deterministic(self) -> None:
        """The same body gives the same bytes (no timestamp in the gzip header)."""
        a, b = ListCache(), ListCache()
        a.update((1, 0), b"x" * 1000)
        b.update((1, 0), b"x" * 1000)
        assert a.gzipped == b.gzipped


class TestThroughTheApi:
    async def test_encoded_once_per_change(self, client: AppClient) -> None:
        """Polling twice reuses the encoded list; a new mission makes a new one."""
        cache = client.app[LIST_CACHE]
        await create_mission(client)
        assert (await client.get("/api/missions")).status == 200
        body, key = cache.body, cache.key
        assert (await client.get("/api/missions")).status == 200
        assert cache.body is body and cache.key == key
        await create_mission(client, title="Another")
        resp = await client.get("/api/missions")
        assert cache.key != key
        assert [m["title"] for m in (await resp.json())["data"]] == ["Another", "Dark mode"]
