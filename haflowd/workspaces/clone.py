"""A mission's clone: a git directory the daemon owns and a work tree the agent writes.

Layout (``missions/<id>/repo.git`` beside ``missions/<id>/workspace``): the
git directory is never inside the work tree, so an agent that writes
``/workspace`` cannot change the config, hooks, index or refs git reads.
There is no ``core.worktree`` in the config: the host passes
``--work-tree`` on every call, and inside a container the git directory
bind-mounted (read-only) at ``/workspace/.git`` finds ``/workspace``.

The clone's ``info/attributes`` (:data:`INFO_ATTRIBUTES`) neutralises every
attribute that changes what git stores or shows, for every path, and it
beats any ``.gitattributes`` in the tree (git reads ``$GIT_DIR/info/attributes``
first and takes the first value it finds for each attribute; the tree's files
and ``core.attributesFile`` come later): an agent's ``.gitattributes`` cannot
mark files binary or unset their diff (hiding a change from the review),
change encodings or line endings (making ``git add`` fatal), or select a
filter driver. Binary files are still shown as binary, by git's own look at
their content.

Files that are neither regular files, symlinks nor folders (FIFOs, sockets,
devices) are never handed to git: they are left out of the commit (tracked
ones keep their last committed content) and named in the run's log.

Objects are shared with the user's repository by hard links (``git clone``
of a local path), not alternates: a later ``git gc`` in the user's
repository cannot remove an object a hard-linked clone still has, and git
never changes an object file in place. When hard links are impossible
(another file system, or ``fs.protected_hardlinks`` for a non-root daemon)
git copies instead; ``--local`` is deliberately not passed, because with it
git dies instead of falling back.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import attrs

from ..errors import BadRequest, Conflict
from ..ids import is_run_id
from ..models import Changes
from .gitcmd import MAX_OUTPUT, TIMEOUT, GitError, GitResult, owner_for, run_git

_HEX_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
_SHORTSTAT = re.compile(r"(\d+) files? changed(?:, (\d+) insertions?\(\+\))?(?:, (\d+) deletions?\(-\))?")
#: Control characters other than tab and newline are removed from commit messages.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
#: The identity of the committer (the author is the agent).
COMMITTER = ("haflowd", "haflowd@localhost")
TRAILER = "Haflow-Run"
STEP_TRAILER = "Haflow-Step"
#: What a step id may look like to be written as a trailer.
_STEP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


@attrs.frozen
class CommitResult:
    """The commit :func:`commit_all` made."""

    sha: str
    changes: Changes
    #: Work-tree paths left out because they are not regular files, symlinks or folders.
    skipped: tuple[str, ...] = ()


@attrs.frozen
class MissionClone:
    """Where a mission's clone lives and what it started from."""

    git_dir: Path
    work_tree: Path
    branch: str
    base_commit: str

    async def git(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        env: Mapping[str, str] | None = None,
        config: Sequence[tuple[str, str]] = (),
        max_output: int = MAX_OUTPUT,
        time_limit: float = TIMEOUT,
        check: bool = True,
        literal_pathspecs: bool = True,
    ) -> GitResult:
        """Run hardened git on this clone (``--git-dir`` and ``--work-tree`` given explicitly)."""
        return await run_git(
            args,
            git_dir=self.git_dir,
            work_tree=self.work_tree,
            input=input,
            env=env,
            config=config,
            max_output=max_output,
            time_limit=time_limit,
            check=check,
            literal_pathspecs=literal_pathspecs,
        )


def parse_shortstat(text: str) -> Changes:
    """``Changes`` from git's ``--shortstat`` line (zeros when there is none)."""
    match = _SHORTSTAT.search(text)
    if match is None:
        return Changes(0, 0, 0)
    files, ins, dels = (int(g) if g else 0 for g in match.groups())
    return Changes(files, ins, dels)


def check_sha(value: str) -> str:
    if _HEX_SHA.fullmatch(value) is None:
        raise BadRequest("Not a full commit sha")
    return value


async def check_branch_name(name: str, *, cwd: Path | None = None) -> str:
    """Return ``name`` if git accepts it as a branch name, else raise 400."""
    if not name or name.startswith("-") or len(name) > 200:
        raise BadRequest("Invalid branch name")
    result = await run_git(["check-ref-format", "--branch", name], cwd=cwd, check=False)
    if result.returncode != 0 or result.text.strip() != name:
        raise BadRequest(f"Invalid branch name: {name}")
    return name


