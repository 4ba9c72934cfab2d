"""Where a daemon keeps its runs' egress sockets: a folder no other local user can prepare or change.

The root is ``HAFLOW_HOME/run``, created 0700 by the daemon. When sockets
under it would not fit ``sun_path`` (:data:`~.proxy.MAX_SOCKET_PATH`), it is
``$XDG_RUNTIME_DIR/haflow-<hash of HAFLOW_HOME>`` (the user's private runtime
folder), else a fresh ``mkdtemp`` folder whose name is remembered in
``HAFLOW_HOME/run.fallback`` so that a restarted daemon finds it again. Never
a predictable path in a shared folder.

Every folder is reached from ``/`` one component at a time with
``O_NOFOLLOW``: each folder above the root must belong to root or to the
daemon's user and be writable by nobody else (a sticky folder such as
``/tmp`` is fine), and the root itself must belong to the daemon's user with
mode 0700. Anything else is refused with :class:`~.errors.EgressUnavailable`
naming the path and the fix; nothing is ever chmodded or chowned by path.
A run's folder (``<root>/<run id>``, holding ``proxy.sock``) is made and
checked through the root's descriptor, so a symlink there is refused, never
followed.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
import threading
from pathlib import Path

from .errors import EgressUnavailable
from .proxy import MAX_SOCKET_PATH

__all__ = ["RUN_FOLDER", "SOCKET_NAME", "check_at_start", "remove_run_folder", "run_folder", "runtime_root"]

#: The root's name in HAFLOW_HOME.
RUN_FOLDER = "run"
#: The proxy's socket in a run's folder.
SOCKET_NAME = "proxy.sock"
#: The file in HAFLOW_HOME naming the temporary root, when HAFLOW_HOME/run is too long.
FALLBACK_POINTER = "run.fallback"
#: Room left in ``sun_path`` for a run's folder name (run ids are ``r-`` and 8 hex digits).
RUN_NAME_ROOM = 24
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC

#: The temporary root of providers that were given no HAFLOW_HOME (tests), one per process.
_PROCESS_ROOT: list[Path] = []
#: Runs starting at once (in threads) must agree on one temporary root.
_TEMPORARY_LOCK = threading.Lock()


def _fits(root: Path) -> bool:
    return len(os.fsencode(root)) + 1 + RUN_NAME_ROOM + 1 + len(SOCKET_NAME) <= MAX_SOCKET_PATH


def _check_above(fd: int, here: Path) -> None:
    st = os.fstat(fd)
    loose = st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX
    if st.st_uid not in (0, os.geteuid()) or loose:
        raise EgressUnavailable(
            f"The egress runtime folder's parent {here} can be changed by another local user "
            f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):04o}), who could swap the "
            f"daemon's sockets. Keep HAFLOW_HOME in a folder only you (or root) can write to "
            f"(chmod go-w -- {here})."
        )


def _walk(path: Path) -> int:
    """A descriptor of the existing folder ``path``, reached from ``/`` without following symlinks.

    It and each folder on the way must be changeable only by root or this
    user (or be sticky, like ``/tmp``).
    """
    fd = os.open("/", _OPEN_DIR)
    here = Path("/")
    try:
        _check_above(fd, here)
        for part in path.parts[1:]:
            try:
                child = os.open(part, _OPEN_DIR, dir_fd=fd)
            except OSError as e:
                raise EgressUnavailable(
                    f"The egress runtime folder's parent {here / part} cannot be opened as a folder "
                    f"without following symlinks ({e.strerror})."
                ) from None
            os.close(fd)
            fd, here = child, here / part
            _check_above(fd, here)
        return fd
    except BaseException:
        os.close(fd)
        raise


def _check_private(fd: int, path: Path) -> None:
    st = os.fstat(fd)
    uid = os.geteuid()
    if st.st_uid != uid:
        raise EgressUnavailable(
            f"The egress runtime folder {path} belongs to uid {st.st_uid}, not to this daemon's user "
            f"(uid {uid}): another local user may have prepared it to take over runs' network. "
            f"Remove it (as root: rm -rf -- {path}) and start haflowd again; it creates the folder itself."
        )
    if st.st_mode & 0o077:
        raise EgressUnavailable(
            f"The egress runtime folder {path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700 "
            f"(only this user). Check that nothing in it is someone else's, then chmod 700 -- {path} "
            f"(or remove it) and start haflowd again."
        )


def _open_private(path: Path, *, create: bool = True) -> int:
    """Open the folder ``path`` (absolute, without symlinks), created 0700 if missing; check it is private."""
    parent = _walk(path.parent)
    try:
        created = False
        if create:
            try:
                os.mkdir(path.name, 0o700, dir_fd=parent)
                created = True
            except FileExistsError:
                pass
        try:
            fd = os.open(path.name, _OPEN_DIR, dir_fd=parent)
        except OSError as e:
            raise EgressUnavailable(
                f"The egress runtime folder {path} is not a folder of its own ({e.strerror}); "
                f"remove it and start haflowd again."
            ) from None
    finally:
        os.close(parent)
    try:
        if created:
            os.fchmod(fd, 0o700)  # whatever the umask
        _check_private(fd, path)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _temporary(home: Path | None) -> Path:
    """A fresh ``mkdtemp`` root, remembered in HAFLOW_HOME (or this process) so it is found again."""
    with _TEMPORARY_LOCK:
        return _temporary_locked(home)


def _temporary_locked(home: Path | None) -> Path:
    if home is None:
        if _PROCESS_ROOT:
            with contextlib.suppress(EgressUnavailable, OSError):
                os.close(_open_private(_PROCESS_ROOT[0], create=False))
                return _PROCESS_ROOT[0]
        _PROCESS_ROOT[:] = [Path(os.path.realpath(tempfile.mkdtemp(prefix="haflow-run-")))]
        return _PROCESS_ROOT[0]
    home_fd = _walk(home)
    try:
        with contextlib.suppress(OSError, EgressUnavailable, UnicodeDecodeError):
            pointer = os.open(FALLBACK_POINTER, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=home_fd)
            try:
                named = Path(os.read(pointer, 4096).decode().strip())
            finally:
                os.close(pointer)
            if named.is_absolute() and _fits(named):
                # Someone else's folder of that name (made after a reboot) is refused here: a new one is made.
                os.close(_open_private(named, create=False))
                return named
        root = Path(os.path.realpath(tempfile.mkdtemp(prefix="haflow-run-")))
        scratch = f".{FALLBACK_POINTER}.{os.getpid()}"
        fd = os.open(
            scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=home_fd
        )
        try:
            os.write(fd, os.fsencode(root) + b"\n")
        finally:
            os.close(fd)
        os.rename(scratch, FALLBACK_POINTER, src_dir_fd=home_fd, dst_dir_fd=home_fd)
        return root
    finally:
        os.close(home_fd)


def runtime_root(home: Path | None) -> Path:
    """The root for HAFLOW_HOME ``home`` (None: a private one for this process), created and checked.

    Raises :class:`EgressUnavailable` naming the path and the fix when it, or a
    folder above it, is not the daemon's alone.
    """
    if home is not None:
        home = Path(os.path.realpath(home))
        preferred = home / RUN_FOLDER
        if _fits(preferred):
            os.close(_open_private(preferred))
            return preferred
        runtime = os.environ.get("XDG_RUNTIME_DIR", "")
        if os.path.isabs(runtime):
            digest = hashlib.sha256(os.fsencode(home)).hexdigest()[:12]
            candidate = Path(os.path.realpath(runtime)) / f"haflow-{digest}"
            if _fits(candidate):
                os.close(_open_private(candidate))
                return candidate
    root = _temporary(home)
    os.close(_open_private(root))
    return root


def check_at_start(home: Path) -> Path | None:
    """The start-up check, creating nothing: HAFLOW_HOME and the folders above it are writable by
    no one but root and this user, and an existing ``HAFLOW_HOME/run`` is this user's, 0700, not a symlink.

    Returns that folder if it exists. The root itself is made by the first
    networked run (:func:`runtime_root`), which checks it again, as it does
    a fallback root. Raises :class:`EgressUnavailable` naming the path and the fix.
    """
    home = Path(os.path.realpath(home))
    os.close(_walk(home))
    preferred = home / RUN_FOLDER
    if _fits(preferred) and os.path.lexists(preferred):
        os.close(_open_private(preferred, create=False))
        return preferred
    return None


def run_folder(root: Path, run_id: str) -> Path:
    """The folder of ``run_id``'s socket in ``root``, created 0700 through the root's descriptor.

    An existing one must be a real folder (a symlink is refused, never
    followed) of this user or of ``sidecar_uid``'s, open to nobody else.
    """
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise EgressUnavailable(f"Invalid run id for an egress folder: {run_id!r}")
    root_fd = _open_private(root, create=False)
    path = root / run_id
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(run_id, 0o700, dir_fd=root_fd)
        try:
            fd = os.open(run_id, _OPEN_DIR, dir_fd=root_fd)
        except OSError as e:
            raise EgressUnavailable(
                f"The run's egress folder {path} is not a folder ({e.strerror}); refusing it."
            ) from None
    finally:
        os.close(root_fd)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077:
            raise EgressUnavailable(
                f"The run's egress folder {path} has mode {stat.S_IMODE(st.st_mode):04o}, not 0700; refusing it."
            )
    finally:
        os.close(fd)
    return path


def remove_run_folder(root: Path, run_id: str) -> None:
    """Remove ``run_id``'s (empty) folder in ``root``; quiet if it is gone, not empty or not a folder."""
    with contextlib.suppress(OSError, EgressUnavailable):
        root_fd = _open_private(root, create=False)
        try:
            os.rmdir(run_id, dir_fd=root_fd)
        finally:
            os.close(root_fd)
