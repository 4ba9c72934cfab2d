"""Splitting a sandbox's output into items: lines, or pieces of over-long lines."""

from __future__ import annotations


def split_lines(buf: bytearray, limit: int, *, final: bool) -> list[bytes]:
    """Remove and return the complete items at the start of ``buf``.

    An item is a line including its ``\\n``; a line longer than ``limit``
    becomes pieces of exactly ``limit`` bytes and its remainder, so the items
    only depend on the bytes, never on how reads happened to chunk them. With
    ``final`` the unterminated rest is returned too.
    """
    items: list[bytes] = []
    start = 0
    while True:
        nl = buf.find(b"\n", start, start + limit)
        if nl != -1:
            items.append(bytes(buf[start : nl + 1]))
            start = nl + 1
        elif len(buf) - start >= limit:
            items.append(bytes(buf[start : start + limit]))
            start += limit
        else:
            break
    if final and start < len(buf):
        items.append(bytes(buf[start:]))
        start = len(buf)
    del buf[:start]
    return items
