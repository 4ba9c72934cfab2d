"""haflowd's error tree: every error knows the HTTP status it answers with."""

from __future__ import annotations


class HaflowError(Exception):
    """Root of every error haflowd raises on purpose.

    The API middleware turns these into the envelope with ``status``; the
    message is shown to users, so it must say what went wrong and never
    carry secrets or internal paths.
    """

    status: int = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(HaflowError):
    status = 400


class Unauthorized(HaflowError):
    status = 401


class Forbidden(HaflowError):
    status = 403


class NotFound(HaflowError):
    status = 404


class Conflict(HaflowError):
    status = 409


class PayloadTooLarge(HaflowError):
    status = 413


class UnsupportedMediaType(HaflowError):
    status = 415


class MissionNotFound(NotFound):
    def __init__(self, mission_id: str) -> None:
        super().__init__(f"Mission not found: {mission_id}")


class InvalidDefinition(HaflowError):
    """A workflow or agent data file is unusable; raised at load time."""

    def __init__(self, path: object, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
