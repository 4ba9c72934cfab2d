"""Review queries: status, diff, commits and patch, in the contract's shapes."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from haflowd.errors import BadRequest
from haflowd.models import Commit, GitFile, GitStatus
from haflowd.workspaces.clone import MissionClone, commit_all
from haflowd.workspaces.review import (
    check_tree_path,
    commits,
    diff,
    patch,
    status,
)
from tests.workspaces.conftest import git


async def commit(clone: MissionClone, run_id: str, message: str = "step", step_id: str | None = None) -> str:
    result = await commit_all(
        clone, author_name="Agent", author_email="agent@haflow.local", message=message, run_id=run_id, step_id=step_id
    )
    assert result is not None
    return result.sha


def index_bytes(clone: MissionClone) -> bytes:
    return (clone.git_dir / "index").read_bytes()


class TestStatus:
    """status lists committed and uncommitted changes against the base commit."""

    async def test_clean(self, clone: MissionClone) -> None:
        """A fresh clone has no changes."""
        assert await status(clone) == GitStatus(False, (), "No changes")

    async def test_letters_and_summary(self, clone: MissionClone) -> None:
        """Modified, deleted, untracked and type-changed paths carry git's letter; ignored ones are absent."""
        w = clone.work_tree
        (w / "README.md").write_text("changed\n")
        (w / "src" / "old.py").unlink()
        (w / "new.txt").write_text("n\n")
        (w / "x.log").write_text("ignored\n")
        (w / "docs" / "guide.md").unlink()
        os.symlink("../README.md", w / "docs" / "guide.md")
        result = await status(clone)
        assert result.has_changes
        assert set(result.files) == {
            GitFile("README.md", "M"),
            GitFile("src/old.py", "D"),
            GitFile("new.txt", "A"),
            GitFile("docs/guide.md", "T"),
        }
        assert result.summary == "4 files changed (1 added, 1 modified, 1 deleted, 1 type changed)"

    async def test_committed_and_uncommitted_work_together(self, clone: MissionClone) -> None:
        """A committed step and later uncommitted edits both count against the base."""
        (clone.work_tree / "one.txt").write_text("1\n")
        await commit(clone, "r-00000001")
        (clone.work_tree / "two.txt").write_text("2\n")
        result = await status(clone)
        assert [f.path for f in result.files] == ["one.txt", "two.txt"]

    async def test_committed_rename_is_r(self, clone: MissionClone) -> None:
        """A committed rename shows as R under its new path."""
        (clone.work_tree / "src" / "old.py").rename(clone.work_tree / "src" / "renamed.py")
        await commit(clone, "r-00000001")
        assert (await status(clone)).files == (GitFile("src/renamed.py", "R"),)

    async def test_names_that_are_not_utf8(self, clone: MissionClone) -> None:
        """A file name with invalid UTF-8 is listed with U+FFFD, as valid text."""
        with open(os.path.join(os.fsencode(clone.work_tree), b"bad-\xff.txt"), "w") as handle:
            handle.write("x\n")
        (path,) = [f.path for f in (await status(clone)).files]
        assert path == "bad-\ufffd.txt"
        path.encode("utf-8")

    async def test_leaves_the_index_alone(self, clone: MissionClone) -> None:
        """Untracked files are shown without touching the clone's own index."""
        before = index_bytes(clone)
        (clone.work_tree / "new.txt").write_text("n\n")
        await status(clone)
        assert index_bytes(clone) == before


