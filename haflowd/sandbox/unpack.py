"""Unpacking what a sandbox wrote back onto the daemon's disk, safely.

A remote engine hands a writable mount back as a tar stream (``docker cp
ctr:/target -``). The agent controlled every byte of it, so the archive is
treated as hostile: member count and total size are capped, every name must
lie under the archive's top folder, links that point out of it and special
files are dropped (:func:`tarfile.data_filter`), and nothing reaches the
destination until the whole archive has been unpacked next to it.
"""

from __future__ import annotations

import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
from collections.abc import Collection
from pathlib import Path

from ..errors import SandboxError

logger = logging.getLogger(__name__)

#: Largest archive (sum of member sizes) taken back from a sandbox.
MAX_BYTES = 1024 * 1024 * 1024
#: Most members an archive taken back from a sandbox may hold.
MAX_MEMBERS = 100_000


#: Whether :func:`tarfile.data_filter` resolves paths safely here. Before the
#: fixes of June 2025 (CVE-2025-4517 and its siblings, which brought
#: ``os.path.ALLOW_MISSING``) a chain of symlinks climbing with ``..`` could
#: lead it to let a write out of the destination. Without the fixes, a
#: symlink whose target has a ``..`` is left out: links that only descend
#: cannot leave the folder they are in, however they are chained.
REALPATH_IS_SAFE = hasattr(os.path, "ALLOW_MISSING")


class UnpackError(SandboxError):
    """The archive a sandbox handed back breaks a limit or holds a bad name."""


def _relative(name: str, top: str) -> str | None:
    """``name`` relative to ``top`` ("" for top itself), or None if it is not under it."""
    if "\0" in name or name.startswith("/"):
        raise UnpackError(f"The sandbox's archive holds an absolute or invalid name: {name!r}")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnpackError(f"The sandbox's archive holds a name that climbs out: {name!r}")
    if not parts or parts[0] != top:
        return None
    return "/".join(parts[1:])


def _kept(rel: str, keep: Collection[str]) -> bool:
    return any(rel == k or rel.startswith(k + "/") for k in keep)


def _members(
    tar: tarfile.TarFile,
    top: str,
    keep: Collection[str],
    max_bytes: int,
    max_members: int,
    others: Collection[str] = (),
) -> list[tarfile.TarInfo]:
    """The members under ``top``, renamed relative to it, after every check.

    Refuses an archive without ``top`` itself or without its end-of-archive
    blocks: a stream cut off between two entries reads as a shorter, valid
    archive, and would delete the rest of the area.
    """
    chosen: list[tarfile.TarInfo] = []
    total = 0
    count = 0
    saw_top = False
    for member in tar:
        if others and any(_relative(member.name, other) is not None for other in others):
            continue
        count += 1
        if count > max_members:
            raise UnpackError(f"The sandbox's archive holds more than {max_members} entries")
        total += max(0, member.size)
        if total > max_bytes:
            raise UnpackError(f"The sandbox's archive holds more than {max_bytes} bytes")
        rel = _relative(member.name, top)
        if rel is None:
            raise UnpackError(f"The sandbox's archive holds {member.name!r}, outside {top!r}")
        if not rel:
            saw_top = saw_top or member.isdir()
            continue
        if _kept(rel, keep):
            continue
        if member.issym() and not REALPATH_IS_SAFE and ".." in member.linkname.split("/"):
            logger.warning("unpack.link_skipped", extra={"member": rel, "reason": "climbs (unpatched tarfile)"})
            continue
        if member.islnk():
            target = _relative(member.linkname, top)
            if target is None or not target:
                logger.warning("unpack.link_skipped", extra={"member": rel})
                continue
            member = member.replace(linkname=target, deep=False)
        chosen.append(member.replace(name=rel, deep=False))
    if not saw_top:
        raise UnpackError(f"The sandbox's archive does not hold the folder {top!r}")
    _check_end(tar)
    return chosen


def _check_end(tar: tarfile.TarFile) -> None:
    """Raise unless the archive ends with its two zero blocks (it was not cut off)."""
    assert tar.fileobj is not None
    tar.fileobj.seek(tar.offset)
    end = tar.fileobj.read(2 * tarfile.BLOCKSIZE)
    if len(end) != 2 * tarfile.BLOCKSIZE or end.count(0) != len(end):
        raise UnpackError("The sandbox's archive is cut off (no end-of-archive blocks)")


