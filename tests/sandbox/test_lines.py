"""Splitting an engine's output into bounded lines: the items depend only on the bytes."""

from __future__ import annotations

import pytest

from haflowd.sandbox.lines import split_lines


class TestSplitLines:
    @pytest.mark.parametrize(
        ("data", "final", "items", "rest"),
        [
            (b"a\nb\nc", False, [b"a\n", b"b\n"], b"c"),
            (b"a\nb\nc", True, [b"a\n", b"b\n", b"c"], b""),
            (b"abcdefghij\n", False, [b"abcd", b"efgh", b"ij\n"], b""),
            (b"abcd\n", False, [b"abcd", b"\n"], b""),
            (b"abc\n", False, [b"abc\n"], b""),
            (b"abcdefg", False, [b"abcd"], b"efg"),
            (b"\xff\x00\n", False, [b"\xff\x00\n"], b""),
        ],
    )
    def test_items(self, data: bytes, final: bool, items: list[bytes], rest: bytes) -> None:
        """Complete lines come out whole, long ones in limit-sized pieces, the rest stays."""
        buf = bytearray(data)
        assert split_lines(buf, 4, final=final) == items
        assert bytes(buf) == rest

    def test_chunking_does_not_matter(self) -> None:
        """Items depend only on the bytes, not on how reads split them."""
        data = b"short\n" + b"x" * 23 + b"\nmid\n\n" + b"y" * 9
        whole = split_lines(bytearray(data), 8, final=True)
        buf = bytearray()
        pieces: list[bytes] = []
        for i in range(0, len(data), 3):
            buf += data[i : i + 3]
            pieces += split_lines(buf, 8, final=False)
        pieces += split_lines(buf, 8, final=True)
        assert pieces == whole
        assert b"".join(whole) == data
