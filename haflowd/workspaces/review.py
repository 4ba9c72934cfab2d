"""What a reviewer sees of a mission's clone: status, diff, commits and the patch.

Every query is read-only for the mission: uncommitted, untracked files are
shown by marking them intent-to-add in a throwaway copy of the index
(``GIT_INDEX_FILE``), never in the clone's own index. Git reads symlinks as
links (their target is the content shown), never the file they point to.

A tracked path the agent replaced by a FIFO, socket or device is marked
``skip-worktree`` in that copy: git shows its committed content and never
opens it (the commit leaves it out too, see :func:`.clone.commit_all`).
The clone's ``info/attributes`` keep the tree's ``.gitattributes`` from
changing what the diff, the counts and the patch show.

Parsing what git prints for a big tree (100,000 files) runs in a thread,
never on the event loop, and the status lists at most
:data:`MAX_STATUS_FILES` files (``truncated`` says when there were more).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import tempfile
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ..errors import BadRequest, PayloadTooLarge
from ..models import Commit, GitDiff, GitFile, GitStatus
from .clone import (
    STEP_TRAILER,
    TRAILER,
    MissionClone,
    changed_tracked,
    ensure_attributes,
    nul_join,
    parse_shortstat,
    scan_untracked,
)
from .gitcmd import MAX_OUTPUT, GitError

#: Default bound of a diff answer, in bytes.
MAX_DIFF_BYTES = 2 * 1024 * 1024
#: A patch larger than this is refused rather than cut.
MAX_PATCH_BYTES = 64 * 1024 * 1024
#: At most this many files are listed by :func:`status` (the summary counts all).
MAX_STATUS_FILES = 5000
_RUN_TRAILER = re.compile(rf"^{TRAILER}: (r-[0-9a-f]{{8}})$", re.MULTILINE)
_STEP_TRAILER_RE = re.compile(rf"^{STEP_TRAILER}: ([A-Za-z0-9][A-Za-z0-9._-]{{0,63}})$", re.MULTILINE)
_REV = re.compile(r"[0-9a-f]{4,64}")
_WORDS = {"A": "added", "M": "modified", "D": "deleted", "R": "renamed", "T": "type changed", "C": "copied"}


def check_tree_path(path: str) -> str:
    """``path`` if it names something inside the work tree, else :class:`BadRequest` (400)."""
    if not path or "\0" in path or "\\" in path:
        raise BadRequest("Path is outside the work tree")
    pure = PurePosixPath(path)
    if pure.is_absolute() or any(part in ("..", ".git") for part in pure.parts):
        raise BadRequest("Path is outside the work tree")
    normal = str(pure)
    if normal == ".":
        raise BadRequest("Path is outside the work tree")
    return normal


@contextlib.asynccontextmanager
async def review_index(clone: MissionClone, *, untracked: bool = True) -> AsyncIterator[dict[str, str]]:
    """An environment whose ``GIT_INDEX_FILE`` is a copy of the clone's index with untracked files added.

    (An empty environment, the clone's own index, when there is nothing to add or hide.)

    Plain untracked files are marked intent-to-add (no content is read);
    files inside nested repositories are added for real, as
    :func:`.clone.commit_all` would record them. Tracked paths that are now
    FIFOs, sockets or devices are marked ``skip-worktree`` (git shows their
    committed content and never opens them). ``untracked=False`` only hides
    those, for callers that list untracked files themselves.
    """
    await ensure_attributes(clone)
    (_, special), (plain, nested, _) = await asyncio.gather(
        changed_tracked(clone),
        scan_untracked(clone) if untracked else _no_untracked(),
    )
    if not plain and not nested and not special:
        yield {}
        return
    with tempfile.TemporaryDirectory(prefix="haflow-index-") as tmp:
        index = Path(tmp) / "index"
        await asyncio.to_thread(_copy_index, clone.git_dir / "index", index)
        env = {"GIT_INDEX_FILE": str(index)}
        if special:
            stdin = await asyncio.to_thread(nul_join, special)
            await clone.git(["update-index", "--skip-worktree", "-z", "--stdin"], input=stdin, env=env)
        if plain:
            # --ignore-errors: a path git will not index (".GIT/...", "git~1"; an
            # agent can make one) is left out, as commit_all's update-index
            # leaves it out, instead of failing every diff of the mission.
            # Such a partial add exits 1; anything else that goes wrong is fatal (128).
            added = await clone.git(
                ["add", "--ignore-errors", "--intent-to-add", "--pathspec-from-file=-", "--pathspec-file-nul"],
                input=await asyncio.to_thread(nul_join, plain),
                env=env,
                check=False,
            )
            if added.returncode not in (0, 1):
                raise GitError("git add failed", detail=added.stderr, returncode=added.returncode)
        if nested:
            await clone.git(
                ["update-index", "--add", "-z", "--stdin"], input=await asyncio.to_thread(nul_join, nested), env=env
            )
        yield env


async def _no_untracked() -> tuple[list[str], list[str], list[str]]:
    return [], [], []


def _copy_index(source: Path, target: Path) -> None:
    if source.exists():
        shutil.copyfile(source, target)


async def _check_rev(clone: MissionClone, rev: str) -> str:
    """The full sha of commit ``rev`` (a hex sha or prefix) in the clone, else 400."""
    if _REV.fullmatch(rev) is None:
        raise BadRequest(f"Not a commit: {rev[:80]}")
    result = await clone.git(["rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}"], check=False)
    if result.returncode != 0:
        raise BadRequest(f"Not a commit: {rev}")
    return result.text.strip()


def _display(path: str) -> str:
    """A path read with ``surrogateescape`` as text a client can show (invalid bytes become U+FFFD)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _summary(files: tuple[GitFile, ...]) -> str:
    if not files:
        return "No changes"
    counts = Counter(f.status for f in files)
    parts = ", ".join(f"{counts[k]} {_WORDS[k]}" for k in _WORDS if counts[k])
    noun = "file" if len(files) == 1 else "files"
    return f"{len(files)} {noun} changed ({parts})"


def _parse_name_status(raw: bytes) -> tuple[GitFile, ...]:
    fields = raw.decode("utf-8", "replace").split("\0")
    files: list[GitFile] = []
    i = 0
    while i < len(fields) and fields[i]:
        letter = fields[i][0]
        if letter in "RC":
            files.append(GitFile(fields[i + 2], letter))
            i += 3
        else:
            files.append(GitFile(fields[i + 1], letter))
            i += 2
    return tuple(files)


async def _tracked_changes(clone: MissionClone) -> bytes:
    async with review_index(clone, untracked=False) as env:
        result = await clone.git(
            ["diff", "--name-status", "-z", "-M", "--no-ext-diff", "--no-textconv", clone.base_commit, "--"],
            env=env,
        )
    return result.stdout


async def status(clone: MissionClone, *, limit: int = MAX_STATUS_FILES) -> GitStatus:
    """Every path that differs between the base commit and the work tree (untracked ones as ``A``).

    Tracked changes (``diff --name-status -M`` against the base, so
    committed renames show as ``R``) and the untracked scan run side by
    side; an uncommitted rename shows as ``D`` plus ``A``. At most
    ``limit`` files are listed, in path order (``truncated`` when there
    were more); the summary counts them all.
    """
    tracked, (plain, nested, _) = await asyncio.gather(_tracked_changes(clone), scan_untracked(clone))
    return await asyncio.to_thread(_status_of, tracked, plain + nested, limit)


def _status_of(tracked: bytes, untracked: list[str], limit: int) -> GitStatus:
    changed = _parse_name_status(tracked)
    known = {f.path for f in changed}
    added = [GitFile(shown, "A") for p in untracked if (shown := _display(p)) not in known]
    files = tuple(sorted((*changed, *added), key=lambda f: f.path))
    if len(files) > limit:
        return GitStatus(True, files[:limit], _summary(files), truncated=True)
    return GitStatus(bool(files), files, _summary(files))


def _cut(raw: bytes, truncated: bool) -> GitDiff:
    if truncated:
        end = raw.rfind(b"\n")
        raw = raw[: end + 1] if end >= 0 else b""
    return GitDiff(raw.decode("utf-8", "replace"), truncated)


async def diff(
    clone: MissionClone,
    *,
    from_: str | None = None,
    to: str | None = None,
    path: str | None = None,
    max_bytes: int = MAX_DIFF_BYTES,
) -> GitDiff:
    """A unified diff from ``from_`` (default: the base commit) to ``to`` (default: the work tree).

    With ``to`` unset, uncommitted and untracked files are included. Binary
    files show as ``Binary files ... differ``, symlinks as their target.
    Past ``max_bytes`` git is stopped and the diff is cut (``truncated``).
    ``path`` limits the diff to one file (400 when it leaves the tree).
    """
    start = clone.base_commit if from_ is None else await _check_rev(clone, from_)
    end = None if to is None else await _check_rev(clone, to)
    pathspec = [check_tree_path(path)] if path is not None else []
    args = [
        "diff",
        "--no-color",
        "--no-ext-diff",
        "--no-textconv",
        "-M",
        "--src-prefix=a/",
        "--dst-prefix=b/",
        start,
        *([end] if end else []),
        "--",
        *pathspec,
    ]
    if end is not None:
        await ensure_attributes(clone)
        result = await clone.git(args, max_output=max_bytes)
    else:
        async with review_index(clone) as env:
            result = await clone.git(args, env=env, max_output=max_bytes)
    return await asyncio.to_thread(_cut, result.stdout, result.truncated)


async def commits(clone: MissionClone) -> list[Commit]:
    """The mission branch's commits after the base commit, oldest first."""
    await ensure_attributes(clone)
    result = await clone.git(
        [
            "log",
            "--reverse",
            "--no-color",
            "--no-decorate",
            "--no-notes",
            "--no-mailmap",
            "--no-ext-diff",
            "--no-textconv",
            "--shortstat",
            "--format=%x1e%H%x1f%an <%ae>%x1f%ct%x1f%B%x1f",
            f"{clone.base_commit}..HEAD",
            "--",
        ],
        max_output=MAX_OUTPUT,
    )
    return await asyncio.to_thread(_parse_commits, result.stdout)


def _parse_commits(raw: bytes) -> list[Commit]:
    infos: list[Commit] = []
    for record in raw.decode("utf-8", "replace").split("\x1e")[1:]:
        sha, author, stamp, body, stats = record.split("\x1f", 4)
        changes = parse_shortstat(stats)
        trailer = _RUN_TRAILER.findall(body)
        step = _STEP_TRAILER_RE.findall(body)
        infos.append(
            Commit(
                sha=sha,
                message=body.strip(),
                author=author,
                created_at=datetime.fromtimestamp(int(stamp), UTC),
                files=changes.files,
                insertions=changes.insertions,
                deletions=changes.deletions,
                run_id=trailer[-1] if trailer else None,
                step_id=step[-1] if step else None,
            )
        )
    return infos


async def patch(clone: MissionClone) -> str:
    """The mission's commits as ``git format-patch --stdout base..HEAD``."""
    await ensure_attributes(clone)
    result = await clone.git(
        [
            "format-patch",
            "--stdout",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--binary",
            "--no-signature",
            f"{clone.base_commit}..HEAD",
            "--",
        ],
        max_output=MAX_PATCH_BYTES,
    )
    if result.truncated:
        raise PayloadTooLarge("The mission's patch is too large; deliver the branch instead")
    return await asyncio.to_thread(result.stdout.decode, "utf-8", "replace")
