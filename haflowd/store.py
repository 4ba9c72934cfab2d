"""Missions on disk, and the in-memory index the daemon answers lists from.

Layout under the missions folder (the contract's)::

    <mission_id>/mission.json         MissionMeta
    <mission_id>/artifacts/<file>     raw-input.md, structured-text.md, ...
    <mission_id>/runs/<run_id>.json   StepRun
    <mission_id>/logs/<run_id>.log    the run's combined output
    <mission_id>/.staging/            temp files of artifacts being written (daemon-only)

Every JSON file and every artifact the daemon writes is replaced atomically
(temp file on the same file system, fsync, ``os.replace``), so a crash leaves
either the old or the new content, never a mixture. Artifacts are staged in
the mission's ``.staging`` folder, not in the artifacts folder agents see;
:meth:`Store.load` removes temp files a crash left behind. Logs are only appended
to. The daemon is the only writer of ``mission.json``, which is what lets
the index stay in memory.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import attrs

from . import agentfiles
from .convert import converter, dumps
from .errors import MissionNotFound, NotFound
from .ids import check_filename, is_mission_id, is_run_id
from .models import MissionMeta, StepRun

log = logging.getLogger(__name__)

MISSION_FILE = "mission.json"
ARTIFACTS = "artifacts"
RUNS = "runs"
LOGS = "logs"
PROMPTS = "prompts"
STAGING = ".staging"
#: How the temp files of :func:`atomic_write` are named.
TMP_PREFIX = ".tmp-"

#: The most of one artifact a mission's detail answer carries.
DETAIL_ARTIFACT_BYTES = 256 * 1024
#: The most of one artifact read into memory for rendering or an agent's prompt.
MAX_READ_BYTES = 5 * 1024 * 1024
TRUNCATED_MARKER = (
    "\n\n[haflow: truncated, showing {shown} of {size} bytes; "
    "GET /api/missions/<id>/artifacts/{name} returns the whole file]\n"
)


def _decode(data: bytes) -> str:
    # A cut may split a character: replace it rather than fail.
    return data.decode("utf-8", errors="replace")


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, staging: Path | None = None) -> None:
    """Replace ``path`` with ``data`` so that readers and crashes see all or nothing.

    The temp file is made beside ``path``, or in ``staging`` (a folder on the
    same file system) when ``path``'s folder is one others can see into.
    """
    # Hidden and short whatever the target is called (names may be 255 bytes).
    tmp = (staging or path.parent) / f"{TMP_PREFIX}{secrets.token_hex(8)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _write_record(path: Path, value: object) -> None:
    """Write one small JSON record (a mission or a run): a few hundred bytes, fine on the loop."""
    atomic_write(path, dumps(value).encode())


def _read_record(path: Path) -> bytes:
    """Read one small JSON record the daemon wrote itself."""
    return path.read_bytes()


def _fsync_dir(path: Path) -> None:
    # Makes the rename itself durable; not every platform allows it.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def read_tail(path: Path, chars: int) -> str:
    """The last ``chars`` characters of a UTF-8 text file, reading only its end."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            want = chars * 4  # the most bytes ``chars`` UTF-8 characters take
            f.seek(max(0, size - want))
            data = f.read(want)
    except FileNotFoundError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return text[-chars:]


def read_chunk(path: Path, offset: int, limit: int) -> tuple[bytes, int]:
    """Up to ``limit`` bytes of a log from byte ``offset``, ending on a whole UTF-8 character, and its size.

    The next read starts where this one stopped, so pages join to the file.
    A log that does not exist yet reads as empty.
    """
    try:
        read = agentfiles.read_range(path, offset, limit)
    except FileNotFoundError:
        return b"", 0
    data = read.data
    # Drop a character cut at the end: its first byte is a lead byte (11xxxxxx)
    # whose sequence is longer than what is left.
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            break
        if byte >= 0xC0:
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            if back < need:
                data = data[:-back]
            break
    return data, read.size


def _remove_leftovers(mission: Path) -> None:
    """Remove the temp files a crash left in one mission's folders (start-up only)."""
    shutil.rmtree(mission / STAGING, ignore_errors=True)
    for sub in ("", ARTIFACTS, RUNS, PROMPTS):
        try:
            entries = list(os.scandir(mission / sub))
        except OSError:
            continue
        for entry in entries:
            # Only our own pattern; an agent's folder of that name is left alone.
            if entry.name.startswith(TMP_PREFIX) and not entry.is_dir(follow_symlinks=False):
                try:
                    os.unlink(entry.path)
                except OSError:
                    pass
                else:
                    log.info("store.leftover_removed", extra={"path": entry.path})