def _prepare_places(git_dir: Path, work_tree: Path) -> tuple[Path, Path]:
    git_dir = git_dir.absolute()
    work_tree = work_tree.absolute()
    if git_dir.exists():
        raise Conflict("Mission clone already exists")
    if work_tree == git_dir or work_tree in git_dir.parents:
        raise ValueError("the git directory must be outside the work tree")
    if work_tree.exists() and any(work_tree.iterdir()):
        raise Conflict("Mission work tree is not empty")
    git_dir.parent.mkdir(parents=True, exist_ok=True)
    return git_dir, work_tree


#: ``info/attributes`` beats every ``.gitattributes`` of the tree. ``!diff``
#: (unspecified, not ``diff``) leaves binary detection to git's look at the
#: content; ``-text`` and ``-crlf`` (its old name) store bytes as they are;
#: the rest switches off encodings, line endings, filters, ``$Id$``
#: expansion, merge drivers and archive rules. The ``binary`` macro and any
#: macro a tree defines only set these attributes, at a lower precedence.
INFO_ATTRIBUTES = (
    "* !diff -text -crlf -eol -working-tree-encoding -filter -ident -merge -whitespace -delta "
    "-export-ignore -export-subst\n"
)


def _write_info_attributes(git_dir: Path) -> None:
    info = git_dir / "info"
    info.mkdir(exist_ok=True)
    target = info / "attributes"
    try:
        if target.read_text() == INFO_ATTRIBUTES:
            return
    except OSError:
        pass
    tmp = info / "attributes.haflow-tmp"
    tmp.write_text(INFO_ATTRIBUTES)
    tmp.replace(target)


async def ensure_attributes(clone: MissionClone) -> None:
    """Write the daemon's ``info/attributes`` into the clone if it is not there yet (clones made by older versions)."""
    await asyncio.to_thread(_write_info_attributes, clone.git_dir)


def _make_dir(path: Path) -> None:
    path.mkdir(mode=0o755, parents=True, exist_ok=True)


async def create_clone(user_repo: Path, base_commit: str, git_dir: Path, work_tree: Path, branch: str) -> MissionClone:
    """Clone ``user_repo`` into ``git_dir`` and check out ``branch`` at ``base_commit`` into ``work_tree``.

    The clone keeps only the mission branch (the user's other refs are
    dropped; their objects stay). Writes nothing to ``user_repo``.
    ``git_dir`` must not exist; ``work_tree`` must not exist or be empty,
    and must not contain ``git_dir``.
    """
    check_sha(base_commit)
    await check_branch_name(branch)
    git_dir, work_tree = _prepare_places(git_dir, work_tree)
    # The user's repository is only read here, by the upload-pack git runs
    # in it. When the daemon is root and the repository belongs to its user,
    # trust exactly that repository (safe.directory). Git does not hand -c
    # overrides to that upload-pack; it reads the user's own config, where
    # the settings that would run a program (uploadpack.packObjectsHook) are
    # ignored by git outside protected config.
    owner = owner_for(user_repo)
    safe: list[Path] = []
    if owner is not None:
        found = await run_git(["rev-parse", "--absolute-git-dir"], cwd=user_repo, owner=owner)
        safe = [user_repo, Path(found.text.strip())]
    await run_git(
        ["clone", "--bare", "--quiet", "--template=", "--no-tags", "--", str(user_repo), str(git_dir)],
        safe_directories=safe,
        time_limit=3600,
    )
    # The user's branches and tags are not the mission's business (and a
    # user branch named like the mission branch must not block it): drop
    # every ref; the objects stay.
    refs = await run_git(["for-each-ref", "--format=delete %(refname)"], git_dir=git_dir)
    if refs.stdout:
        await run_git(["update-ref", "--no-deref", "--stdin"], git_dir=git_dir, input=refs.stdout)
    # Not bare, so git inside a container finds /workspace as the work tree;
    # no remote (the user's path means nothing there). core.symlinks and
    # reflogs are git's defaults for a non-bare repository on Linux.
    for args in (["config", "core.bare", "false"], ["config", "--remove-section", "remote.origin"]):
        await run_git(args, git_dir=git_dir)
    _write_info_attributes(git_dir)
    _make_dir(work_tree)
    await run_git(
        ["checkout", "--quiet", "--no-guess", "-b", branch, base_commit, "--"],
        git_dir=git_dir,
        work_tree=work_tree,
        config=[("checkout.workers", "0")],
        time_limit=3600,
    )
    return MissionClone(git_dir, work_tree, branch, base_commit)


