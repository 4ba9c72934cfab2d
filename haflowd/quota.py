"""How much one mission may hold: a cap on its artifact files and their total size.

Request bodies are capped by aiohttp (``client_max_size``); this caps what
accumulates over many requests, so a script gone wrong cannot fill the disk
through the API.
"""

from __future__ import annotations

from pathlib import Path

from .agentfiles import regular_files
from .config import Config
from .errors import Conflict, PayloadTooLarge


def usage(folder: Path) -> dict[str, int]:
    """Visible artifact files of a folder and their sizes in bytes."""
    return {entry.name: entry.size for entry in regular_files(folder)}


def check_artifact_write(folder: Path, filename: str, size: int, config: Config) -> None:
    """Raise unless writing ``size`` bytes to ``filename`` keeps the mission within its caps."""
    sizes = usage(folder)
    if filename not in sizes and len(sizes) >= config.max_artifacts:
        raise Conflict(
            f"This mission already has {len(sizes)} artifacts, the most allowed "
            f"(HAFLOW_MAX_ARTIFACTS={config.max_artifacts}); overwrite an existing one instead"
        )
    total = sum(sizes.values()) - sizes.get(filename, 0) + size
    if total > config.max_mission_bytes:
        raise PayloadTooLarge(
            f"Saving {filename} would make this mission's artifacts {total} bytes, over the "
            f"limit of {config.max_mission_bytes} (HAFLOW_MAX_MISSION_BYTES)"
        )
