"""A throwaway copy of a mission's work tree, for commands run in a sandbox.

The copy is made with ``cp -R --no-dereference --reflink=auto`` (copy-on-write where the file
system allows, a real copy elsewhere): never hard links, since the command
may write, and never following a symlink. The work tree's ``.git`` entry
(the mount point of the read-only git directory, or anything an agent made)
is not part of the copy.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from pathlib import Path

from ..errors import HaflowError

logger = logging.getLogger(__name__)

#: The copy of the work tree inside the folder :func:`snapshot_worktree` returns.
TREE = "workspace"


def _new_folder(parent: Path | None) -> Path:
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix="haflow-snapshot-", dir=parent))


def _drop_git_entry(tree: Path) -> None:
    entry = tree / ".git"
    if entry.is_symlink() or entry.is_file():
        entry.unlink()
    elif entry.is_dir():
        shutil.rmtree(entry)


async def snapshot_worktree(work_tree: Path, parent: Path | None = None, *, time_limit: float = 600) -> Path:
    """Copy ``work_tree`` as it is now; return the copy's path (``<tmp>/workspace``).

    The caller removes the copy (``shutil.rmtree`` of its parent folder)
    when the command is done.
    """
    folder = _new_folder(parent)
    target = folder / TREE
    proc = await asyncio.create_subprocess_exec(
        "cp",
        "-R",
        "--no-dereference",
        # Mode, owner (the sandbox's uid must be able to write its copy) and
        # times (build tools); not xattrs, ACLs or SELinux labels, which cost
        # syscalls per file and mean nothing in a throwaway sandbox copy.
        "--preserve=mode,ownership,timestamps",
        "--reflink=auto",
        "--no-target-directory",
        "--",
        str(work_tree),
        str(target),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _, err = await asyncio.wait_for(proc.communicate(), time_limit)
    except BaseException:
        proc.kill()
        await proc.wait()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    if proc.returncode != 0:
        shutil.rmtree(folder, ignore_errors=True)
        logger.warning("workspace.snapshot_failed", extra={"stderr": err.decode("utf-8", "replace")[:4096]})
        raise HaflowError("Copying the work tree failed")
    _drop_git_entry(target)
    return target
