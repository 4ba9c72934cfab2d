"""The supervisor: moves missions through their workflow and watches agent runs.

One :class:`Engine` per daemon. It starts agent steps through a
:class:`~haflowd.sandbox.SandboxProvider`, copies their output line by line
into the run's log as it arrives, learns of the exit from the provider's
``wait``, records the run and advances or fails the mission. It knows
nothing of Docker.

A daemon restart loses nothing: sandboxes keep running without us; at
start-up :meth:`Engine.start` re-attaches to every run that has no
``finished_at`` (skipping the bytes its log already holds, so no line is
lost or doubled) or records the result of one that ended meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

import attrs

from .config import Config
from .errors import Conflict
from .ids import new_run_id
from .models import (
    RUNNING_STATUSES,
    AgentSpec,
    MissionMeta,
    MissionStatus,
    StepRun,
    StepType,
    Workflow,
    WorkflowStep,
)
from .sandbox.protocol import Limits, Mount, SandboxError, SandboxInfo, SandboxProvider, SandboxSpec
from .store import Store
from .catalog import Catalog, expand

log = logging.getLogger(__name__)

#: Exit code recorded for a run whose sandbox could not start (Docker's own
#: convention for "the container runtime failed").
EXIT_NOT_STARTED = 125
#: How long to wait for the rest of a finished sandbox's output.
DRAIN_SECONDS = 10.0
#: How long close() lets removals of finished sandboxes take.
REMOVE_SECONDS = 10.0


def utcnow() -> datetime:
    return datetime.now(UTC)


@attrs.define
class _Stop:
    """Why a run is being stopped on purpose."""

    message: str
    #: The mission was already moved on; only record the run.
    detached: bool = False


@attrs.define
class Engine:
    store: Store
    catalog: Catalog
    sandbox: SandboxProvider
    config: Config
    _locks: defaultdict[str, asyncio.Lock] = attrs.field(
        factory=lambda: defaultdict(asyncio.Lock), init=False
    )
    _watchers: dict[str, asyncio.Task[None]] = attrs.field(factory=dict, init=False)
    _stops: dict[str, _Stop] = attrs.field(factory=dict, init=False)
    _removals: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)

    # -- life cycle -------------------------------------------------------

    async def start(self) -> None:
        """Re-attach to runs in progress and remove sandboxes nobody owns."""
        try:
            found = {info.run_id: info for info in await self.sandbox.list()}
        except SandboxError as exc:
            log.warning("engine.sandbox_unavailable", extra={"error": exc.message})
            found = {}
        owned: set[str] = set()
        for meta in self.store.metas():
            if meta.status not in RUNNING_STATUSES:
                continue
            owned.update(await self._recover(meta, found))
        for info in found.values():
            if info.run_id not in owned and not (info.running and info.run_id in self._watchers):
                log.info("engine.orphan_removed", extra={"sandbox_id": info.sandbox_id, "run_id": info.run_id})
                with contextlib.suppress(SandboxError):
                    await self.sandbox.remove(info.sandbox_id)

    async def close(self) -> None:
        """Stop watching; sandboxes keep running and are re-attached next start."""
        tasks = list(self._watchers.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._watchers.clear()
        # Finished runs' containers: let their removal finish (a docker round
        # trip) rather than leave them to the next start.
        if self._removals:
            await asyncio.wait(self._removals, timeout=REMOVE_SECONDS)

    async def _recover(self, meta: MissionMeta, found: dict[str, SandboxInfo]) -> set[str]:
        runs = self.store.runs(meta.mission_id)
        open_runs = [r for r in runs if r.finished_at is None]
        if not open_runs:
            # The last run was recorded but the daemon died before the mission
            # moved on: finish the job now.
            last = runs[-1] if runs else None
            if last is not None and last.exit_code is not None:
                await self._conclude(meta.mission_id, last, None)
            else:
                await self._fail(meta.mission_id, "The daemon stopped while this step was starting; continue to retry.")
            return set()
        claimed: set[str] = set()
        for run in open_runs[:-1]:
            # Only the newest run can be current; older open ones are debris.
            self.store.save_run(meta.mission_id, attrs.evolve(run, finished_at=utcnow()))
        run = open_runs[-1]
        info = found.get(run.run_id)
        if info is None:
            self.store.save_run(meta.mission_id, attrs.evolve(run, finished_at=utcnow()))
            await self._fail(
                meta.mission_id,
                f"The sandbox of run {run.run_id} disappeared while the daemon was down; continue to retry.",
            )
            return claimed
        if run.container_id != info.sandbox_id:
            run = self.store.save_run(meta.mission_id, attrs.evolve(run, container_id=info.sandbox_id))
        claimed.add(run.run_id)
        log_path = self.store.log_path(meta.mission_id, run.run_id)
        already = log_path.stat().st_size if log_path.exists() else 0
        log.info("run.reattached", extra={"mission_id": meta.mission_id, "run_id": run.run_id, "log_bytes": already})
        self._watch(meta.mission_id, run, skip_bytes=already)
        return claimed

    # -- commands (one per API verb) ---------------------------------------

    def mission_lock(self, mission_id: str) -> asyncio.Lock:
        """The lock every change of one mission is made under.

        Raises 404 for an unknown mission, so requests naming random ids
        cannot grow the table of locks.
        """
        self.store.get(mission_id)
        return self._locks[mission_id]

    def workflow_of(self, meta: MissionMeta) -> Workflow:
        workflow = self.catalog.workflow(meta.workflow_id)
        if workflow is None:
            raise Conflict(f"Workflow {meta.workflow_id!r} is no longer defined")
        return workflow

    async def continue_mission(self, mission_id: str) -> None:
        """The contract's ``continue``: approve a gate, or (re)start an agent step."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if meta.status in RUNNING_STATUSES:
                raise Conflict("An agent step is already running for this mission")
            if meta.status is MissionStatus.COMPLETED:
                raise Conflict("Mission is already completed")
            workflow = self.workflow_of(meta)
            if meta.current_step >= len(workflow.steps):
                raise Conflict("Mission has no step left to continue")
            step = workflow.steps[meta.current_step]
            if step.type is StepType.HUMAN_GATE:
                log.info("gate.approved", extra={"mission_id": mission_id, "step_id": step.step_id})
                await self._advance(meta, workflow)
            else:
                await self._start_run(meta, step)

    async def cancel(self, mission_id: str) -> None:
        """Stop the running step; the mission fails and ``continue`` retries it."""
        run = await self._request_stop(mission_id, _Stop("Cancelled by user; continue to retry the step."))
        if run is None:
            raise Conflict("No agent step is running for this mission")

    async def mark_completed(self, mission_id: str) -> None:
        """Force the mission to ``completed``, stopping a running step first."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            workflow = self.catalog.workflow(meta.workflow_id)
            steps = len(workflow.steps) if workflow else meta.current_step
            run = self._running_run(mission_id) if meta.status in RUNNING_STATUSES else None
            if run is not None:
                self._stops[run.run_id] = _Stop("Mission marked completed", detached=True)
            self._save(meta, status=MissionStatus.COMPLETED, current_step=steps)
            log.info("mission.completed", extra={"mission_id": mission_id, "forced": True})
        if run is not None:
            await self._stop_and_wait(run)

    async def _request_stop(self, mission_id: str, why: _Stop) -> StepRun | None:
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if meta.status not in RUNNING_STATUSES:
                return None
            run = self._running_run(mission_id)
            if run is None:
                return None
            self._stops[run.run_id] = why
        await self._stop_and_wait(run)
        return run

    async def _stop_and_wait(self, run: StepRun) -> None:
        if run.container_id is not None:
            with contextlib.suppress(SandboxError):
                await self.sandbox.stop(run.container_id)
        watcher = self._watchers.get(run.run_id)
        if watcher is not None:
            await asyncio.shield(watcher)

    def _running_run(self, mission_id: str) -> StepRun | None:
        open_runs = [r for r in self.store.runs(mission_id) if r.finished_at is None]
        return open_runs[-1] if open_runs else None

    # -- state changes (callers hold the mission's lock) --------------------

    def _save(self, meta: MissionMeta, **changes: Any) -> MissionMeta:
        return self.store.save(attrs.evolve(meta, updated_at=utcnow(), **changes))

    async def _advance(self, meta: MissionMeta, workflow: Workflow) -> None:
        index = meta.current_step + 1
        if index >= len(workflow.steps):
            self._save(meta, status=MissionStatus.COMPLETED, current_step=len(workflow.steps), last_error=None)
            log.info("mission.completed", extra={"mission_id": meta.mission_id})
            return
        step = workflow.steps[index]
        if step.type is StepType.HUMAN_GATE:
            self._save(meta, status=MissionStatus.WAITING_HUMAN, current_step=index, last_error=None)
            log.info("mission.waiting_human", extra={"mission_id": meta.mission_id, "step_id": step.step_id})
        else:
            meta = self._save(meta, status=MissionStatus.READY, current_step=index, last_error=None)
            await self._start_run(meta, step)

    async def _start_run(self, meta: MissionMeta, step: WorkflowStep) -> None:
        mission_id = meta.mission_id
        agent = self.catalog.agents[step.agent or ""]
        run = StepRun(step_id=step.step_id, run_id=new_run_id(), started_at=utcnow())
        # Meta first: a crash before the run file exists is then seen at
        # start-up as "running without a run" and failed cleanly.
        meta = self._save(meta, status=MissionStatus.RUNNING_CODE_AGENT, last_error=None)
        try:
            self.store.save_run(mission_id, run)
            self.store.open_log(mission_id, run.run_id).close()
        except OSError as exc:
            log.exception("run.prepare_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
            self._fail_locked(meta, f"Step '{step.name}' could not start: cannot write its run files ({exc.strerror}).")
            return
        spec = self._spec(meta, step, agent, run.run_id)
        log.info(
            "run.starting",
            extra={"mission_id": mission_id, "run_id": run.run_id, "step_id": step.step_id, "image": spec.image},
        )
        try:
            sandbox_id = await self.sandbox.start(spec)
        except SandboxError as exc:
            self.store.save_run(mission_id, attrs.evolve(run, finished_at=utcnow(), exit_code=EXIT_NOT_STARTED))
            log.warning(
                "run.start_failed", extra={"mission_id": mission_id, "run_id": run.run_id, "error": exc.message}
            )
            self._fail_locked(meta, f"Step '{step.name}' could not start: {exc.message}")
            return
        run = attrs.evolve(run, container_id=sandbox_id)
        try:
            self.store.save_run(mission_id, run)
        except OSError:
            # Still watched; after a restart the sandbox is found by its labels.
            log.exception("run.save_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
        log.info("run.started", extra={"mission_id": mission_id, "run_id": run.run_id, "sandbox_id": sandbox_id})
        self._watch(mission_id, run, skip_bytes=0)

    def _spec(self, meta: MissionMeta, step: WorkflowStep, agent: AgentSpec, run_id: str) -> SandboxSpec:
        values = {
            "mission_id": meta.mission_id,
            "run_id": run_id,
            "step_id": step.step_id,
            "step_name": step.name,
            "agent_id": agent.agent_id,
            "input_artifact": step.input_artifact or "",
            "output_artifact": step.output_artifact or "",
        }
        return SandboxSpec(
            mission_id=meta.mission_id,
            run_id=run_id,
            step_id=step.step_id,
            image=agent.image or self.config.agent_image,
            command=tuple(expand(item, values) for item in agent.command),
            env=dict(agent.env),
            mounts=(Mount(self.store.artifacts_dir(meta.mission_id), "/mission/artifacts"),),
            workdir="/mission",
            network=agent.network,
            limits=Limits(
                memory=agent.memory,
                cpus=agent.cpus,
                pids=agent.pids_limit,
                timeout_seconds=agent.timeout_seconds,
            ),
        )

    def _fail_locked(self, meta: MissionMeta, message: str) -> None:
        self._save(
            meta,
            status=MissionStatus.FAILED,
            errors=(*meta.errors, message),
            last_error=message,
        )
        log.info("mission.failed", extra={"mission_id": meta.mission_id, "error": message})

    async def _fail(self, mission_id: str, message: str) -> None:
        async with self.mission_lock(mission_id):
            self._fail_locked(self.store.get(mission_id), message)

    # -- watching runs ----------------------------------------------------

    def _watch(self, mission_id: str, run: StepRun, *, skip_bytes: int) -> None:
        task = asyncio.create_task(self._supervise(mission_id, run, skip_bytes), name=f"run {run.run_id}")
        self._watchers[run.run_id] = task
        task.add_done_callback(lambda _: self._watchers.pop(run.run_id, None))

    async def _supervise(self, mission_id: str, run: StepRun, skip_bytes: int) -> None:
        assert run.container_id is not None
        sandbox_id = run.container_id
        timeout = self._timeout_of(mission_id, run)
        pump = asyncio.create_task(self._pump(mission_id, run.run_id, sandbox_id, skip_bytes))
        timed_out = False
        try:
            remaining = timeout - (utcnow() - run.started_at).total_seconds()
            try:
                exit_code = await asyncio.wait_for(self.sandbox.wait(sandbox_id), max(remaining, 0.001))
            except TimeoutError:
                timed_out = True
                log.info("run.timed_out", extra={"mission_id": mission_id, "run_id": run.run_id})
                await self.sandbox.stop(sandbox_id)
                exit_code = await self.sandbox.wait(sandbox_id)
            # A log that cannot be written (disk full) must not strand the
            # run: its result is still recorded below.
            await asyncio.wait({pump}, timeout=DRAIN_SECONDS)
            if pump.done() and not pump.cancelled() and (error := pump.exception()) is not None:
                log.error(
                    "run.log_failed",
                    exc_info=error,
                    extra={"mission_id": mission_id, "run_id": run.run_id},
                )
        except asyncio.CancelledError:
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            raise
        except Exception as exc:
            # The engine behind the sandbox went away mid-run, or worse: the
            # mission must still leave "running" so a person can retry.
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            if isinstance(exc, SandboxError):
                message = f"Lost the sandbox of step '{run.step_id}': {exc.message}"
            else:
                log.exception("run.watch_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
                message = f"Internal error while watching step '{run.step_id}' (see the daemon log); continue to retry."
            self.store.save_run(mission_id, attrs.evolve(run, finished_at=utcnow()))
            self._stops.pop(run.run_id, None)
            await self._fail(mission_id, message)
            return
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        run = self.store.save_run(mission_id, attrs.evolve(run, finished_at=utcnow(), exit_code=exit_code))
        log.info("run.finished", extra={"mission_id": mission_id, "run_id": run.run_id, "exit_code": exit_code})
        why = self._stops.pop(run.run_id, None)
        if timed_out and why is None:
            why = _Stop(f"Step '{run.step_id}' exceeded its time limit of {timeout:g} s and was stopped.")
        try:
            await self._conclude(mission_id, run, why)
        finally:
            # After the mission moved on: removing takes a docker round trip
            # the user need not wait for. close() lets it finish; if the
            # daemon dies first, the next start removes it (nobody owns it).
            self._remove_soon(sandbox_id)

    def _remove_soon(self, sandbox_id: str) -> None:
        async def remove() -> None:
            with contextlib.suppress(SandboxError):
                await self.sandbox.remove(sandbox_id)

        task = asyncio.create_task(remove(), name=f"remove {sandbox_id}")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)

    def _timeout_of(self, mission_id: str, run: StepRun) -> float:
        with contextlib.suppress(Exception):
            workflow = self.workflow_of(self.store.get(mission_id))
            step = next(s for s in workflow.steps if s.step_id == run.step_id)
            return self.catalog.agents[step.agent or ""].timeout_seconds
        return Limits().timeout_seconds

    async def _pump(self, mission_id: str, run_id: str, sandbox_id: str, skip_bytes: int) -> None:
        """Append the sandbox's output to the run's log as each line arrives."""
        with self.store.open_log(mission_id, run_id) as logfile:
            async for line in self.sandbox.output(sandbox_id):
                if skip_bytes:
                    # Replayed from the start after a restart: drop what the
                    # log already holds, to the byte.
                    if len(line) <= skip_bytes:
                        skip_bytes -= len(line)
                        continue
                    line, skip_bytes = line[skip_bytes:], 0
                logfile.write(line)

    async def _conclude(self, mission_id: str, run: StepRun, why: _Stop | None) -> None:
        """Move the mission on from a finished run: advance, or fail with a reason."""
        async with self.mission_lock(mission_id):
            meta = self.store.get(mission_id)
            if why is not None and why.detached:
                return
            workflow = self.workflow_of(meta)
            current = workflow.steps[meta.current_step] if meta.current_step < len(workflow.steps) else None
            if meta.status not in RUNNING_STATUSES or current is None or current.step_id != run.step_id:
                return
            if why is not None:
                self._fail_locked(meta, why.message)
            elif run.exit_code == 0:
                await self._advance(meta, workflow)
            else:
                self._fail_locked(meta, f"Step '{current.name}' failed: the agent exited with code {run.exit_code}.")
