"""The package's import contracts (.importlinter) hold: imports point down, no cycles."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class TestImportContracts:
    def test_contracts_are_kept(self) -> None:
        """lint-imports reports every contract kept (and the contracts exist)."""
        binary = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
        done = subprocess.run(
            [binary, "--config", str(ROOT / ".importlinter")], cwd=ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "6 kept, 0 broken" in done.stdout
