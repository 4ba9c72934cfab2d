"""Areas carried as tar streams, for engines that do not share the daemon's disk.

A step's mounts are its areas (artifacts, workspace, the prompt). A provider
that shares this disk binds them; the others receive each area as a tar
stream made here and hand writable ones back, unpacked by
:mod:`haflowd.sandbox.unpack` (the one place that trusts nothing it reads).
"""

from __future__ import annotations

import posixpath
import tarfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

import attrs

from .protocol import Mount, SandboxError
from .unpack import unpack_file, unpack_tree, vet_file, vet_tree


def _owner(uid: int, gid: int) -> Callable[[tarfile.TarInfo], tarfile.TarInfo | None]:
    """A ``tarfile`` filter: entries owned by ``uid:gid``; only folders, files and links."""

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            return None
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    return owned


def pack_path(source: Path, member: str, out: IO[bytes], uid: int, gid: int) -> None:
    """Write a tar stream of ``source`` (a folder or a file) named ``member`` to ``out``.

    Every entry is owned by ``uid:gid`` (the agent's user, which may have no
    passwd entry in the image, so ``docker cp -a`` cannot do this). Symlinks
    are stored as symlinks (never followed); sockets, pipes and devices are
    left out.
    """

    owned = _owner(uid, gid)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=member, recursive=True, filter=owned)


@attrs.frozen
class AreaPlan:
    """One area of a run as a tar stream carries it: under the top-level folder ``member``.

    A folder area's content sits directly under ``member``; a file area is
    the one entry ``member/<file_name>``. A folder area lists in ``keep``
    the top-level names inside it that another (nested) area occupies: they
    are left alone when the area comes back.
    """

    member: str
    mount: Mount
    target: str
    file_name: str | None
    keep: tuple[str, ...] = ()

    @property
    def is_file(self) -> bool:
        return self.file_name is not None

    @property
    def writable(self) -> bool:
        return not self.mount.read_only

    @property
    def label(self) -> str:
        return self.mount.name or self.target


def plan_areas(mounts: Sequence[Mount]) -> list[AreaPlan]:
    """How ``mounts`` travel: one :class:`AreaPlan` each, named ``a0``, ``a1``, ...

    Raises :class:`SandboxError` for what cannot travel: a target that is
    not an absolute path below ``/``, two areas on one target, a source that
    is neither a folder nor a regular file, or areas nested more than one
    folder deep in another.
    """
    plans: list[AreaPlan] = []
    targets = [posixpath.normpath(m.target) for m in mounts]
    if len(set(targets)) != len(targets):
        raise SandboxError("Two areas of one step share a target")
    for index, (mount, target) in enumerate(zip(mounts, targets, strict=True)):
        if not target.startswith("/") or target == "/" or "\0" in target:
            raise SandboxError(f"Cannot carry an area to {mount.target!r}")
        source = Path(mount.source)
        if source.is_dir():
            nested = [t[len(target) + 1 :] for t in targets if t.startswith(target + "/")]
            if any("/" in n for n in nested):
                raise SandboxError(f"Areas nested deeper than one folder inside {mount.target!r} cannot be carried")
            plans.append(AreaPlan(f"a{index}", mount, target, None, tuple(sorted(nested))))
        elif source.is_file():
            plans.append(AreaPlan(f"a{index}", mount, target, posixpath.basename(target)))
        else:
            raise SandboxError(f"An area must be a folder or a regular file: {source}")
    return plans


def pack_areas(plans: Sequence[AreaPlan], out: IO[bytes], uid: int, gid: int) -> None:
    """Write one tar stream holding every area of ``plans`` to ``out``, owned by ``uid:gid``."""

    owned = _owner(uid, gid)
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for plan in plans:
            source = Path(plan.mount.source)
            if plan.file_name is None:
                tar.add(source, arcname=plan.member, recursive=True, filter=owned)
            else:
                folder = tarfile.TarInfo(plan.member)
                folder.type, folder.mode, folder.uid, folder.gid = tarfile.DIRTYPE, 0o755, uid, gid
                tar.addfile(folder)
                tar.add(source, arcname=f"{plan.member}/{plan.file_name}", recursive=False, filter=owned)


def unpack_areas(archive: Path, plans: Sequence[AreaPlan]) -> None:
    """Bring back every writable area of ``plans`` from ``archive`` (one tar stream).

    Each area is unpacked on its own, within its own caps; a refused area
    raises :class:`SandboxError` and leaves its source untouched.
    """
    members = [plan.member for plan in plans]
    for plan in plans:
        if not plan.writable:
            continue
        source = Path(plan.mount.source)
        if plan.file_name is None:
            unpack_tree(
                archive,
                plan.member,
                source,
                keep=plan.keep,
                max_bytes=plan.mount.max_bytes,
                max_members=plan.mount.max_files,
                others=[m for m in members if m != plan.member],
            )
        else:
            unpack_file(archive, f"{plan.member}/{plan.file_name}", source, max_bytes=plan.mount.max_bytes)


def vet_areas(archive: Path, plans: Sequence[AreaPlan]) -> None:
    """Raise :class:`~haflowd.sandbox.unpack.UnpackError` unless every writable area of ``archive`` comes back whole.

    Run before :func:`unpack_areas` when one refused area must leave all of
    them untouched: the same checks as unpacking (caps, names, each area's
    folder present, the stream not cut off); what unpacking drops (links out
    of an area, special files) passes. Nothing is written.
    """
    members = [plan.member for plan in plans]
    for plan in plans:
        if not plan.writable:
            continue
        if plan.file_name is None:
            vet_tree(
                archive,
                plan.member,
                keep=plan.keep,
                max_bytes=plan.mount.max_bytes,
                max_members=plan.mount.max_files,
                others=[m for m in members if m != plan.member],
            )
        else:
            vet_file(archive, f"{plan.member}/{plan.file_name}", max_bytes=plan.mount.max_bytes)
