"""Reading files an agent could have written: the only module that opens them.

An agent controls its artifacts folder (and a code mission's work tree)
while it runs and may swap a file for a symlink to a host secret, a FIFO
that blocks ``open()`` forever, or a 1 GiB blob. So every read here opens
with ``O_NOFOLLOW | O_NONBLOCK``, decides "regular file" with ``fstat`` on
the descriptor it then reads (no check-then-open race), and reads a bounded
amount. Callers run these functions off the event loop
(:func:`asyncio.to_thread`): they are plain blocking I/O.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Generator
from pathlib import Path

import attrs

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
_CHUNK = 1024 * 1024


class NotARegularFile(OSError):
    """The name exists but is a symlink, FIFO, socket, device or folder."""


@attrs.frozen
class Entry:
    """A regular file of a folder, as listed (it may change before it is read)."""

    name: str
    size: int


@attrs.frozen
class Read:
    """Up to ``limit`` bytes of a file, and whether there was more."""

    data: bytes
    size: int

    @property
    def truncated(self) -> bool:
        return self.size > len(self.data)


def open_regular(path: os.PathLike[str] | str) -> int:
    """Open ``path`` for reading if, and only if, it is a regular file; return the fd.

    Raises :class:`FileNotFoundError` if it does not exist and
    :class:`NotARegularFile` for anything else than a regular file.
    """
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR):
            # ELOOP: a symlink (O_NOFOLLOW); ENXIO: a socket; EISDIR is not
            # raised for O_RDONLY on Linux, but other systems differ.
            raise NotARegularFile(exc.errno, "not a regular file", str(path)) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotARegularFile(errno.EINVAL, "not a regular file", str(path))
        # Regular files ignore O_NONBLOCK, but clear it so reads never see EAGAIN.
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_bounded(path: os.PathLike[str] | str, limit: int) -> Read:
    """The first ``limit`` bytes of the regular file at ``path``, and its size."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        chunks: list[bytes] = []
        left = limit
        while left > 0:
            chunk = os.read(fd, min(left, _CHUNK))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        return Read(data=data, size=max(size, len(data)))
    finally:
        os.close(fd)


def read_range(path: os.PathLike[str] | str, offset: int, limit: int) -> Read:
    """Up to ``limit`` bytes from byte ``offset`` of a regular file, and its size."""
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        data = os.pread(fd, max(0, min(limit, size - offset)), offset) if offset < size else b""
        return Read(data=data, size=size)
    finally:
        os.close(fd)


def iter_chunks(path: os.PathLike[str] | str, chunk: int = 256 * 1024) -> Generator[bytes, None, None]:
    """A regular file's content in chunks, for streaming it whole."""
    fd = open_regular(path)
    try:
        while data := os.read(fd, chunk):
            yield data
    finally:
        os.close(fd)


def printable_name(name: str) -> bool:
    """Whether a file name can be shown as text (valid UTF-8, no control characters)."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False  # os.fsdecode's surrogate escapes: not UTF-8 on disk
    return not any(ord(c) < 32 or ord(c) == 127 for c in name)


def regular_files(folder: Path) -> list[Entry]:
    """The visible regular files of a folder, by name.

    Hidden names (our temp files, or an agent's), symlinks, FIFOs, folders and
    names that are not valid UTF-8 are left out.
    """
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found: list[Entry] = []
    for entry in entries:
        if entry.name.startswith(".") or not printable_name(entry.name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(st.st_mode):
            found.append(Entry(entry.name, st.st_size))
    return found


def is_regular(path: Path) -> bool:
    """Whether ``path`` itself (not a link's target) is a regular file."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False
