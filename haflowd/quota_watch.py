"""The mission's disk quota, enforced while a step runs.

An agent writes straight to disk (its artifacts folder, a code mission's
work tree), so checks on the API's writes (:mod:`haflowd.quota`) cannot
stop it. A :class:`QuotaWatch` per live run counts those folders every
:data:`INTERVAL_SECONDS` (off the event loop, stopping early once over) and
calls back once they hold more than ``HAFLOW_MAX_MISSION_BYTES``; the
overshoot is what an agent writes in one interval.

A code mission's work tree starts as a checkout of the user's repository,
which may be larger than the quota: what it held when the run started is
the baseline, and only its growth counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

#: How often a live run's folders are counted.
INTERVAL_SECONDS = 0.5


def tree_bytes(folder: Path, limit: int | None = None) -> int:
    """Bytes under ``folder`` (sizes of every entry, links not followed).

    Iterative (any depth), and counting stops as soon as the total is over
    ``limit``. Entries that vanish or cannot be read while counting are skipped.
    """
    total = 0
    pending = [os.fspath(folder)]
    while pending:
        try:
            entries = os.scandir(pending.pop())
        except OSError:
            continue
        with entries:
            for entry in entries:
                try:
                    st = entry.stat(follow_symlinks=False)
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                total += st.st_size
                if is_dir:
                    pending.append(entry.path)
                if limit is not None and total > limit:
                    return total
    return total


OnOver = Callable[[int], Awaitable[None]]


@attrs.define
class QuotaWatch:
    """Counts one live run's folders until it ends, and reports once they are over ``limit``."""

    #: Counted whole (the artifacts folder).
    folders: tuple[Path, ...]
    #: Counted beyond what they held at the start (a code mission's work tree).
    grown: tuple[Path, ...]
    limit: int
    on_over: OnOver
    interval: float = INTERVAL_SECONDS
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _tripped: bool = attrs.field(default=False, init=False)
    _baseline: int | None = attrs.field(default=None, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    @property
    def tripped(self) -> bool:
        """Whether it found the run over its quota (and called back)."""
        return self._tripped

    async def check(self) -> int | None:
        """Count now (a run that just ended): the bytes used if over the limit, else ``None``."""
        baseline = self._baseline if self._baseline is not None else await self._measure_baseline()
        used = await asyncio.to_thread(self._used, baseline)
        return used if used > self.limit else None

    async def _measure_baseline(self) -> int:
        return sum([await asyncio.to_thread(tree_bytes, f) for f in self.grown])

    async def cancel(self) -> None:
        """Stop watching (idempotent); a watch that found the run over is left to finish its callback."""
        if self._task is not None and not self._task.done() and not self._tripped:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _used(self, baseline: int) -> int:
        budget = self.limit + baseline
        used = 0
        for folder in (*self.folders, *self.grown):
            used += tree_bytes(folder, budget - used)
            if used > budget:
                break
        return used - baseline

    async def _watch(self) -> None:
        baseline = self._baseline = await self._measure_baseline()
        while True:
            await asyncio.sleep(self.interval)
            used = await asyncio.to_thread(self._used, baseline)
            if used > self.limit:
                # The callback stops the run, whose end cancels this watch: not any more.
                self._tripped = True
                try:
                    await self.on_over(used)
                except Exception:
                    log.exception("quota.stop_failed")
                return
