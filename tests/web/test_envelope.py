"""The envelope module: one shape of every answer, one status per kind of error."""

from __future__ import annotations

import json

import pytest

from haflowd import errors
from haflowd.web.envelope import STATUS_OF, envelope, envelope_bytes, error_response, status_of


class TestEnvelope:
    def test_prebuilt_bytes_match_the_envelope(self) -> None:
        """A body assembled around already-serialized data is byte for byte what envelope() writes."""
        data = [{"missionId": "m-1", "title": "é"}]
        serialized = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()
        assert envelope_bytes(serialized) == envelope(data).body

    def test_error_response_is_the_failure_envelope(self) -> None:
        """A failure carries success false, no data and the message, with its status."""
        response = error_response(409, "Not at a gate")
        assert response.status == 409
        assert isinstance(response.body, bytes)
        assert json.loads(response.body) == {"success": False, "data": None, "error": "Not at a gate"}


class TestStatusOf:
    @pytest.mark.parametrize(("kind", "status"), STATUS_OF)
    def test_each_kind_answers_its_status(self, kind: type[errors.HaflowError], status: int) -> None:
        """Every kind in the table maps to its own status (no broader kind shadows it)."""
        assert status_of(kind("x")) == status

    def test_an_unlisted_kind_is_500(self) -> None:
        """A HaflowError of no listed kind answers 500."""
        assert status_of(errors.HaflowError("x")) == 500
