"""Run supervision: start a step's sandbox, follow its output into the log, learn its exit.

The :class:`Supervisor` owns one task per live run. The task prepares the
step (a workspace may take a while), starts the sandbox, appends the
sandbox's output to the run's log as each line arrives, enforces the time
limit and, once the sandbox exited, reports a :class:`RunEnd` through the
``on_end`` callback the engine gave it. It never changes a mission: that is
the engine's job, and the callback keeps this module free of the engine.

Agents whose output is structured (JSON events) get two files: the raw
events (``logs/<run>.events.jsonl``) and the readable log the adapter's
parser makes of them (``logs/<run>.log``). Other agents' output is the log
(their parser still reads it, for the run's outcome).

Following a live sandbox is best effort (Docker 20.10's ``logs --follow``
drops or repeats output around json-file rotation), so once the sandbox
exited the supervisor *reconciles*: it reads the provider's complete stored
output again and makes the file, from ``run.output_offset`` on, equal to it
to the byte (appending what is missing, or rewriting the part that differs
through a temporary file renamed over it), streaming in bounded memory. When
the raw events changed, the readable log is rebuilt from them with a fresh
parser. The daemon's notes written before the output started are kept.

Secret values the run was given are replaced by :data:`REDACTED` in every
output line before it is written or parsed, so an agent that prints its API
key leaves no trace of it in the logs, the run's ``result`` or its error.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import enum
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

from .agents.protocol import Outcome, OutputParser
from .clock import utcnow
from .errors import HaflowError
from .models import StepRun
from .sandbox.protocol import SandboxError, SandboxInfo, SandboxProvider, SandboxSpec
from .store import Store
from .workspaces.protocol import LogLine

log = logging.getLogger(__name__)

#: How long to wait for the rest of a finished sandbox's output.
DRAIN_SECONDS = 10.0
#: How long close() lets removals of finished sandboxes take.
REMOVE_SECONDS = 10.0
#: The longest line handed to a parser whole; longer ones are shown as text.
MAX_EVENT_BYTES = 8 * 1024 * 1024
#: Lines the daemon itself writes into a run's log start with this.
NOTE_PREFIX = "[haflow] "
#: Bytes compared, copied or written per step when reconciling a log.
RECONCILE_CHUNK = 1024 * 1024
#: What a secret value an agent printed is replaced with.
REDACTED = b"[redacted]"


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
class RunLog:
    """The files one run's output goes to."""

    log_file: BinaryIO
    raw_file: BinaryIO | None
    log_path: Path | None = None
    raw_path: Path | None = None
    #: Size of the readable log when the sandbox's output began (structured
    #: agents): what a rebuild keeps. None when unknown (re-attached).
    readable_start: int | None = None
    #: Secret values, longest first (one that contains another goes whole).
    secrets: tuple[bytes, ...] = ()

    @classmethod
    def open(cls, store: Store, mission_id: str, run_id: str, *, structured: bool) -> RunLog:
        log_file = store.open_log(mission_id, run_id)
        raw = store.open_events(mission_id, run_id) if structured else None
        raw_path = store.events_path(mission_id, run_id) if structured else None
        return cls(log_file, raw, store.log_path(mission_id, run_id), raw_path)

    def keep_secret(self, values: Iterable[str]) -> None:
        """Redact ``values`` from every output line from now on."""
        found = {v.encode() for v in values if v} | set(self.secrets)
        self.secrets = tuple(sorted(found, key=len, reverse=True))

    def redact(self, item: bytes) -> bytes:
        # Output comes in whole lines (see sandbox/lines.py), so a value is
        # only missed if it straddles the cut of a line longer than the
        # provider's limit (1 MiB by default).
        for value in self.secrets:
            if value in item:
                item = item.replace(value, REDACTED)
        return item

    def note(self, text: str) -> None:
        for line in text.splitlines() or [""]:
            self.log_file.write(f"{NOTE_PREFIX}{line}\n".encode())

    def raw(self, item: bytes) -> None:
        (self.raw_file or self.log_file).write(item)

    def readable(self, lines: list[str]) -> None:
        if lines:
            self.log_file.write("".join(f"{line}\n" for line in lines).encode())

    def raw_size(self) -> int:
        return os.fstat((self.raw_file or self.log_file).fileno()).st_size

    def log_size(self) -> int:
        return os.fstat(self.log_file.fileno()).st_size

    def reopen(self) -> None:
        """Open the files again by path (after one was replaced by a rewrite)."""
        if self.log_path is not None:
            self.log_file.close()
            self.log_file = self.log_path.open("ab", buffering=0)
        if self.raw_file is not None and self.raw_path is not None:
            self.raw_file.close()
            self.raw_file = self.raw_path.open("ab", buffering=0)

    def close(self) -> None:
        self.log_file.close()
        if self.raw_file is not None:
            self.raw_file.close()


