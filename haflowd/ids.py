"""Identifiers and names that end up in paths: generated here, checked here.

Every value a request can put into a filesystem path passes one of these
checks first, so a path can never leave the mission folder.
"""

from __future__ import annotations

import re
import secrets

from .errors import BadRequest

#: Matched whole (``fullmatch``); the API description anchors their ``.pattern``.
MISSION_ID = re.compile(r"m-[0-9a-f]{8}")
RUN_ID = re.compile(r"r-[0-9a-f]{8}")
PROJECT_ID = re.compile(r"p-[0-9a-f]{8}")
EXECUTION_ID = re.compile(r"exec-[0-9a-f]{8}")
# A plain file name: no separators, no leading dot (so no "." / ".." and no
# hidden files), letters, digits, dot, dash and underscore only.
FILENAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]*")
MAX_FILENAME_BYTES = 255


def new_mission_id() -> str:
    return f"m-{secrets.token_hex(4)}"


def new_run_id() -> str:
    return f"r-{secrets.token_hex(4)}"


def new_project_id() -> str:
    return f"p-{secrets.token_hex(4)}"


def new_execution_id() -> str:
    return f"exec-{secrets.token_hex(4)}"


def is_project_id(value: str) -> bool:
    return PROJECT_ID.fullmatch(value) is not None


def is_execution_id(value: str) -> bool:
    return EXECUTION_ID.fullmatch(value) is not None


def is_mission_id(value: str) -> bool:
    return MISSION_ID.fullmatch(value) is not None


def is_run_id(value: str) -> bool:
    return RUN_ID.fullmatch(value) is not None


def filename_problem(name: str) -> str | None:
    """Say what is wrong with an artifact file name, or ``None`` if it is fine."""
    if not name:
        return "must not be empty"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_FILENAME_BYTES:
        return f"must be at most {MAX_FILENAME_BYTES} bytes"
    if ".." in name:
        return "must not contain '..'"
    if FILENAME.fullmatch(name) is None:
        return "may only contain letters, digits, '.', '-' and '_' and must not start with '.'"
    return None


def check_filename(name: str) -> str:
    """Return ``name`` if it is a safe artifact file name, else raise 400."""
    problem = filename_problem(name)
    if problem is not None:
        raise BadRequest(f"Invalid artifact filename: {problem}")
    return name
