"""Delivery never writes through a symlink in the user's git directory, nor under a name that shadows another ref."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.errors import BadRequest, Conflict
from haflowd.workspaces.clone import MissionClone, commit_all
from haflowd.workspaces.delivery import deliver
from tests.workspaces.conftest import git


async def commit(clone: MissionClone) -> str:
    (clone.work_tree / "feature.txt").write_text("f\n")
    result = await commit_all(clone, author_name="A", author_email="a@b", message="m", run_id="r-00000001")
    assert result is not None
    return result.sha


def refs(repo: Path) -> str:
    return git("for-each-ref", "--format=%(refname) %(objectname)", cwd=repo)


class TestSymlinks:
    @pytest.mark.parametrize("where", ["refs/heads/linked", "logs/refs/heads/linked"])
    async def test_symlinked_ref_folder_is_refused(
        self, clone: MissionClone, user_repo: Path, tmp_path: Path, where: str
    ) -> None:
        """``.git/refs/heads/linked -> <outside>``: delivering ``linked/pwned`` is refused (409), nothing is
        written outside."""
        await commit(clone)
        outside = tmp_path / "outside"
        outside.mkdir()
        link = user_repo / ".git" / where
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(outside)
        before = refs(user_repo)
        with pytest.raises(Conflict, match="symbolic link"):
            await deliver(clone, user_repo, "linked/pwned")
        assert list(outside.iterdir()) == []
        assert refs(user_repo) == before

    async def test_symlinked_ref_file_is_refused(self, clone: MissionClone, user_repo: Path, tmp_path: Path) -> None:
        """The ref file itself a symlink to a file outside: refused, the file is untouched."""
        await commit(clone)
        victim = tmp_path / "victim"
        victim.write_text("keep\n")
        (user_repo / ".git" / "refs" / "heads" / "taken").symlink_to(victim)
        with pytest.raises(Conflict, match="symbolic link"):
            await deliver(clone, user_repo, "taken")
        assert victim.read_text() == "keep\n"

    async def test_plain_nested_branch_still_delivers(self, clone: MissionClone, user_repo: Path) -> None:
        """A name with folders and no symlink on its way is delivered as before."""
        sha = await commit(clone)
        assert (await deliver(clone, user_repo, "team/feature/x")).commit == sha
        assert git("rev-parse", "refs/heads/team/feature/x", cwd=user_repo).strip() == sha


class TestShadowingNames:
    @pytest.mark.parametrize(
        "name",
        [
            "refs/heads/x",
            "refs/tags/v1",
            "refs/remotes/origin/main",
            "@",
            "HEAD",
            "HEAD/x",
            "FETCH_HEAD",
            "ORIG_HEAD",
            "MERGE_HEAD",
            "CHERRY_PICK_HEAD",
            "REVERT_HEAD",
            "BISECT_HEAD",
            "AUTO_MERGE",
            "ORIG_HEAD/x",
            "@/x",
            "tags/v1",
            "remotes/origin/main",
            "head",
            "Fetch_Head/x",
        ],
    )
    async def test_refused_with_400(self, clone: MissionClone, user_repo: Path, name: str) -> None:
        """A name starting with refs/, a HEAD-like or ``@`` component, or a namespace is a 400; no ref appears."""
        await commit(clone)
        before = refs(user_repo)
        with pytest.raises(BadRequest):
            await deliver(clone, user_repo, name)
        assert refs(user_repo) == before

    @pytest.mark.parametrize(("name", "ref"), [("v1", "refs/tags/v1"), ("origin/main", "refs/remotes/origin/main")])
    async def test_existing_tag_or_remote_name_is_409(
        self, clone: MissionClone, user_repo: Path, name: str, ref: str
    ) -> None:
        """The short name of an existing tag or remote-tracking branch is refused (409): it would be ambiguous."""
        await commit(clone)
        git("update-ref", ref, "HEAD", cwd=user_repo)
        before = refs(user_repo)
        with pytest.raises(Conflict, match=ref):
            await deliver(clone, user_repo, name)
        assert refs(user_repo) == before
