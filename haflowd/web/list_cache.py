"""The encoded mission list, kept between polls."""

from __future__ import annotations

import gzip
from typing import Any

import attrs


@attrs.define
class ListCache:
    """The encoded mission list, rebuilt only after something changed."""

    key: tuple[int, int] = (-1, -1)
    body: bytes = b""
    _gzipped: bytes | None = None
    #: The missions in the order pages are cut from (oldest first), for the key they were sorted at.
    order_key: tuple[int, int] = (-1, -1)
    order: list[Any] = attrs.field(factory=list)

    def update(self, key: tuple[int, int], body: bytes) -> None:
        self.key, self.body, self._gzipped = key, body, None

    @property
    def gzipped(self) -> bytes:
        # Thousands of missions make megabytes of JSON polled every 2 s;
        # compressed once per change it is a few dozen kilobytes.
        if self._gzipped is None:
            self._gzipped = gzip.compress(self.body, compresslevel=6, mtime=0)
        return self._gzipped
