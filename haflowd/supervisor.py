"""Run supervision: start a step's sandbox, follow its output into the log, learn its exit.

The :class:`Supervisor` owns one task per live run. The task prepares the
step (a workspace may take a while), starts the sandbox, has the sandbox's
output written into the run's log as each line arrives, enforces the time
limit and, once the sandbox exited, reports a :class:`RunEnd` through the
``on_end`` callback the engine gave it. It never changes a mission: that is
the engine's job, and the callback keeps this module free of the engine.

What the log files hold, to the byte (following, reconciling with the
provider's stored output, redacting secrets), is :mod:`haflowd.run_log`'s job.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import logging
from collections.abc import Awaitable, Callable, Iterable

import attrs

from .agents.protocol import Outcome, OutputParser
from .clock import utcnow
from .errors import HaflowError
from .models import StepRun
from .run_log import Follower, RunLog
from .sandbox.protocol import SandboxError, SandboxInfo, SandboxProvider, SandboxSpec
from .store import Store
from .workspaces.protocol import LogLine

log = logging.getLogger(__name__)

#: How long to wait for the rest of a finished sandbox's output.
DRAIN_SECONDS = 10.0
#: How long close() lets removals of finished sandboxes take.
REMOVE_SECONDS = 10.0


@attrs.frozen
class Stop:
    """Why a run is being stopped on purpose."""

    message: str
    #: The mission was already moved on; only record the run.
    detached: bool = False


class FailureKind(enum.StrEnum):
    NOT_STARTED = "not_started"
    LOST = "lost"
    INTERNAL = "internal"


@attrs.frozen
class Failure:
    kind: FailureKind
    detail: str = ""


@attrs.frozen
class RunEnd:
    """How a run ended, as the supervisor saw it."""

    #: ``None`` when the sandbox never started or was lost.
    exit_code: int | None
    outcome: Outcome | None = None
    #: Why there is no exit code: the sandbox did not start, was lost, or
    #: watching it failed.
    failure: Failure | None = None
    stop: Stop | None = None


@attrs.frozen
class Launch:
    """What the engine hands over to run one step."""

    mission_id: str
    run: StepRun
    #: Prepares the step's files and returns the sandbox to start.
    prepare: Callable[[LogLine], Awaitable[SandboxSpec]]
    parser: OutputParser
    structured: bool
    timeout_seconds: float
    #: A parser that has seen nothing (the supervisor copies ``parser``
    #: before use): it rebuilds the readable log if reconciling changed the events.
    spare_parser: OutputParser | None = None
    #: The secret values to redact when re-attaching after a restart (a
    #: fresh launch takes them from the prepared sandbox spec instead).
    known_secrets: Callable[[], Iterable[str]] = attrs.field(default=tuple)


OnEnd = Callable[[str, StepRun, RunEnd], Awaitable[None]]


@attrs.define
class Supervisor:
    store: Store
    sandbox: SandboxProvider
    on_end: OnEnd
    _watchers: dict[str, asyncio.Task[None]] = attrs.field(factory=dict, init=False)
    _stops: dict[str, Stop] = attrs.field(factory=dict, init=False)
    _removals: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)
    #: Sandboxes of live runs, known once started.
    _sandbox_of: dict[str, str] = attrs.field(factory=dict, init=False)

    # -- life cycle -------------------------------------------------------

    async def sandboxes(self) -> dict[str, SandboxInfo]:
        """Every labelled sandbox by run id (none if the engine cannot be reached)."""
        try:
            return {info.run_id: info for info in await self.sandbox.list()}
        except SandboxError as exc:
            log.warning("engine.sandbox_unavailable", extra={"error": exc.message})
            return {}

    async def remove_orphans(self, found: dict[str, SandboxInfo], owned: set[str]) -> None:
        for info in found.values():
            if info.run_id not in owned and info.run_id not in self._watchers:
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
        if self._removals:
            await asyncio.wait(self._removals, timeout=REMOVE_SECONDS)

    # -- runs -------------------------------------------------------------

    def is_watching(self, run_id: str) -> bool:
        return run_id in self._watchers

    def launch(self, launch: Launch) -> None:
        """Start the run in the background; its end reaches ``on_end``."""
        self._spawn(launch.run.run_id, self._launch(launch))

    def reattach(self, launch: Launch, sandbox_id: str) -> None:
        """Follow a run whose sandbox was started by an earlier daemon."""
        self._spawn(launch.run.run_id, self._reattach(launch, sandbox_id))

    async def stop(self, run: StepRun, why: Stop) -> None:
        """Stop a live run for ``why`` and wait until its end was reported."""
        self._stops.setdefault(run.run_id, why)
        sandbox_id = self._sandbox_of.get(run.run_id, run.sandbox_id)
        if sandbox_id is not None:
            with contextlib.suppress(SandboxError):
                await self.sandbox.stop(sandbox_id)
        watcher = self._watchers.get(run.run_id)
        if watcher is not None:
            await asyncio.shield(watcher)

    def _spawn(self, run_id: str, work: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        self._watchers[run_id] = task
        task.add_done_callback(lambda _: (self._watchers.pop(run_id, None), self._sandbox_of.pop(run_id, None)))

    async def _launch(self, launch: Launch) -> None:
        mission_id, run = launch.mission_id, launch.run
        launch = _with_spare_parser(launch)
        try:
            output = RunLog.open(self.store, mission_id, run.run_id, structured=launch.structured)
        except OSError as exc:
            await self._report(
                mission_id,
                run,
                RunEnd(None, failure=Failure(FailureKind.NOT_STARTED, f"cannot open its log ({exc.strerror})")),
            )
            return
        try:
            try:
                spec = await launch.prepare(output.note)
                output.keep_secret(spec.secrets.values())
                if (why := self._stops.get(run.run_id)) is not None:
                    await self._report(mission_id, run, RunEnd(None, stop=why))
                    return
                offset = output.raw_size()
                sandbox_id = await self.sandbox.start(spec)
            except HaflowError as exc:
                output.note(f"could not start: {exc.message}")
                log.warning(
                    "run.start_failed", extra={"mission_id": mission_id, "run_id": run.run_id, "error": exc.message}
                )
                await self._report(mission_id, run, RunEnd(None, failure=Failure(FailureKind.NOT_STARTED, exc.message)))
                return
            except OSError as exc:
                output.note(f"could not start: {exc.strerror}")
                await self._report(
                    mission_id, run, RunEnd(None, failure=Failure(FailureKind.NOT_STARTED, str(exc.strerror)))
                )
                return
            self._sandbox_of[run.run_id] = sandbox_id
            output.readable_start = output.log_size()
            run = attrs.evolve(run, sandbox_id=sandbox_id, output_offset=offset or None)
            try:
                self.store.save_run(mission_id, run)
            except OSError:
                # Still watched; after a restart the sandbox is found by its labels.
                log.exception("run.save_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
            log.info("run.started", extra={"mission_id": mission_id, "run_id": run.run_id, "sandbox_id": sandbox_id})
            if (why := self._stops.get(run.run_id)) is not None:
                with contextlib.suppress(SandboxError):
                    await self.sandbox.stop(sandbox_id)
            await self._follow(launch, run, sandbox_id, output, skip_bytes=0)
        finally:
            output.close()

    async def _reattach(self, launch: Launch, sandbox_id: str) -> None:
        mission_id, run = launch.mission_id, launch.run
        try:
            output = RunLog.open(self.store, mission_id, run.run_id, structured=launch.structured)
        except OSError as exc:
            await self._report(
                mission_id,
                run,
                RunEnd(None, failure=Failure(FailureKind.NOT_STARTED, f"cannot open its log ({exc.strerror})")),
            )
            return
        try:
            self._sandbox_of[run.run_id] = sandbox_id
            try:
                output.keep_secret(await asyncio.to_thread(launch.known_secrets))
            except Exception:
                log.exception("run.secrets_unknown", extra={"mission_id": mission_id, "run_id": run.run_id})
            already = output.raw_size() - (run.output_offset or 0)
            launch = _with_spare_parser(launch)
            if already:
                # Rebuild the parser's state (usage so far) from the output kept.
                await asyncio.to_thread(output.replay, launch.parser)
            log.info("run.reattached", extra={"mission_id": mission_id, "run_id": run.run_id, "log_bytes": already})
            await self._follow(launch, run, sandbox_id, output, skip_bytes=max(already, 0))
        finally:
            output.close()

    async def _follow(self, launch: Launch, run: StepRun, sandbox_id: str, output: RunLog, *, skip_bytes: int) -> None:
        mission_id = launch.mission_id
        pump = asyncio.create_task(self._pump(sandbox_id, output, launch, skip_bytes))
        end: RunEnd
        try:
            remaining = launch.timeout_seconds - (utcnow() - run.started_at).total_seconds()
            timed_out = False
            try:
                exit_code = await asyncio.wait_for(self.sandbox.wait(sandbox_id), max(remaining, 0.001))
            except TimeoutError:
                timed_out = True
                log.info("run.timed_out", extra={"mission_id": mission_id, "run_id": run.run_id})
                await self.sandbox.stop(sandbox_id)
                exit_code = await self.sandbox.wait(sandbox_id)
            # A log that cannot be written (disk full) must not strand the
            # run: its result is still recorded.
            await asyncio.wait({pump}, timeout=DRAIN_SECONDS)
            if pump.done() and not pump.cancelled() and (error := pump.exception()) is not None:
                log.error("run.log_failed", exc_info=error, extra={"mission_id": mission_id, "run_id": run.run_id})
            if not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            ids = {"mission_id": mission_id, "run_id": run.run_id}
            stored = self.sandbox.output(sandbox_id)
            parser = await output.reconcile(stored, run.output_offset or 0, launch.parser, launch.spare_parser, ids)
            why = self._stops.get(run.run_id)
            if timed_out and why is None:
                why = Stop(
                    f"Step '{run.step_id}' exceeded its time limit of {launch.timeout_seconds:g} s and was stopped."
                )
            end = RunEnd(exit_code, outcome=_finish(parser, exit_code), stop=why)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            if isinstance(exc, SandboxError):
                failure = Failure(FailureKind.LOST, exc.message)
            else:
                log.exception("run.watch_failed", extra={"mission_id": mission_id, "run_id": run.run_id})
                failure = Failure(FailureKind.INTERNAL)
            end = RunEnd(None, failure=failure, stop=self._stops.get(run.run_id))
        finally:
            if not pump.done():
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        log.info("run.finished", extra={"mission_id": mission_id, "run_id": run.run_id, "exit_code": end.exit_code})
        try:
            await self._report(mission_id, run, end)
        finally:
            # After the mission moved on: removal takes a round trip the user
            # need not wait for. close() lets it finish; if the daemon dies
            # first, the next start removes it (nobody owns it).
            self._remove_soon(sandbox_id)

    async def _report(self, mission_id: str, run: StepRun, end: RunEnd) -> None:
        self._stops.pop(run.run_id, None)
        try:
            await self.on_end(mission_id, run, end)
        except Exception:
            log.exception("run.report_failed", extra={"mission_id": mission_id, "run_id": run.run_id})

    async def _pump(self, sandbox_id: str, output: RunLog, launch: Launch, skip_bytes: int) -> None:
        """Append the sandbox's output to the run's files as each line arrives."""
        follower = Follower(output, launch.parser, launch.structured, skip_bytes)
        async for item in self.sandbox.output(sandbox_id):
            follower.feed(item)
        follower.finish()

    def _remove_soon(self, sandbox_id: str) -> None:
        async def remove() -> None:
            with contextlib.suppress(SandboxError):
                await self.sandbox.remove(sandbox_id)

        task = asyncio.create_task(remove(), name=f"remove {sandbox_id}")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)


def _with_spare_parser(launch: Launch) -> Launch:
    """``launch`` with an unused copy of its parser, for rebuilding the readable log."""
    if not launch.structured:
        return launch
    try:
        spare = copy.deepcopy(launch.parser)
    except Exception:
        log.warning("run.parser_not_copyable", extra={"run_id": launch.run.run_id})
        return launch
    return attrs.evolve(launch, spare_parser=spare)


def _finish(parser: OutputParser, exit_code: int) -> Outcome:
    try:
        return parser.finish(exit_code)
    except Exception:
        log.exception("run.parse_failed")
        return Outcome(success=exit_code == 0)