def _walk_files(root: Path, rel: str) -> Iterator[str]:
    """Files and symlinks under ``root/rel`` (never following a symlink), skipping every ``.git``."""
    try:
        entries = list(os.scandir(root / rel))
    except OSError:
        return
    for entry in entries:
        if entry.name == ".git":
            continue
        path = f"{rel}{entry.name}"
        if entry.is_symlink() or entry.is_file(follow_symlinks=False):
            yield path
        elif entry.is_dir(follow_symlinks=False):
            yield from _walk_files(root, path + "/")


async def untracked_paths(clone: MissionClone, env: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Untracked, not ignored files of the work tree: (plain, inside nested repositories)."""
    plain, nested, _ = await scan_untracked(clone, env)
    return plain, nested


async def scan_untracked(
    clone: MissionClone, env: Mapping[str, str] | None = None
) -> tuple[list[str], list[str], list[str]]:
    """Untracked, not ignored files of the work tree: (plain, inside nested repositories, special).

    ``git ls-files --others`` shows a directory holding a ``.git`` as one
    entry ending in ``/``; ``git add`` would record it as a gitlink (a
    submodule). The daemon records its files instead, as ordinary files,
    and never the nested ``.git`` itself. Only regular files and symlinks
    are returned as plain or nested; FIFOs, sockets and devices are the
    third list (never given to git).
    """
    listing = await clone.git(["ls-files", "-z", "--others", "--exclude-standard"], env=env)
    # Walking nested repositories and lstat-ing thousands of paths would
    # block the event loop: do it in a thread.
    plain, nested, special = await asyncio.to_thread(_classify, clone.work_tree, listing.stdout)
    if nested:
        check = await clone.git(
            ["check-ignore", "-z", "--stdin", "--no-index"],
            # "./" keeps a name starting with ":" from being read as pathspec magic.
            input=nul_join([f"./{p}" for p in nested]),
            env=env,
            check=False,
            # check-ignore refuses the literal magic; its input is paths, not patterns.
            literal_pathspecs=False,
        )
        if check.returncode not in (0, 1):
            raise GitError("git check-ignore failed", detail=check.stderr)
        ignored = {p.removeprefix("./") for p in check.stdout.decode("utf-8", "surrogateescape").split("\0")}
        nested = [p for p in nested if p not in ignored]
    return plain, nested, special


def _is_special(mode: int) -> bool:
    """Neither a regular file, a symlink nor a folder: git cannot record it (FIFO, socket, device)."""
    return not (stat.S_ISREG(mode) or stat.S_ISLNK(mode) or stat.S_ISDIR(mode))


def _classify(work_tree: Path, listing: bytes) -> tuple[list[str], list[str], list[str]]:
    """Split ``ls-files -z --others`` output: plain files/symlinks, files inside nested repositories, special files."""
    plain: list[str] = []
    nested: list[str] = []
    special: list[str] = []
    for path in listing.decode("utf-8", "surrogateescape").split("\0"):
        if not path:
            continue
        if path.endswith("/"):
            nested.extend(_walk_files(work_tree, path))
            continue
        try:
            mode = os.lstat(work_tree / path).st_mode
        except OSError:
            continue
        if stat.S_ISREG(mode) or stat.S_ISLNK(mode):
            plain.append(path)
        elif _is_special(mode):
            special.append(path)
    return plain, nested, special


async def changed_tracked(clone: MissionClone, env: Mapping[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Tracked paths whose work-tree entry changed: (for git to record, special files git must never read).

    ``git diff-files`` compares stat data only (it reads no special file);
    the entries are then looked at with ``lstat`` in a thread. A deleted
    path, or one that became a folder, is for git to record (as a removal).
    """
    listing = await clone.git(["diff-files", "-z", "--name-only", "--ignore-submodules=all"], env=env)
    return await asyncio.to_thread(_split_changed, clone.work_tree, listing.stdout)


def _split_changed(work_tree: Path, listing: bytes) -> tuple[list[str], list[str]]:
    record: list[str] = []
    special: list[str] = []
    for path in dict.fromkeys(listing.decode("utf-8", "surrogateescape").split("\0")):
        if not path:
            continue
        try:
            mode = os.lstat(work_tree / path).st_mode
        except OSError:
            record.append(path)
            continue
        (special if _is_special(mode) else record).append(path)
    return record, special


def find_special(root: Path, limit: int = 1000) -> list[str]:
    """Up to ``limit`` FIFOs, sockets and devices under ``root`` (never following a symlink, skipping ``.git``).

    Git's own listing of untracked files passes over them silently; this
    walk (run in a thread) is how the run's log can name them.
    """
    found: list[str] = []
    stack = [""]
    while stack and len(found) < limit:
        rel = stack.pop()
        try:
            entries = list(os.scandir(root / rel))
        except OSError:
            continue
        for entry in entries:
            if entry.name == ".git" and not rel:
                continue
            path = f"{rel}{entry.name}"
            try:
                mode = entry.stat(follow_symlinks=False).st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode):
                stack.append(path + "/")
            elif _is_special(mode):
                found.append(path)
    return sorted(found[:limit])


