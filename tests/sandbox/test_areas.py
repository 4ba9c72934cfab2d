"""Areas as tar streams: how a step's mounts travel to an engine without the daemon's disk."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from haflowd.sandbox import Mount, SandboxError
from haflowd.sandbox.areas import pack_areas, plan_areas, unpack_areas, vet_areas
from haflowd.sandbox.unpack import UnpackError


@pytest.fixture
def areas(tmp_path: Path) -> list[Mount]:
    work = tmp_path / "work"
    (work / ".git").mkdir(parents=True)
    (work / "src.py").write_text("print(1)\n")
    git = tmp_path / "git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    prompt = tmp_path / "prompt.md"
    prompt.write_text("do it\n")
    return [
        Mount(work, "/workspace", name="workspace"),
        Mount(git, "/workspace/.git", read_only=True, name="git-dir"),
        Mount(prompt, "/mission/prompt.md", read_only=True, name="prompt"),
    ]


def test_plan_names_members_and_nesting(areas: list[Mount]) -> None:
    plans = plan_areas(areas)
    assert [p.member for p in plans] == ["a0", "a1", "a2"]
    assert plans[0].keep == (".git",) and plans[0].writable
    assert plans[2].file_name == "prompt.md" and not plans[2].writable
    assert [p.label for p in plans] == ["workspace", "git-dir", "prompt"]


def test_pack_layout_and_owner(areas: list[Mount]) -> None:
    out = io.BytesIO()
    pack_areas(plan_areas(areas), out, 65534, 65534)
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert {"a0/src.py", "a1/HEAD", "a2/prompt.md"} <= set(members)
    assert {(m.uid, m.gid) for m in members.values()} == {(65534, 65534)}


def test_round_trip_brings_back_writable_only(areas: list[Mount], tmp_path: Path) -> None:
    plans = plan_areas(areas)
    archive = tmp_path / "back.tar"
    with archive.open("wb") as out:
        pack_areas(plans, out, 1000, 1000)
    (areas[0].source / "src.py").write_text("changed on the host\n")
    (areas[2].source).write_text("prompt changed on the host\n")
    unpack_areas(archive, plans)
    assert (areas[0].source / "src.py").read_text() == "print(1)\n"
    assert (areas[0].source / ".git").is_dir()
    assert areas[2].source.read_text() == "prompt changed on the host\n"


def test_area_cap_refuses_and_keeps_source(tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    (work / "a.txt").write_text("x" * 100)
    plans = plan_areas([Mount(work, "/workspace", max_bytes=10, name="workspace")])
    archive = tmp_path / "back.tar"
    with archive.open("wb") as out:
        pack_areas(plans, out, 1000, 1000)
    (work / "a.txt").write_text("kept")
    with pytest.raises(UnpackError):
        unpack_areas(archive, plans)
    assert (work / "a.txt").read_text() == "kept"


@pytest.mark.parametrize(
    "targets",
    [["/", "/x"], ["relative", "/x"], ["/x", "/x/"], ["/x", "/x/a/b"]],
)
def test_plan_refuses_what_cannot_travel(tmp_path: Path, targets: list[str]) -> None:
    mounts = []
    for i, target in enumerate(targets):
        folder = tmp_path / str(i)
        folder.mkdir()
        mounts.append(Mount(folder, target))
    with pytest.raises(SandboxError):
        plan_areas(mounts)


def test_plan_refuses_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="folder or a regular file"):
        plan_areas([Mount(tmp_path / "gone", "/x")])


def test_an_area_missing_from_the_stream_is_refused(areas: list[Mount], tmp_path: Path) -> None:
    """A stream without a writable area's folder (only another area's) refuses, leaving that area as it was."""
    plans = plan_areas(areas)
    archive = tmp_path / "back.tar"
    with archive.open("wb") as out:
        pack_areas([plans[1]], out, 1000, 1000)
    with pytest.raises(UnpackError, match="does not hold"):
        vet_areas(archive, plans)
    with pytest.raises(UnpackError, match="does not hold"):
        unpack_areas(archive, plans)
    assert (areas[0].source / "src.py").read_text() == "print(1)\n"
