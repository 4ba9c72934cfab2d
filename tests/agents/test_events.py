"""The JSON-lines parser the CLIs share: events to their adapter, anything odd back as plain text."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from haflowd.agents import events
from haflowd.agents.events import EventParser
from haflowd.agents.protocol import MAX_RESULT_CHARS


@attrs.define
class Recording(EventParser):
    """Records the events it gets; an event without ``type`` raises as a surprised adapter would."""

    seen: list[dict[str, Any]] = attrs.field(factory=list)

    def event(self, event: dict[str, Any]) -> list[str]:
        self.seen.append(event)
        return [f"type={event['type']}"]


class TestFeed:
    def test_event_goes_to_the_adapter(self) -> None:
        """A JSON object line is decoded and handed to ``event``."""
        parser = Recording()
        assert parser.feed('{"type": "hello", "n": 1}\n') == ["type=hello"]
        assert parser.seen == [{"type": "hello", "n": 1}]

    @pytest.mark.parametrize("line", ["plain text  ", "{not json", "[1, 2]", '{"x": 1'])
    def test_odd_lines_come_back_as_text(self, line: str) -> None:
        """Text, broken JSON or non-objects are returned as written (right-stripped)."""
        assert Recording().feed(line) == [line.rstrip()]

    def test_surprising_event_comes_back_as_text(self) -> None:
        """An event whose shape makes the adapter raise is returned as its line."""
        assert Recording().feed('{"no_type": 1}') == ['{"no_type": 1}']

    def test_blank_line_gives_nothing(self) -> None:
        """A blank line gives no log line."""
        assert Recording().feed("   ") == []

    def test_base_event_is_for_subclasses(self) -> None:
        """The base parser leaves ``event`` to its subclasses."""
        with pytest.raises(NotImplementedError):
            EventParser().event({"a": 1})


class TestHelpers:
    def test_clip_marks_the_cut(self) -> None:
        """Text over the limit is cut to the limit, ending with an ellipsis."""
        assert events.clip("abcdef", 4) == "abc…"
        assert events.clip("abc", 4) == "abc"
        assert len(events.clip("x" * (MAX_RESULT_CHARS + 10))) == MAX_RESULT_CHARS

    def test_short_is_one_line(self) -> None:
        """``short`` joins whitespace into one line and encodes non-strings as JSON."""
        assert events.short("a\n  b\tc") == "a b c"
        assert events.short({"k": "é"}) == '{"k": "é"}'
        assert events.short("x" * 300, 10) == "x" * 9 + "…"

    def test_lines_prefix_non_blank_lines(self) -> None:
        """Each non-blank line gets the prefix."""
        assert events.lines(">", "a\n\n b\n") == ["> a", ">  b"]

    @pytest.mark.parametrize(("value", "count"), [(5, 5), (True, 0), ("5", 0), (None, 0), (2.5, 0)])
    def test_as_int(self, value: object, count: int) -> None:
        """Only real integers count as tokens (not booleans, strings or floats)."""
        assert events.as_int(value) == count

    @pytest.mark.parametrize(("value", "cost"), [(1, 1.0), (0.25, 0.25), (True, None), ("1", None), (None, None)])
    def test_as_float(self, value: object, cost: float | None) -> None:
        """Numbers become a float cost; anything else (booleans too) is None."""
        assert events.as_float(value) == cost

    @pytest.mark.parametrize(
        ("args", "summary"),
        [
            ({"file_path": "/workspace/a.txt", "content": "x"}, "Write /workspace/a.txt"),
            ({"command": "ls -la"}, "Write ls -la"),
            ({"other": 1}, 'Write {"other": 1}'),
            ({}, "Write"),
            ("not a mapping", "Write"),
        ],
    )
    def test_tool_summary(self, args: object, summary: str) -> None:
        """A tool call is named by its most telling argument."""
        assert events.tool_summary("Write", args) == summary
