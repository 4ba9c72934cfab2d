"""The error tree: every kind is a HaflowError carrying its user-facing message."""

from __future__ import annotations

import pytest

from haflowd import errors
from haflowd.errors import HaflowError

KINDS = [
    errors.BadRequest,
    errors.Unauthorized,
    errors.Forbidden,
    errors.NotFound,
    errors.Conflict,
    errors.PayloadTooLarge,
    errors.UnsupportedMediaType,
    errors.Unprocessable,
    errors.StorageFull,
    errors.StorageReadOnly,
    errors.SandboxError,
    errors.SandboxUnavailable,
]


class TestTree:
    @pytest.mark.parametrize("kind", KINDS)
    def test_every_kind_keeps_its_message(self, kind: type[HaflowError]) -> None:
        """Each kind is a HaflowError whose ``message`` and ``str`` are the text it was given."""
        error = kind("what went wrong")
        assert isinstance(error, HaflowError)
        assert error.message == str(error) == "what went wrong"

    def test_sandbox_unavailable_is_a_sandbox_error(self) -> None:
        """An unreachable engine is a kind of sandbox error."""
        assert issubclass(errors.SandboxUnavailable, errors.SandboxError)

    def test_mission_not_found_names_the_mission(self) -> None:
        """MissionNotFound is a NotFound that names the mission id."""
        error = errors.MissionNotFound("m-0123abcd")
        assert isinstance(error, errors.NotFound)
        assert error.message == "Mission not found: m-0123abcd"

    def test_invalid_definition_names_the_file(self) -> None:
        """InvalidDefinition puts the file before the problem."""
        error = errors.InvalidDefinition("workflows/a.json", "steps: missing")
        assert error.message == "workflows/a.json: steps: missing"

    def test_no_http_status_in_the_core(self) -> None:
        """The core's errors carry no HTTP status: the web layer alone maps them."""
        for kind in KINDS:
            assert not hasattr(kind("x"), "status")
