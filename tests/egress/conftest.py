"""A real second local user for the egress tests: the attacker of issue 18's finding 1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import attrs
import pytest

#: The interpreter the attacker runs (the test's venv may not be readable by another user).
PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable


@attrs.frozen
class Intruder:
    """A throwaway local user."""

    name: str
    uid: int
    gid: int

    def run(self, code: str) -> subprocess.CompletedProcess[str]:
        """Run Python ``code`` as this user (its own uid and gid, no supplementary groups)."""
        return subprocess.run(
            [PYTHON, "-I", "-c", textwrap.dedent(code)],
            user=self.uid,
            group=self.gid,
            extra_groups=[],
            cwd="/",
            env={"PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )


@pytest.fixture
def intruder() -> Iterator[Intruder]:
    """A throwaway local user (``useradd``), removed afterwards; the test is skipped without root."""
    if os.geteuid() != 0 or shutil.which("useradd") is None:
        pytest.skip("needs root and useradd to create a second local user")
    name = f"hf-intr-{os.urandom(3).hex()}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    try:
        uid = subprocess.run(["id", "-u", name], check=True, capture_output=True, text=True).stdout
        gid = subprocess.run(["id", "-g", name], check=True, capture_output=True, text=True).stdout
        yield Intruder(name, int(uid), int(gid))
    finally:
        subprocess.run(["userdel", name], check=False)
