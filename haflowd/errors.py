"""haflowd's error tree: what went wrong, in words a user can act on.

The core raises these; the web layer alone decides which HTTP status each
kind answers with (:mod:`haflowd.web.envelope`). Messages are shown to users, so
they must say what went wrong and never carry secrets or internal paths.
"""

from __future__ import annotations


class HaflowError(Exception):
    """Root of every error haflowd raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HaflowError):
    """The request itself is wrong (a field, a name, a value)."""


class Unauthorized(HaflowError):
    """No valid credentials."""


class Forbidden(HaflowError):
    """Credentials or origin not allowed to do this."""


class NotFound(HaflowError):
    """The thing named does not exist."""


class Conflict(HaflowError):
    """Not possible in the current state (a step runs, the mission is completed, ...)."""


class PayloadTooLarge(HaflowError):
    """Over a size limit."""


class UnsupportedMediaType(HaflowError):
    """A body that is not JSON."""


class Unprocessable(HaflowError):
    """A well-formed body whose content is refused (an archive breaking a limit or holding a bad name)."""


class StorageFull(HaflowError):
    """The disk under HAFLOW_HOME is full."""


class StorageReadOnly(HaflowError):
    """HAFLOW_HOME cannot be written."""


class SandboxError(HaflowError):
    """A sandbox could not be started, watched or stopped."""


class SandboxUnavailable(SandboxError):
    """The engine behind a sandbox provider cannot be reached at all."""


class MissionNotFound(NotFound):
    def __init__(self, mission_id: str) -> None:
        super().__init__(f"Mission not found: {mission_id}")


class InvalidDefinition(HaflowError):
    """A workflow or agent data file is unusable; raised at load time."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
