"""Delivery: the mission's work becomes a branch in the user's repository.

The daemon bundles the commits in the clone and fetches the bundle into the
user's repository with a refspec without ``+``: git itself then refuses to
move an existing branch that is not an ancestor, and refuses to update a
branch checked out in any of the user's work trees (so their HEAD, index
and files are never touched). A plain fetch from the clone would fail under
root (ownership check); a bundle is just a file. Git runs as the owner of
the user's repository, so the objects and the ref it writes are theirs.

The branch name must not shadow another ref: no ``refs/`` prefix, no
``HEAD``-like or ``@`` first component (``HEAD``, ``FETCH_HEAD``,
``ORIG_HEAD``, ...), and not the short name of an existing tag or
remote-tracking branch. Git would write ``refs/heads/<branch>`` (and its
reflog) through a symlinked folder inside the user's git directory, so
every existing component of those paths is checked with ``lstat`` first
and a symlink refuses the delivery.
"""

from __future__ import annotations

import asyncio
import os
import re
import stat
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ..errors import BadRequest, Conflict
from ..models import Delivery
from .clone import MissionClone, check_branch_name
from .gitcmd import GitError, Owner, owner_for, run_git

#: A ref in the clone that names the commit being delivered.
DELIVERY_REF = "refs/haflow/deliver"


#: First components of a branch name that git would read as another ref
#: (``HEAD``, ``FETCH_HEAD``, ``ORIG_HEAD``, ``MERGE_HEAD``,
#: ``CHERRY_PICK_HEAD``, ``REVERT_HEAD``, ``BISECT_HEAD``, ``AUTO_MERGE``, ...).
_PSEUDO_REF = re.compile(r"@|[A-Z][A-Z0-9_]*_HEAD|HEAD|AUTO_MERGE|BISECT_[A-Z_]+|REBASE_[A-Z_]+")
#: First components that name ref namespaces.
_NAMESPACES = {"refs", "heads", "tags", "remotes", "notes", "stash", "haflow"}


async def check_delivery_branch(branch: str) -> str:
    """``branch`` if it may be delivered, else :class:`BadRequest` (it is invalid or would shadow another ref)."""
    await check_branch_name(branch)
    first = branch.split("/", 1)[0]
    # Upper-cased: on a case-insensitive file system "head" is the HEAD file.
    if first in _NAMESPACES or _PSEUDO_REF.fullmatch(first.upper()) or "@{" in branch:
        raise BadRequest(f"Branch name {branch} would shadow another ref: choose a name that starts differently")
    return branch


async def _check_not_shadowing(user_repo: Path, branch: str, env: dict[str, str], owner: Owner | None) -> None:
    """409 when ``branch`` is also the short name of a tag, a remote-tracking branch or a remote of the repository."""
    result = await run_git(
        ["for-each-ref", "--format=%(refname)", f"refs/tags/{branch}", f"refs/remotes/{branch}"],
        cwd=user_repo,
        env=env,
        owner=owner,
    )
    # refs/remotes/<name>/HEAD: "<name>" alone already means that remote's default branch.
    exact = {f"refs/tags/{branch}", f"refs/remotes/{branch}", f"refs/remotes/{branch}/HEAD"}
    clash = [name for name in result.text.splitlines() if name in exact]
    if clash:
        raise Conflict(f"Branch name {branch} is also {clash[0]} in the repository: choose another name")


def _symlinked_component(common_dir: Path, branch: str) -> Path | None:
    """The first existing path under ``common_dir`` that git would write the branch through and is a symlink."""
    parts = branch.split("/")
    for prefix in (("refs", "heads"), ("logs", "refs", "heads")):
        path: Path = common_dir
        for part in (*prefix, *parts):
            path = path / part
            try:
                mode = os.lstat(path).st_mode
            except OSError:  # not there yet: git creates real folders from here on
                break
            if stat.S_ISLNK(mode):
                return path
            if not stat.S_ISDIR(mode):
                break
    return None


