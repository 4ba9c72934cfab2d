"""The mission clone: isolation from the user's repository, layout, and commit_all."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from haflowd.errors import BadRequest, Conflict
from haflowd.models import Changes
from haflowd.workspaces.clone import CommitResult, MissionClone, commit_all, commit_message, create_clone
from tests.workspaces.conftest import BRANCH, OTHER_UID, ROOT, git, git_state, make_repo, plain_env, tree_state

AUTHOR: dict[str, Any] = {"author_name": "Claude Code", "author_email": "agent@haflow.local"}


async def commit(clone: MissionClone, message: str = "Implement it", run_id: str = "r-0000000a") -> CommitResult | None:
    return await commit_all(clone, message=message, run_id=run_id, **AUTHOR)


def tracked(clone: MissionClone, rev: str = "HEAD") -> dict[str, str]:
    """path -> mode of every entry of ``rev``'s tree."""
    out = git(f"--git-dir={clone.git_dir}", "ls-tree", "-r", "-z", rev)
    entries = {}
    for line in out.split("\0"):
        if line:
            meta, path = line.split("\t", 1)
            entries[path] = meta.split()[0]
    return entries


class TestCreateClone:
    """create_clone makes a daemon-owned git directory beside a checked-out work tree."""

    async def test_work_tree_is_checked_out_on_the_new_branch(self, clone: MissionClone, base: str) -> None:
        """The work tree holds the base commit's files and HEAD is the mission branch at base."""
        assert (clone.work_tree / "src" / "app.py").read_text() == "print('app')\n"
        assert git(f"--git-dir={clone.git_dir}", "symbolic-ref", "HEAD").strip() == f"refs/heads/{BRANCH}"
        assert git(f"--git-dir={clone.git_dir}", "rev-parse", "HEAD").strip() == base

    async def test_git_dir_is_outside_the_work_tree(self, clone: MissionClone) -> None:
        """There is no .git entry in the work tree for an agent to tamper with."""
        assert not (clone.work_tree / ".git").exists()
        assert clone.work_tree not in clone.git_dir.parents

    async def test_config_has_no_worktree_remote_or_hooks(self, clone: MissionClone) -> None:
        """The config holds no host path, no remote, and the git dir no hook samples."""
        config = (clone.git_dir / "config").read_text()
        assert "worktree" not in config
        assert "remote" not in config
        assert "bare = false" in config
        assert not (clone.git_dir / "hooks").exists() or not any((clone.git_dir / "hooks").iterdir())

    async def test_git_dir_mounted_at_work_tree_dot_git_works(self, clone: MissionClone, tmp_path: Path) -> None:
        """Placed at <work tree>/.git (as the container sees it), plain git finds a clean work tree."""
        container = tmp_path / "container-view"
        shutil.copytree(clone.work_tree, container, symlinks=True)
        shutil.copytree(clone.git_dir, container / ".git", symlinks=True)
        assert git("status", "--porcelain", cwd=container) == ""
        assert git("rev-parse", "--abbrev-ref", "HEAD", cwd=container).strip() == BRANCH

    async def test_only_the_mission_branch(self, tmp_path: Path, user_repo: Path, base: str) -> None:
        """The user's branches and tags are not in the clone, and one named like the mission branch is no obstacle."""
        git("branch", "private-work", cwd=user_repo)
        git("branch", BRANCH, cwd=user_repo)
        git("tag", "v1", cwd=user_repo)
        made = await create_clone(user_repo, base, tmp_path / "m" / "repo.git", tmp_path / "m" / "workspace", BRANCH)
        refs = git(f"--git-dir={made.git_dir}", "for-each-ref", "--format=%(refname)").split()
        assert refs == [f"refs/heads/{BRANCH}"]

    async def test_user_repository_is_byte_identical(self, tmp_path: Path, user_repo: Path, base: str) -> None:
        """Cloning writes nothing to the user's .git (refs, config, index, HEAD, logs, hooks) or files."""
        (user_repo / "dirty.txt").write_text("uncommitted\n")
        before, files_before = git_state(user_repo), tree_state(user_repo)
        await create_clone(user_repo, base, tmp_path / "m" / "repo.git", tmp_path / "m" / "workspace", BRANCH)
        assert git_state(user_repo) == before
        assert tree_state(user_repo) == files_before

    async def test_objects_are_shared_by_hard_links(self, clone: MissionClone, user_repo: Path, base: str) -> None:
        """The clone's copy of an object is the user's file (same inode), not alternates."""
        rel = Path("objects") / base[:2] / base[2:]
        assert (clone.git_dir / rel).stat().st_ino == (user_repo / ".git" / rel).stat().st_ino
        assert not (clone.git_dir / "objects" / "info" / "alternates").exists()

    async def test_an_older_base_commit(self, tmp_path: Path, user_repo: Path, base: str) -> None:
        """A base commit behind the user's HEAD is checked out, not HEAD."""
        from tests.workspaces.conftest import commit_file

        commit_file(user_repo, "later.txt", "later\n")
        made = await create_clone(user_repo, base, tmp_path / "m" / "repo.git", tmp_path / "m" / "workspace", BRANCH)
        assert not (made.work_tree / "later.txt").exists()

    async def test_existing_clone_is_a_conflict(self, clone: MissionClone, user_repo: Path, base: str) -> None:
        """A second clone into the same git directory is refused."""
        with pytest.raises(Conflict):
            await create_clone(user_repo, base, clone.git_dir, clone.work_tree, BRANCH)

    @pytest.mark.parametrize("branch", ["bad..name", "-x", "a b", "ends.lock", ""])
    async def test_invalid_branch_is_refused(self, tmp_path: Path, user_repo: Path, base: str, branch: str) -> None:
        """Branch names git rejects are a 400."""
        with pytest.raises(BadRequest):
            await create_clone(user_repo, base, tmp_path / "g", tmp_path / "w", branch)

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    async def test_user_repository_of_another_uid(self, tmp_path: Path, shared_tmp: Path) -> None:
        """A root daemon clones a repository another user owns, and still writes nothing to it."""
        repo = make_repo(shared_tmp / "theirs")
        for path in [repo, *repo.rglob("*")]:
            os.lchown(path, OTHER_UID, OTHER_UID)
        head = git("--git-dir", str(repo / ".git"), "rev-parse", "HEAD").strip()
        before = git_state(repo)
        made = await create_clone(repo, head, tmp_path / "m" / "repo.git", tmp_path / "m" / "workspace", BRANCH)
        assert (made.work_tree / "README.md").read_text() == "hello\n"
        assert git_state(repo) == before


