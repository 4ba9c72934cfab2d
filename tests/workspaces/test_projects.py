"""Linking a project: path checks, ref resolution and mission branch names."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haflowd.errors import BadRequest
from haflowd.workspaces.clone import check_branch_name
from haflowd.workspaces.projects import mission_branch, resolve_ref, slugify, validate_project_path
from tests.workspaces.conftest import OTHER_UID, ROOT, commit_file, git, make_repo


def unusable(tmp_path: Path, kind: str) -> Path:
    """A path of the given kind that cannot be linked."""
    path = tmp_path / kind
    if kind == "relative":
        return Path("relative/path")
    if kind == "file":
        path.write_text("x")
    elif kind == "plain-dir":
        path.mkdir()
    elif kind == "no-commit":
        git("init", "-q", str(path))
    elif kind == "subfolder":
        path = make_repo(path) / "sub"
        path.mkdir()
    elif kind == "bare":
        git("init", "-q", "--bare", str(path))
    elif kind == "inside-home":
        path = make_repo(tmp_path / "home" / "inside")
    return path


class TestValidateProjectPath:
    """validate_project_path accepts the top of a git work tree with a commit, outside HAFLOW_HOME."""

    async def test_accepts_a_repository(self, tmp_path: Path, user_repo: Path) -> None:
        """A repository gives its resolved path and the branch HEAD points at."""
        assert await validate_project_path(str(user_repo), tmp_path / "home") == (user_repo.resolve(), "main")

    async def test_resolves_symlinks(self, tmp_path: Path, user_repo: Path) -> None:
        """A symlink to a repository is linked by its real path."""
        os.symlink(user_repo, tmp_path / "alias")
        resolved, _ = await validate_project_path(tmp_path / "alias", tmp_path / "home")
        assert resolved == user_repo.resolve()

    async def test_detached_head_has_no_default_branch(self, tmp_path: Path, user_repo: Path) -> None:
        """A detached HEAD gives no default branch."""
        git("switch", "-q", "--detach", cwd=user_repo)
        assert (await validate_project_path(user_repo, tmp_path / "home"))[1] is None

    @pytest.mark.parametrize(
        ("kind", "message"),
        [
            ("relative", "must be absolute"),
            ("missing", "does not exist"),
            ("file", "not a directory"),
            ("plain-dir", "not a git work tree"),
            ("no-commit", "no commit"),
            ("subfolder", "not a git work tree"),
            ("bare", "not a git work tree"),
            ("inside-home", "inside HAFLOW_HOME"),
        ],
    )
    async def test_refusals(self, tmp_path: Path, kind: str, message: str) -> None:
        """Each unusable path is a 400 that says why."""
        with pytest.raises(BadRequest, match=message):
            await validate_project_path(unusable(tmp_path, kind), tmp_path / "home")

    async def test_writes_nothing(self, tmp_path: Path, user_repo: Path) -> None:
        """Checking a repository leaves its .git byte-identical."""
        from tests.workspaces.conftest import git_state

        before = git_state(user_repo)
        await validate_project_path(user_repo, tmp_path / "home")
        await resolve_ref(user_repo, "HEAD")
        assert git_state(user_repo) == before

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    async def test_repository_of_another_uid(self, tmp_path: Path, shared_tmp: Path) -> None:
        """A root daemon accepts a repository its user owns (git runs as that user)."""
        repo = make_repo(shared_tmp / "theirs")
        for path in [repo, *repo.rglob("*")]:
            os.lchown(path, OTHER_UID, OTHER_UID)
        assert await validate_project_path(repo, tmp_path / "home") == (repo, "main")
        assert len(await resolve_ref(repo, "main")) == 40


class TestResolveRef:
    """resolve_ref turns a ref into the full sha of a commit, or a 400."""

    async def test_names_and_shas(self, user_repo: Path, base: str) -> None:
        """HEAD, a branch, a tag, a short sha and HEAD~1 resolve."""
        later = commit_file(user_repo, "later.txt", "later\n")
        git("tag", "v1", base, cwd=user_repo)
        assert await resolve_ref(user_repo, "HEAD") == later
        assert await resolve_ref(user_repo, "main") == later
        assert await resolve_ref(user_repo, "v1") == base
        assert await resolve_ref(user_repo, base[:8]) == base
        assert await resolve_ref(user_repo, "HEAD~1") == base

    @pytest.mark.parametrize("ref", ["nope", "", "-h", "--output=/tmp/x", "HEAD:README.md", "HEAD^{tree}", "a\nb"])
    async def test_non_commits_are_400(self, user_repo: Path, ref: str) -> None:
        """Unknown names, options, trees and blobs do not resolve to a commit."""
        with pytest.raises(BadRequest, match="baseRef"):
            await resolve_ref(user_repo, ref)


class TestMissionBranch:
    """mission_branch is <type>/<slug>-<8 hex>, valid for git."""

    @pytest.mark.parametrize(
        ("type_", "title", "expected"),
        [
            ("feature", "Dark mode toggle", "feature/dark-mode-toggle-1a2b3c4d"),
            ("bugfix", "Crème brûlée: fix ÜBER bug!!", "bugfix/creme-brulee-fix-uber-bug-1a2b3c4d"),
            ("feature", "日本語", "feature/1a2b3c4d"),
            ("feature", "..lock ~^:?*[\\ @{", "feature/lock-1a2b3c4d"),
        ],
    )
    async def test_names(self, type_: str, title: str, expected: str) -> None:
        """Titles become lowercase ASCII slugs; git accepts the result."""
        branch = mission_branch(type_, title, "m-1a2b3c4d")
        assert branch == expected
        assert await check_branch_name(branch) == branch

    def test_slug_is_at_most_40_characters(self) -> None:
        """A long title is cut to 40 characters without a trailing dash."""
        slug = slugify("word " * 30)
        assert len(slug) <= 40 and not slug.endswith("-")
        assert mission_branch("feature", "word " * 30, "m-00000000") == f"feature/{slug}-00000000"

    def test_mission_id_is_checked(self) -> None:
        """Only real mission ids are accepted."""
        with pytest.raises(ValueError, match="mission id"):
            mission_branch("feature", "x", "../../etc")
