"""A linked project: the user's repository, read (never written) by the daemon.

Checks done when a project is linked or a mission is created on it, and the
name of a mission's branch. Git runs as the repository's owner when the
daemon is root (see :func:`.gitcmd.owner_for`).
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from ..errors import BadRequest
from ..ids import is_mission_id
from .gitcmd import GitError, owner_for, run_git

#: A branch slug is at most this many characters.
MAX_SLUG = 40
_HEX_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _is_within(path: Path, parent: Path) -> bool:
    return path == parent or parent in path.parents


def _resolve(path: str) -> Path:
    return Path(path).resolve()


def _check_folder(raw: Path, home: Path) -> Path:
    if not raw.is_absolute():
        raise BadRequest("Project path must be absolute")
    try:
        resolved = raw.resolve(strict=True)
    except (OSError, RuntimeError):
        raise BadRequest("Project path does not exist") from None
    if not resolved.is_dir():
        raise BadRequest("Project path is not a directory")
    if _is_within(resolved, home.resolve()):
        raise BadRequest("Project path is inside HAFLOW_HOME")
    return resolved


async def validate_project_path(path: str | Path, home: Path) -> tuple[Path, str | None]:
    """Check a path a user wants to link; return (resolved path, default branch).

    The path must be absolute, an existing directory, the top of a git work
    tree with at least one commit, and outside ``home`` (HAFLOW_HOME). The
    default branch is the branch HEAD points at (``None`` when detached).
    Raises :class:`BadRequest` naming the problem.
    """
    resolved = _check_folder(Path(path), home)
    owner = owner_for(resolved)
    # Never look above the given folder: a subfolder of a repository is not
    # the repository.
    env = {"GIT_CEILING_DIRECTORIES": str(resolved.parent)}
    try:
        result = await run_git(
            ["rev-parse", "--is-inside-work-tree", "--show-toplevel"], cwd=resolved, env=env, owner=owner
        )
    except GitError as exc:
        if "dubious ownership" in exc.detail:
            raise BadRequest("Project path is a git repository owned by another user") from None
        raise BadRequest("Project path is not a git work tree") from None
    lines = result.text.splitlines()
    if len(lines) != 2 or lines[0] != "true":
        raise BadRequest("Project path is not a git work tree")
    if _resolve(lines[1]) != resolved:
        raise BadRequest("Project path is not the top folder of a git work tree")
    head = await run_git(
        ["rev-parse", "--verify", "-q", "HEAD^{commit}"], cwd=resolved, env=env, owner=owner, check=False
    )
    if head.returncode != 0:
        raise BadRequest("Project repository has no commit yet")
    branch = await run_git(["symbolic-ref", "-q", "--short", "HEAD"], cwd=resolved, env=env, owner=owner, check=False)
    name = branch.text.strip() if branch.returncode == 0 else ""
    return resolved, name or None


async def resolve_ref(repo: Path, ref: str) -> str:
    """The full sha of the commit ``ref`` names in ``repo``; :class:`BadRequest` if none."""
    if not ref or ref.startswith("-") or any(ch in ref for ch in "\0\n\r"):
        raise BadRequest("baseRef does not resolve to a commit")
    result = await run_git(
        ["rev-parse", "--verify", "-q", "--end-of-options", f"{ref}^{{commit}}"],
        cwd=repo,
        env={"GIT_CEILING_DIRECTORIES": str(repo.parent)},
        owner=owner_for(repo),
        check=False,
    )
    sha = result.text.strip()
    if result.returncode != 0 or _HEX_SHA.fullmatch(sha) is None:
        raise BadRequest(f"baseRef does not resolve to a commit: {ref[:200]}")
    return sha


def slugify(title: str, max_chars: int = MAX_SLUG) -> str:
    """Lowercase ASCII words of ``title`` joined by ``-``, at most ``max_chars`` long."""
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode("ascii")
    words = re.findall(r"[a-z0-9]+", ascii_title.lower())
    slug = "-".join(words)[:max_chars].strip("-")
    return slug


def mission_branch(type_: str, title: str, mission_id: str) -> str:
    """``<type>/<slug>-<8 hex of the mission id>``, e.g. ``feature/dark-mode-1a2b3c4d``."""
    if not is_mission_id(mission_id):
        raise ValueError(f"not a mission id: {mission_id!r}")
    kind = slugify(type_, 20) or "mission"
    slug = slugify(title)
    suffix = mission_id.removeprefix("m-")
    return f"{kind}/{slug}-{suffix}" if slug else f"{kind}/{suffix}"
