"""Commands a person runs on a code mission (``run-command``): in a sandbox, on a copy of the work tree.

A command never runs on the host and never changes the mission's work tree
or branch: it gets a throwaway copy of the tree at ``/workspace``, no
network, and the agents' hardening. Its output streams into
``missions/<id>/executions/<exec-id>.log`` line by line; its record
(``<exec-id>.json``) survives a daemon restart, which re-attaches to a
command still running. One command at a time per mission, so a page
cannot fork-bomb the host.

A command runs code the agent wrote, so it is bounded like an agent step:
its time (``timeout_ms``, at most two hours), its log
(``HAFLOW_MAX_COMMAND_LOG_BYTES``: the rest is dropped), and its disk: a
:class:`~haflowd.quota_watch.QuotaWatch` counts the mission's artifacts
plus what the copy gained, and stops the command once over
``HAFLOW_MAX_MISSION_BYTES`` or ``HAFLOW_MAX_COMMAND_FILES`` new entries;
its copy is removed when it ends, whatever the end. A copy is refused when
it would take all code missions' folders over ``HAFLOW_MAX_WORKSPACE_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from .clock import utcnow
from .convert import converter, dumps
from .errors import Conflict, NotFound, SandboxError, StorageFull
from .ids import is_execution_id, new_execution_id
from .models import Execution, ExecutionStatus, Limits, MissionMeta
from .quota_watch import QuotaWatch, tree_bytes
from .sandbox.protocol import Mount, SandboxInfo, SandboxProvider, SandboxSpec
from .store import Store, atomic_write, read_tail

log = logging.getLogger(__name__)

EXECUTIONS = "executions"
#: The contract's ``output``: the last 256 Ki characters.
OUTPUT_CHARS = 256 * 1024
DEFAULT_TIMEOUT_MS = 10 * 60 * 1000
MAX_TIMEOUT_MS = 2 * 60 * 60 * 1000
COMMAND_LIMITS = Limits(memory="1g", cpus=1.0, pids=256)
#: Makes the copy of the work tree a command runs on (``None``: there is no work tree yet).
Snapshot = Callable[[MissionMeta, Path], Awaitable[Path | None]]


def workspace_bytes(store: Store, limit: int | None = None) -> int:
    """Bytes of all code missions' folders (clones, work trees, commands' copies); blocking.

    Counting stops once over ``limit``.
    """
    total = 0
    for meta in store.metas():
        if meta.project_id is None:
            continue
        total += tree_bytes(store.mission_dir(meta.mission_id), None if limit is None else limit - total)
        if limit is not None and total > limit:
            break
    return total


def check_workspace_room(store: Store, adding: int, cap: int) -> None:
    """Raise unless ``adding`` bytes keep all code missions' folders within ``cap``; blocking."""
    used = workspace_bytes(store, cap - adding)
    if used + adding > cap:
        raise StorageFull(
            f"Code workspaces would hold {used + adding} bytes (now {used}, {adding} more), over the limit of "
            f"{cap} (HAFLOW_MAX_WORKSPACE_BYTES): delete finished code missions first"
        )


def check_new_code_mission(store: Store, project_path: Path, cap: int) -> None:
    """Raise unless a new code mission on ``project_path`` fits under ``cap``; blocking.

    Its clone is made later, by its first code step: the repository's size
    now (work tree and git directory) is its estimate.
    """
    check_workspace_room(store, tree_bytes(project_path, cap), cap)


