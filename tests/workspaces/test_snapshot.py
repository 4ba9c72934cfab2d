"""Snapshots: a throwaway copy of the work tree for sandboxed commands."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from haflowd.workspaces.clone import MissionClone
from haflowd.workspaces.snapshot import snapshot_worktree
from tests.workspaces.conftest import OTHER_UID, ROOT, tree_state


class TestSnapshotWorktree:
    """snapshot_worktree copies the tree as it is now; the copy is independent of it."""

    async def test_copy_is_the_tree_as_it_is(self, clone: MissionClone, tmp_path: Path) -> None:
        """Uncommitted, untracked and ignored files are all in the copy; .git is not."""
        (clone.work_tree / "README.md").write_text("uncommitted\n")
        (clone.work_tree / "new.txt").write_text("n\n")
        (clone.work_tree / "debug.log").write_text("ignored but present\n")
        (clone.work_tree / ".git").mkdir()
        (clone.work_tree / ".git" / "config").write_text("[core]\n")
        copy = await snapshot_worktree(clone.work_tree, tmp_path / "snaps")
        assert copy.parent.parent == tmp_path / "snaps"
        assert not (copy / ".git").exists()
        original = tree_state(clone.work_tree)
        assert tree_state(copy) == original

    async def test_writes_to_the_copy_do_not_reach_the_tree(self, clone: MissionClone, tmp_path: Path) -> None:
        """Changing, adding and deleting in the copy leaves the mission's tree as it was (no hard links)."""
        before = tree_state(clone.work_tree)
        copy = await snapshot_worktree(clone.work_tree, tmp_path / "snaps")
        with (copy / "README.md").open("a") as handle:
            handle.write("appended in place\n")
        (copy / "src" / "app.py").unlink()
        (copy / "made-by-tests").write_text("x")
        assert tree_state(clone.work_tree) == before
        assert (clone.work_tree / "README.md").stat().st_ino != (copy / "README.md").stat().st_ino

    async def test_symlinks_are_copied_as_links(self, clone: MissionClone, tmp_path: Path) -> None:
        """A symlink out of the tree stays a symlink; its target is not copied."""
        secret = tmp_path / "token"
        secret.write_text("SECRET")
        os.symlink(secret, clone.work_tree / "tok")
        os.symlink(tmp_path, clone.work_tree / "outside")
        copy = await snapshot_worktree(clone.work_tree, tmp_path / "snaps")
        assert os.readlink(copy / "tok") == str(secret)
        assert (copy / "outside").is_symlink()
        shutil.rmtree(copy.parent)
        assert secret.read_text() == "SECRET"

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    async def test_owner_mode_and_times_are_kept(self, clone: MissionClone, tmp_path: Path) -> None:
        """The sandbox's uid can still write its copy: owner, mode and mtime survive the copy."""
        script = clone.work_tree / "run.sh"
        script.write_text("#!/bin/sh\n")
        script.chmod(0o750)
        os.utime(script, (1_600_000_000, 1_600_000_000))
        os.lchown(script, OTHER_UID, OTHER_UID)
        copy = await snapshot_worktree(clone.work_tree, tmp_path / "snaps")
        st = (copy / "run.sh").stat()
        assert (st.st_uid, st.st_mode & 0o777, int(st.st_mtime)) == (OTHER_UID, 0o750, 1_600_000_000)