class TestCommitAll:
    """commit_all records every change of the work tree as one commit on the mission branch."""

    async def test_added_modified_deleted_untracked_and_ignored(self, clone: MissionClone, base: str) -> None:
        """New, changed and deleted files are committed; ignored ones are not."""
        w = clone.work_tree
        (w / "src" / "app.py").write_text("print('app 2')\nprint('more')\n")
        (w / "src" / "old.py").unlink()
        (w / "src" / "new.py").write_text("new = 1\n")
        (w / "deep" / "er").mkdir(parents=True)
        (w / "deep" / "er" / "x.txt").write_text("x\n")
        (w / "debug.log").write_text("ignored\n")
        (w / "build").mkdir()
        (w / "build" / "out.bin").write_text("ignored\n")
        result = await commit(clone)
        assert result is not None
        assert result.changes == Changes(files=4, insertions=4, deletions=2)
        entries = tracked(clone)
        assert "src/new.py" in entries and "deep/er/x.txt" in entries
        assert "src/old.py" not in entries
        assert "debug.log" not in entries and "build/out.bin" not in entries
        assert git(f"--git-dir={clone.git_dir}", "rev-parse", "HEAD^").strip() == base
        assert git(f"--git-dir={clone.git_dir}", "rev-parse", f"refs/heads/{BRANCH}").strip() == result.sha

    async def test_nothing_changed_is_none(self, clone: MissionClone, base: str) -> None:
        """An untouched work tree (ignored files only) makes no commit."""
        (clone.work_tree / "noise.log").write_text("x\n")
        assert await commit(clone) is None
        assert git(f"--git-dir={clone.git_dir}", "rev-parse", "HEAD").strip() == base

    async def test_author_message_and_trailer(self, clone: MissionClone) -> None:
        """The agent is the author; the message ends with the Haflow-Run trailer."""
        (clone.work_tree / "a.txt").write_text("a\n")
        result = await commit(clone, message="Add a\n\nBecause.", run_id="r-12345678")
        assert result is not None
        body = git(f"--git-dir={clone.git_dir}", "log", "-1", "--format=%an <%ae>%n%B", result.sha)
        assert body.startswith("Claude Code <agent@haflow.local>\nAdd a\n\nBecause.\n\nHaflow-Run: r-12345678\n")
        trailers = git(f"--git-dir={clone.git_dir}", "log", "-1", "--format=%(trailers:key=Haflow-Run,valueonly)")
        assert trailers.strip() == "r-12345678"

    async def test_second_commit_builds_on_the_first(self, clone: MissionClone) -> None:
        """Consecutive runs make a linear branch."""
        (clone.work_tree / "a.txt").write_text("a\n")
        first = await commit(clone, run_id="r-00000001")
        (clone.work_tree / "a.txt").write_text("b\n")
        second = await commit(clone, run_id="r-00000002")
        assert first is not None and second is not None
        assert git(f"--git-dir={clone.git_dir}", "rev-parse", f"{second.sha}^").strip() == first.sha
        assert second.changes == Changes(1, 1, 1)

    async def test_nested_repository_becomes_plain_files(self, clone: MissionClone) -> None:
        """A repository the agent created inside the tree is committed as files, never as a gitlink."""
        nested = clone.work_tree / "vendor" / "lib"
        make_repo(nested, {"lib.py": "x = 1\n", "sub/deep.py": "y = 2\n", "junk.log": "z\n"})
        unborn = clone.work_tree / "fresh"
        git("init", "-q", str(unborn))
        (unborn / "f.txt").write_text("f\n")
        result = await commit(clone)
        assert result is not None
        entries = tracked(clone)
        assert "160000" not in entries.values()
        assert entries["vendor/lib/lib.py"] == "100644"
        assert "vendor/lib/sub/deep.py" in entries and "fresh/f.txt" in entries
        assert "vendor/lib/junk.log" not in entries
        assert not any(".git/" in path or path.endswith(".git") for path in entries)

    async def test_odd_names_in_a_nested_repository(self, clone: MissionClone) -> None:
        """Names that look like pathspec magic or globs, or hold newlines, are committed as they are."""
        nested = clone.work_tree / ":(x)"
        make_repo(nested, {"*.py": "glob\n", "a\nb.txt": "newline\n", "skip.log": "ignored\n"})
        (clone.work_tree / ":(top)plain").write_text("plain\n")
        await commit(clone)
        entries = tracked(clone)
        assert {":(x)/*.py", ":(x)/a\nb.txt", ":(top)plain"} <= set(entries)
        assert ":(x)/skip.log" not in entries

    async def test_name_that_is_not_utf8(self, clone: MissionClone) -> None:
        """A file name with invalid UTF-8 is committed with its exact bytes."""
        with open(os.path.join(os.fsencode(clone.work_tree), b"bad-\xff.txt"), "w") as handle:
            handle.write("x\n")
        await commit(clone)
        raw = subprocess.run(
            ["git", f"--git-dir={clone.git_dir}", "ls-tree", "-z", "--name-only", "HEAD"],
            capture_output=True,
            check=True,
            env=plain_env(),
        ).stdout
        assert b"bad-\xff.txt\0" in raw

    async def test_symlink_is_recorded_as_a_link(self, clone: MissionClone) -> None:
        """A symlink is committed with mode 120000 and its target as content."""
        os.symlink("/etc/passwd", clone.work_tree / "pw")
        await commit(clone)
        assert tracked(clone)["pw"] == "120000"
        assert git(f"--git-dir={clone.git_dir}", "cat-file", "blob", "HEAD:pw") == "/etc/passwd"

    async def test_special_files_are_skipped(self, clone: MissionClone) -> None:
        """A fifo in the work tree is neither committed nor read."""
        os.mkfifo(clone.work_tree / "pipe")
        (clone.work_tree / "real.txt").write_text("r\n")
        await commit(clone)
        entries = tracked(clone)
        assert "pipe" not in entries and "real.txt" in entries

    async def test_executable_bit_is_recorded(self, clone: MissionClone) -> None:
        """A script the agent made executable is committed as 100755."""
        script = clone.work_tree / "run.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o755)
        await commit(clone)
        assert tracked(clone)["run.sh"] == "100755"

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    async def test_files_owned_by_another_uid(self, clone: MissionClone) -> None:
        """Files and folders the agent's uid owns, the tree's top included, are committed."""
        (clone.work_tree / "theirs").mkdir()
        (clone.work_tree / "theirs" / "t.txt").write_text("t\n")
        (clone.work_tree / "src" / "app.py").write_text("changed\n")
        for path in [clone.work_tree, *clone.work_tree.rglob("*")]:
            os.lchown(path, OTHER_UID, OTHER_UID)
        result = await commit(clone)
        assert result is not None
        assert "theirs/t.txt" in tracked(clone)

    @pytest.mark.parametrize("name", ["", "a<b", "x\ny"])
    async def test_bad_author_is_refused(self, clone: MissionClone, name: str) -> None:
        """An author name git would mangle is a 400."""
        with pytest.raises(BadRequest):
            await commit_all(clone, author_name=name, author_email="a@b", message="m", run_id="r-00000001")

    def test_message_is_cleaned(self) -> None:
        """Control characters go, an empty message gets a default, the trailer is appended."""
        assert commit_message("a\x1b[31m\x1eb", "r-00000001") == "a[31mb\n\nHaflow-Run: r-00000001\n"
        assert commit_message("  ", "r-00000001") == "haflow run r-00000001\n\nHaflow-Run: r-00000001\n"
        assert commit_message("m", "r-00000001", "implement") == "m\n\nHaflow-Run: r-00000001\nHaflow-Step: implement\n"
        with pytest.raises(ValueError, match="run id"):
            commit_message("m", "run-1")
        with pytest.raises(ValueError, match="step id"):
            commit_message("m", "r-00000001", "x\nHaflow-Run: r-99999999")
