"""Real git repositories under tmp_path: a user's repository and a mission clone of it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from haflowd.workspaces.clone import MissionClone, create_clone

BRANCH = "feature/dark-mode-1a2b3c4d"
ROOT = os.geteuid() == 0
#: A uid that is not the daemon's, for files "written by the agent".
#: (None when not root, where the tests that use it are skipped.)
OTHER_UID = cast(int, 1000 if ROOT else None)


def plain_env() -> dict[str, str]:
    """An environment for the tests' own git calls (setup and checks), blind to the machine's config."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_AUTHOR_NAME": "User",
        "GIT_AUTHOR_EMAIL": "user@example.com",
        "GIT_COMMITTER_NAME": "User",
        "GIT_COMMITTER_EMAIL": "user@example.com",
        "LC_ALL": "C",
    }


def git(*args: str, cwd: Path | None = None, check: bool = True, input: bytes | None = None) -> str:
    """Run the tests' own git (not the daemon's runner) and return its output."""
    result = subprocess.run(["git", *args], cwd=cwd, env=plain_env(), capture_output=True, check=False, input=input)
    if check and result.returncode != 0:
        raise AssertionError(f"git {args} failed: {result.stderr.decode()}")
    return result.stdout.decode("utf-8", "replace")


def make_repo(path: Path, files: dict[str, str] | None = None) -> Path:
    """A repository at ``path`` on branch main with ``files`` in one commit."""
    git("init", "-q", "-b", "main", str(path))
    for name, text in (files or {"README.md": "hello\n"}).items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    git("add", "-A", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    return path


def commit_file(repo: Path, name: str, text: str, message: str = "change") -> str:
    (repo / name).parent.mkdir(parents=True, exist_ok=True)
    (repo / name).write_text(text)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", message, cwd=repo)
    return git("rev-parse", "HEAD", cwd=repo).strip()


def git_state(repo: Path) -> dict[str, bytes]:
    """Bytes of everything in ``repo/.git`` that isn't an object: HEAD, config, index, refs, logs, hooks."""
    state: dict[str, bytes] = {}
    git_dir = repo / ".git"
    for path in sorted(git_dir.rglob("*")):
        rel = path.relative_to(git_dir)
        if rel.parts[0] == "objects" or path.is_dir():
            continue
        state[str(rel)] = path.read_bytes()
    return state


def tree_state(root: Path) -> dict[str, bytes]:
    """Bytes of every file of a work tree outside ``.git`` (links as their target)."""
    state: dict[str, bytes] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".git":
            continue
        if path.is_symlink():
            state[str(rel)] = os.readlink(path).encode()
        elif path.is_file():
            state[str(rel)] = path.read_bytes()
    return state


USER_FILES = {
    "README.md": "hello\n",
    "src/app.py": "print('app')\n",
    "src/old.py": "old = 1\n",
    "docs/guide.md": "one\ntwo\nthree\n",
    ".gitignore": "*.log\nbuild/\n",
}


@pytest.fixture
def user_repo(tmp_path: Path) -> Path:
    return make_repo(tmp_path / "user", USER_FILES)


@pytest.fixture
def base(user_repo: Path) -> str:
    return git("rev-parse", "HEAD", cwd=user_repo).strip()


@pytest.fixture
async def clone(tmp_path: Path, user_repo: Path, base: str) -> MissionClone:
    mission = tmp_path / "missions" / "m-1a2b3c4d"
    return await create_clone(user_repo, base, mission / "repo.git", mission / "workspace", BRANCH)


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A temp folder other users can reach (pytest's tmp_path is private to root)."""
    path = Path(tempfile.mkdtemp(prefix="haflow-test-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """A file that must never exist: hostile scripts create it."""
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a hostile script ran on the host"


def hostile_script(tmp_path: Path, marker: Path, name: str = "evil.sh") -> Path:
    """An executable that creates ``marker`` (and passes stdin through, like a filter)."""
    script = tmp_path / name
    script.write_text(f"#!/bin/sh\ntouch {marker}\ncat\n")
    script.chmod(0o755)
    return script