def _lenient_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    """:func:`tarfile.data_filter`, skipping (not failing on) what it refuses."""
    try:
        return tarfile.data_filter(member, dest)
    except tarfile.FilterError as e:
        # A link out of the folder or a device file: the agent's mistake or
        # attack; the rest of its work still comes back.
        logger.warning("unpack.member_skipped", extra={"member": member.name, "reason": type(e).__name__})
        return None


def unpack_tree(
    archive: Path,
    top: str,
    dest: Path,
    *,
    keep: Collection[str] = (),
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
    others: Collection[str] = (),
) -> None:
    """Replace the content of folder ``dest`` with the tree under ``top`` in ``archive``.

    ``keep`` names top-level entries of ``dest`` left as they are (another
    mount's place); the archive's entries there are ignored. ``others`` names
    further top-level folders the archive may hold (other areas of one
    stream): skipped here; any other name outside ``top`` is refused. The archive is
    unpacked into a sibling folder first; only then is ``dest``'s content
    swapped, entry by entry, so a refused archive leaves ``dest`` untouched.
    """
    if any("/" in k for k in keep):
        raise UnpackError("Only top-level entries can be kept")
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=dest.parent))
    try:
        with tarfile.open(archive, mode="r:") as tar:
            members = _members(tar, top, keep, max_bytes, max_members, others)
            tar.extractall(staging, members=members, filter=_lenient_filter)  # noqa: S202 (checked members, data filter)
        for child in list(dest.iterdir()):
            if child.name in keep:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        for child in list(staging.iterdir()):
            if child.name not in keep:
                os.replace(child, dest / child.name)
    except (tarfile.TarError, OSError) as e:
        raise UnpackError(f"Could not unpack what the sandbox wrote: {e}") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def unpack_file(archive: Path, name: str, dest: Path, *, max_bytes: int = MAX_BYTES) -> None:
    """Replace file ``dest`` with the regular file ``name`` of ``archive`` (atomically)."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            member = next((m for m in tar if posixpath.normpath(m.name) == name), None)
            if member is None or not member.isreg():
                raise UnpackError(f"The sandbox did not hand back {name!r} as a regular file")
            if member.size > max_bytes:
                raise UnpackError(f"The sandbox's {name!r} is larger than {max_bytes} bytes")
            source = tar.extractfile(member)
            assert source is not None
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.unpack-", dir=dest.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out)
                os.replace(tmp, dest)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except (tarfile.TarError, OSError) as e:
        raise UnpackError(f"Could not unpack what the sandbox wrote: {e}") from None


def vet_tree(
    archive: Path,
    top: str,
    *,
    keep: Collection[str] = (),
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
    others: Collection[str] = (),
) -> None:
    """Raise :class:`UnpackError` for what :func:`unpack_tree` would refuse; write nothing.

    For callers that must refuse a whole upload before touching anything
    (several areas in one stream): the caps and the names are checked as
    :func:`unpack_tree` checks them. What it drops and logs (a link leading
    out of ``top``, a device or pipe) is not a reason to refuse the rest: a
    work tree with a virtualenv holds absolute symlinks, and the remote
    Docker provider brings such a tree back without them too.
    """
    try:
        with tarfile.open(archive, mode="r:") as tar:
            _members(tar, top, keep, max_bytes, max_members, others)
    except tarfile.TarError as e:
        raise UnpackError(f"Not a readable tar archive: {e}") from None


def vet_file(archive: Path, name: str, *, max_bytes: int = MAX_BYTES) -> None:
    """Raise :class:`UnpackError` unless :func:`unpack_file` would take ``name`` from ``archive``."""
    try:
        with tarfile.open(archive, mode="r:") as tar:
            member = next((m for m in tar if posixpath.normpath(m.name) == name), None)
    except tarfile.TarError as e:
        raise UnpackError(f"Not a readable tar archive: {e}") from None
    if member is None or not member.isreg():
        raise UnpackError(f"The archive does not hold {name!r} as a regular file")
    if member.size > max_bytes:
        raise UnpackError(f"The archive's {name!r} is larger than {max_bytes} bytes")
