"""``{name}`` placeholders: found by name and filled once, every other brace left as written."""

from __future__ import annotations

from haflowd.placeholders import PLACEHOLDERS, expand, placeholders_in


class TestPlaceholdersIn:
    def test_names_found(self) -> None:
        """Every ``{name}`` of a template is found, once each."""
        assert placeholders_in("{run_id}/{output_artifact} {run_id}") == {"run_id", "output_artifact"}

    def test_no_placeholder(self) -> None:
        """Braces that do not hold a word are no placeholder."""
        assert placeholders_in("{} { x } {a-b}") == set()

    def test_known_names(self) -> None:
        """The names an agent command may use include the ids and artifacts."""
        assert {"mission_id", "run_id", "step_id", "output_artifact"} <= PLACEHOLDERS


class TestExpand:
    def test_known_values_are_filled(self) -> None:
        """Each placeholder with a value is replaced by it."""
        assert expand("out/{output_artifact}", {"output_artifact": "plan.md"}) == "out/plan.md"

    def test_unknown_names_stay(self) -> None:
        """A placeholder without a value, and any other brace, stays as written."""
        assert expand("{nope} {} {0} {run_id}", {"run_id": "r-1"}) == "{nope} {} {0} r-1"

    def test_value_is_never_expanded_again(self) -> None:
        """A value that itself holds a placeholder is inserted literally."""
        assert expand("{step_id}", {"step_id": "{run_id}", "run_id": "r-1"}) == "{run_id}"

    def test_no_format_specs_or_attributes(self) -> None:
        """``str.format`` syntax is not interpreted: no attribute access, no format spec."""
        template = "{run_id.__class__} {run_id!r} {run_id:>10}"
        assert expand(template, {"run_id": "r-1"}) == template