class Reconciled(enum.Enum):
    """What reconciling a log with the stored output did to it."""

    SAME = "same"
    APPENDED = "appended"
    REWRITTEN = "rewritten"
    #: The stored output does not begin as the log does: the engine dropped
    #: its beginning (its log rotation keeps a bounded amount), so the log,
    #: which has it, is kept as followed.
    KEPT = "kept"


class _Reconciler:
    """Makes a file, from ``start`` on, equal to a stream of bytes fed in order.

    Blocking (run it in a thread) and bounded in memory: each :meth:`feed`
    compares its chunk with the same stretch of the file. While they agree
    nothing is written. If the file ends first, the rest is appended; if it
    differs, the agreed part is copied to a temporary file in the same
    folder, the rest of the stream written after it, and :meth:`finish`
    renames it over the file. Extra bytes at the file's end are cut off.
    """

    def __init__(self, path: Path, start: int) -> None:
        self.path = path
        self.start = start
        self.matched = 0
        self.reader: BinaryIO | None = path.open("rb")
        self.reader.seek(start)
        self.sink: BinaryIO | None = None
        self.temp: Path | None = None
        self.result = Reconciled.SAME

    def feed(self, data: bytes) -> None:
        if self.result is Reconciled.KEPT:
            return
        if self.sink is not None:
            self.sink.write(data)
            return
        assert self.reader is not None
        have = self.reader.read(len(data))
        if have == data:
            self.matched += len(data)
            return
        same = _common_prefix(have, data)
        if self.matched == 0 and have and b"\n" not in data[:same]:
            # Different from the first line on. A follower reads from the
            # start and can only lose or repeat later, so this is the engine
            # having dropped the output's beginning.
            self.reader.close()
            self.reader = None
            self.result = Reconciled.KEPT
            return
        self.matched += same
        self.reader.close()
        self.reader = None
        if same == len(have):
            # The file ended here: the rest is simply missing.
            self.sink = self.path.open("ab")
            self.result = Reconciled.APPENDED
        else:
            self.sink = self._rewrite()
            self.result = Reconciled.REWRITTEN
        self.sink.write(data[same:])

    def _rewrite(self) -> BinaryIO:
        fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.temp = Path(name)
        sink = os.fdopen(fd, "wb")
        try:
            os.chmod(fd, os.stat(self.path).st_mode & 0o777)
            with self.path.open("rb") as src:
                left = self.start + self.matched
                while left and (chunk := src.read(min(left, RECONCILE_CHUNK))):
                    sink.write(chunk)
                    left -= len(chunk)
        except BaseException:
            sink.close()
            self.temp.unlink(missing_ok=True)
            raise
        return sink

    def finish(self) -> Reconciled:
        if self.reader is not None:
            extra = self.reader.read(1)
            self.reader.close()
            self.reader = None
            if extra:
                # Everything matched, but the file holds more: repeated output.
                os.truncate(self.path, self.start + self.matched)
                self.result = Reconciled.REWRITTEN
        if self.sink is not None:
            self.sink.flush()
            os.fsync(self.sink.fileno())
            self.sink.close()
            self.sink = None
            if self.temp is not None:
                os.replace(self.temp, self.path)
                self.temp = None
        return self.result

    def abort(self) -> None:
        for f in (self.reader, self.sink):
            if f is not None:
                f.close()
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)


