"""Timestamps are UTC with milliseconds and a ``Z``, and parse back to the same moment."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from haflowd.clock import TIMESTAMP_PATTERN, format_timestamp, parse_timestamp, utcnow


class TestFormat:
    def test_format_is_javascripts_iso_string(self) -> None:
        """A moment is written as ``toISOString`` writes it: milliseconds, ``Z``."""
        moment = datetime(2026, 1, 23, 10, 0, 0, 123456, tzinfo=UTC)
        assert format_timestamp(moment) == "2026-01-23T10:00:00.123Z"

    def test_other_zones_are_converted_to_utc(self) -> None:
        """A moment in another zone is written in UTC."""
        moment = datetime(2026, 1, 23, 12, 0, tzinfo=timezone(timedelta(hours=2)))
        assert format_timestamp(moment) == "2026-01-23T10:00:00.000Z"

    def test_now_is_utc_and_matches_the_pattern(self) -> None:
        """``utcnow`` is aware, in UTC, and formats to the wire pattern."""
        now = utcnow()
        assert now.tzinfo is UTC
        assert re.fullmatch(TIMESTAMP_PATTERN, format_timestamp(now))


class TestParse:
    @given(st.datetimes(min_value=datetime(1970, 1, 1), timezones=st.just(UTC)))
    def test_round_trip_to_the_millisecond(self, moment: datetime) -> None:
        """Formatting then parsing gives the moment back, cut to the millisecond."""
        parsed = parse_timestamp(format_timestamp(moment))
        assert parsed == moment.replace(microsecond=moment.microsecond // 1000 * 1000)

    def test_offset_is_converted_to_utc(self) -> None:
        """A timestamp with an offset is parsed as the same moment in UTC."""
        assert parse_timestamp("2026-01-23T12:00:00+02:00") == datetime(2026, 1, 23, 10, tzinfo=UTC)

    @pytest.mark.parametrize("value", ["2026-01-23T10:00:00", 1700000000, None, "yesterday"])
    def test_refused(self, value: object) -> None:
        """A naive timestamp, a number, None or prose is refused."""
        with pytest.raises(ValueError):
            parse_timestamp(value)
