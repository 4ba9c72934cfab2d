"""A live run over its mission's disk quota is stopped, fails, and loses its output artifact."""

from __future__ import annotations

import asyncio
from pathlib import Path

import attrs

from haflowd.clock import utcnow
from haflowd.models import StepRun, StepType, WorkflowStep
from haflowd.run_quota import RunQuotas, remove_entry
from haflowd.store import Store
from haflowd.supervisor import RunEnd, Stop

MISSION, RUN = "m-0000abcd", "r-0000abcd"
STEP = WorkflowStep("research", "Research", StepType.AGENT, agent="a", output_artifact="research.md")
LIMIT = 1000


@attrs.define
class _Stops:
    """Records the runs it was asked to stop."""

    asked: list[tuple[StepRun, Stop]] = attrs.field(factory=list)
    called: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def __call__(self, run: StepRun, why: Stop) -> None:
        self.asked.append((run, why))
        self.called.set()


def _quotas(tmp_path: Path, stops: _Stops) -> RunQuotas:
    store = Store(tmp_path / "missions")
    store.artifacts_dir(MISSION).mkdir(parents=True)
    return RunQuotas(store=store, limit=LIMIT, stop=stops)


def _run() -> StepRun:
    return StepRun(STEP.step_id, RUN, utcnow())


class TestEnd:
    async def test_unwatched_run_ends_as_reported(self, tmp_path: Path) -> None:
        """A run that was never watched (it never started) ends exactly as the supervisor said."""
        end = RunEnd(0)
        assert await _quotas(tmp_path, _Stops()).end(MISSION, _run(), end) is end

    async def test_run_under_quota_keeps_its_output(self, tmp_path: Path) -> None:
        """A run that stayed under the quota ends as reported and its output stays."""
        quotas = _quotas(tmp_path, _Stops())
        output = quotas.store.artifacts_dir(MISSION) / "research.md"
        quotas.watch(MISSION, _run(), STEP, ())
        output.write_bytes(b"x" * 10)
        assert await quotas.end(MISSION, _run(), RunEnd(0)) == RunEnd(0)
        assert output.read_bytes() == b"x" * 10

    async def test_run_over_quota_at_its_end_fails_without_output(self, tmp_path: Path) -> None:
        """A run that wrote past the quota and exited before a count fails, and its output is removed."""
        quotas = _quotas(tmp_path, _Stops())
        output = quotas.store.artifacts_dir(MISSION) / "research.md"
        quotas.watch(MISSION, _run(), STEP, ())
        output.write_bytes(b"x" * (LIMIT + 1))
        end = await quotas.end(MISSION, _run(), RunEnd(0))
        assert end.stop is not None and end.exit_code == 0
        assert end.stop.message == (
            f"Step 'Research' was stopped: over the mission's disk quota: {LIMIT + 1} bytes > {LIMIT} "
            "(HAFLOW_MAX_MISSION_BYTES); its output research.md was removed. Continue to retry."
        )
        assert not output.exists()

    async def test_grown_folder_counts_only_its_growth(self, tmp_path: Path) -> None:
        """What a grown folder held when the run started does not count: only what the run added."""
        quotas = _quotas(tmp_path, _Stops())
        tree = tmp_path / "work-tree"
        tree.mkdir()
        (tree / "checkout").write_bytes(b"x" * (LIMIT * 5))
        quotas.watch(MISSION, _run(), STEP, (tree,))
        assert await quotas.end(MISSION, _run(), RunEnd(0)) == RunEnd(0)

    async def test_live_run_over_quota_is_stopped(self, tmp_path: Path) -> None:
        """A live run found over the quota is asked to stop, saying why; its end then removes the output."""
        stops = _Stops()
        quotas = _quotas(tmp_path, stops)
        output = quotas.store.artifacts_dir(MISSION) / "research.md"
        quotas.watch(MISSION, _run(), STEP, ())
        output.write_bytes(b"x" * (LIMIT * 2))
        await asyncio.wait_for(stops.called.wait(), 30)
        [(run, why)] = stops.asked
        assert run.run_id == RUN
        assert why.message.startswith("Step 'Research' was stopped: over the mission's disk quota")
        assert await quotas.end(MISSION, run, RunEnd(137, stop=why)) == RunEnd(137, stop=why)
        assert not output.exists()

    async def test_close_stops_every_watch(self, tmp_path: Path) -> None:
        """Closing leaves no watch behind: a run ending afterwards is not counted."""
        quotas = _quotas(tmp_path, _Stops())
        quotas.watch(MISSION, _run(), STEP, ())
        await quotas.close()
        (quotas.store.artifacts_dir(MISSION) / "research.md").write_bytes(b"x" * (LIMIT + 1))
        assert await quotas.end(MISSION, _run(), RunEnd(0)) == RunEnd(0)


class TestMessage:
    def test_step_without_output_keeps_what_it_wrote(self, tmp_path: Path) -> None:
        """For a step with no output artifact the message says its writing is left in place."""
        step = attrs.evolve(STEP, output_artifact=None, type=StepType.HUMAN_GATE, agent=None)
        message = _quotas(tmp_path, _Stops()).message(step, _run(), LIMIT + 5)
        assert "what it wrote in the work tree is still there" in message


class TestRemoveEntry:
    def test_folder_removed_and_link_not_followed(self, tmp_path: Path) -> None:
        """An output folder goes whole; an output that is a link goes without what it points to."""
        folder = tmp_path / "out"
        (folder / "deep").mkdir(parents=True)
        (folder / "deep" / "f").write_text("x")
        target = tmp_path / "target"
        target.mkdir()
        (target / "keep").write_text("x")
        link = tmp_path / "link"
        link.symlink_to(target)
        for path in (folder, link, tmp_path / "missing"):
            remove_entry(path)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]
        assert (target / "keep").read_text() == "x"
