"""Secret values agents need (API keys): from the daemon's environment or ``HAFLOW_HOME/secrets.env``.

Agent files only *name* secrets. Values are looked up when a step starts
and go to the sandbox by name; they are never written to mission files, run
files, logs or API answers. ``secrets.env`` is ``NAME=value`` lines, mode
0600, written by ``haflowd secrets set NAME`` (value from standard input).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

from .errors import BadRequest, HaflowError

SECRETS_FILE = "secrets.env"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


class MissingSecret(HaflowError):
    """A step needs a secret the daemon does not have."""


def check_name(name: str) -> str:
    if not _NAME.match(name):
        raise BadRequest(f"Not a valid environment variable name: {name!r}")
    return name


def read_file(path: Path) -> dict[str, str]:
    """``NAME=value`` lines of a secrets file (missing file: none)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        if _NAME.match(name.strip()):
            values[name.strip()] = value
    return values


def write_value(home: Path, name: str, value: str) -> Path:
    """Set one secret in ``home/secrets.env`` (mode 0600, replaced atomically)."""
    from .store import atomic_write

    check_name(name)
    if "\n" in value or "\r" in value or "\0" in value:
        raise BadRequest("A secret value must be one line")
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = home / SECRETS_FILE
    values = read_file(path)
    values[name] = value
    atomic_write(path, "".join(f"{k}={v}\n" for k, v in sorted(values.items())).encode(), mode=0o600)
    return path


def known_values(names: Iterable[str], home: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of those of ``names`` the daemon has (no error for the others)."""
    environ = os.environ if environ is None else environ
    wanted = list(dict.fromkeys(names))
    stored = read_file(home / SECRETS_FILE) if wanted else {}
    found = {name: environ.get(name) or stored.get(name, "") for name in wanted}
    return {name: value for name, value in found.items() if value}


def resolve(names: Iterable[str], home: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The values of ``names``: the daemon's environment first, then the secrets file.

    Raises :class:`MissingSecret` naming every variable that has no value.
    """
    environ = os.environ if environ is None else environ
    wanted = list(dict.fromkeys(names))
    if not wanted:
        return {}
    stored = read_file(home / SECRETS_FILE)
    found = {name: environ.get(name) or stored.get(name, "") for name in wanted}
    missing = [name for name, value in found.items() if not value]
    if missing:
        raise MissingSecret(
            f"missing secret {', '.join(missing)}: set it in the daemon's environment or with "
            f"'haflowd secrets set {missing[0]}'"
        )
    return found