@attrs.define
class Executions:
    store: Store
    sandbox: SandboxProvider
    #: ``HAFLOW_MAX_MISSION_BYTES``: the artifacts plus what the copy gains.
    limit: int = 50 * 1024 * 1024
    #: ``HAFLOW_MAX_COMMAND_FILES``: entries the copy may gain.
    max_files: int = 100_000
    #: ``HAFLOW_MAX_COMMAND_LOG_BYTES``: output kept in the log.
    log_bytes: int = 16 * 1024 * 1024
    #: ``HAFLOW_MAX_WORKSPACE_BYTES``: all code missions' folders together.
    max_workspace_bytes: int | None = None
    _tasks: dict[str, asyncio.Task[None]] = attrs.field(factory=dict, init=False)
    #: The running command of each mission.
    _running: dict[str, str] = attrs.field(factory=dict, init=False)

    def _folder(self, mission_id: str) -> Path:
        return self.store.mission_dir(mission_id) / EXECUTIONS

    def _record(self, mission_id: str, exec_id: str) -> Path:
        if not is_execution_id(exec_id):
            raise NotFound(f"Execution not found: {exec_id}")
        return self._folder(mission_id) / f"{exec_id}.json"

    def _log(self, mission_id: str, exec_id: str) -> Path:
        return self._folder(mission_id) / f"{exec_id}.log"

    def _save(self, mission_id: str, execution: Execution) -> Execution:
        atomic_write(self._record(mission_id, execution.id), dumps(execution).encode())
        return execution

    def _load(self, mission_id: str, exec_id: str) -> Execution:
        try:
            data = self._record(mission_id, exec_id).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"Execution not found: {exec_id}") from None
        return converter.structure(json.loads(data), Execution)

    def get(self, mission_id: str, exec_id: str) -> Execution:
        """The execution with the end of its output (blocking reads: call off the loop)."""
        execution = self._load(mission_id, exec_id)
        return attrs.evolve(execution, output=read_tail(self._log(mission_id, exec_id), OUTPUT_CHARS))

    def running(self, mission_id: str) -> str | None:
        return self._running.get(mission_id)

    async def start(
        self, meta: MissionMeta, command: str, *, timeout_ms: int | None, image: str, snapshot: Snapshot
    ) -> Execution:
        """Copy the work tree and start ``command`` on the copy; the caller holds the mission's lock."""
        mission_id = meta.mission_id
        if mission_id in self._running:
            raise Conflict(f"A command is already running for this mission ({self._running[mission_id]})")
        timeout = min(timeout_ms or DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS) / 1000
        exec_id = new_execution_id()
        folder = self._folder(mission_id)
        folder.mkdir(exist_ok=True)
        copy = await snapshot(meta, folder / exec_id)
        if copy is None:
            raise Conflict("This mission has no work tree yet: run its first code step first")
        watch = self._quota(mission_id, exec_id)
        try:
            await watch.measure_baseline()
            if self.max_workspace_bytes is not None:
                # The copy is already there: counted with the rest.
                await asyncio.to_thread(check_workspace_room, self.store, 0, self.max_workspace_bytes)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, folder / exec_id, True)
            raise
        execution = self._save(
            mission_id,
            Execution(id=exec_id, command=command, status=ExecutionStatus.RUNNING, output="", started_at=utcnow()),
        )
        spec = SandboxSpec(
            mission_id=mission_id,
            run_id=exec_id,
            step_id="command",
            image=image,
            # The person's command runs in the sandbox's shell, never the host's.
            command=("/bin/sh", "-c", command),
            mounts=(Mount(copy, "/workspace", name="workspace"),),
            workdir="/workspace",
            limits=attrs.evolve(COMMAND_LIMITS, timeout_seconds=timeout),
        )
        self._running[mission_id] = exec_id
        try:
            sandbox_id = await self.sandbox.start(spec)
        except BaseException as exc:
            self._running.pop(mission_id, None)
            message = exc.message if isinstance(exc, SandboxError) else "internal error"
            self._log(mission_id, exec_id).write_text(f"[haflow] could not start: {message}\n")
            self._save(mission_id, attrs.evolve(execution, status=ExecutionStatus.FAILED, finished_at=utcnow()))
            shutil.rmtree(folder / exec_id, ignore_errors=True)
            if isinstance(exc, SandboxError):
                return self.get(mission_id, exec_id)
            raise
        execution = self._save(mission_id, attrs.evolve(execution, sandbox_id=sandbox_id))
        self._watch(mission_id, execution, timeout, skip=0, quota=watch)
        return execution

    def _stopper(self, mission_id: str, exec_id: str) -> Callable[[int], Awaitable[None]]:
        async def over(used: int) -> None:
            log.warning(
                "execution.over_quota", extra={"mission_id": mission_id, "execution_id": exec_id, "bytes": used}
            )
            with contextlib.suppress(Exception):
                execution = self._load(mission_id, exec_id)
                if execution.sandbox_id is not None:
                    await self.sandbox.stop(execution.sandbox_id)

        return over

    def _quota(self, mission_id: str, exec_id: str) -> QuotaWatch:
        """The command's watch: the mission's artifacts, plus what its folder (the copy) gains."""
        return QuotaWatch(
            folders=(self.store.artifacts_dir(mission_id),),
            grown=(self._folder(mission_id) / exec_id,),
            limit=self.limit,
            on_over=self._stopper(mission_id, exec_id),
            max_entries=self.max_files,
        )

    def _over_message(self, watch: QuotaWatch, used: int) -> str:
        if watch.over_entries():
            what = f"{watch.entries} new files > {self.max_files} (HAFLOW_MAX_COMMAND_FILES)"
        else:
            what = f"{used} bytes > {self.limit} (HAFLOW_MAX_MISSION_BYTES)"
        return (
            f"\n[haflow] stopped: over the mission's disk quota: {what}; "
            "its copy of the work tree was removed (the mission's work tree is untouched)\n"
        )

    def _watch(
        self, mission_id: str, execution: Execution, timeout: float, *, skip: int, quota: QuotaWatch | None = None
    ) -> None:
        self._running[mission_id] = execution.id
        quota = quota or self._quota(mission_id, execution.id)
        task = asyncio.create_task(
            self._follow(mission_id, execution, timeout, skip, quota), name=f"exec {execution.id}"
        )
        self._tasks[execution.id] = task

        def done(_: object) -> None:
            self._tasks.pop(execution.id, None)
            if self._running.get(mission_id) == execution.id:
                del self._running[mission_id]

        task.add_done_callback(done)

    async def _follow(
        self, mission_id: str, execution: Execution, limit_seconds: float, skip: int, quota: QuotaWatch
    ) -> None:
        assert execution.sandbox_id is not None
        sandbox_id = execution.sandbox_id
        status, code = ExecutionStatus.FAILED, None
        quota.start()
        try:
            with self._log(mission_id, execution.id).open("ab", buffering=0) as out:

                async def pump() -> None:
                    left = skip
                    room = self.log_bytes - skip
                    async for item in self.sandbox.output(sandbox_id):
                        if left:
                            if len(item) <= left:
                                left -= len(item)
                                continue
                            item, left = item[left:], 0
                        if room <= 0:
                            continue
                        if len(item) > room:
                            out.write(item[:room])
                            out.write(
                                f"\n[haflow] output cut at {self.log_bytes} bytes "
                                "(HAFLOW_MAX_COMMAND_LOG_BYTES); the rest was dropped\n".encode()
                            )
                            room = 0
                            continue
                        out.write(item)
                        room -= len(item)

                pumping = asyncio.create_task(pump())
                remaining = limit_seconds - (utcnow() - execution.started_at).total_seconds()
                try:
                    code = await asyncio.wait_for(self.sandbox.wait(sandbox_id), max(remaining, 0.001))
                except TimeoutError:
                    await self.sandbox.stop(sandbox_id)
                    code = await self.sandbox.wait(sandbox_id)
                    out.write(f"\n[haflow] stopped after its time limit of {limit_seconds:g} s\n".encode())
                await asyncio.wait({pumping}, timeout=10)
                pumping.cancel()
                tripped = quota.tripped
                await quota.cancel()
                # Over then, or now (it wrote past the quota and exited between two counts).
                used = await quota.check()
                status = ExecutionStatus.COMPLETED if code == 0 else ExecutionStatus.FAILED
                if tripped or used is not None:
                    out.write(self._over_message(quota, used or 0).encode())
                    status = ExecutionStatus.FAILED
        except asyncio.CancelledError:
            await quota.cancel()
            raise
        except Exception:
            await quota.cancel()
            log.exception("execution.watch_failed", extra={"mission_id": mission_id, "execution_id": execution.id})
        with contextlib.suppress(OSError, NotFound):
            self._save(
                mission_id,
                attrs.evolve(execution, status=status, exit_code=code, finished_at=utcnow()),
            )
        # Recorded as finished: the mission may run its next command while this sandbox is being removed.
        if self._running.get(mission_id) == execution.id:
            del self._running[mission_id]
        with contextlib.suppress(SandboxError):
            await self.sandbox.remove(sandbox_id)
        await asyncio.to_thread(shutil.rmtree, self._folder(mission_id) / execution.id, True)

    async def recover(self, found: dict[str, SandboxInfo]) -> set[str]:
        """Re-attach to commands still running after a restart; fail those whose sandbox is gone."""
        claimed: set[str] = set()
        for meta in self.store.metas():
            folder = self._folder(meta.mission_id)
            if not folder.is_dir():
                continue
            for record in folder.glob("exec-*.json"):
                with contextlib.suppress(Exception):
                    execution = self._load(meta.mission_id, record.stem)
                    if execution.status is not ExecutionStatus.RUNNING:
                        continue
                    info = found.get(execution.id)
                    if info is None or execution.sandbox_id is None:
                        self._save(
                            meta.mission_id,
                            attrs.evolve(execution, status=ExecutionStatus.FAILED, finished_at=utcnow()),
                        )
                        continue
                    claimed.add(execution.id)
                    log_path = self._log(meta.mission_id, execution.id)
                    skip = log_path.stat().st_size if log_path.exists() else 0
                    self._watch(meta.mission_id, execution, MAX_TIMEOUT_MS / 1000, skip=skip)
        return claimed

    async def stop(self, mission_id: str) -> None:
        """Stop the mission's running command, if any, and wait for its record."""
        exec_id = self._running.get(mission_id)
        if exec_id is None:
            return
        with contextlib.suppress(Exception):
            execution = self._load(mission_id, exec_id)
            if execution.sandbox_id is not None:
                await self.sandbox.stop(execution.sandbox_id)
        task = self._tasks.get(exec_id)
        if task is not None:
            await asyncio.shield(task)

    def settled(self, exec_id: str) -> bool:
        """Whether the command is over *and* cleaned up (its sandbox and its copy removed).

        Its mission is free for the next command as soon as the result is
        recorded, a little before this.
        """
        return exec_id not in self._tasks

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