class TestDiff:
    """diff is a unified diff against the base, bounded, with untracked, binary and symlinked files."""

    async def test_untracked_modified_and_deleted(self, clone: MissionClone) -> None:
        """The diff holds a new untracked file, an edit and a deletion."""
        (clone.work_tree / "new.txt").write_text("brand new\n")
        (clone.work_tree / "README.md").write_text("hello\nworld\n")
        (clone.work_tree / "src" / "old.py").unlink()
        result = await diff(clone)
        assert not result.truncated
        assert "diff --git a/new.txt b/new.txt\nnew file mode 100644\n" in result.diff
        assert "+brand new\n" in result.diff
        assert " hello\n+world\n" in result.diff
        assert "deleted file mode 100644" in result.diff and "-old = 1\n" in result.diff

    async def test_binary_file(self, clone: MissionClone) -> None:
        """A binary file shows as 'Binary files ... differ', never its bytes."""
        (clone.work_tree / "image.png").write_bytes(b"\x89PNG\0\0secret-bytes")
        result = await diff(clone)
        assert "Binary files /dev/null and b/image.png differ" in result.diff
        assert "secret-bytes" not in result.diff

    async def test_symlink_shows_its_target(self, clone: MissionClone) -> None:
        """A symlink shows as mode 120000 with its target as the text."""
        os.symlink("src/app.py", clone.work_tree / "link")
        result = await diff(clone)
        assert "new file mode 120000" in result.diff
        assert "+src/app.py\n\\ No newline at end of file" in result.diff

    @pytest.mark.parametrize("name", [".GIT/hooks/pre-commit", ".git./config", "git~1/config", ".Git /x"])
    async def test_a_name_git_refuses_does_not_break_the_diff(self, clone: MissionClone, name: str) -> None:
        """An untracked file whose path git will not index (a .git look-alike an agent made) is left out, not a 500."""
        (clone.work_tree / name).parent.mkdir(parents=True)
        (clone.work_tree / name).write_text("#!/bin/sh\n")
        (clone.work_tree / "new.txt").write_text("brand new\n")
        result = await diff(clone)
        assert "+brand new\n" in result.diff and "#!/bin/sh" not in result.diff
        await commit(clone, "r-0123abcd")  # git drops the name when committing too; it stays untracked
        after = (await diff(clone)).diff
        assert after.count("diff --git") == 1 and "+brand new\n" in after

    async def test_truncated_at_a_line_end(self, clone: MissionClone) -> None:
        """Past max_bytes the diff is cut at a line end and says truncated."""
        (clone.work_tree / "big.txt").write_text("".join(f"line {i}\n" for i in range(10000)))
        result = await diff(clone, max_bytes=4096)
        assert result.truncated
        assert len(result.diff.encode()) <= 4096
        assert result.diff.endswith("\n")

    async def test_huge_generated_file_does_not_stall(self, clone: MissionClone) -> None:
        """A 50 MB untracked file gives a bounded answer (git is killed past the bound)."""
        line = b"generated content line with some words in it 0123456789\n"
        (clone.work_tree / "huge.txt").write_bytes(line * (50 * 1024 * 1024 // len(line)))
        started = time.monotonic()
        result = await diff(clone, max_bytes=64 * 1024)
        assert result.truncated and len(result.diff) <= 64 * 1024
        # Not a benchmark: only that the answer did not wait for 50 MB of diff text.
        assert time.monotonic() - started < 60

    async def test_one_step_between_commits(self, clone: MissionClone) -> None:
        """from/to show exactly one step's change."""
        (clone.work_tree / "a.txt").write_text("first\n")
        first = await commit(clone, "r-00000001")
        (clone.work_tree / "a.txt").write_text("second\n")
        second = await commit(clone, "r-00000002")
        (clone.work_tree / "a.txt").write_text("uncommitted\n")
        step = await diff(clone, from_=first, to=second)
        assert "-first\n+second\n" in step.diff
        assert "uncommitted" not in step.diff
        to_only = await diff(clone, to=first)
        assert "+first\n" in to_only.diff and "second" not in to_only.diff
        assert "+uncommitted\n" in (await diff(clone, from_=second[:12])).diff

    async def test_one_file(self, clone: MissionClone) -> None:
        """path limits the diff to one file, untracked or tracked, nested paths included."""
        (clone.work_tree / "README.md").write_text("changed\n")
        (clone.work_tree / "src" / "extra.py").write_text("extra\n")
        one = await diff(clone, path="src/extra.py")
        assert "src/extra.py" in one.diff and "README.md" not in one.diff
        assert "README.md" in (await diff(clone, path="README.md")).diff
        assert (await diff(clone, path="not/there.txt")).diff == ""

    async def test_path_with_glob_characters_is_literal(self, clone: MissionClone) -> None:
        """A path is never a pattern: '*.md' names the file called '*.md' only."""
        (clone.work_tree / "README.md").write_text("changed\n")
        assert (await diff(clone, path="*.md")).diff == ""

    @pytest.mark.parametrize("path", ["../etc/passwd", "/etc/passwd", "src/../../x", ".git/config", "", ".", "a\\b"])
    async def test_path_outside_the_tree_is_400(self, clone: MissionClone, path: str) -> None:
        """Absolute paths, '..', '.git' and empty paths are refused."""
        with pytest.raises(BadRequest):
            await diff(clone, path=path)

    @pytest.mark.parametrize("rev", ["--output=/tmp/x", "HEAD~1", "zzzz", "0000000000000000000000000000000000000000"])
    async def test_bad_revision_is_400(self, clone: MissionClone, rev: str) -> None:
        """Only shas of commits in the clone are accepted as from/to."""
        with pytest.raises(BadRequest):
            await diff(clone, from_=rev)

    def test_check_tree_path_normalises(self) -> None:
        """Redundant separators and '.' parts are dropped."""
        assert check_tree_path("src//./app.py") == "src/app.py"


class TestCommits:
    """commits lists the mission's commits oldest first with their run ids and stats."""

    async def test_none_yet(self, clone: MissionClone) -> None:
        """A fresh clone has no mission commits."""
        assert await commits(clone) == []

    async def test_oldest_first_with_run_ids(self, clone: MissionClone) -> None:
        """Each commit carries author, message, run id and file/line counts."""
        (clone.work_tree / "a.txt").write_text("1\n2\n")
        first = await commit(clone, "r-00000001", "First step")
        (clone.work_tree / "a.txt").write_text("1\n")
        (clone.work_tree / "README.md").unlink()
        second = await commit(clone, "r-00000002", "Second step\n\nWith a body.", step_id="implementation")
        listed = await commits(clone)
        assert [c.sha for c in listed] == [first, second]
        one, two = listed
        assert isinstance(one, Commit)
        assert one.author == "Agent <agent@haflow.local>"
        assert one.message == "First step\n\nHaflow-Run: r-00000001"
        assert (one.run_id, one.files, one.insertions, one.deletions) == ("r-00000001", 1, 2, 0)
        assert (two.run_id, two.files, two.insertions, two.deletions) == ("r-00000002", 2, 0, 2)
        assert (one.step_id, two.step_id) == (None, "implementation")
        assert one.created_at.tzinfo is not None

    async def test_commit_without_trailer(self, clone: MissionClone) -> None:
        """A commit made some other way has no run id."""
        (clone.work_tree / "b.txt").write_text("b\n")
        git(f"--git-dir={clone.git_dir}", f"--work-tree={clone.work_tree}", "add", "b.txt")
        git(f"--git-dir={clone.git_dir}", f"--work-tree={clone.work_tree}", "commit", "-q", "-m", "manual")
        (listed,) = await commits(clone)
        assert listed.run_id is None and listed.message == "manual"


class TestPatch:
    """patch is git format-patch --stdout of the mission's commits."""

    async def test_applies_to_the_base(self, clone: MissionClone, user_repo: Path) -> None:
        """The patch series applies with git am on the user's base commit."""
        (clone.work_tree / "a.txt").write_text("1\n")
        await commit(clone, "r-00000001", "First")
        (clone.work_tree / "bin.dat").write_bytes(b"\0\1\2")
        await commit(clone, "r-00000002", "Second")
        text = await patch(clone)
        assert text.startswith("From ")
        assert "Subject: [PATCH 1/2] First" in text and "Subject: [PATCH 2/2] Second" in text
        git("am", "-q", cwd=user_repo, input=text.encode())
        assert (user_repo / "bin.dat").read_bytes() == b"\0\1\2"

    async def test_empty_without_commits(self, clone: MissionClone) -> None:
        """No mission commits, no patch text."""
        assert await patch(clone) == ""
