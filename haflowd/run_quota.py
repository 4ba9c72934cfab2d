"""Live runs held to their mission's disk quota.

A :class:`~haflowd.quota_watch.QuotaWatch` counts folders; :class:`RunQuotas`
decides what that means for a run. It starts one watch per live run (the
artifacts folder counted whole, the folders the workspace says a run may
grow counted by their growth), stops a run found over the quota, and when a
run ends counts once more (a run can write past the quota and exit between
two counts). A run over the quota fails and its output artifact is removed,
so the next step never reads a half-written or oversized file.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from .models import StepRun, WorkflowStep
from .quota_watch import QuotaWatch
from .store import Store
from .supervisor import RunEnd, Stop

log = logging.getLogger(__name__)

#: Stops a live run for a reason and returns once its end was reported.
StopRun = Callable[[StepRun, Stop], Awaitable[None]]


@attrs.define
class RunQuotas:
    """The disk quota watch of every live run, by run id."""

    store: Store
    #: ``HAFLOW_MAX_MISSION_BYTES``.
    limit: int
    stop: StopRun
    _watches: dict[str, tuple[QuotaWatch, WorkflowStep | None]] = attrs.field(factory=dict, init=False)

    def watch(self, mission_id: str, run: StepRun, step: WorkflowStep | None, grown: tuple[Path, ...]) -> None:
        """Hold ``run`` of ``step`` to the quota: the artifacts folder, plus the growth of ``grown``."""

        async def over(used: int) -> None:
            log.warning("run.over_quota", extra={"mission_id": mission_id, "run_id": run.run_id, "bytes": used})
            # Its end (reported before stop returns) removes the output.
            await self.stop(run, Stop(self.message(step, run, used)))

        watch = QuotaWatch(folders=(self.store.artifacts_dir(mission_id),), grown=grown, limit=self.limit, on_over=over)
        self._watches[run.run_id] = (watch, step)
        watch.start()

    async def end(self, mission_id: str, run: StepRun, end: RunEnd) -> RunEnd:
        """Stop watching a run that ended; over the quota (then or now), its output goes and it fails."""
        found = self._watches.pop(run.run_id, None)
        if found is None:
            return end
        watch, step = found
        await watch.cancel()
        if not watch.tripped:
            used = await watch.check() if end.stop is None and end.exit_code == 0 else None
            if used is None:
                return end
            # It wrote past the quota and exited before the next count.
            log.warning("run.over_quota", extra={"mission_id": mission_id, "run_id": run.run_id, "bytes": used})
            end = attrs.evolve(end, stop=Stop(self.message(step, run, used)))
        if step is not None and step.output_artifact:
            await asyncio.to_thread(remove_entry, self.store.artifacts_dir(mission_id) / step.output_artifact)
        return end

    async def close(self) -> None:
        """Stop every watch (the runs keep going; a restart watches them again)."""
        for watch, _ in list(self._watches.values()):
            await watch.cancel()
        self._watches.clear()

    def message(self, step: WorkflowStep | None, run: StepRun, used: int) -> str:
        """The mission's error for a run stopped over the quota, saying what became of its output."""
        if step is not None and step.output_artifact:
            aftermath = f"its output {step.output_artifact} was removed"
        else:
            aftermath = "what it wrote in the work tree is still there (nothing is cleaned up automatically)"
        return (
            f"Step '{step.name if step else run.step_id}' was stopped: over the mission's disk quota: "
            f"{used} bytes > {self.limit} (HAFLOW_MAX_MISSION_BYTES); {aftermath}. "
            "Continue to retry."
        )


def remove_entry(path: Path) -> None:
    """Remove a file, link or folder an agent left (never following a link)."""
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except FileNotFoundError:
        pass
    except OSError:
        log.exception("run.output_not_removed", extra={"path": str(path)})
