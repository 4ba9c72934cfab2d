"""Delivery: a branch appears in the user's repository and nothing else of theirs moves."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haflowd.errors import BadRequest, Conflict
from haflowd.workspaces.clone import MissionClone, commit_all, create_clone
from haflowd.workspaces.delivery import DELIVERY_REF, deliver
from tests.workspaces.conftest import BRANCH, OTHER_UID, ROOT, commit_file, git, make_repo, tree_state


async def commit(clone: MissionClone, name: str, text: str, run_id: str = "r-00000001") -> str:
    (clone.work_tree / name).write_text(text)
    result = await commit_all(clone, author_name="Agent", author_email="a@h.l", message=f"write {name}", run_id=run_id)
    assert result is not None
    return result.sha


def user_view(repo: Path) -> tuple[bytes, str, bytes, dict[str, bytes], str]:
    """What delivery must not change: HEAD file, current branch tip, index, work tree, status."""
    return (
        (repo / ".git" / "HEAD").read_bytes(),
        git("rev-parse", "HEAD", cwd=repo),
        (repo / ".git" / "index").read_bytes(),
        tree_state(repo),
        git("status", "--porcelain", cwd=repo),
    )


class TestDeliver:
    """deliver creates or fast-forwards a branch in the user's repository, never touching their checkout."""

    async def test_new_branch(self, clone: MissionClone, user_repo: Path) -> None:
        """The branch appears at the mission's commit; HEAD, index and work tree stay as they were."""
        sha = await commit(clone, "feature.txt", "f\n")
        before = user_view(user_repo)
        delivered = await deliver(clone, user_repo, BRANCH)
        assert (delivered.branch, delivered.commit) == (BRANCH, sha)
        assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=user_repo).strip() == sha
        assert user_view(user_repo) == before
        assert before[4] == ""
        assert not (user_repo / ".git" / "FETCH_HEAD").exists()
        assert git(f"--git-dir={clone.git_dir}", "for-each-ref", DELIVERY_REF) == ""

    async def test_fast_forward_of_an_ancestor(self, clone: MissionClone, user_repo: Path) -> None:
        """Delivering again after another step moves the branch forward."""
        await commit(clone, "one.txt", "1\n")
        await deliver(clone, user_repo, BRANCH)
        second = await commit(clone, "two.txt", "2\n", "r-00000002")
        delivered = await deliver(clone, user_repo, BRANCH)
        assert delivered.commit == second
        assert git("rev-parse", f"refs/heads/{BRANCH}", cwd=user_repo).strip() == second

    async def test_existing_branch_at_the_base_is_fast_forwarded(
        self, clone: MissionClone, user_repo: Path, base: str
    ) -> None:
        """A user branch at the base commit is an ancestor, so it moves."""
        git("branch", "ready", base, cwd=user_repo)
        sha = await commit(clone, "x.txt", "x\n")
        await deliver(clone, user_repo, "ready")
        assert git("rev-parse", "refs/heads/ready", cwd=user_repo).strip() == sha

    async def test_refuses_a_non_ancestor(self, clone: MissionClone, user_repo: Path, base: str) -> None:
        """A user branch with its own commit is never moved: 409, and it keeps its commit."""
        git("switch", "-q", "-c", "theirs", cwd=user_repo)
        theirs = commit_file(user_repo, "mine.txt", "mine\n")
        git("switch", "-q", "main", cwd=user_repo)
        await commit(clone, "x.txt", "x\n")
        before = user_view(user_repo)
        with pytest.raises(Conflict, match="not an ancestor"):
            await deliver(clone, user_repo, "theirs")
        assert git("rev-parse", "refs/heads/theirs", cwd=user_repo).strip() == theirs
        assert user_view(user_repo) == before

    async def test_refuses_the_checked_out_branch(self, clone: MissionClone, user_repo: Path) -> None:
        """Delivering onto the branch the user has checked out would change their work tree: 409."""
        await commit(clone, "x.txt", "x\n")
        before = user_view(user_repo)
        with pytest.raises(Conflict):
            await deliver(clone, user_repo, "main")
        assert user_view(user_repo) == before

    async def test_nothing_to_deliver(self, clone: MissionClone, user_repo: Path) -> None:
        """A mission without commits has nothing to deliver: 409."""
        with pytest.raises(Conflict, match="Nothing to deliver"):
            await deliver(clone, user_repo, BRANCH)
        assert git("branch", "--list", BRANCH, cwd=user_repo) == ""

    @pytest.mark.parametrize("branch", ["bad..name", "-f", "with space", "x.lock", "a~1", "HEAD@{1}"])
    async def test_invalid_branch_name(self, clone: MissionClone, user_repo: Path, branch: str) -> None:
        """Names git check-ref-format --branch rejects are a 400."""
        await commit(clone, "x.txt", "x\n")
        with pytest.raises(BadRequest):
            await deliver(clone, user_repo, branch)

    async def test_uncommitted_user_work_is_kept(self, clone: MissionClone, user_repo: Path) -> None:
        """The user's own staged and unstaged edits survive delivery byte for byte."""
        (user_repo / "README.md").write_text("user edit\n")
        (user_repo / "staged.txt").write_text("staged\n")
        git("add", "staged.txt", cwd=user_repo)
        await commit(clone, "x.txt", "x\n")
        before = user_view(user_repo)
        await deliver(clone, user_repo, BRANCH)
        assert user_view(user_repo) == before

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    async def test_repository_of_another_uid_gets_files_it_owns(self, tmp_path: Path, shared_tmp: Path) -> None:
        """A root daemon delivers as the repository's owner: the new ref and objects belong to them."""
        repo = make_repo(shared_tmp / "theirs")
        for path in [repo, *repo.rglob("*")]:
            os.lchown(path, OTHER_UID, OTHER_UID)
        head = git("--git-dir", str(repo / ".git"), "rev-parse", "HEAD").strip()
        made = await create_clone(repo, head, tmp_path / "m" / "repo.git", tmp_path / "m" / "workspace", BRANCH)
        await commit(made, "x.txt", "x\n")
        await deliver(made, repo, BRANCH)
        owners = {path.stat().st_uid for path in (repo / ".git").rglob("*")}
        assert owners == {OTHER_UID}
