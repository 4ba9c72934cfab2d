"""Agent secrets: a 0600 file written atomically, the environment first, values never in messages."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from haflowd import secrets
from haflowd.errors import BadRequest
from haflowd.secrets import MissingSecret


class TestWriteValue:
    def test_file_is_private(self, tmp_path: Path) -> None:
        """``secrets.env`` is written with mode 0600 in a home created 0700."""
        home = tmp_path / "home"
        path = secrets.write_value(home, "API_KEY", "sk-1")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(home.stat().st_mode) == 0o700
        assert path.read_text() == "API_KEY=sk-1\n"

    def test_values_are_kept_sorted_and_replaced(self, tmp_path: Path) -> None:
        """Setting a name again replaces its value; the others stay, sorted by name."""
        secrets.write_value(tmp_path, "B", "1")
        secrets.write_value(tmp_path, "A", "2")
        path = secrets.write_value(tmp_path, "B", "3")
        assert path.read_text() == "A=2\nB=3\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    @pytest.mark.parametrize("value", ["a\nB=evil", "a\rb", "a\0b"])
    def test_multi_line_value_is_refused(self, tmp_path: Path, value: str) -> None:
        """A value that could smuggle a second line is refused."""
        with pytest.raises(BadRequest, match="one line"):
            secrets.write_value(tmp_path, "NAME", value)
        assert not (tmp_path / secrets.SECRETS_FILE).exists()

    @pytest.mark.parametrize("name", ["", "1ABC", "A-B", "A B", "A=B", "A\n"])
    def test_invalid_name_is_refused(self, tmp_path: Path, name: str) -> None:
        """Only environment variable names are accepted."""
        with pytest.raises(BadRequest, match="Not a valid environment variable name"):
            secrets.write_value(tmp_path, name, "v")


class TestReadFile:
    def test_lines(self, tmp_path: Path) -> None:
        """Comments, blank lines, lines without ``=`` and bad names are skipped; values keep their ``=``."""
        path = tmp_path / "secrets.env"
        path.write_text("# comment\n\nA=1\nnoequals\n1BAD=x\nB=x=y\n")
        assert secrets.read_file(path) == {"A": "1", "B": "x=y"}

    def test_missing_file_has_none(self, tmp_path: Path) -> None:
        """A missing file holds no secrets."""
        assert secrets.read_file(tmp_path / "absent") == {}


class TestResolve:
    def test_environment_wins_over_the_file(self, tmp_path: Path) -> None:
        """The daemon's environment comes first, then the file."""
        secrets.write_value(tmp_path, "A", "from-file")
        secrets.write_value(tmp_path, "B", "file-b")
        assert secrets.resolve(["A", "B"], tmp_path, {"A": "from-env"}) == {"A": "from-env", "B": "file-b"}

    def test_missing_names_every_variable_but_no_value(self, tmp_path: Path) -> None:
        """A missing secret names every absent variable and shows no known value."""
        secrets.write_value(tmp_path, "KNOWN", "sk-very-secret")
        with pytest.raises(MissingSecret) as caught:
            secrets.resolve(["KNOWN", "X", "Y"], tmp_path, {})
        message = caught.value.message
        assert "missing secret X, Y" in message and "haflowd secrets set X" in message
        assert "sk-very-secret" not in message and "sk-very-secret" not in repr(caught.value)

    def test_nothing_wanted(self, tmp_path: Path) -> None:
        """No names need no file."""
        assert secrets.resolve([], tmp_path / "absent", {}) == {}

    def test_known_values_skips_the_missing(self, tmp_path: Path) -> None:
        """``known_values`` gives those it has and no error for the rest."""
        assert secrets.known_values(["A", "B"], tmp_path, {"A": "1", "B": ""}) == {"A": "1"}
