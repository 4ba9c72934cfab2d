"""Ids and file names that reach a path: generated in shape, checked whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from haflowd import ids
from haflowd.errors import BadRequest


class TestIds:
    @pytest.mark.parametrize(
        ("new", "check"),
        [
            (ids.new_mission_id, ids.is_mission_id),
            (ids.new_run_id, ids.is_run_id),
            (ids.new_project_id, ids.is_project_id),
            (ids.new_execution_id, ids.is_execution_id),
        ],
    )
    def test_new_ids_pass_their_check(self, new: Callable[[], str], check: Callable[[str], bool]) -> None:
        """A freshly generated id passes its own check."""
        assert check(new())

    def test_new_ids_differ(self) -> None:
        """Two generated ids are different."""
        assert ids.new_mission_id() != ids.new_mission_id()

    @pytest.mark.parametrize(
        "value",
        ["m-0123abc", "m-0123abcde", "m-0123ABCD", "r-0123abcd", "m-0123abcd\n", "../m-0123abcd", "", "m-0123abc/"],
    )
    def test_invalid_mission_ids(self, value: str) -> None:
        """Wrong length, case, prefix, or anything around the id is refused."""
        assert not ids.is_mission_id(value)

    @pytest.mark.parametrize(
        ("check", "value"),
        [
            (ids.is_mission_id, "m-0123abcd"),
            (ids.is_run_id, "r-deadbeef"),
            (ids.is_project_id, "p-00000000"),
            (ids.is_execution_id, "exec-ffffffff"),
        ],
    )
    def test_valid_ids(self, check: Callable[[str], bool], value: str) -> None:
        """Each kind of id is its prefix and eight lowercase hex digits."""
        assert check(value)

    def test_kinds_do_not_mix(self) -> None:
        """A run id is not a mission id, nor the other way round."""
        assert not ids.is_mission_id("r-deadbeef")
        assert not ids.is_run_id("m-deadbeef")


class TestFilenames:
    @pytest.mark.parametrize("name", ["plan.md", "a", "_x-1.tar.gz", "0", "a" * 255])
    def test_valid(self, name: str) -> None:
        """Plain names of letters, digits, dot, dash and underscore are accepted unchanged."""
        assert ids.filename_problem(name) is None
        assert ids.check_filename(name) == name

    @pytest.mark.parametrize(
        ("name", "problem"),
        [
            ("", "must not be empty"),
            ("a" * 256, "must be at most 255 bytes"),
            ("..", "must not contain '..'"),
            ("a..b", "must not contain '..'"),
            (".hidden", "must not start with '.'"),
            ("a/b", "may only contain"),
            ("a\\b", "may only contain"),
            ("sp ace", "may only contain"),
            ("é", "may only contain"),
            ("a\0", "may only contain"),
            ("a\n", "may only contain"),
        ],
    )
    def test_invalid(self, name: str, problem: str) -> None:
        """Each bad name is refused with what is wrong, as a 400."""
        found = ids.filename_problem(name)
        assert found is not None and problem in found
        with pytest.raises(BadRequest, match="Invalid artifact filename"):
            ids.check_filename(name)
