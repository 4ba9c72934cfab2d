"""Linked projects on disk: ``HAFLOW_HOME/projects/<project_id>.json``, one atomic file each.

Linking records where the user's repository is; it writes nothing into the
repository. Unlinking removes only this record: missions keep their clones.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import attrs

from .convert import converter, dumps
from .errors import Conflict, NotFound
from .ids import is_project_id
from .models import Project
from .store import atomic_write

log = logging.getLogger(__name__)


@attrs.define
class ProjectStore:
    """Every linked project, kept in memory and on disk."""

    root: Path
    _index: dict[str, Project] = attrs.field(factory=dict, init=False)

    def load(self) -> int:
        self.root.mkdir(parents=True, exist_ok=True)
        self._index.clear()
        for entry in os.scandir(self.root):
            name = entry.name.removesuffix(".json")
            if not entry.name.endswith(".json") or not is_project_id(name):
                continue
            try:
                with open(entry.path, "rb") as f:
                    project = converter.structure(json.loads(f.read()), Project)
            except Exception as exc:
                log.warning("projects.skipped", extra={"path": entry.path, "reason": str(exc)})
                continue
            self._index[project.project_id] = project
        return len(self._index)

    def all(self) -> list[Project]:
        return sorted(self._index.values(), key=lambda p: p.created_at)

    def get(self, project_id: str) -> Project:
        try:
            return self._index[project_id]
        except KeyError:
            raise NotFound(f"Project not found: {project_id}") from None

    def find_by_path(self, path: str) -> Project | None:
        return next((p for p in self._index.values() if p.path == path), None)

    def add(self, project: Project) -> Project:
        existing = self.find_by_path(project.path)
        if existing is not None:
            raise Conflict(f"This repository is already linked as project {existing.project_id}")
        self.root.mkdir(parents=True, exist_ok=True)
        atomic_write(self.root / f"{project.project_id}.json", dumps(project).encode())
        self._index[project.project_id] = project
        return project

    def remove(self, project_id: str) -> Project:
        project = self.get(project_id)
        (self.root / f"{project_id}.json").unlink(missing_ok=True)
        del self._index[project_id]
        return project
