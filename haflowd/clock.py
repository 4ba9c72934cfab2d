"""Time as haflow writes it: UTC, milliseconds, ``Z`` (what JavaScript's ``toISOString`` gives)."""

from __future__ import annotations

from datetime import UTC, datetime

#: The wire and disk form of every timestamp, as a regular expression.
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$"


def utcnow() -> datetime:
    return datetime.now(UTC)


def format_timestamp(value: datetime) -> str:
    """``2026-01-23T10:00:00.000Z``."""
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def parse_timestamp(value: object, _: type | None = None) -> datetime:
    if not isinstance(value, str):
        raise ValueError("expected an ISO 8601 timestamp string")
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("timestamp needs a time zone")
    return parsed.astimezone(UTC)
