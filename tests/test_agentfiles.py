"""Reading files an agent could write: regular files only, never through a symlink, never more than asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haflowd import agentfiles
from haflowd.agentfiles import Entry, NotARegularFile


class TestOpenRegular:
    def test_symlink_is_refused(self, tmp_path: Path) -> None:
        """A symlink to a readable file is refused (O_NOFOLLOW), not followed."""
        secret = tmp_path / "secret"
        secret.write_text("host secret")
        (tmp_path / "link").symlink_to(secret)
        with pytest.raises(NotARegularFile):
            agentfiles.open_regular(tmp_path / "link")

    def test_fifo_is_refused_without_blocking(self, tmp_path: Path) -> None:
        """A FIFO with no writer is refused at once instead of blocking the open."""
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(NotARegularFile):
            agentfiles.open_regular(tmp_path / "pipe")

    def test_folder_is_refused(self, tmp_path: Path) -> None:
        """A folder is not a regular file."""
        (tmp_path / "d").mkdir()
        with pytest.raises(NotARegularFile):
            agentfiles.open_regular(tmp_path / "d")

    def test_missing_file_is_not_found(self, tmp_path: Path) -> None:
        """A name that does not exist raises FileNotFoundError, not NotARegularFile."""
        with pytest.raises(FileNotFoundError):
            agentfiles.open_regular(tmp_path / "absent")

    def test_regular_file_gives_a_blocking_descriptor(self, tmp_path: Path) -> None:
        """A regular file opens, and its descriptor is left in blocking mode."""
        (tmp_path / "f").write_bytes(b"data")
        fd = agentfiles.open_regular(tmp_path / "f")
        try:
            assert os.get_blocking(fd)
            assert os.read(fd, 10) == b"data"
        finally:
            os.close(fd)


class TestReadBounded:
    def test_reads_at_most_the_limit_and_reports_the_size(self, tmp_path: Path) -> None:
        """A file over the limit gives its first bytes, its whole size and ``truncated``."""
        (tmp_path / "big").write_bytes(b"x" * 1000)
        read = agentfiles.read_bounded(tmp_path / "big", 10)
        assert (read.data, read.size, read.truncated) == (b"x" * 10, 1000, True)

    def test_small_file_is_read_whole(self, tmp_path: Path) -> None:
        """A file under the limit is read whole and not truncated."""
        (tmp_path / "small").write_bytes(b"hello")
        read = agentfiles.read_bounded(tmp_path / "small", 100)
        assert (read.data, read.size, read.truncated) == (b"hello", 5, False)

    def test_symlink_is_refused(self, tmp_path: Path) -> None:
        """A bounded read never follows a symlink either."""
        (tmp_path / "target").write_text("x")
        (tmp_path / "link").symlink_to(tmp_path / "target")
        with pytest.raises(NotARegularFile):
            agentfiles.read_bounded(tmp_path / "link", 10)


class TestReadRange:
    @pytest.mark.parametrize(
        ("offset", "limit", "data"),
        [(0, 3, b"012"), (7, 10, b"789"), (10, 5, b""), (50, 5, b"")],
    )
    def test_range(self, tmp_path: Path, offset: int, limit: int, data: bytes) -> None:
        """A range is cut to the file's end, and past the end is empty; the size is always the file's."""
        (tmp_path / "f").write_bytes(b"0123456789")
        read = agentfiles.read_range(tmp_path / "f", offset, limit)
        assert (read.data, read.size) == (data, 10)


class TestIterChunks:
    def test_chunks_give_the_whole_file(self, tmp_path: Path) -> None:
        """Chunks of the given size join to the whole content."""
        (tmp_path / "f").write_bytes(b"abcdefg")
        assert list(agentfiles.iter_chunks(tmp_path / "f", chunk=3)) == [b"abc", b"def", b"g"]

    def test_symlink_is_refused(self, tmp_path: Path) -> None:
        """Streaming a symlink fails before any byte is given."""
        (tmp_path / "target").write_text("x")
        (tmp_path / "link").symlink_to(tmp_path / "target")
        with pytest.raises(NotARegularFile):
            next(agentfiles.iter_chunks(tmp_path / "link"))


class TestRegularFiles:
    def test_lists_only_visible_regular_files_by_name(self, tmp_path: Path) -> None:
        """Hidden files, symlinks, FIFOs and folders are left out; the rest comes sorted with sizes."""
        (tmp_path / "b.md").write_bytes(b"12")
        (tmp_path / "a.md").write_bytes(b"1")
        (tmp_path / ".hidden").write_text("x")
        (tmp_path / "link").symlink_to(tmp_path / "a.md")
        (tmp_path / "sub").mkdir()
        os.mkfifo(tmp_path / "pipe")
        assert agentfiles.regular_files(tmp_path) == [Entry("a.md", 1), Entry("b.md", 2)]

    def test_non_utf8_name_is_left_out(self, tmp_path: Path) -> None:
        """A name that is not valid UTF-8 on disk is not listed."""
        (tmp_path / os.fsdecode(b"bad\xff")).write_text("x")
        (tmp_path / "good").write_text("x")
        assert [e.name for e in agentfiles.regular_files(tmp_path)] == ["good"]

    def test_missing_folder_is_empty(self, tmp_path: Path) -> None:
        """A folder that does not exist has no files."""
        assert agentfiles.regular_files(tmp_path / "absent") == []


class TestNames:
    @pytest.mark.parametrize(
        ("name", "printable"),
        [("plan.md", True), ("é.txt", True), ("a\nb", False), ("tab\t", False), ("del\x7f", False)],
    )
    def test_printable_name(self, name: str, printable: bool) -> None:
        """Names with control characters cannot be shown as text."""
        assert agentfiles.printable_name(name) is printable

    def test_surrogate_escape_is_not_printable(self) -> None:
        """A name decoded with surrogate escapes (not UTF-8 on disk) is not printable."""
        assert agentfiles.printable_name(os.fsdecode(b"\xff")) is False

    def test_is_regular_does_not_follow_links(self, tmp_path: Path) -> None:
        """``is_regular`` looks at the path itself: a link to a file is not one."""
        (tmp_path / "f").write_text("x")
        (tmp_path / "link").symlink_to(tmp_path / "f")
        assert agentfiles.is_regular(tmp_path / "f")
        assert not agentfiles.is_regular(tmp_path / "link")
        assert not agentfiles.is_regular(tmp_path / "absent")