@attrs.define
class Store:
    """Reads and writes missions under ``root``; owns the in-memory index."""

    root: Path
    _index: dict[str, MissionMeta] = attrs.field(factory=dict, init=False)
    #: Bumped on every change of any mission's meta; lets readers cache.
    version: int = attrs.field(default=0, init=False)

    # -- paths -------------------------------------------------------------

    def mission_dir(self, mission_id: str) -> Path:
        if not is_mission_id(mission_id):
            raise MissionNotFound(mission_id)
        return self.root / mission_id

    def artifacts_dir(self, mission_id: str) -> Path:
        return self.mission_dir(mission_id) / ARTIFACTS

    def log_path(self, mission_id: str, run_id: str) -> Path:
        if not is_run_id(run_id):
            raise NotFound(f"Run not found: {run_id}")
        return self.mission_dir(mission_id) / LOGS / f"{run_id}.log"

    def _run_path(self, mission_id: str, run_id: str) -> Path:
        return self.mission_dir(mission_id) / RUNS / f"{run_id}.json"

    # -- index ------------------------------------------------------------

    def load(self) -> int:
        """Build the index from disk; unreadable missions are logged and skipped."""
        self.root.mkdir(parents=True, exist_ok=True)
        self._index.clear()
        for entry in os.scandir(self.root):
            if entry.name.startswith((".new-", ".deleted-")):
                # A create or delete a crash interrupted: neither is a mission.
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            if not entry.is_dir(follow_symlinks=False) or not is_mission_id(entry.name):
                continue
            _remove_leftovers(Path(entry.path))
            meta = self._read_meta(Path(entry.path))
            if meta is not None:
                self._index[meta.mission_id] = meta
        self.version += 1
        return len(self._index)

    def _read_meta(self, folder: Path) -> MissionMeta | None:
        path = folder / MISSION_FILE
        try:
            meta = converter.structure(json.loads(path.read_bytes()), MissionMeta)
        except FileNotFoundError:
            log.warning("store.mission_skipped", extra={"path": str(folder), "reason": "no mission.json"})
            return None
        except Exception as exc:
            log.warning(
                "store.mission_skipped",
                extra={"path": str(folder), "reason": f"unreadable mission.json: {exc}"},
            )
            return None
        if meta.mission_id != folder.name:
            log.warning("store.mission_skipped", extra={"path": str(folder), "reason": "id mismatch"})
            return None
        return meta

    def metas(self) -> Iterator[MissionMeta]:
        return iter(list(self._index.values()))

    def get(self, mission_id: str) -> MissionMeta:
        try:
            return self._index[mission_id]
        except KeyError:
            raise MissionNotFound(mission_id) from None

    def __contains__(self, mission_id: object) -> bool:
        return mission_id in self._index

    # -- writes -----------------------------------------------------------

    def create(self, meta: MissionMeta, raw_input: str) -> MissionMeta:
        """Create a mission folder with ``raw-input.md``; all or nothing."""
        final = self.mission_dir(meta.mission_id)
        staging = self.root / f".new-{meta.mission_id}"
        try:
            for sub in (ARTIFACTS, RUNS, LOGS):
                (staging / sub).mkdir(parents=True)
            atomic_write(staging / ARTIFACTS / "raw-input.md", raw_input.encode())
            atomic_write(staging / MISSION_FILE, dumps(meta).encode())
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync_dir(self.root)
        self._remember(meta)
        return meta

    def save(self, meta: MissionMeta) -> MissionMeta:
        self.get(meta.mission_id)
        _write_record(self.mission_dir(meta.mission_id) / MISSION_FILE, meta)
        self._remember(meta)
        return meta

    def delete(self, mission_id: str) -> None:
        """Remove a mission's folder (clone included), first out of sight, then from disk."""
        self.get(mission_id)
        folder = self.mission_dir(mission_id)
        # Renamed first: a crash half-way leaves a hidden folder, never a
        # half-deleted mission that still loads.
        trash = self.root / f".deleted-{mission_id}-{secrets.token_hex(4)}"
        os.rename(folder, trash)
        del self._index[mission_id]
        self.version += 1
        shutil.rmtree(trash, ignore_errors=True)

    def remember(self, meta: MissionMeta) -> None:
        """Change the index only, when the disk refused to save ``meta`` (full, read-only).

        The file then lags behind; start-up repairs a mission it still shows running.
        """
        self.get(meta.mission_id)
        self._remember(meta)

    def _remember(self, meta: MissionMeta) -> None:
        self._index[meta.mission_id] = meta
        self.version += 1

    # -- artifacts --------------------------------------------------------

    def artifacts(self, mission_id: str, limit: int = DETAIL_ARTIFACT_BYTES) -> dict[str, str]:
        """Every visible artifact's text, each cut at ``limit`` bytes with a marker.

        Blocking I/O: the API calls it off the event loop.
        """
        found: dict[str, str] = {}
        folder = self.artifacts_dir(mission_id)
        for entry in agentfiles.regular_files(folder):
            try:
                read = agentfiles.read_bounded(folder / entry.name, limit)
            except OSError:
                continue  # swapped for a link, FIFO or folder since the listing
            text = _decode(read.data)
            if read.truncated:
                text += TRUNCATED_MARKER.format(shown=len(read.data), size=read.size, name=entry.name)
            found[entry.name] = text
        return found

    def artifact_path(self, mission_id: str, filename: str) -> Path:
        return self.artifacts_dir(mission_id) / check_filename(filename)

    def read_artifact(self, mission_id: str, filename: str, limit: int = MAX_READ_BYTES) -> str:
        """One artifact's text (at most ``limit`` bytes); 404 unless it is a regular file."""
        try:
            read = agentfiles.read_bounded(self.artifact_path(mission_id, filename), limit)
        except OSError:
            raise NotFound(f"Artifact not found: {filename}") from None
        text = _decode(read.data)
        if read.truncated:
            text += TRUNCATED_MARKER.format(shown=len(read.data), size=read.size, name=filename)
        return text

    def write_artifact(self, mission_id: str, filename: str, content: str) -> None:
        self.get(mission_id)
        folder = self.artifacts_dir(mission_id)
        target = folder / check_filename(filename)
        # An agent could have left a symlink or folder under that name; the
        # replace below swaps the link itself, never writes through it.
        if target.is_dir() and not target.is_symlink():
            raise NotFound(f"Artifact {filename} is a folder")
        # Staged outside the folder agents see, so a crash leaves nothing there.
        staging = self.mission_dir(mission_id) / STAGING
        staging.mkdir(mode=0o700, exist_ok=True)
        atomic_write(target, content.encode(), staging=staging)

    # -- runs and logs ----------------------------------------------------

    def runs(self, mission_id: str) -> list[StepRun]:
        folder = self.mission_dir(mission_id) / RUNS
        runs: list[StepRun] = []
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return runs
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            try:
                with open(entry.path, "rb") as f:
                    runs.append(converter.structure(json.loads(f.read()), StepRun))
            except Exception as exc:
                log.warning("store.run_skipped", extra={"path": entry.path, "reason": str(exc)})
        runs.sort(key=lambda r: (r.started_at, r.run_id))
        return runs

    def get_run(self, mission_id: str, run_id: str) -> StepRun:
        if not is_run_id(run_id):
            raise NotFound(f"Run not found: {run_id}")
        try:
            data = _read_record(self._run_path(mission_id, run_id))
        except FileNotFoundError:
            raise NotFound(f"Run not found: {run_id}") from None
        return converter.structure(json.loads(data), StepRun)

    def save_run(self, mission_id: str, run: StepRun) -> StepRun:
        _write_record(self._run_path(mission_id, run.run_id), run)
        return run

    def open_log(self, mission_id: str, run_id: str) -> BinaryIO:
        """The run's log, opened for appending raw bytes."""
        return self.log_path(mission_id, run_id).open("ab", buffering=0)

    def write_prompt(self, mission_id: str, run_id: str, text: str) -> Path:
        """Keep the prompt a run's agent reads on its standard input."""
        if not is_run_id(run_id):
            raise NotFound(f"Run not found: {run_id}")
        folder = self.mission_dir(mission_id) / PROMPTS
        folder.mkdir(exist_ok=True)
        path = folder / f"{run_id}.md"
        atomic_write(path, text.encode())
        return path

    def events_path(self, mission_id: str, run_id: str) -> Path:
        return self.log_path(mission_id, run_id).with_suffix(".events.jsonl")

    def open_events(self, mission_id: str, run_id: str) -> BinaryIO:
        """The run's raw agent events, opened for appending."""
        return self.events_path(mission_id, run_id).open("ab", buffering=0)

    def log_tail(self, mission_id: str, run_id: str, chars: int) -> str:
        return read_tail(self.log_path(mission_id, run_id), chars)