def describe_skipped(paths: Sequence[str], shown: int = 10) -> str:
    """A log line naming the special files left out (the first ``shown`` of them)."""
    names = ", ".join(p.encode("utf-8", "surrogateescape").decode("utf-8", "replace") for p in paths[:shown])
    more = f" (+{len(paths) - shown} more)" if len(paths) > shown else ""
    return f"left out of the commit, not a regular file, symlink or folder (FIFO, socket or device): {names}{more}"


def nul_join(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def _check_identity(value: str, what: str) -> str:
    value = value.strip()
    if not value or any(ch in value for ch in "<>\n\r\0"):
        raise BadRequest(f"Invalid {what}")
    return value


def commit_message(message: str, run_id: str, step_id: str | None = None) -> str:
    """``message`` without control characters, ending with the ``Haflow-Run`` (and ``Haflow-Step``) trailers."""
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    if step_id is not None and _STEP_ID.fullmatch(step_id) is None:
        raise ValueError(f"not a step id: {step_id!r}")
    text = _CONTROL.sub("", message).strip() or f"haflow run {run_id}"
    trailers = f"{TRAILER}: {run_id}\n" + (f"{STEP_TRAILER}: {step_id}\n" if step_id else "")
    return f"{text}\n\n{trailers}"


async def commit_all(
    clone: MissionClone,
    *,
    author_name: str,
    author_email: str,
    message: str,
    run_id: str,
    step_id: str | None = None,
    now: datetime | None = None,
    log: Callable[[str], None] | None = None,
) -> CommitResult | None:
    """Commit every change in the work tree (honouring ``.gitignore``) on the mission branch.

    Untracked files and deletions are included; nested repositories become
    ordinary files. FIFOs, sockets and devices are left out (a tracked path
    keeps its committed content) and named through ``log``. Returns
    ``None`` when nothing changed. Uses plumbing (``update-index``,
    ``write-tree``, ``commit-tree``, ``update-ref``), so no hook can run.
    """
    name = _check_identity(author_name, "author name")
    email = _check_identity(author_email, "author email")
    text = commit_message(message, run_id, step_id)
    await ensure_attributes(clone)
    (record, special_tracked), (plain, nested, special_new), walked = await asyncio.gather(
        changed_tracked(clone), scan_untracked(clone), asyncio.to_thread(find_special, clone.work_tree)
    )
    skipped = tuple(sorted({*special_tracked, *special_new, *walked}))
    if skipped and log is not None:
        log(describe_skipped(skipped))
    paths = record + plain + nested
    if paths:
        # --remove: a deleted tracked path (or one that became a folder) leaves the index.
        stdin = await asyncio.to_thread(nul_join, paths)
        await clone.git(["update-index", "--add", "--remove", "-z", "--stdin"], input=stdin)
    tree = (await clone.git(["write-tree"])).text.strip()
    parent = (await clone.git(["rev-parse", "--verify", "HEAD^{commit}"])).text.strip()
    parent_tree = (await clone.git(["rev-parse", "--verify", "HEAD^{tree}"])).text.strip()
    if tree == parent_tree:
        return None
    stamp = f"@{int((now or datetime.now(UTC)).timestamp())} +0000"
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_AUTHOR_DATE": stamp,
        "GIT_COMMITTER_NAME": COMMITTER[0],
        "GIT_COMMITTER_EMAIL": COMMITTER[1],
        "GIT_COMMITTER_DATE": stamp,
    }
    sha = (await clone.git(["commit-tree", tree, "-p", parent, "-F", "-"], input=text.encode(), env=env)).text.strip()
    await clone.git(["update-ref", "-m", f"haflow: {run_id}", "HEAD", sha, parent])
    stats = await clone.git(
        ["diff-tree", "--no-commit-id", "--no-ext-diff", "--no-textconv", "--shortstat", "-r", parent, sha]
    )
    return CommitResult(sha, parse_shortstat(stats.text), skipped)