def _common_prefix(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b`` (binary search over slices)."""
    lo, hi = 0, min(len(a), len(b))
    va, vb = memoryview(a), memoryview(b)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if va[lo:mid] == vb[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _rebuild_readable(log_path: Path, raw_path: Path, keep: int | None, parser: OutputParser) -> None:
    """Rewrite the readable log: its first ``keep`` bytes, then ``parser``'s lines for the raw events.

    With ``keep`` unknown (a re-attached run) the leading note lines are kept.
    Notes written while the run ran (egress decisions) follow the rebuilt lines.
    """
    overlong = f"{NOTE_PREFIX}an event longer than".encode()
    with log_path.open("rb") as old:
        if keep is None:
            keep = 0
            for line in old:
                if not line.startswith(NOTE_PREFIX.encode()):
                    break
                keep += len(line)
            old.seek(0)
        fd, name = tempfile.mkstemp(dir=log_path.parent, prefix=f".{log_path.name}.", suffix=".tmp")
        temp = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                os.chmod(fd, os.stat(log_path).st_mode & 0o777)
                left = keep
                while left and (chunk := old.read(min(left, RECONCILE_CHUNK))):
                    out.write(chunk)
                    left -= len(chunk)
                note = NOTE_PREFIX.encode()
                notes = [line for line in old if line.startswith(note) and not line.startswith(overlong)]
                with raw_path.open("rb") as raw:
                    for lines in _parse_stream(raw, parser):
                        out.write("".join(f"{line}\n" for line in lines).encode())
                out.writelines(notes)
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, log_path)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise


def _parse_stream(raw: BinaryIO, parser: OutputParser) -> Iterator[list[str]]:
    """Feed ``parser`` every line of ``raw`` as the pump would; yield its readable lines."""
    pending = bytearray()
    overflow = False
    while chunk := raw.read(RECONCILE_CHUNK):
        start = 0
        while start < len(chunk):
            nl = chunk.find(b"\n", start)
            end = len(chunk) if nl == -1 else nl
            if not overflow:
                pending += chunk[start:end]
                if len(pending) + (nl != -1) > MAX_EVENT_BYTES:
                    pending.clear()
                    overflow = True
            if nl == -1:
                break
            if overflow:
                yield [f"{NOTE_PREFIX}an event longer than {MAX_EVENT_BYTES} bytes was not parsed"]
            else:
                yield _feed(parser, bytes(pending))
            pending.clear()
            overflow = False
            start = nl + 1
    if pending:
        yield _feed(parser, bytes(pending))


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
                self._replay(mission_id, run.run_id, launch)
            log.info("run.reattached", extra={"mission_id": mission_id, "run_id": run.run_id, "log_bytes": already})
            await self._follow(launch, run, sandbox_id, output, skip_bytes=max(already, 0))
        finally:
            output.close()

    def _replay(self, mission_id: str, run_id: str, launch: Launch) -> None:
        if launch.structured:
            path = self.store.events_path(mission_id, run_id)
        else:
            path = self.store.log_path(mission_id, run_id)
        with path.open("rb") as f:
            for raw in f:
                # Plain output shares its file with the daemon's notes.
                if raw.endswith(b"\n") and not raw.startswith(NOTE_PREFIX.encode()):
                    launch.parser.feed(raw[:-1].decode("utf-8", errors="replace"))

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
            parser = await self._reconcile(launch, run, sandbox_id, output)
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

    async def _reconcile(self, launch: Launch, run: StepRun, sandbox_id: str, output: RunLog) -> OutputParser:
        """Make the run's files hold exactly the stored output; return the parser that saw it.

        A failure here (the engine gone, a full disk) keeps the followed log
        as it is: the run's result matters more than its log.
        """
        path = output.raw_path if launch.structured else output.log_path
        ids = {"mission_id": launch.mission_id, "run_id": run.run_id}
        if path is None:
            return launch.parser
        try:
            # The files hold redacted bytes: compare them with the stored output redacted alike.
            stored = _redacted(self.sandbox.output(sandbox_id), output)
            result = await _reconcile_file(stored, path, run.output_offset or 0)
        except (HaflowError, OSError) as exc:
            log.warning("run.reconcile_failed", extra={**ids, "error": str(exc)})
            return launch.parser
        if result is Reconciled.KEPT:
            log.warning("run.log_not_reconciled", extra={**ids, "reason": "stored output lost its beginning"})
        if result in (Reconciled.SAME, Reconciled.KEPT):
            return launch.parser
        log.info("run.log_reconciled", extra={**ids, "result": result.value})
        if not launch.structured or output.log_path is None or output.raw_path is None:
            output.reopen()
            return launch.parser
        if launch.spare_parser is None:
            # Nothing to rebuild with: the readable log stays as followed.
            return launch.parser
        parser = launch.spare_parser
        try:
            await asyncio.to_thread(_rebuild_readable, output.log_path, output.raw_path, output.readable_start, parser)
        except OSError as exc:
            log.warning("run.reconcile_failed", extra={**ids, "error": str(exc)})
            return launch.parser
        output.reopen()
        return parser

    async def _report(self, mission_id: str, run: StepRun, end: RunEnd) -> None:
        self._stops.pop(run.run_id, None)
        try:
            await self.on_end(mission_id, run, end)
        except Exception:
            log.exception("run.report_failed", extra={"mission_id": mission_id, "run_id": run.run_id})

    async def _pump(self, sandbox_id: str, output: RunLog, launch: Launch, skip_bytes: int) -> None:
        """Append the sandbox's output to the run's files as each line arrives."""
        parser = launch.parser
        pending = bytearray()
        overflow = False
        async for item in self.sandbox.output(sandbox_id):
            # Before skipping: the files hold redacted bytes, and redaction
            # of the same lines gives the same bytes again.
            item = output.redact(item)
            if skip_bytes:
                # Replayed from the start after a restart: drop what the
                # files already hold, to the byte.
                if len(item) <= skip_bytes:
                    skip_bytes -= len(item)
                    continue
                item, skip_bytes = item[skip_bytes:], 0
            output.raw(item)
            if not overflow:
                pending += item
                if len(pending) > MAX_EVENT_BYTES:
                    pending.clear()
                    overflow = True
            if item.endswith(b"\n"):
                if overflow:
                    readable = [f"{NOTE_PREFIX}an event longer than {MAX_EVENT_BYTES} bytes was not parsed"]
                else:
                    readable = _feed(parser, bytes(pending[:-1]))
                # Plain output is its own log; its parser only judges the run
                # (aider's usage, result and errors are in its text).
                if launch.structured:
                    output.readable(readable)
                pending.clear()
                overflow = False
        if pending:
            readable = _feed(parser, bytes(pending))
            if launch.structured:
                output.readable(readable)

    def _remove_soon(self, sandbox_id: str) -> None:
        async def remove() -> None:
            with contextlib.suppress(SandboxError):
                await self.sandbox.remove(sandbox_id)

        task = asyncio.create_task(remove(), name=f"remove {sandbox_id}")
        self._removals.add(task)
        task.add_done_callback(self._removals.discard)


async def _redacted(items: AsyncIterator[bytes], output: RunLog) -> AsyncIterator[bytes]:
    try:
        async for item in items:
            yield output.redact(item)
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def _reconcile_file(items: AsyncIterator[bytes], path: Path, start: int) -> Reconciled:
    """Make ``path`` from ``start`` on equal to ``items``, chunk by chunk, off the loop."""
    # Made here, not in a thread: a cancellation while a thread made it would
    # lose the object with its file open. Opening costs nothing that grows.
    rec = _Reconciler(path, start)
    try:
        batch = bytearray()
        async for item in items:
            batch += item
            if len(batch) >= RECONCILE_CHUNK:
                await asyncio.to_thread(rec.feed, bytes(batch))
                batch.clear()
                if rec.result is Reconciled.KEPT:
                    break
        if batch:
            await asyncio.to_thread(rec.feed, bytes(batch))
        return await asyncio.to_thread(rec.finish)
    except BaseException:
        await asyncio.shield(asyncio.to_thread(rec.abort))
        raise
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


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


def _feed(parser: OutputParser, line: bytes) -> list[str]:
    text = line.decode("utf-8", errors="replace")
    try:
        return list(parser.feed(text))
    except Exception:
        # A parser must not raise; if one does, the line still reaches the log.
        log.exception("run.parse_failed")
        return [text]


def _finish(parser: OutputParser, exit_code: int) -> Outcome:
    try:
        return parser.finish(exit_code)
    except Exception:
        log.exception("run.parse_failed")
        return Outcome(success=exit_code == 0)
