"""The package's shape: import contracts kept (allow-lists, no cycles, no import up), rooms listed, tests mirrored."""

from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "haflowd"
CONTRACTS = ROOT / ".importlinter"

#: Wings whose every module but ``protocol`` must be on an allow-list contract.
WINGS = ("agents", "workspaces", "egress", "sandbox")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """Run lint-imports on the ``haflowd`` package found under ``root`` (first on the path)."""
    binary = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [binary, "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root,
        capture_output=True,
        text=True,
        env=env,
    )


def contracts() -> configparser.ConfigParser:
    parser = configparser.ConfigParser()
    parser.read(CONTRACTS)
    return parser


def listed(value: str) -> set[str]:
    return {line.strip() for line in value.splitlines() if line.strip() and not line.strip().startswith("#")}


def module_names(folder: Path, dotted: str) -> set[str]:
    """Every module and sub-package directly in ``folder``, as dotted names."""
    names = set()
    for entry in folder.iterdir():
        if entry.suffix == ".py" and entry.stem != "__init__":
            names.add(f"{dotted}.{entry.stem}")
        elif entry.is_dir() and (entry / "__init__.py").exists():
            names.add(f"{dotted}.{entry.name}")
    return names


class TestImportContracts:
    def test_contracts_are_kept(self) -> None:
        """lint-imports reports every contract kept (and all the contracts exist)."""
        done = lint_imports(ROOT)
        assert done.returncode == 0, done.stdout + done.stderr
        count = sum(1 for section in contracts().sections() if section.startswith("importlinter:contract:"))
        assert count >= 13
        assert f"{count} kept, 0 broken" in done.stdout

    @pytest.mark.parametrize("wing", WINGS)
    def test_every_internal_module_is_protected(self, wing: str) -> None:
        """Each module of a wing but its protocol is on an allow-list, so a new module cannot leak unnoticed."""
        protected: set[str] = set()
        for section in contracts().sections():
            if contracts()[section].get("type") == "protected":
                protected |= listed(contracts()[section]["protected_modules"])
        dotted = f"haflowd.{wing}"
        for name in sorted(module_names(PACKAGE / wing, dotted)):
            if name.endswith(".protocol"):
                continue
            covered = any(name == p or name.startswith(p + ".") for p in protected)
            assert covered, f"{name} is on no allow-list contract in .importlinter"

    #: (module, planted import, the contract that must then break): one copy holds them all,
    #: since lint-imports takes long on a busy machine; each plant breaks a different contract.
    PLANTS = (
        # The core reaching past a protocol to a concrete adapter.
        ("engine.py", "from .agents import claude_code", "Agent adapters are known only"),
        # The core choosing an engine itself.
        ("launch.py", "from .sandbox.docker import local", "The Docker engines are known only"),
        # A plug-in reaching up into the state machine.
        ("workspaces/code.py", "from ..engine import Engine", "The state machine and its helpers"),
        # One engine wing using the other's internals.
        ("sandbox/kubernetes/provider.py", "from ..docker import local", "The Docker and Kubernetes sandbox wings"),
        # A core module reaching into the web app.
        ("store.py", "from .web import envelope", "The web app is known only"),
    )

    def test_planted_imports_break_their_contracts(self, tmp_path: Path) -> None:
        """Imports that cross a wing's wall, planted in a copy of the package, fail the contracts by name."""
        shutil.copytree(PACKAGE, tmp_path / "haflowd", ignore=shutil.ignore_patterns("__pycache__", "static"))
        shutil.copy(CONTRACTS, tmp_path / ".importlinter")
        for module, planted, _ in self.PLANTS:
            target = tmp_path / "haflowd" / module
            target.write_text(target.read_text() + f"\n{planted}  # planted by the test\n")
        done = lint_imports(tmp_path)
        assert done.returncode != 0, done.stdout
        verdicts = re.sub(r"\s+", " ", done.stdout)
        for module, _, broken in self.PLANTS:
            # A verdict ends with KEPT or BROKEN: this contract's must be BROKEN.
            assert re.search(re.escape(broken) + r"(?:(?! KEPT).)*? BROKEN", verdicts), (module, done.stdout)

    def test_the_copy_without_a_plant_is_kept(self, tmp_path: Path) -> None:
        """The copy the planted tests use is itself clean: what breaks there is the plant alone."""
        shutil.copytree(PACKAGE, tmp_path / "haflowd", ignore=shutil.ignore_patterns("__pycache__", "static"))
        shutil.copy(CONTRACTS, tmp_path / ".importlinter")
        done = lint_imports(tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def rooms_table() -> list[str]:
    """The first cells of CONTRIBUTING.md's rooms table: one module (or wing folder) per row."""
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## The rooms", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)`", row).group(1) for row in rows]  # type: ignore[union-attr]


def modules_on_disk() -> set[str]:
    """Every Python module of the package as a path without ``.py`` (``engine``, ``sandbox/docker/local``)."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE).with_suffix("").as_posix()
        if path.name in ("__init__.py", "__main__.py") or "static" in path.relative_to(PACKAGE).parts[:-1]:
            continue
        found.add(relative)
    return found


class TestRoomsTable:
    def test_names_exactly_the_modules_that_exist(self) -> None:
        """CONTRIBUTING.md's rooms table has a row for every module, and no row for one that is gone."""
        rows = rooms_table()
        assert len(rows) == len(set(rows)), "a room is listed twice"
        documented = set(rows)
        on_disk = modules_on_disk()
        assert sorted(on_disk - documented) == [], "modules missing from CONTRIBUTING.md's rooms table"
        assert sorted(documented - on_disk) == [], "rooms in CONTRIBUTING.md that no longer exist"


def mirror_of(module: str) -> Path:
    """The test file of a module: ``sandbox/docker/local`` -> ``tests/sandbox/docker/test_local.py``."""
    folder, _, name = module.rpartition("/")
    return ROOT / "tests" / folder / f"test_{name}.py"


class TestTestsMirrorModules:
    def test_every_module_has_its_test_file(self) -> None:
        """Every module of haflowd/ has its tests where its name says (``haflowd/W/Y.py`` -> ``tests/W/test_Y.py``)."""
        missing = sorted(
            f"haflowd/{m}.py -> {mirror_of(m).relative_to(ROOT)}"
            for m in modules_on_disk()
            if not mirror_of(m).is_file()
        )
        assert missing == [], "modules without their mirror test file"
