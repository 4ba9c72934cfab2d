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
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

log = logging.getLogger(__name__)

#: How often a live run's folders are counted.
INTERVAL_SECONDS = 0.5


#: Relative paths longer than this start again from a descriptor of their folder.
_REBASE_CHARS = 2048
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def tree_bytes(folder: Path, limit: int | None = None) -> int:
    """Bytes under ``folder`` (sizes of every entry, links not followed).

    Iterative and relative to folder descriptors, so any depth is counted
    (deeper than the recursion limit or the longest path the kernel takes:
    nothing hides down there), and counting stops as soon as the total is
    over ``limit``. Entries that vanish while counting are skipped.
    """
    try:
        root = os.open(folder, _DIR_FLAGS)
    except OSError:
        return 0
    # Open base folders -> how many pending folders are named relative to each.
    users = {root: 1}
    pending: list[tuple[int, str]] = [(root, ".")]
    total = 0
    try:
        while pending:
            base, rel = pending.pop()
            try:
                try:
                    fd = os.open(rel, _DIR_FLAGS, dir_fd=base)
                except OSError:
                    continue
                try:
                    subfolders: list[str] = []
                    with os.scandir(fd) as entries:
                        for entry in entries:
                            try:
                                st = entry.stat(follow_symlinks=False)
                            except OSError:
                                continue
                            total += st.st_size
                            if stat.S_ISDIR(st.st_mode):
                                subfolders.append(entry.name)
                            if limit is not None and total > limit:
                                return total
                    if subfolders:
                        if len(rel) > _REBASE_CHARS:
                            child_base, prefix = os.dup(fd), ""
                            users[child_base] = 0
                        else:
                            child_base, prefix = base, f"{rel}/"
                        users[child_base] += len(subfolders)
                        pending.extend((child_base, prefix + name) for name in subfolders)
                finally:
                    os.close(fd)
            finally:
                users[base] -= 1
                if users[base] == 0:
                    del users[base]
                    os.close(base)
    finally:
        for fd in users:
            os.close(fd)
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
