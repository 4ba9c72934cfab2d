"""The one converter: JSON shapes round-trip and match the wire rules."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import given
from hypothesis import strategies as st

from haflowd.clock import TIMESTAMP_PATTERN, format_timestamp, parse_timestamp
from haflowd.convert import converter
from haflowd.models import Changes, Delivery, MissionMeta, MissionStatus, MissionType, StepRun, Usage

timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)).map(
    lambda d: d.replace(microsecond=d.microsecond // 1000 * 1000)
)
mission_ids = st.from_regex(r"m-[0-9a-f]{8}", fullmatch=True)
run_ids = st.from_regex(r"r-[0-9a-f]{8}", fullmatch=True)
text = st.text(min_size=1, max_size=40)

counts = st.integers(0, 10**9)
usages = st.builds(
    Usage,
    input_tokens=counts,
    output_tokens=counts,
    cached_input_tokens=st.none() | counts,
    cost_usd=st.none() | st.floats(0, 1000, allow_nan=False),
    model=st.none() | text,
)
changes = st.builds(Changes, files=counts, insertions=counts, deletions=counts)
deliveries = st.builds(
    Delivery, branch=text, commit=st.from_regex(r"[0-9a-f]{40}", fullmatch=True), delivered_at=timestamps
)

metas = st.builds(
    MissionMeta,
    mission_id=mission_ids,
    title=text,
    type=st.sampled_from(MissionType),
    workflow_id=text,
    current_step=st.integers(0, 20),
    status=st.sampled_from(MissionStatus),
    created_at=timestamps,
    updated_at=timestamps,
    errors=st.lists(text, max_size=3).map(tuple),
    last_error=st.none() | text,
    project_id=st.none() | st.from_regex(r"p-[0-9a-f]{8}", fullmatch=True),
    branch=st.none() | text,
    base_commit=st.none() | st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
    delivered=st.none() | deliveries,
    usage=st.none() | usages,
)
runs = st.builds(
    StepRun,
    step_id=text,
    run_id=run_ids,
    started_at=timestamps,
    finished_at=st.none() | timestamps,
    exit_code=st.none() | st.integers(0, 255),
    sandbox_id=st.none() | text,
    commit=st.none() | st.from_regex(r"[0-9a-f]{40}", fullmatch=True),
    changes=st.none() | changes,
    usage=st.none() | usages,
    result=st.none() | text,
)


class TestRoundTrip:
    @given(metas)
    def test_mission_meta(self, meta: MissionMeta) -> None:
        """MissionMeta survives unstructure/structure, with absent optionals omitted."""
        data = converter.unstructure(meta)
        assert ("last_error" in data) == (meta.last_error is not None)
        assert converter.structure(data, MissionMeta) == meta

    @given(runs)
    def test_step_run(self, run: StepRun) -> None:
        """StepRun survives a round trip and never carries null."""
        data = converter.unstructure(run)
        assert None not in data.values()
        assert converter.structure(data, StepRun) == run


class TestTimestamps:
    def test_format_is_javascript_iso(self) -> None:
        """Timestamps are UTC with milliseconds and Z, like toISOString()."""
        assert format_timestamp(datetime(2026, 1, 23, 10, 0, 0, 123456, tzinfo=UTC)) == "2026-01-23T10:00:00.123Z"

    @given(
        st.datetimes(
            min_value=datetime(1000, 1, 1),
            max_value=datetime(9998, 1, 1),
            timezones=st.builds(timezone, st.integers(-14 * 60, 14 * 60).map(lambda m: timedelta(minutes=m))),
        )
    )
    def test_pattern_describes_the_format(self, value: datetime) -> None:
        """TIMESTAMP_PATTERN (what the API description says) matches every formatted timestamp."""
        assert re.search(TIMESTAMP_PATTERN, format_timestamp(value))

    def test_parse_accepts_z_and_offsets(self) -> None:
        """Z and explicit offsets both parse to aware UTC datetimes."""
        assert parse_timestamp("2026-01-23T10:00:00.000Z") == datetime(2026, 1, 23, 10, tzinfo=UTC)
        assert parse_timestamp("2026-01-23T11:00:00+01:00") == datetime(2026, 1, 23, 10, tzinfo=UTC)
