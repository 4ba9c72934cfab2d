"""Structured logging: one line per event, readable text or JSON, never a secret.

haflowd logs stable event names with their context in ``extra``::

    log.info("run.started", extra={"mission_id": ..., "run_id": ...})

Both formats render those fields: text as ``key=value`` pairs after the
event name, JSON as keys of one object per line. Fields whose name says
they hold a secret (token, authorization, password, env, ...) are replaced
by ``[redacted]``, and the daemon's own token is masked wherever it would
appear. Every HTTP request gives one ``http.request`` line.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

FORMATS = ("text", "json")
REDACTED = "[redacted]"
#: Parts of field names whose values are never logged.
SECRET_WORDS = ("token", "authorization", "password", "passwd", "secret", "api_key", "apikey", "cookie", "env")
#: Attributes every LogRecord has; everything else came in through ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
#: Path parameters copied into the request line.
_IDS = ("mission_id", "run_id")


def is_secret_name(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS)


def _mask(value: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret and secret in value:
            value = value.replace(secret, REDACTED)
    return value


def _clean(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        return _mask(value, secrets)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): REDACTED if is_secret_name(str(k)) else _clean(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_clean(v, secrets) for v in value]
    return _mask(str(value), secrets)


def fields(record: logging.LogRecord, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """The ``extra`` fields of a record, with secrets redacted."""
    out: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _STANDARD or key.startswith("_"):
            continue
        out[key] = REDACTED if is_secret_name(key) else _clean(value, secrets)
    return out


class _Formatter(logging.Formatter):
    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def timestamp(self, record: logging.LogRecord) -> str:
        moment = datetime.fromtimestamp(record.created, UTC)
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"

    def event(self, record: logging.LogRecord) -> str:
        return _mask(record.getMessage(), self.secrets)

    def exception(self, record: logging.LogRecord) -> str | None:
        if record.exc_info:
            return _mask(self.formatException(record.exc_info), self.secrets)
        return None


class TextFormatter(_Formatter):
    """``2026-01-23T10:00:00.000Z INFO haflowd.engine run.started mission_id=m-... run_id=r-...``"""

    def format(self, record: logging.LogRecord) -> str:
        parts = [self.timestamp(record), record.levelname, record.name, self.event(record)]
        for key, value in fields(record, self.secrets).items():
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
            if not text or any(c.isspace() or c in '"=' for c in text):
                text = json.dumps(text, ensure_ascii=False)
            parts.append(f"{key}={text}")
        line = " ".join(parts)
        exc = self.exception(record)
        return f"{line}\n{exc}" if exc else line


class JsonFormatter(_Formatter):
    """One JSON object per line: ``time``, ``level``, ``logger``, ``event`` and the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "event": self.event(record),
        }
        for key, value in fields(record, self.secrets).items():
            out.setdefault(key, value)
        exc = self.exception(record)
        if exc:
            out["exception"] = exc
        # ASCII only: a request path may hold U+2028 or U+0085, which line-based
        # readers (journald, splitlines) would take for a line break.
        return json.dumps(out, ensure_ascii=True, default=str)


def configure(
    level: str = "INFO", fmt: str = "text", *, secrets: Iterable[str] = (), stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to ``stream`` (stderr) in ``fmt``; replaces earlier handlers."""
    handler = logging.StreamHandler(stream or sys.stderr)
    formatter: logging.Formatter = JsonFormatter(secrets) if fmt == "json" else TextFormatter(secrets)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


class RequestLogger(AbstractAccessLogger):
    """One ``http.request`` line per request: method, path, status, duration and ids.

    The query string and headers are left out: either may carry secrets.
    Health polls log at DEBUG so they do not drown the rest.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        extra: dict[str, Any] = {
            "method": request.method,
            "path": request.path,
            "status": response.status,
            "duration_ms": round(time * 1000, 1),
        }
        match_info = getattr(request, "match_info", None) or {}
        for key in _IDS:
            if key in match_info:
                extra[key] = match_info[key]
        level = logging.DEBUG if request.path == "/api/health" else logging.INFO
        self.logger.log(level, "http.request", extra=extra)
