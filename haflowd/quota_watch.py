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
    return tree_usage(folder, limit)[0]


def tree_usage(folder: Path, limit: int | None = None, max_entries: int | None = None) -> tuple[int, int]:
    """Bytes and entries under ``folder``, as :func:`tree_bytes`; stops once over either limit."""
    try:
        root = os.open(folder, _DIR_FLAGS)
    except OSError:
        return 0, 0
    # Open base folders -> how many pending folders are named relative to each.
    users = {root: 1}
    pending: list[tuple[int, str]] = [(root, ".")]
    total = entries_seen = 0
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
                            entries_seen += 1
                            if stat.S_ISDIR(st.st_mode):
                                subfolders.append(entry.name)
                            if limit is not None and total > limit:
                                return total, entries_seen
                            if max_entries is not None and entries_seen > max_entries:
                                return total, entries_seen
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
    return total, entries_seen


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
    #: The most entries (files, folders, links) the ``grown`` folders may gain; ``None``: no cap.
    max_entries: int | None = None
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _tripped: bool = attrs.field(default=False, init=False)
    _baseline: tuple[int, int] | None = attrs.field(default=None, init=False)
    #: The entries the ``grown`` folders gained, as last counted.
    entries: int = attrs.field(default=0, init=False)

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch())

    async def measure_baseline(self) -> None:
        """Count the ``grown`` folders now (before the run starts), so every write after counts."""
        self._baseline = await self._measure_baseline()

    def over_entries(self) -> bool:
        """Whether the last count found more new entries than ``max_entries``."""
        return self.max_entries is not None and self.entries > self.max_entries

    @property
    def tripped(self) -> bool:
        """Whether it found the run over its quota (and called back)."""
        return self._tripped

    async def check(self) -> int | None:
        """Count now (a run that just ended): the bytes used if over the limit, else ``None``."""
        baseline = self._baseline if self._baseline is not None else await self._measure_baseline()
        used = await asyncio.to_thread(self._used, baseline)
        return used if used > self.limit or self.over_entries() else None

    async def _measure_baseline(self) -> tuple[int, int]:
        counts = [await asyncio.to_thread(tree_usage, f) for f in self.grown]
        return sum(c[0] for c in counts), sum(c[1] for c in counts)

    async def cancel(self) -> None:
        """Stop watching (idempotent); a watch that found the run over is left to finish its callback."""
        if self._task is not None and not self._task.done() and not self._tripped:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _used(self, baseline: tuple[int, int]) -> int:
        budget = self.limit + baseline[0]
        used = 0
        for folder in self.folders:
            used += tree_bytes(folder, budget - used)
            if used > budget:
                return used - baseline[0]
        entries = 0
        cap = None if self.max_entries is None else self.max_entries + baseline[1]
        for folder in self.grown:
            size, count = tree_usage(folder, budget - used, None if cap is None else cap - entries)
            used, entries = used + size, entries + count
            if used > budget or (cap is not None and entries > cap):
                break
        self.entries = entries - baseline[1]
        return used - baseline[0]

    async def _watch(self) -> None:
        if self._baseline is None:
            self._baseline = await self._measure_baseline()
        baseline = self._baseline
        while True:
            await asyncio.sleep(self.interval)
            used = await asyncio.to_thread(self._used, baseline)
            if used > self.limit or self.over_entries():
                # The callback stops the run, whose end cancels this watch: not any more.
                self._tripped = True
                try:
                    await self.on_over(used)
                except Exception:
                    log.exception("quota.stop_failed")
                return
