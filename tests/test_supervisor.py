"""A finished run's log holds exactly what the sandbox printed: reconciled with the stored output."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from haflowd import supervisor
from haflowd.agents.protocol import Outcome
from haflowd.clock import utcnow
from haflowd.models import StepRun
from haflowd.sandbox import SandboxSpec
from haflowd.store import Store
from haflowd.supervisor import (
    NOTE_PREFIX,
    Launch,
    Reconciled,
    RunEnd,
    Supervisor,
    _rebuild_readable,
    _reconcile_file,
)
from tests.conftest import create_mission, until, wait_status
from tests.e2e.test_docker_e2e import docker_config, instance, make_client, provider, write_agent
from tests.fakes import FakeSandbox

#: The real-Docker daemon fixtures this module shares with test_docker_e2e.
DOCKER_FIXTURES = (docker_config, instance, make_client, provider)

NOTES = f"{NOTE_PREFIX}preparing\n{NOTE_PREFIX}workspace ready\n".encode()


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
        monkeypatch.setattr(supervisor, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        path.write_bytes(NOTES + b"".join(followed))
        stored = lines(100)
        assert await _reconcile_file(stream(stored), path, len(NOTES)) is expected
        assert path.read_bytes() == NOTES + b"".join(stored)
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    @pytest.mark.parametrize("chunk", [7, 1 << 20])
    async def test_stored_output_missing_its_beginning(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
    ) -> None:
        """If the engine's stored output lost its beginning (rotated away), the followed log is kept, not cut."""
        monkeypatch.setattr(supervisor, "RECONCILE_CHUNK", chunk)
        path = tmp_path / "run.log"
        path.write_bytes(NOTES + b"".join(lines(100)))
        assert await _reconcile_file(stream(lines(40, 61)), path, len(NOTES)) is Reconciled.KEPT
        assert path.read_bytes() == NOTES + b"".join(lines(100))
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]

    async def test_rewrite_keeps_mode(self, tmp_path: Path) -> None:
        """A rewritten log keeps its permissions (the temp file is renamed over it)."""
        path = tmp_path / "run.log"
        path.write_bytes(b"a\nb\n")
        path.chmod(0o640)
        assert await _reconcile_file(stream([b"a\n", b"c\n"]), path, 0) is Reconciled.REWRITTEN
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
            await _reconcile_file(broken(), path, 0)
        assert path.read_bytes() == b"a\nb\n"
        assert [p.name for p in tmp_path.iterdir()] == ["run.log"]


class _Upper:
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
        parser = _Upper()
        _rebuild_readable(log_path, raw_path, keep, parser)
        assert log_path.read_bytes() == NOTES + b"A\nB\nC\n" + f"{NOTE_PREFIX}egress allowed: x:443\n".encode()
        assert parser.seen == ["a", "b", "c"]


