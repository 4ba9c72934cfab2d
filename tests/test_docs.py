"""The README's commands are the ones CI runs, and the docs' links and citations lead somewhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").glob("*.md")])


def readme_test_command() -> str:
    first = README.split("```sh\n", 1)[1].split("```", 1)[0].splitlines()
    return first[1].split("#", 1)[0].strip()


class TestReadme:
    def test_first_lines_are_install_and_tests(self) -> None:
        """The README opens with the two commands: install and run, then the tests with the pinned versions."""
        assert readme_test_command() == (
            "python3 -m pip install -q -c requirements/constraints.txt -e '.[test,dev]' && python3 -m pytest"
        )

    def test_ci_runs_the_readme_test_command_verbatim(self) -> None:
        """.ci/run runs the README's test command, character for character, before its under-load pass."""
        lines = [line for line in (ROOT / ".ci/run").read_text().splitlines() if line and not line.startswith("#")]
        assert lines[-2] == readme_test_command()
        assert lines[-1].startswith(".ci/under-load")
        assert readme_test_command() in README.split("## Running the tests", 1)[1]

    def test_short(self) -> None:
        """The README stays short; the rest lives in docs/."""
        assert len(README.splitlines()) <= 160


class TestLinks:
    @pytest.mark.parametrize("page", DOCS, ids=lambda p: p.name)
    def test_relative_links_exist(self, page: Path) -> None:
        """Every relative link of the README and docs/ names a file of the repository."""
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target and not target.startswith("mailto:"):
                assert (page.parent / target).exists(), f"{page.name}: {target}"

    def test_contracts_are_in_the_repository(self) -> None:
        """The wire contracts the code cites live in docs/contract/."""
        assert {p.name for p in (ROOT / "docs/contract").glob("*.md")} == {"API.md", "API-code.md", "AGENTS.md"}


class TestConstraints:
    def test_every_pin_is_exact(self) -> None:
        """requirements/constraints.txt pins exact versions, ruff and mypy included."""
        text = (ROOT / "requirements/constraints.txt").read_text()
        pins = [line for line in text.splitlines() if line[:1] not in "#"]
        assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[^=\s]+", pin) for pin in pins), pins
        names = {pin.split("==")[0].lower() for pin in pins}
        assert {"pytest", "aiohttp", "ruff", "mypy", "pytest-aiohttp"} <= names
