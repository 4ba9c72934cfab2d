"""One run's log files, kept to the byte.

Agents whose output is structured (JSON events) get two files: the raw
events (``logs/<run>.events.jsonl``) and the readable log the adapter's
parser makes of them (``logs/<run>.log``). Other agents' output is the log
(their parser still reads it, for the run's outcome). Lines the daemon
itself writes start with :data:`NOTE_PREFIX`.

A :class:`Follower` appends a live sandbox's output as it arrives. Following
is best effort (Docker 20.10's ``logs --follow`` drops or repeats output
around json-file rotation), so once the sandbox exited :meth:`RunLog.reconcile`
reads the provider's complete stored output again and makes the file, from
the run's ``output_offset`` on, equal to it to the byte (appending what is
missing, or rewriting the part that differs through a temporary file renamed
over it), streaming in bounded memory. When the raw events changed, the
readable log is rebuilt from them with a fresh parser. The daemon's notes
written before the output started are kept.

Secret values the run was given are replaced by :data:`REDACTED` in every
output line before it is written or parsed, so an agent that prints its API
key leaves no trace of it in the logs, the run's ``result`` or its error.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import tempfile
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

import attrs

from .agents.protocol import OutputParser
from .errors import HaflowError
from .store import Store

log = logging.getLogger(__name__)

#: The longest line handed to a parser whole; longer ones are shown as text.
MAX_EVENT_BYTES = 8 * 1024 * 1024
#: Lines the daemon itself writes into a run's log start with this.
NOTE_PREFIX = "[haflow] "
#: Bytes compared, copied or written per step when reconciling a log.
RECONCILE_CHUNK = 1024 * 1024
#: Stored output that does not begin like the log is spooled up to this size to find
#: where it overlaps the log's end (beyond it, the log is kept as followed).
SPOOL_LIMIT = 512 * 1024 * 1024
#: Places in the log's end tried as the start of that overlap.
OVERLAP_TRIES = 64
#: What a secret value an agent printed is replaced with.
REDACTED = b"[redacted]"
#: What the readable log shows instead of an event too long to parse.
OVERLONG = f"{NOTE_PREFIX}an event longer than {MAX_EVENT_BYTES} bytes was not parsed"


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

    def replay(self, parser: OutputParser) -> None:
        """Feed ``parser`` the output this run's files already hold (blocking: a re-attached run's usage so far)."""
        path = self.raw_path or self.log_path
        if path is None:
            return
        with path.open("rb") as f:
            for raw in f:
                # Plain output shares its file with the daemon's notes.
                if raw.endswith(b"\n") and not raw.startswith(NOTE_PREFIX.encode()):
                    parser.feed(raw[:-1].decode("utf-8", errors="replace"))

    async def reconcile(
        self,
        stored: AsyncIterator[bytes],
        start: int,
        parser: OutputParser,
        spare: OutputParser | None,
        ids: Mapping[str, str],
    ) -> OutputParser:
        """Make the files hold exactly the ``stored`` output from ``start`` on; return the parser that saw it.

        ``parser`` followed the run; ``spare`` has seen nothing and rebuilds
        the readable log if the raw events changed. A failure here (the
        engine gone, a full disk) keeps the followed log as it is: the run's
        result matters more than its log.
        """
        path = self.raw_path or self.log_path
        if path is None:
            return parser
        try:
            # The files hold redacted bytes: compare them with the stored output redacted alike.
            result = await reconcile_file(_redacted(stored, self), path, start)
        except (HaflowError, OSError) as exc:
            log.warning("run.reconcile_failed", extra={**ids, "error": str(exc)})
            return parser
        if result is Reconciled.KEPT:
            log.warning("run.log_not_reconciled", extra={**ids, "reason": "stored output lost its beginning"})
        if result in (Reconciled.SAME, Reconciled.KEPT):
            return parser
        log.info("run.log_reconciled", extra={**ids, "result": result.value})
        if self.raw_path is None or self.log_path is None:
            self.reopen()
            return parser
        if spare is None:
            # Nothing to rebuild with: the readable log stays as followed.
            return parser
        try:
            await asyncio.to_thread(rebuild_readable, self.log_path, self.raw_path, self.readable_start, spare)
        except OSError as exc:
            log.warning("run.reconcile_failed", extra={**ids, "error": str(exc)})
            return parser
        self.reopen()
        return spare


@attrs.define
class Follower:
    """Writes a live sandbox's output into a :class:`RunLog` as it arrives, feeding the parser whole lines."""

    output: RunLog
    parser: OutputParser
    #: Whether the parser's lines go to the readable log (plain output is its own log).
    structured: bool
    #: Output the files already hold (replayed from the start after a restart): dropped to the byte.
    skip_bytes: int = 0
    _pending: bytearray = attrs.field(factory=bytearray, init=False)
    _overflow: bool = attrs.field(default=False, init=False)

    def feed(self, item: bytes) -> None:
        """Take one item of output (a line, or the cut part of a long one)."""
        # Before skipping: the files hold redacted bytes, and redaction of
        # the same lines gives the same bytes again.
        item = self.output.redact(item)
        if self.skip_bytes:
            if len(item) <= self.skip_bytes:
                self.skip_bytes -= len(item)
                return
            item, self.skip_bytes = item[self.skip_bytes :], 0
        self.output.raw(item)
        if not self._overflow:
            self._pending += item
            if len(self._pending) > MAX_EVENT_BYTES:
                self._pending.clear()
                self._overflow = True
        if item.endswith(b"\n"):
            self._readable([OVERLONG] if self._overflow else feed(self.parser, bytes(self._pending[:-1])))
            self._pending.clear()
            self._overflow = False

    def finish(self) -> None:
        """The output ended: parse a last line without its newline."""
        if self._pending and not self._overflow:
            self._readable(feed(self.parser, bytes(self._pending)))
        self._pending.clear()

    def _readable(self, lines: list[str]) -> None:
        # Plain output is its own log; its parser only judges the run
        # (aider's usage, result and errors are in its text).
        if self.structured:
            self.output.readable(lines)


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
        #: The stored output, when it does not begin like the log (see :meth:`_append_missing_end`).
        self.spool: BinaryIO | None = None
        self.spool_path: Path | None = None
        self.result = Reconciled.SAME

    def feed(self, data: bytes) -> None:
        if self.result is Reconciled.KEPT:
            return
        if self.spool is not None:
            if self.spool.tell() + len(data) > SPOOL_LIMIT:
                self._drop_spool()
                self.result = Reconciled.KEPT
                return
            self.spool.write(data)
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
            # having dropped the output's beginning. The log is kept; only an
            # end the follower missed is added (once the whole stored output is in).
            self.reader.close()
            self.reader = None
            fd, name = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".stored")
            self.spool_path = Path(name)
            self.spool = os.fdopen(fd, "w+b")
            self.spool.write(data)
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
        if self.spool is not None:
            appended = self._append_missing_end(self.spool, 0)
            self._drop_spool()
            self.result = Reconciled.APPENDED if appended else Reconciled.KEPT
            return self.result
        if self.reader is not None:
            extra = self.reader.read(1)
            self.reader.close()
            self.reader = None
            if extra and self._ends_with(self.path, self.start, self.matched):
                # The stored output is the file's beginning *and* its end:
                # uniform or periodic output whose beginning the engine
                # rotated away. The follower saw it all; cutting the file to
                # the stored size would lose what it kept.
                self.result = Reconciled.KEPT
            elif extra:
                # Everything matched, but the file holds more: repeated output.
                os.truncate(self.path, self.start + self.matched)
                self.result = Reconciled.REWRITTEN
        if self.sink is not None:
            self.sink.flush()
            os.fsync(self.sink.fileno())
            self.sink.close()
            self.sink = None
            if self.temp is not None:
                stored = os.stat(self.temp).st_size - self.start
                if self._ends_with(self.temp, self.start, stored):
                    # The file already ends with the whole stored output: the
                    # engine kept only the output's end (rotation), which
                    # happened to begin like the file. Nothing was lost.
                    self.temp.unlink()
                    self.temp = None
                    self.result = Reconciled.KEPT
                elif self._rewrite_would_shorten(stored) and self._append_end_from_temp():
                    # Rotated output beginning like the file, whose end the
                    # follower missed: that end is added, nothing cut.
                    self.temp.unlink()
                    self.temp = None
                    self.result = Reconciled.APPENDED
                else:
                    os.replace(self.temp, self.path)
                    self.temp = None
        return self.result

    def _ends_with(self, source: Path, offset: int, length: int) -> bool:
        """Whether the file ends with ``length`` bytes of ``source`` from ``offset`` on (the stored output).

        Never shortening what the follower wrote: a file that already ends
        with the stored output has all the engine kept. Nothing stored at
        all counts too (an engine that kept nothing).
        """
        size = os.stat(self.path).st_size
        if size - self.start < length:
            return False
        left = length
        with source.open("rb") as a, self.path.open("rb") as b:
            a.seek(offset)
            b.seek(size - length)
            while left:
                n = min(left, RECONCILE_CHUNK)
                if a.read(n) != b.read(n):
                    return False
                left -= n
        return True

    def _rewrite_would_shorten(self, stored: int) -> bool:
        return self.start + stored < os.stat(self.path).st_size

    def _append_end_from_temp(self) -> bool:
        assert self.temp is not None
        with self.temp.open("rb") as src:
            return self._append_missing_end(src, self.start)

    def _drop_spool(self) -> None:
        if self.spool is not None:
            self.spool.close()
            self.spool = None
        if self.spool_path is not None:
            self.spool_path.unlink(missing_ok=True)
            self.spool_path = None

    def _append_missing_end(self, src: BinaryIO, offset: int) -> bool:
        """Add the stored output's end the follower missed; whether anything was added.

        ``src`` holds the stored output from ``offset`` to its end. The
        stored output is the output's end: where its beginning overlaps the
        log's end (the largest overlap, tried at up to :data:`OVERLAP_TRIES`
        line starts), the rest of it is what the follower missed. No overlap
        (the follower repeated or lost within it): nothing is added. Never
        shortens the log.
        """
        stored = src.seek(0, os.SEEK_END) - offset
        src.seek(offset)
        first = src.readline(64 * 1024)
        if not first.endswith(b"\n"):
            return False
        size = os.stat(self.path).st_size
        lo = max(self.start, size - stored)
        with self.path.open("rb") as log_file:
            for tries, at in enumerate(_line_starts(log_file, first, lo, size, self.start)):
                if tries >= OVERLAP_TRIES:
                    return False
                overlap = size - at
                if _same_bytes(log_file, at, src, offset, overlap):
                    if overlap == stored:
                        return False
                    src.seek(offset + overlap)
                    with self.path.open("ab") as out:
                        while chunk := src.read(RECONCILE_CHUNK):
                            out.write(chunk)
                        out.flush()
                        os.fsync(out.fileno())
                    return True
        return False

    def abort(self) -> None:
        for f in (self.reader, self.sink):
            if f is not None:
                f.close()
        if self.temp is not None:
            self.temp.unlink(missing_ok=True)
        self._drop_spool()


