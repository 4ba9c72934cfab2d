"""Linked projects on disk: one atomic JSON file each, loaded back, unlinked without touching anything else."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from haflowd.errors import Conflict, NotFound
from haflowd.models import Project
from haflowd.projects import ProjectStore

WHEN = datetime(2026, 1, 23, 10, tzinfo=UTC)


def project(project_id: str = "p-0123abcd", path: str = "/src/repo", **fields: object) -> Project:
    return Project(project_id=project_id, name="repo", path=path, created_at=WHEN, **fields)  # type: ignore[arg-type]


class TestProjectStore:
    def test_added_project_is_on_disk_and_loads_back(self, tmp_path: Path) -> None:
        """An added project is written to ``<id>.json`` and a new store loads it equal."""
        store = ProjectStore(tmp_path / "projects")
        added = store.add(project(test_command="make test"))
        assert (tmp_path / "projects" / "p-0123abcd.json").is_file()
        again = ProjectStore(tmp_path / "projects")
        assert again.load() == 1
        assert again.get("p-0123abcd") == added

    def test_same_path_twice_is_a_conflict(self, tmp_path: Path) -> None:
        """A repository is linked once; the conflict names the existing project."""
        store = ProjectStore(tmp_path)
        store.add(project())
        with pytest.raises(Conflict, match="p-0123abcd"):
            store.add(project("p-99999999"))

    def test_remove_deletes_only_the_record(self, tmp_path: Path) -> None:
        """Unlinking removes the record from disk and memory; then the id is unknown."""
        store = ProjectStore(tmp_path)
        store.add(project())
        assert store.remove("p-0123abcd").project_id == "p-0123abcd"
        assert list(tmp_path.iterdir()) == []
        with pytest.raises(NotFound, match="Project not found: p-0123abcd"):
            store.get("p-0123abcd")

    def test_all_oldest_first_and_find_by_path(self, tmp_path: Path) -> None:
        """Projects are listed oldest first and found by their path."""
        store = ProjectStore(tmp_path)
        later = Project(project_id="p-00000002", name="b", path="/b", created_at=WHEN.replace(hour=11))
        store.add(later)
        store.add(project("p-00000001", "/a"))
        assert [p.project_id for p in store.all()] == ["p-00000001", "p-00000002"]
        assert store.find_by_path("/b") == later
        assert store.find_by_path("/c") is None

    def test_load_skips_strangers_and_broken_files(self, tmp_path: Path) -> None:
        """Loading ignores names that are not project ids and skips unreadable records."""
        store = ProjectStore(tmp_path)
        store.add(project())
        (tmp_path / "notes.txt").write_text("x")
        (tmp_path / "evil.json").write_text("{}")
        (tmp_path / "p-ffffffff.json").write_text("{not json")
        again = ProjectStore(tmp_path)
        assert again.load() == 1
        assert [p.project_id for p in again.all()] == ["p-0123abcd"]

    def test_load_creates_the_folder(self, tmp_path: Path) -> None:
        """A home without projects loads none and has the folder afterwards."""
        store = ProjectStore(tmp_path / "projects")
        assert store.load() == 0
        assert (tmp_path / "projects").is_dir()