class TestSupervisorReconciles:
    async def test_lossy_follow_is_repaired(
        self, client: TestClient, fake: FakeSandbox, home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A follower that drops and repeats lines while the run lives still leaves the exact log behind."""
        printed = FakeSandbox.output

        async def lossy(self: FakeSandbox, sandbox_id: str) -> AsyncIterator[bytes]:
            live = self.runs[sandbox_id].exit_code is None
            n = 0
            async for item in printed(self, sandbox_id):
                n += 1
                if live and n == 2:
                    continue  # lost
                yield item
                if live and n == 1:
                    yield item  # repeated

        monkeypatch.setattr(FakeSandbox, "output", lossy)
        mission_id = (await create_mission(client))["mission_id"]
        await client.post(f"/api/missions/{mission_id}/continue")
        found = await wait_status(client, mission_id, "waiting_human", "failed")
        run = fake.runs[next(iter(fake.runs))]
        log = home / "missions" / mission_id / "logs" / f"{found['runs'][0]['run_id']}.log"
        assert log.read_bytes().endswith(b"".join(run.lines))
        assert log.read_bytes().count(run.lines[0]) == 1


@attrs.define
class _Flaky:
    """A provider whose live output repeats its first line and loses its last; stored output is exact."""

    lines: list[bytes]
    exited: asyncio.Event = attrs.field(factory=asyncio.Event)

    async def output(self, sandbox_id: str) -> AsyncIterator[bytes]:
        if self.exited.is_set():
            for line in self.lines:
                yield line
            return
        for line in [self.lines[0], *self.lines[:-1]]:
            yield line

    async def start(self, spec: SandboxSpec) -> str:
        return "box-1"

    async def wait(self, sandbox_id: str) -> int:
        await asyncio.sleep(0.05)
        self.exited.set()
        return 0

    async def stop(self, sandbox_id: str, *, grace_seconds: float = 3.0) -> None:
        pass

    async def remove(self, sandbox_id: str) -> None:
        pass


class TestStructuredRebuild:
    async def test_events_and_readable_log_exact(self, tmp_path: Path) -> None:
        """For a structured agent the raw events are reconciled and the readable log rebuilt by a fresh parser."""
        store = Store(tmp_path / "missions")
        mission_id, run_id = "m-0000abcd", "r-0000abcd"
        (store.mission_dir(mission_id) / "logs").mkdir(parents=True)
        events = [b"one\n", b"two\n", b"three\n"]
        ended: list[RunEnd] = []

        async def on_end(mission_id: str, run: StepRun, end: RunEnd) -> None:
            ended.append(end)

        async def prepare(note: Any) -> SandboxSpec:
            note("preparing")
            return SandboxSpec(mission_id=mission_id, run_id=run_id, step_id="s", image="i", command=("x",))

        parser = _Upper()
        sup = Supervisor(store=store, sandbox=_Flaky(events), on_end=on_end)  # type: ignore[arg-type]
        run = StepRun(step_id="s", run_id=run_id, started_at=utcnow())
        sup.launch(Launch(mission_id, run, prepare, parser, structured=True, timeout_seconds=30))
        await until(lambda: _true(bool(ended)))
        assert store.events_path(mission_id, run_id).read_bytes() == b"".join(events)
        assert store.log_path(mission_id, run_id).read_bytes() == f"{NOTE_PREFIX}preparing\nONE\nTWO\nTHREE\n".encode()
        assert ended[0].exit_code == 0
        # The live parser saw the repeated line; the verdict comes from one that saw each event once.
        assert parser.seen == ["one", "one", "two"]
        assert ended[0].outcome is not None and ended[0].outcome.result == "one,two,three"


async def _true(value: bool) -> bool:
    return value


# -- real Docker ------------------------------------------------------------


def _digest(chunks: Iterable[bytes]) -> tuple[int, int, str]:
    """Bytes, lines and sha256 of a stream, computed chunk by chunk."""
    h = hashlib.sha256()
    size = count = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        count += chunk.count(b"\n")
    return size, count, h.hexdigest()


def _notes_end(path: Path) -> int:
    """Where the daemon's leading note lines end (without reading a long line whole)."""
    prefix = NOTE_PREFIX.encode()
    end = 0
    with path.open("rb") as f:
        while f.read(len(prefix)) == prefix:
            f.readline()
            end = f.tell()
    return end


def _file_chunks(path: Path, start: int = 0) -> Iterable[bytes]:
    with path.open("rb") as f:
        f.seek(start)
        while chunk := f.read(1 << 20):
            yield chunk


def _numbered(n: int) -> Iterable[bytes]:
    for start in range(1, n + 1, 10_000):
        yield "".join(f"{i}\n" for i in range(start, min(start + 10_000, n + 1))).encode()


def _long_line(size: int) -> Iterable[bytes]:
    block = b"x" * (1 << 20)
    left = size
    while left:
        yield block[: min(left, len(block))]
        left -= min(left, len(block))
    yield b"\n"


@pytest.mark.docker
class TestExactDockerLogs:
    @pytest.mark.timeout(600)
    @pytest.mark.parametrize(
        ("script", "expected"),
        [
            ("seq 1 1000000", lambda: _numbered(1_000_000)),
            ("head -c 200000000 /dev/zero | tr '\\0' x; echo", lambda: _long_line(200_000_000)),
        ],
        ids=["1M-short-lines", "200MB-line"],
    )
    async def test_log_is_exactly_the_output(
        self,
        make_client: Any,
        home: Path,
        script: str,
        expected: Any,
    ) -> None:
        """The run's log holds each byte the agent printed exactly once, rotation or not."""
        write_agent(home, "cleanup-agent", f'{script}; exec haflow-agent "$@" >/dev/null 2>&1', memory="256m")
        client = await make_client()
        mission_id = (await create_mission(client))["mission_id"]
        await client.post(f"/api/missions/{mission_id}/continue")
        found = await wait_status(client, mission_id, "waiting_human", "failed", timeout=500)
        assert found["status"] == "waiting_human", found.get("last_error")
        log = home / "missions" / mission_id / "logs" / f"{found['runs'][0]['run_id']}.log"
        assert _digest(_file_chunks(log, _notes_end(log))) == _digest(expected())