def _same_bytes(a: BinaryIO, a_at: int, b: BinaryIO, b_at: int, length: int) -> bool:
    """Whether ``length`` bytes of ``a`` from ``a_at`` equal those of ``b`` from ``b_at`` (read in chunks)."""
    a.seek(a_at)
    b.seek(b_at)
    while length:
        n = min(length, RECONCILE_CHUNK)
        if a.read(n) != b.read(n):
            return False
        length -= n
    return True


def _line_starts(f: BinaryIO, line: bytes, lo: int, hi: int, start: int) -> Iterator[int]:
    """Offsets in ``[lo, hi)`` of ``f``, in order, where a line equal to ``line`` begins."""
    at = lo
    while at < hi:
        # Each window begins one byte early, to see the newline before a match.
        base = max(at - 1, start)
        end = base + min(RECONCILE_CHUNK, hi - base)
        if end <= at:
            end = at + 1
        f.seek(base)
        window = f.read(end - base + len(line))
        i = window.find(line, at - base)
        while i != -1 and base + i < end:
            if base + i == start or window[i - 1 : i] == b"\n":
                yield base + i
            i = window.find(line, i + 1)
        at = end


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


def rebuild_readable(log_path: Path, raw_path: Path, keep: int | None, parser: OutputParser) -> None:
    """Rewrite the readable log: its first ``keep`` bytes, then ``parser``'s lines for the raw events.

    With ``keep`` unknown (a re-attached run) the leading note lines are kept.
    Notes written while the run ran (egress decisions) follow the rebuilt lines.
    """
    overlong = OVERLONG.encode()
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
                yield [OVERLONG]
            else:
                yield feed(parser, bytes(pending))
            pending.clear()
            overflow = False
            start = nl + 1
    if pending:
        yield feed(parser, bytes(pending))


async def _redacted(items: AsyncIterator[bytes], output: RunLog) -> AsyncIterator[bytes]:
    """``items`` with the run's secrets redacted, closing ``items`` however the reader stops."""
    try:
        async for item in items:
            yield output.redact(item)
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


async def reconcile_file(items: AsyncIterator[bytes], path: Path, start: int) -> Reconciled:
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


def feed(parser: OutputParser, line: bytes) -> list[str]:
    """The readable lines ``parser`` makes of one output line (the line itself if the parser raises)."""
    text = line.decode("utf-8", errors="replace")
    try:
        return list(parser.feed(text))
    except Exception:
        # A parser must not raise; if one does, the line still reaches the log.
        log.exception("run.parse_failed")
        return [text]