async def _check_no_symlinks(user_repo: Path, branch: str, env: dict[str, str], owner: Owner | None) -> None:
    """409 when a folder (or the ref file) that git would write ``refs/heads/<branch>`` through is a symlink."""
    found = await run_git(["rev-parse", "--git-common-dir"], cwd=user_repo, env=env, owner=owner)
    common = Path(found.text.strip())
    if not common.is_absolute():
        common = user_repo / common
    link = await asyncio.to_thread(_symlinked_component, common, branch)
    if link is not None:
        where = link.relative_to(common)
        raise Conflict(f"Refusing to deliver {branch}: {where} in the repository's git directory is a symbolic link")


def _bundle_dir(owner: Owner | None) -> tempfile.TemporaryDirectory[str]:
    tmp = tempfile.TemporaryDirectory(prefix="haflow-bundle-")
    if owner is not None:
        os.chown(tmp.name, owner.uid, owner.gid)
    return tmp


def _give(path: Path, owner: Owner | None) -> None:
    if owner is not None:
        os.chown(path, owner.uid, owner.gid)


async def _is_ancestor(clone: MissionClone, sha: str, target: str) -> bool:
    """Whether ``sha`` is in ``target``'s history; asked of the clone, which has all of that history."""
    result = await clone.git(["merge-base", "--is-ancestor", "--end-of-options", sha, target], check=False)
    return result.returncode == 0


async def deliver(clone: MissionClone, user_repo: Path, branch: str, commit: str | None = None) -> Delivery:
    """Create (or fast-forward) ``refs/heads/<branch>`` in ``user_repo`` at ``commit`` (default: the mission's tip).

    Raises :class:`BadRequest` for an invalid branch name or one that would
    shadow another ref, and :class:`Conflict` when there is nothing to
    deliver (no commit after the base), the name is also a tag or a
    remote-tracking branch, a folder git would write it through is a
    symlink, the branch exists and is not an ancestor of the commit, or the
    branch is checked out in the user's repository.
    """
    await check_delivery_branch(branch)
    target = (await clone.git(["rev-parse", "--verify", "--end-of-options", f"{commit or 'HEAD'}^{{commit}}"])).text
    target = target.strip()
    ahead = await clone.git(["rev-list", "--count", f"{clone.base_commit}..{target}", "--"])
    if int(ahead.text.strip() or "0") == 0:
        raise Conflict("Nothing to deliver: the mission has no commits")
    owner = owner_for(user_repo)
    env = {"GIT_CEILING_DIRECTORIES": str(user_repo.parent)}
    await _check_not_shadowing(user_repo, branch, env, owner)
    await _check_no_symlinks(user_repo, branch, env, owner)
    existing = await run_git(
        ["rev-parse", "--verify", "-q", f"refs/heads/{branch}"], cwd=user_repo, env=env, owner=owner, check=False
    )
    current = existing.text.strip()
    if existing.returncode == 0 and current != target and not await _is_ancestor(clone, current, target):
        raise Conflict(f"Branch {branch} exists in the repository and is not an ancestor of the mission's commit")
    await clone.git(["update-ref", "--no-deref", DELIVERY_REF, target])
    try:
        with _bundle_dir(owner) as tmp:
            bundle = Path(tmp) / "mission.bundle"
            await clone.git(["bundle", "create", "-q", str(bundle), DELIVERY_REF, f"^{clone.base_commit}"])
            _give(bundle, owner)
            result = await run_git(
                [
                    "fetch",
                    "--quiet",
                    "--no-tags",
                    "--no-recurse-submodules",
                    "--no-write-fetch-head",
                    "--no-auto-gc",
                    "--no-auto-maintenance",
                    str(bundle),
                    f"{DELIVERY_REF}:refs/heads/{branch}",
                ],
                cwd=user_repo,
                env=env,
                owner=owner,
                check=False,
            )
    finally:
        await clone.git(["update-ref", "--no-deref", "-d", DELIVERY_REF], check=False)
    if result.returncode != 0:
        err = result.stderr
        if "non-fast-forward" in err or "rejected" in err:
            raise Conflict(f"Branch {branch} exists in the repository and is not an ancestor of the mission's commit")
        if "checked out" in err or "refusing to fetch" in err:
            raise Conflict(f"Branch {branch} is checked out in the repository")
        if "prerequisite" in err:
            raise Conflict("The repository no longer has the mission's base commit")
        raise GitError("git fetch failed", detail=err.strip(), returncode=result.returncode)
    return Delivery(branch, target, datetime.now(UTC))
