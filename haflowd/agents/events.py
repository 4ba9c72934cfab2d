"""The JSON-lines parser the structured CLIs share.

Claude Code, Codex, Gemini CLI and opencode print one JSON event per line.
:class:`EventParser` decodes each line and hands the event to the
adapter's ``event`` method; whatever cannot be decoded, or surprises the
adapter, is returned as the plain text it was, so one odd line never costs
a run its log.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .protocol import MAX_RESULT_CHARS

#: A readable log line shows at most this much of a tool input or output.
SHORT = 200


def clip(text: str, limit: int = MAX_RESULT_CHARS) -> str:
    """``text`` cut to ``limit`` characters, marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short(value: object, limit: int = SHORT) -> str:
    """One line of at most ``limit`` characters for a log."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return clip(" ".join(text.split()), limit)


def lines(prefix: str, text: str) -> list[str]:
    """Each non-blank line of ``text`` under ``prefix``."""
    return [f"{prefix} {line}" for line in text.splitlines() if line.strip()]


def as_int(value: object) -> int:
    """A token count from JSON; anything else counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def as_float(value: object) -> float | None:
    """A cost from JSON, or None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def tool_summary(name: str, args: object) -> str:
    """``Write /workspace/hello.txt``: a tool call by its most telling argument."""
    if isinstance(args, Mapping):
        for key in ("file_path", "filePath", "path", "command", "pattern", "url", "query", "description"):
            value = args.get(key)
            if isinstance(value, str) and value:
                return f"{name} {short(value)}"
        if args:
            return f"{name} {short(dict(args))}"
    return name


@attrs.define
class EventParser:
    """Base of the JSON-lines parsers: decoding and fault tolerance.

    Subclasses implement :meth:`event` and :meth:`finish`.
    """

    def feed(self, line: str) -> Sequence[str]:
        """Readable log lines for one output line; never raises."""
        text = line.strip()
        if not text:
            return []
        if not text.startswith("{"):
            return [line.rstrip()]
        try:
            event = json.loads(text)
        except ValueError:
            return [line.rstrip()]
        if not isinstance(event, dict):
            return [line.rstrip()]
        try:
            return self.event(event)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError):
            return [line.rstrip()]

    def event(self, event: dict[str, Any]) -> list[str]:
        """Readable lines for one decoded event (may raise on odd shapes)."""
        raise NotImplementedError
