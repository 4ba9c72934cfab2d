"""Service units: the systemd user unit, the launchd agent and ``haflowd service install``."""

from __future__ import annotations

import os
import plistlib
import shutil
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from haflowd.cli import service
from haflowd.cli.main import main

REPO = Path(__file__).resolve().parents[2]
REQUIRE = os.environ.get("HAFLOW_REQUIRE_SYSTEMD") == "1"


@pytest.fixture
def exe(tmp_path: Path) -> Path:
    """A stand-in haflowd executable (systemd-analyze checks that ExecStart exists)."""
    path = tmp_path / "bin" / "haflowd"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\nexit 0\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def user_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "user"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    for name in ("HAFLOW_HOME", "PORT", "HOST"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def no_subprocess(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Record commands instead of running them."""
    ran: list[list[str]] = []

    def fake_run(command: list[str], **_: Any) -> subprocess.CompletedProcess[bytes]:
        ran.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr("haflowd.cli.service.subprocess.run", fake_run)
    return ran


def systemd_verify(unit: Path, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    return subprocess.run(
        ["systemd-analyze", "--user", "verify", str(unit)],
        capture_output=True,
        text=True,
        env={**os.environ, "XDG_RUNTIME_DIR": str(runtime)},
        timeout=60,
    )


class TestSystemdUnit:
    def test_unit_settings(self, exe: Path) -> None:
        """The unit restarts on failure, has a stop timeout, an optional env file and runs serve."""
        unit = service.render_systemd(str(exe))
        lines = unit.splitlines()
        for line in (
            "Restart=on-failure",
            f"TimeoutStopSec={service.STOP_TIMEOUT}",
            "EnvironmentFile=-%h/.config/haflow/env",
            f"ExecStart={exe} serve",
            "ExecReload=/bin/kill -HUP $MAINPID",
            "WantedBy=default.target",
        ):
            assert line in lines
        assert "User=" not in unit  # a user unit: runs as whoever installs it

    def test_passes_systemd_analyze_verify(self, exe: Path, tmp_path: Path) -> None:
        """systemd-analyze verify accepts the unit without a single complaint."""
        if shutil.which("systemd-analyze") is None:
            if REQUIRE:
                pytest.fail("systemd-analyze is required (apt-get install systemd)")
            pytest.skip("systemd-analyze is not installed")
        unit = tmp_path / "haflowd.service"
        unit.write_text(service.render_systemd(str(exe)))
        done = systemd_verify(unit, tmp_path)
        assert done.returncode == 0, done.stderr
        complaints = [line for line in (done.stdout + done.stderr).splitlines() if "haflowd" in line]
        assert complaints == []

    def test_path_with_spaces_is_quoted(self) -> None:
        """An executable path with a space stays one argument."""
        assert 'ExecStart="/opt/my tools/haflowd" serve' in service.render_systemd("/opt/my tools/haflowd")

    def test_repository_file_is_the_template(self) -> None:
        """systemd/haflowd.cli.service is the template rendered for pip install --user."""
        shipped = (REPO / "systemd" / service.UNIT_NAME).read_text()
        assert shipped == service.render_systemd(service.SAMPLE_SYSTEMD_EXE)


class TestLaunchdAgent:
    def test_plist_parses_and_names_program_and_environment(self) -> None:
        """The plist parses with plistlib and runs the given haflowd with the given environment."""
        data = plistlib.loads(service.render_launchd("/opt/bin/haflowd", "/Users/ann", {"HAFLOW_HOME": "/data/h"}))
        assert data["Label"] == service.LABEL
        assert data["ProgramArguments"] == ["/opt/bin/haflowd", "serve"]
        assert data["EnvironmentVariables"]["HAFLOW_HOME"] == "/data/h"
        assert "/usr/local/bin" in data["EnvironmentVariables"]["PATH"].split(":")
        assert data["KeepAlive"] == {"SuccessfulExit": False}
        assert data["RunAtLoad"] is True
        assert data["StandardErrorPath"] == "/Users/ann/Library/Logs/haflowd.log"

    def test_repository_file_is_the_template(self) -> None:
        """systemd/dev.haflow.haflowd.plist is the template rendered with sample paths."""
        shipped = (REPO / "systemd" / service.PLIST_NAME).read_bytes()
        assert shipped == service.render_launchd(service.SAMPLE_LAUNCHD_EXE, service.SAMPLE_HOME)
        assert plistlib.loads(shipped)["ProgramArguments"][0] == service.SAMPLE_LAUNCHD_EXE


class TestInstall:
    def test_systemd_install_writes_unit_and_only_prints_commands(
        self, exe: Path, user_home: Path, no_subprocess: list[list[str]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """install writes ~/.config/systemd/user/haflowd.cli.service and runs nothing."""
        assert main(["service", "install", "--platform", "systemd", "--exe", str(exe)]) == 0
        unit = user_home / ".config" / "systemd" / "user" / "haflowd.service"
        assert unit.read_text() == service.render_systemd(str(exe))
        out = capsys.readouterr().out
        assert f"wrote {unit}" in out
        assert "systemctl --user enable --now haflowd" in out and "loginctl enable-linger" in out
        assert no_subprocess == []

    def test_xdg_config_home_is_respected(
        self,
        exe: Path,
        user_home: Path,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
        no_subprocess: list[list[str]],
    ) -> None:
        """XDG_CONFIG_HOME moves the unit folder."""
        monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
        assert main(["service", "install", "--platform", "systemd", "--exe", str(exe)]) == 0
        assert (tmp_path / "xdg" / "systemd" / "user" / "haflowd.service").is_file()

    def test_enable_runs_systemctl(
        self, exe: Path, user_home: Path, no_subprocess: list[list[str]], capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--enable reloads systemd and enables the unit now."""
        assert main(["service", "install", "--platform", "systemd", "--exe", str(exe), "--enable"]) == 0
        assert no_subprocess == [
            ["systemctl", "--user", "daemon-reload"],
            ["systemctl", "--user", "enable", "--now", "haflowd"],
        ]

    def test_launchd_install(
        self,
        exe: Path,
        user_home: Path,
        monkeypatch: pytest.MonkeyPatch,
        no_subprocess: list[list[str]],
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """On macOS the agent lands in ~/Library/LaunchAgents, carrying HAFLOW_HOME if set."""
        monkeypatch.setenv("HAFLOW_HOME", "/data/haflow")
        assert main(["service", "install", "--platform", "launchd", "--exe", str(exe)]) == 0
        path = user_home / "Library" / "LaunchAgents" / service.PLIST_NAME
        data = plistlib.loads(path.read_bytes())
        assert data["ProgramArguments"] == [str(exe), "serve"]
        assert data["EnvironmentVariables"]["HAFLOW_HOME"] == "/data/haflow"
        assert "launchctl bootstrap" in capsys.readouterr().out
        assert no_subprocess == []

    def test_print_writes_nothing(self, exe: Path, user_home: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """--print shows the unit and leaves the disk alone."""
        assert main(["service", "install", "--platform", "systemd", "--exe", str(exe), "--print"]) == 0
        assert capsys.readouterr().out == service.render_systemd(str(exe))
        assert list(user_home.iterdir()) == []

    def test_default_executable_is_absolute(self) -> None:
        """Without --exe the unit names an absolute, executable haflowd."""
        try:
            found = Path(service.executable())
        except FileNotFoundError:
            pytest.skip("haflowd is not installed as a console script here")
        assert found.is_absolute()
        assert found.stat().st_mode & stat.S_IXUSR
