"""Missions on disk: atomic writes, the index, log tails read from the end."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from haflowd import store as store_module
from haflowd.convert import dumps
from haflowd.models import MissionMeta, MissionStatus, MissionType, StepRun
from haflowd.store import Store, atomic_write, read_chunk, read_tail

NOW = datetime(2026, 1, 23, 10, 0, tzinfo=UTC)


def meta(mission_id: str = "m-0000000a", **changes: object) -> MissionMeta:
    values: dict[str, object] = {
        "mission_id": mission_id,
        "title": "t",
        "type": MissionType.FIX,
        "workflow_id": "standard-feature",
        "current_step": 0,
        "status": MissionStatus.READY,
        "created_at": NOW,
        "updated_at": NOW,
        "errors": (),
    }
    values.update(changes)
    return MissionMeta(**values)  # type: ignore[arg-type]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(tmp_path / "missions")
    s.load()
    return s


class TestAtomicWrite:
    def test_crash_before_rename_keeps_old_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """If the process dies between writing the temp file and renaming it, the old file is intact."""
        target = tmp_path / "mission.json"
        target.write_text('{"old": true}')

        def crash(*args: object) -> None:
            raise KeyboardInterrupt  # stands in for the process dying here

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            atomic_write(target, b'{"new": true}')
        assert target.read_text() == '{"old": true}'
        assert [p.name for p in tmp_path.iterdir()] == ["mission.json"]

    def test_crash_during_write_keeps_old_file(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failure while the data is being flushed leaves the old file and no temp file."""
        target = tmp_path / "run.json"
        target.write_text("old")

        def fail_fsync(fd: int) -> None:
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "fsync", fail_fsync)
        with pytest.raises(OSError, match="No space"):
            atomic_write(target, b"new" * 1000)
        assert target.read_text() == "old"
        assert [p.name for p in tmp_path.iterdir()] == ["run.json"]

    def test_save_failure_leaves_index_and_disk_unchanged(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """A failed save changes neither mission.json nor the in-memory index."""
        original = store.create(meta(), "input")
        monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk gone")))
        with pytest.raises(OSError):
            store.save(meta(status=MissionStatus.FAILED))
        assert store.get(original.mission_id) == original
        on_disk = json.loads((store.root / original.mission_id / "mission.json").read_text())
        assert on_disk["status"] == "ready"

    def test_failed_create_leaves_nothing(self, store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
        """A create that fails half-way leaves no mission folder behind."""
        real = store_module.atomic_write
        calls = []

        def second_fails(path: Path, data: bytes) -> None:
            calls.append(path)
            if len(calls) == 2:
                raise OSError("disk full")
            real(path, data)

        monkeypatch.setattr(store_module, "atomic_write", second_fails)
        with pytest.raises(OSError):
            store.create(meta(), "input")
        assert list(store.root.iterdir()) == []
        assert "m-0000000a" not in store


class TestIndex:
    def test_load_skips_unreadable_missions(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        """Corrupt, missing, mismatched and invalid mission.json files are skipped and logged."""
        root = tmp_path / "missions"
        good = meta("m-00000001")
        for mission_id, content in {
            "m-00000001": dumps(good),
            "m-00000002": "{half a fi",
            "m-00000003": dumps(meta("m-00000009")),
            "m-00000004": json.dumps({"mission_id": "m-00000004"}),
        }.items():
            (root / mission_id).mkdir(parents=True)
            (root / mission_id / "mission.json").write_text(content)
        (root / "m-00000005").mkdir()
        s = Store(root)
        assert s.load() == 1
        assert list(s.metas()) == [good]
        assert len([r for r in caplog.records if r.msg == "store.mission_skipped"]) == 4

    def test_version_changes_on_every_write(self, store: Store) -> None:
        """Each write bumps the index version that list caches key on."""
        v0 = store.version
        store.create(meta(), "x")
        v1 = store.version
        store.save(meta(title="new"))
        assert v0 < v1 < store.version
        assert store.get("m-0000000a").title == "new"

    def test_runs_sorted_oldest_first(self, store: Store) -> None:
        """Runs come back oldest first, whatever their file order."""
        store.create(meta(), "x")
        later = StepRun(step_id="b", run_id="r-00000001", started_at=NOW.replace(minute=5))
        earlier = StepRun(step_id="a", run_id="r-ffffffff", started_at=NOW)
        store.save_run("m-0000000a", later)
        store.save_run("m-0000000a", earlier)
        assert store.runs("m-0000000a") == [earlier, later]


class TestLogs:
    def test_tail_of_a_huge_sparse_log(self, tmp_path: Path) -> None:
        """The tail of a 1 GiB log is its last characters, read from the end."""
        path = tmp_path / "big.log"
        with path.open("wb") as f:
            f.truncate(1024**3)
            f.seek(0, os.SEEK_END)
            f.write(b"\nthe end of the log\n")
        tail = read_tail(path, 2000)
        assert len(tail) == 2000
        assert tail.endswith("\nthe end of the log\n")

    def test_tail_never_splits_into_garbage(self, tmp_path: Path) -> None:
        """Multi-byte characters at the cut do not break decoding."""
        path = tmp_path / "utf8.log"
        path.write_text("é" * 5000 + "fin")
        tail = read_tail(path, 10)
        assert tail == "é" * 7 + "fin"

    def test_appends_never_rewrite(self, store: Store) -> None:
        """Log writes append to what is there."""
        store.create(meta(), "x")
        for chunk in (b"one\n", b"two\n"):
            with store.open_log("m-0000000a", "r-00000001") as f:
                f.write(chunk)
        assert store.log_tail("m-0000000a", "r-00000001", 100) == "one\ntwo\n"

    def test_missing_log_is_empty(self, store: Store) -> None:
        """A run without a log file has an empty tail."""
        store.create(meta(), "x")
        assert store.log_tail("m-0000000a", "r-00000001", 100) == ""


class TestReadChunk:
    @pytest.mark.parametrize("limit", range(1, 12))
    @pytest.mark.parametrize("offset", [0, 1, 3])
    def test_ends_on_a_character_boundary(self, tmp_path: Path, limit: int, offset: int) -> None:
        """A chunk never ends inside a multi-byte character; the next read starts where it stopped."""
        data = "aé€😀b".encode()
        path = tmp_path / "r.log"
        path.write_bytes(data)
        chunk, size = read_chunk(path, offset, limit)
        assert size == len(data)
        assert data[offset:].startswith(chunk)
        assert len(chunk) <= limit
        rest = data[offset + len(chunk) :]
        assert not rest or (rest[0] & 0xC0) != 0x80

    def test_missing_file_is_empty(self, tmp_path: Path) -> None:
        """A run whose log does not exist yet reads as empty, size 0."""
        assert read_chunk(tmp_path / "none.log", 0, 10) == (b"", 0)


class TestTempFiles:
    def test_artifact_temp_files_stay_out_of_the_artifacts_folder(
        self, store: Store, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An artifact write killed before its rename leaves nothing in the folder agents see."""
        store.create(meta(), "input")
        artifacts = store.artifacts_dir("m-0000000a")

        def crash(*args: object) -> None:
            raise KeyboardInterrupt  # the process dies here

        monkeypatch.setattr(os, "replace", crash)
        with pytest.raises(KeyboardInterrupt):
            store.write_artifact("m-0000000a", "notes.md", "new")
        monkeypatch.undo()
        assert sorted(p.name for p in artifacts.iterdir()) == ["raw-input.md"]
        store.write_artifact("m-0000000a", "notes.md", "saved")
        assert (artifacts / "notes.md").read_text() == "saved"
        assert sorted(p.name for p in artifacts.iterdir()) == ["notes.md", "raw-input.md"]

    def test_load_removes_leftovers(self, store: Store) -> None:
        """Start-up removes temp files a crash left (ours only), staging folders and half-done creates and deletes."""
        store.create(meta(), "input")
        mission = store.mission_dir("m-0000000a")
        leftovers = [
            mission / ".tmp-0123456789abcdef",
            mission / "artifacts" / ".tmp-00000000000000aa",
            mission / "runs" / ".tmp-00000000000000bb",
            mission / ".staging" / ".tmp-00000000000000cc",
        ]
        for path in leftovers:
            path.parent.mkdir(exist_ok=True)
            path.write_text("half")
        (mission / "artifacts" / ".tmp-agent-folder").mkdir()  # an agent's own folder: left alone
        (store.root / ".new-m-0000000b" / "artifacts").mkdir(parents=True)
        (store.root / ".deleted-m-0000000c-abcd").mkdir()
        assert Store(store.root).load() == 1
        assert not [p for p in leftovers if p.exists()]
        assert not (mission / ".staging").exists()
        assert (mission / "artifacts" / ".tmp-agent-folder").is_dir()
        assert sorted(p.name for p in store.root.iterdir()) == ["m-0000000a"]
