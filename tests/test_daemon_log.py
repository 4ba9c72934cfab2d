"""The daemon's log formatters: one line per event, text or JSON, secrets redacted."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from haflowd import daemon_log
from haflowd.daemon_log import REDACTED, JsonFormatter, TextFormatter

TOKEN = "tok-0123456789abcdef"


def record(event: str = "run.started", **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("haflowd.engine", logging.INFO, __file__, 1, event, None, None)
    rec.created = 1769162400.5  # 2026-01-23T10:00:00.500Z
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


class TestSecretNames:
    @pytest.mark.parametrize("name", ["token", "Authorization", "db_password", "OPENAI_API_KEY", "env", "cookie"])
    def test_secret_names(self, name: str) -> None:
        """Field names that say they hold a secret are recognised in any case."""
        assert daemon_log.is_secret_name(name)

    @pytest.mark.parametrize("name", ["mission_id", "status", "path"])
    def test_ordinary_names(self, name: str) -> None:
        """Ordinary field names are logged."""
        assert not daemon_log.is_secret_name(name)


class TestJson:
    def test_one_object_with_the_event_and_its_fields(self) -> None:
        """A record becomes one JSON object: time, level, logger, event and the extra fields."""
        line = JsonFormatter().format(record(mission_id="m-0123abcd", count=3))
        assert "\n" not in line
        assert json.loads(line) == {
            "time": "2026-01-23T10:00:00.500Z",
            "level": "INFO",
            "logger": "haflowd.engine",
            "event": "run.started",
            "mission_id": "m-0123abcd",
            "count": 3,
        }

    def test_secret_fields_and_the_token_are_redacted(self) -> None:
        """Secret-named fields (also nested) are redacted, and the token is masked anywhere."""
        line = JsonFormatter([TOKEN]).format(
            record(f"saw {TOKEN}", api_key="sk-1", nested={"password": "pw", "ok": f"x{TOKEN}"}, items=[TOKEN])
        )
        assert TOKEN not in line and "sk-1" not in line and '"pw"' not in line
        out = json.loads(line)
        assert out["event"] == f"saw {REDACTED}"
        assert out["api_key"] == REDACTED
        assert out["nested"] == {"password": REDACTED, "ok": f"x{REDACTED}"}
        assert out["items"] == [REDACTED]

    def test_exception_is_masked_too(self) -> None:
        """A logged exception's text is included with the token masked."""
        try:
            raise RuntimeError(f"bad {TOKEN}")
        except RuntimeError:
            rec = record()
            rec.exc_info = __import__("sys").exc_info()
        out = json.loads(JsonFormatter([TOKEN]).format(rec))
        assert "RuntimeError: bad [redacted]" in out["exception"]

    def test_line_separators_are_escaped(self) -> None:
        """Unicode line separators are written as escapes, so one event stays one line."""
        line = JsonFormatter().format(record(path="/a\u2028b\u0085c"))
        assert len(line.splitlines()) == 1
        assert json.loads(line)["path"] == "/a\u2028b\u0085c"


class TestText:
    def test_key_value_pairs_after_the_event(self) -> None:
        """Text is time, level, logger, event, then ``key=value`` pairs, quoting where needed."""
        line = TextFormatter().format(record(mission_id="m-0123abcd", reason="two words", n=2))
        assert line == (
            '2026-01-23T10:00:00.500Z INFO haflowd.engine run.started mission_id=m-0123abcd reason="two words" n=2'
        )

    def test_token_masked_and_secret_fields_redacted(self) -> None:
        """The text format redacts as the JSON one does."""
        line = TextFormatter([TOKEN]).format(record(f"x {TOKEN}", authorization=f"Bearer {TOKEN}"))
        assert TOKEN not in line
        assert line.endswith(f"x {REDACTED} authorization={REDACTED}")


class TestConfigure:
    def test_configure_replaces_handlers(self) -> None:
        """``configure`` installs one handler with the chosen format and level."""
        root = logging.getLogger()
        saved = (list(root.handlers), root.level)
        try:
            handler = daemon_log.configure("WARNING", "json", secrets=[TOKEN])
            assert root.handlers == [handler]
            assert isinstance(handler.formatter, JsonFormatter)
            assert root.level == logging.WARNING
        finally:
            for h in list(root.handlers):
                root.removeHandler(h)
            for h in saved[0]:
                root.addHandler(h)
            root.setLevel(saved[1])
