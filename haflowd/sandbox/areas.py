"""Areas carried as tar streams, for engines that do not share the daemon's disk.

A step's mounts are its areas (artifacts, workspace, the prompt). A provider
that shares this disk binds them; the others receive each area as a tar
stream made here and hand writable ones back, unpacked by
:mod:`haflowd.sandbox.unpack` (the one place that trusts nothing it reads).
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import IO


def pack_path(source: Path, member: str, out: IO[bytes], uid: int, gid: int) -> None:
    """Write a tar stream of ``source`` (a folder or a file) named ``member`` to ``out``.

    Every entry is owned by ``uid:gid`` (the agent's user, which may have no
    passwd entry in the image, so ``docker cp -a`` cannot do this). Symlinks
    are stored as symlinks (never followed); sockets, pipes and devices are
    left out.
    """

    def owned(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        if not (info.isreg() or info.isdir() or info.issym() or info.islnk()):
            return None
        info.uid, info.gid, info.uname, info.gname = uid, gid, "", ""
        return info

    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        tar.add(source, arcname=member, recursive=True, filter=owned)
