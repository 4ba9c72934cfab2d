"""Delivery: the mission's work becomes a branch in the user's repository.

The daemon bundles the commits in the clone and fetches the bundle into the
user's repository with a refspec without ``+``: git itself then refuses to
move an existing branch that is not an ancestor, and refuses to update a
branch checked out in any of the user's work trees (so their HEAD, index
and files are never touched). A plain fetch from the clone would fail under
root (ownership check); a bundle is just a file. Git runs as the owner of
the user's repository, so the objects and the ref it writes are theirs.
"""

from __future__ import annotations

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from ..errors import Conflict
from ..models import Delivery
from .clone import MissionClone, check_branch_name
from .gitcmd import GitError, Owner, owner_for, run_git

#: A ref in the clone that names the commit being delivered.
DELIVERY_REF = "refs/haflow/deliver"


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

    Raises :class:`BadRequest` for an invalid branch name and
    :class:`Conflict` when there is nothing to deliver (no commit after the
    base), the branch exists and is not an ancestor of the commit, or the
    branch is checked out in the user's repository.
    """
    await check_branch_name(branch)
    target = (await clone.git(["rev-parse", "--verify", "--end-of-options", f"{commit or 'HEAD'}^{{commit}}"])).text
    target = target.strip()
    ahead = await clone.git(["rev-list", "--count", f"{clone.base_commit}..{target}", "--"])
    if int(ahead.text.strip() or "0") == 0:
        raise Conflict("Nothing to deliver: the mission has no commits")
    owner = owner_for(user_repo)
    env = {"GIT_CEILING_DIRECTORIES": str(user_repo.parent)}
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
