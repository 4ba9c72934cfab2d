"""Unpacking a sandbox's tar stream onto the host: what arrives, and what never does."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path
from typing import Any

import pytest

from haflowd.sandbox import unpack
from haflowd.sandbox.unpack import UnpackError, unpack_file, unpack_tree


def entry(name: str, data: bytes | None = b"", **fields: Any) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(info, key, value)
    if info.type == tarfile.REGTYPE and data is not None:
        info.size = len(data)
    return info, data


def archive(tmp_path: Path, *entries: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    path = tmp_path / "back.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in entries:
            tar.addfile(info, io.BytesIO(data or b"") if info.isreg() else None)
    return path


def folder(name: str) -> tuple[tarfile.TarInfo, bytes | None]:
    return entry(name, None, type=tarfile.DIRTYPE, mode=0o755)


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    out = tmp_path / "artifacts"
    out.mkdir()
    (out / "stale.md").write_text("old")
    (out / "keep").mkdir()
    (out / "keep" / "x").write_text("mine")
    return out


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


class TestUnpackTree:
    def test_replaces_content(self, tmp_path: Path, dest: Path) -> None:
        """The folder ends up holding exactly the archive's tree; a kept entry stays as it was."""
        tar = archive(
            tmp_path,
            folder("artifacts"),
            entry("artifacts/out.md", b"new"),
            folder("artifacts/sub"),
            entry("artifacts/sub/f", b"f"),
            entry("artifacts/keep/x", b"theirs"),
            entry("artifacts/link", type=tarfile.SYMTYPE, linkname="out.md"),
        )
        unpack_tree(tar, "artifacts", dest, keep=("keep",))
        assert listing(dest) == ["keep", "keep/x", "link", "out.md", "sub", "sub/f"]
        assert (dest / "out.md").read_text() == "new"
        assert (dest / "keep" / "x").read_text() == "mine"
        assert (dest / "link").readlink() == Path("out.md")
        assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []

    @pytest.mark.parametrize("linkname", ["/etc/passwd", "../../outside", "sub/../../../x"])
    def test_links_out_are_dropped(self, tmp_path: Path, dest: Path, linkname: str) -> None:
        """A symlink pointing out of the folder is left out; the rest arrives."""
        tar = archive(
            tmp_path,
            folder("artifacts"),
            entry("artifacts/ok", b"1"),
            entry("artifacts/bad", type=tarfile.SYMTYPE, linkname=linkname),
        )
        unpack_tree(tar, "artifacts", dest)
        assert listing(dest) == ["ok"]

    def test_hard_link_out_is_dropped(self, tmp_path: Path, dest: Path) -> None:
        """A hard link to a name outside the archive's folder is left out."""
        tar = archive(
            tmp_path,
            folder("artifacts"),
            entry("artifacts/a", b"a"),
            entry("artifacts/h", type=tarfile.LNKTYPE, linkname="x/y"),
        )
        unpack_tree(tar, "artifacts", dest)
        assert listing(dest) == ["a"]

    def test_special_files_and_modes(self, tmp_path: Path, dest: Path) -> None:
        """Devices and pipes are left out; set-uid and world-write bits are cleared."""
        tar = archive(
            tmp_path,
            folder("artifacts"),
            entry("artifacts/dev", type=tarfile.CHRTYPE, devmajor=1, devminor=3),
            entry("artifacts/fifo", type=tarfile.FIFOTYPE),
            entry("artifacts/suid", b"#!/bin/sh\n", mode=0o4777),
        )
        unpack_tree(tar, "artifacts", dest)
        assert listing(dest) == ["suid"]
        assert (dest / "suid").stat().st_mode & 0o7777 == 0o755

    def test_archive_without_its_folder_is_refused(self, tmp_path: Path, dest: Path) -> None:
        """An archive that does not hold the area's folder (another area's only) changes nothing."""
        before = listing(dest)
        tar = archive(tmp_path, folder("other"), entry("other/x", b"x"))
        with pytest.raises(UnpackError, match="does not hold"):
            unpack_tree(tar, "artifacts", dest, others=("other",))
        assert listing(dest) == before

    def test_cut_off_archive_is_refused(self, tmp_path: Path, dest: Path) -> None:
        """A stream cut between two entries (a collect whose tar died) is refused, not taken as the whole area."""
        before = listing(dest)
        whole = archive(tmp_path, folder("artifacts"), entry("artifacts/a", b"a" * 600), entry("artifacts/b", b"b"))
        data = whole.read_bytes()
        with tarfile.open(whole) as tar:
            second = tar.getmember("artifacts/b").offset
        cut = tmp_path / "cut.tar"
        cut.write_bytes(data[:second])
        with pytest.raises(UnpackError, match="cut off"):
            unpack_tree(cut, "artifacts", dest)
        assert listing(dest) == before
        unpack_tree(whole, "artifacts", dest)
        assert listing(dest) == ["a", "b"]

    @pytest.mark.parametrize("safe", [True, False])
    def test_climbing_symlink_inside_kept_only_with_a_safe_tarfile(
        self, tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch, safe: bool
    ) -> None:
        """``sub/up -> ../a`` stays in the folder, yet is dropped where tarfile lacks the 2025 path fixes."""
        monkeypatch.setattr(unpack, "REALPATH_IS_SAFE", safe)
        tar = archive(
            tmp_path,
            folder("artifacts"),
            entry("artifacts/a", b"a"),
            folder("artifacts/sub"),
            entry("artifacts/sub/up", type=tarfile.SYMTYPE, linkname="../a"),
            entry("artifacts/down", type=tarfile.SYMTYPE, linkname="sub"),
        )
        unpack_tree(tar, "artifacts", dest)
        expected = ["a", "down", "sub", "sub/up"] if safe else ["a", "down", "sub"]
        assert listing(dest) == expected

    @pytest.mark.parametrize(
        "name",
        ["/artifacts/abs", "artifacts/../escape", "elsewhere/file", "artifacts/a/../../b"],
    )
    def test_bad_names_refuse_everything(self, tmp_path: Path, dest: Path, name: str) -> None:
        """A name outside the folder refuses the whole archive and leaves the folder untouched."""
        before = listing(dest)
        tar = archive(tmp_path, entry("artifacts/fine", b"1"), entry(name, b"x"))
        with pytest.raises(UnpackError):
            unpack_tree(tar, "artifacts", dest)
        assert listing(dest) == before

    def test_member_cap(self, tmp_path: Path, dest: Path) -> None:
        """More members than the cap refuse the archive."""
        tar = archive(tmp_path, *(entry(f"artifacts/{i}", b"") for i in range(11)))
        with pytest.raises(UnpackError, match="more than 10 entries"):
            unpack_tree(tar, "artifacts", dest, max_members=10)
        assert (dest / "stale.md").exists()

    def test_size_cap(self, tmp_path: Path, dest: Path) -> None:
        """More bytes than the cap refuse the archive."""
        tar = archive(tmp_path, entry("artifacts/a", b"x" * 600), entry("artifacts/b", b"x" * 600))
        with pytest.raises(UnpackError, match="more than 1000 bytes"):
            unpack_tree(tar, "artifacts", dest, max_bytes=1000)
        assert (dest / "stale.md").exists()

    def test_not_a_tar(self, tmp_path: Path, dest: Path) -> None:
        """Garbage instead of a tar stream is an UnpackError, not a crash."""
        path = tmp_path / "junk.tar"
        path.write_bytes(b"no tar here" * 100)
        with pytest.raises(UnpackError):
            unpack_tree(path, "artifacts", dest)


class TestUnpackFile:
    def test_replaces_file(self, tmp_path: Path) -> None:
        """The file is replaced by the archive's regular file of that name."""
        target = tmp_path / "prompt.md"
        target.write_text("old")
        unpack_file(archive(tmp_path, entry("prompt.md", b"new")), "prompt.md", target)
        assert target.read_text() == "new"

    def test_symlink_refused(self, tmp_path: Path) -> None:
        """A symlink in place of the file is refused; the file stays."""
        target = tmp_path / "prompt.md"
        target.write_text("old")
        tar = archive(tmp_path, entry("prompt.md", type=tarfile.SYMTYPE, linkname="/etc/passwd"))
        with pytest.raises(UnpackError, match="regular file"):
            unpack_file(tar, "prompt.md", target)
        assert target.read_text() == "old"
