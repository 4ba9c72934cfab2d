"""A run's log files hold, to the byte, what the sandbox printed: followed, reconciled, rebuilt and redacted."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

import pytest

from haflowd import run_log
from haflowd.agents.protocol import Outcome
from haflowd.run_log import (
    NOTE_PREFIX,
    OVERLONG,
    REDACTED,
    Follower,
    Reconciled,
    RunLog,
    feed,
    rebuild_readable,
    reconcile_file,
)
from haflowd.store import Store

NOTES = f"{NOTE_PREFIX}preparing\n{NOTE_PREFIX}workspace ready\n".encode()
MISSION, RUN = "m-0000abcd", "r-0000abcd"


async def stream(items: Iterable[bytes]) -> AsyncIterator[bytes]:
    for item in items:
        yield item


def lines(n: int, start: int = 1) -> list[bytes]:
    return [f"line {i}\n".encode() for i in range(start, start + n)]


class TestReconcileFile:
    @pytest.mark.parametrize("chunk", [7, 64, 1 << 20])
    @pytest.mark.parametrize(
        ("followed", "expected"),
        [
            (lines(100), Reconciled.SAME),
            (lines(60), Reconciled.APPENDED),
            ([*lines(60)[:-1], b"line 6"], Reconciled.APPENDED),
            ([], Reconciled.APPENDED),
            (lines(50) + lines(20, 31) + lines(50, 51), Reconciled.REWRITTEN),
            (lines(30) + lines(40, 61), Reconciled.REWRITTEN),
            (lines(100) + lines(5, 96), Reconciled.REWRITTEN),
            ([*lines(40), b"garbage\n", *lines(60, 41)], Reconciled.REWRITTEN),
        ],
    )
    async def test_file_ends_equal_to_stored_output(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, followed: list[bytes], expected: Reconciled
    ) -> None:
        """Whatever the follower lost or repeated, the file ends as notes + the stored output, saying what it did."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        path.write_bytes(NOTES + b"".join(followed))
        stored = lines(100)
        assert await reconcile_file(stream(stored), path, len(NOTES)) is expected
        assert path.read_bytes() == NOTES + b"".join(stored)
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    async def test_stored_output_missing_its_beginning(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
    ) -> None:
        """If the engine's stored output lost its beginning (rotated away), the followed log is kept, not cut."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        path.write_bytes(NOTES + b"".join(lines(100)))
        assert await reconcile_file(stream(lines(40, 61)), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == NOTES + b"".join(lines(100))
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    @pytest.mark.parametrize("kept", [0, 1, 300])
    async def test_uniform_output_rotated_away_is_not_cut(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, kept: int
    ) -> None:
        """Identical lines whose beginning the engine rotated away leave the followed log whole, not cut short."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        same = [b"the same line, again and again\n"] * 1000
        path.write_bytes(NOTES + b"".join(same))
        assert await reconcile_file(stream(same[:kept]), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == NOTES + b"".join(same)

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    @pytest.mark.parametrize("kept", [0, 1, 7, 10, 300, 999])
    async def test_periodic_output_rotated_away_is_not_cut(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, kept: int
    ) -> None:
        """A counter modulo 10 whose beginning the engine rotated away, at any line, leaves the followed log whole."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        counter = [f"{i % 10}\n".encode() for i in range(1003)]
        path.write_bytes(NOTES + b"".join(counter))
        stored = counter[len(counter) - kept :]
        assert await reconcile_file(stream(stored), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == NOTES + b"".join(counter)
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    @pytest.mark.parametrize("kept", [2, 3, 50, 51])
    async def test_rotated_output_beginning_like_the_log_is_not_cut(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, kept: int
    ) -> None:
        """Stored output kept from a line the log also begins with (a repeated header line) leaves the log whole."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        output = [line for i in range(100) for line in (b"tick\n", f"{i}\n".encode())]
        path.write_bytes(NOTES + b"".join(output))
        assert await reconcile_file(stream(output[-kept:]), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == NOTES + b"".join(output)
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    async def test_rotated_output_restores_an_end_the_follower_missed(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
    ) -> None:
        """Stored output missing its beginning but reaching past the log's end adds just the missing end."""
        monkeypatch.setattr(run_log, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        output = [line for i in range(100) for line in (b"tick\n", f"{i}\n".encode())]
        path.write_bytes(NOTES + b"".join(output[:150]))
        assert await reconcile_file(stream(output[-80:]), path, len(NOTES)) is Reconciled.APPENDED
        assert path.read_bytes() == NOTES + b"".join(output)
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    async def test_rotated_output_not_matching_the_end_keeps_the_log(self, tmp_path: Path) -> None:
        """A log that repeated within the stored stretch is kept as followed: never shortened, nothing guessed."""
        path = tmp_path / "run.log"
        followed = NOTES + b"".join(lines(45) + lines(6, 43))
        path.write_bytes(followed)
        assert await reconcile_file(stream(lines(21, 40)), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == followed
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    async def test_repeated_output_is_still_cut(self, tmp_path: Path) -> None:
        """A follower that repeated the output's end is cut back to the stored output (it is not the file's end too)."""
        path = tmp_path / "run.log"
        path.write_bytes(b"".join(lines(100) + lines(5, 96)))
        assert await reconcile_file(stream(lines(100)), path, 0) is Reconciled.REWRITTEN
        assert path.read_bytes() == b"".join(lines(100))

    async def test_rewrite_keeps_mode(self, tmp_path: Path) -> None:
        """A rewritten log keeps its permissions (the temp file is renamed over it)."""
        path = tmp_path / "run.log"
        path.write_bytes(b"a\nb\n")
        path.chmod(0o640)
        assert await reconcile_file(stream([b"a\n", b"c\n"]), path, 0) is Reconciled.REWRITTEN
        assert path.read_bytes() == b"a\nc\n"
        assert path.stat().st_mode & 0o777 == 0o640

    async def test_failing_stream_leaves_no_temp_file(self, tmp_path: Path) -> None:
        """If the stored output cannot be read to its end, the log stays as followed and no temp file is left."""

        async def broken() -> AsyncIterator[bytes]:
            yield b"x\n"
            raise OSError("engine gone")

        path = tmp_path / "run.log"
        path.write_bytes(b"a\nb\n")
        with pytest.raises(OSError, match="engine gone"):
            await reconcile_file(broken(), path, 0)
        assert path.read_bytes() == b"a\nb\n"
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]


class Upper:
    """A parser that shows each event upper-cased; its verdict lists the events it saw."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def feed(self, line: str) -> Sequence[str]:
        self.seen.append(line)
        return [line.upper()]

    def finish(self, exit_code: int) -> Outcome:
        return Outcome(success=exit_code == 0, result=",".join(self.seen))


class TestRebuildReadable:
    @pytest.mark.parametrize("keep", [None, len(NOTES)])
    def test_readable_log_rebuilt_from_events(self, tmp_path: Path, keep: int | None) -> None:
        """The readable log becomes its leading notes, the parser's lines for every event, then notes from the run."""
        log_path, raw_path = tmp_path / "r.log", tmp_path / "r.events.jsonl"
        log_path.write_bytes(NOTES + b"A\nA\n" + f"{NOTE_PREFIX}egress allowed: x:443\n".encode() + b"B\n")
        raw_path.write_bytes(b"a\nb\nc")
        parser = Upper()
        rebuild_readable(log_path, raw_path, keep, parser)
        assert log_path.read_bytes() == NOTES + b"A\nB\nC\n" + f"{NOTE_PREFIX}egress allowed: x:443\n".encode()
        assert parser.seen == ["a", "b", "c"]


def open_log(tmp_path: Path, *, structured: bool) -> RunLog:
    """A run's files in a real store under ``tmp_path``."""
    store = Store(tmp_path / "missions")
    (store.mission_dir(MISSION) / "logs").mkdir(parents=True)
    return RunLog.open(store, MISSION, RUN, structured=structured)


class _Raising:
    """A parser that breaks its promise never to raise."""

    def feed(self, line: str) -> Sequence[str]:
        raise ValueError(line)

    def finish(self, exit_code: int) -> Outcome:
        return Outcome(success=True)


class TestFollower:
    def test_structured_output_goes_raw_and_readable(self, tmp_path: Path) -> None:
        """Raw events go to the events file as they came; the parser's lines, after the notes, to the readable log."""
        output = open_log(tmp_path, structured=True)
        output.note("preparing")
        follower = Follower(output, Upper(), structured=True)
        for item in (b"one\n", b"tw", b"o\n", b"three"):
            follower.feed(item)
        follower.finish()
        output.close()
        assert output.raw_path is not None and output.log_path is not None
        assert output.raw_path.read_bytes() == b"one\ntwo\nthree"
        assert output.log_path.read_bytes() == f"{NOTE_PREFIX}preparing\nONE\nTWO\nTHREE\n".encode()

    def test_plain_output_is_its_own_log(self, tmp_path: Path) -> None:
        """Plain output is written to the log as printed, and its parser still reads every line."""
        output = open_log(tmp_path, structured=False)
        parser = Upper()
        follower = Follower(output, parser, structured=False)
        follower.feed(b"a\n")
        follower.feed(b"b\n")
        follower.finish()
        output.close()
        assert output.log_path is not None and output.log_path.read_bytes() == b"a\nb\n"
        assert parser.seen == ["a", "b"]

    @pytest.mark.parametrize("skip", [0, 1, 2, 3, 5])
    def test_skip_drops_exactly_what_the_file_holds(self, tmp_path: Path, skip: int) -> None:
        """Re-attached with ``skip`` bytes already written, the file ends as if followed once from the start."""
        output = open_log(tmp_path, structured=False)
        output.raw(b"ab\ncd\n"[:skip])
        follower = Follower(output, Upper(), structured=False, skip_bytes=skip)
        for item in (b"ab\n", b"cd\n"):
            follower.feed(item)
        output.close()
        assert output.log_path is not None and output.log_path.read_bytes() == b"ab\ncd\n"

    def test_secrets_are_redacted_before_writing_and_parsing(self, tmp_path: Path) -> None:
        """A secret value the agent prints reaches neither file nor the parser; the longer of two goes whole."""
        output = open_log(tmp_path, structured=True)
        output.keep_secret(["sk-1", "sk-12345"])
        parser = Upper()
        follower = Follower(output, parser, structured=True)
        follower.feed(b"key=sk-12345 and sk-1\n")
        output.close()
        assert output.raw_path is not None
        assert output.raw_path.read_bytes() == b"key=" + REDACTED + b" and " + REDACTED + b"\n"
        assert parser.seen == [f"key={REDACTED.decode()} and {REDACTED.decode()}"]

    def test_overlong_event_is_noted_not_parsed(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """An event longer than the limit is kept raw, shown as a note, and the next event parses again."""
        monkeypatch.setattr(run_log, "MAX_EVENT_BYTES", 4)
        output = open_log(tmp_path, structured=True)
        parser = Upper()
        follower = Follower(output, parser, structured=True)
        for item in (b"abc", b"defg\n", b"ok\n"):
            follower.feed(item)
        output.close()
        assert output.log_path is not None
        assert output.log_path.read_bytes() == f"{OVERLONG}\nOK\n".encode()
        assert parser.seen == ["ok"]


class TestReplay:
    @pytest.mark.parametrize("structured", [True, False])
    def test_replay_feeds_whole_output_lines_only(self, tmp_path: Path, structured: bool) -> None:
        """Replaying after a restart feeds the parser every complete output line, never a note or a cut-off line."""
        output = open_log(tmp_path, structured=structured)
        output.note("preparing")
        output.raw(b"one\ntwo\nthr")
        parser = Upper()
        output.replay(parser)
        output.close()
        assert parser.seen == ["one", "two"]


class TestReconcile:
    async def test_same_output_keeps_the_followed_parser(self, tmp_path: Path) -> None:
        """When the files already hold the stored output, nothing is rewritten and the live parser's verdict stands."""
        output = open_log(tmp_path, structured=True)
        followed, spare = Upper(), Upper()
        Follower(output, followed, structured=True).feed(b"one\n")
        assert await output.reconcile(stream([b"one\n"]), 0, followed, spare, {}) is followed
        output.close()
        assert spare.seen == []

    async def test_changed_events_rebuild_the_readable_log(self, tmp_path: Path) -> None:
        """Events that differ from the stored output are repaired and the readable log rebuilt by the spare parser."""
        output = open_log(tmp_path, structured=True)
        output.note("preparing")
        output.readable_start = output.log_size()
        followed, spare = Upper(), Upper()
        follower = Follower(output, followed, structured=True)
        for item in (b"one\n", b"one\n", b"three\n"):
            follower.feed(item)
        assert await output.reconcile(stream([b"one\n", b"two\n", b"three\n"]), 0, followed, spare, {}) is spare
        # Reopened: what is written now lands in the new files.
        output.note("done")
        output.close()
        assert output.raw_path is not None and output.log_path is not None
        assert output.raw_path.read_bytes() == b"one\ntwo\nthree\n"
        assert output.log_path.read_bytes() == f"{NOTE_PREFIX}preparing\nONE\nTWO\nTHREE\n{NOTE_PREFIX}done\n".encode()

    async def test_plain_log_appended_after_the_notes(self, tmp_path: Path) -> None:
        """A plain log missing its last lines gets them appended after its offset, and later writes follow them."""
        output = open_log(tmp_path, structured=False)
        output.note("preparing")
        start = output.raw_size()
        parser = Upper()
        Follower(output, parser, structured=False).feed(b"one\n")
        assert await output.reconcile(stream([b"one\n", b"two\n"]), start, parser, None, {}) is parser
        output.note("done")
        output.close()
        assert output.log_path is not None
        assert output.log_path.read_bytes() == f"{NOTE_PREFIX}preparing\none\ntwo\n{NOTE_PREFIX}done\n".encode()

    async def test_unreadable_stored_output_keeps_the_log(self, tmp_path: Path) -> None:
        """If the stored output cannot be read, the followed log stays and the live parser's verdict stands."""

        async def broken() -> AsyncIterator[bytes]:
            yield b"x\n"
            raise OSError("engine gone")

        output = open_log(tmp_path, structured=False)
        parser = Upper()
        Follower(output, parser, structured=False).feed(b"a\n")
        assert await output.reconcile(broken(), 0, parser, Upper(), {}) is parser
        output.close()
        assert output.log_path is not None and output.log_path.read_bytes() == b"a\n"


class TestFeed:
    def test_a_raising_parser_still_shows_the_line(self) -> None:
        """A parser that raises does not lose the line: it reaches the log as text."""
        assert feed(_Raising(), "caf\u00e9".encode()) == ["caf\u00e9"]
