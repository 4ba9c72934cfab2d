"""The haflowd command: help, configuration, and a real daemon process."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from haflowd.cli.main import build_parser, main
from haflowd.config import Config
from tests.waiting import WAIT_SECONDS, eventually_sync


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class TestHelp:
    def test_help_lists_commands(self, capsys: pytest.CaptureFixture[str]) -> None:
        """haflowd --help names the serve command."""
        with pytest.raises(SystemExit) as info:
            main(["--help"])
        assert info.value.code == 0
        assert "serve" in capsys.readouterr().out

    def test_serve_help_explains_every_option(self, capsys: pytest.CaptureFixture[str]) -> None:
        """haflowd serve --help documents host, port, home and the agent image."""
        with pytest.raises(SystemExit):
            main(["serve", "--help"])
        out = capsys.readouterr().out
        for option in ("--host", "--port", "--home", "--agent-image", "HAFLOW_HOME", "PORT"):
            assert option in out

    def test_python_m_works(self) -> None:
        """python -m haflowd --help runs the same command."""
        done = subprocess.run([sys.executable, "-m", "haflowd", "--help"], capture_output=True, text=True, check=True)
        assert "usage: haflowd" in done.stdout

    def test_bare_flags_mean_serve(self) -> None:
        """Flags without a command are the serve command's."""
        parser = build_parser()
        assert parser.parse_args(["serve", "--port", "5"]).port == 5


class TestConfig:
    def test_defaults(self) -> None:
        """Defaults: loopback, port 4000, ~/.haflow."""
        config = Config.from_env({})
        assert (config.host, config.port) == ("127.0.0.1", 4000)
        assert config.home == Path("~/.haflow").expanduser()

    def test_environment_and_seed_spelling(self, tmp_path: Path) -> None:
        """PORT, HOST and HAFLOW_HOME are read; the seed's haflow_HOME works too."""
        config = Config.from_env({"PORT": "4100", "HOST": "::1", "haflow_HOME": str(tmp_path)})
        assert (config.host, config.port, config.home) == ("::1", 4100, tmp_path)
        assert config.missions_dir == tmp_path / "missions"

    def test_flags_override_environment(self, tmp_path: Path) -> None:
        """Command-line values win over the environment."""
        config = Config.from_env({"PORT": "4100", "HAFLOW_HOME": "/nowhere"}, port=4200, home=tmp_path)
        assert (config.port, config.home) == (4200, tmp_path)


class TestDaemonProcess:
    def test_serves_and_stops_on_sigterm(self, tmp_path: Path) -> None:
        """A real daemon prints where it listens and its address (the token only through `login-url`),
        needs its token (loopback too), exits 0 on SIGTERM."""
        port = free_port()
        home = tmp_path / "home"
        proc = subprocess.Popen(
            [sys.executable, "-m", "haflowd", "serve", "--port", str(port), "--home", str(home)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "HAFLOW_DOCKER": "haflow-no-such-docker"},
        )
        try:
            assert proc.stdout is not None
            first = proc.stdout.readline()
            assert f"listening on http://127.0.0.1:{port}" in first
            assert str(home / "missions") in proc.stdout.readline()
            token = (home / "token").read_text().strip()
            shown = proc.stdout.readline().strip()
            assert shown.startswith(f"open the UI: http://127.0.0.1:{port}/ ") and "haflowd login-url" in shown
            assert token not in shown
            asked = subprocess.run(
                [sys.executable, "-m", "haflowd", "login-url", "--port", str(port), "--home", str(home)],
                capture_output=True,
                text=True,
                check=True,
            )
            assert asked.stdout.strip() == f"http://127.0.0.1:{port}/?token={token}"
            assert (home / "token").stat().st_mode & 0o777 == 0o600
            url = f"http://127.0.0.1:{port}/api/missions"
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
            body = _get_when_up(request)
            assert body == {"success": True, "data": [], "error": None}
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(url, timeout=5)
            assert refused.value.code == 401
            refused.value.close()
            assert (home.stat().st_mode & 0o777) == 0o700
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=WAIT_SECONDS)
        assert proc.returncode == 0, err
        assert token not in out + err

    def test_login_url_on_a_terminal_only(self, tmp_path: Path) -> None:
        """On a terminal the daemon prints the address that logs in; the token never reaches its log."""
        port = free_port()
        home = tmp_path / "home"
        primary, secondary = pty.openpty()
        proc = subprocess.Popen(
            [sys.executable, "-m", "haflowd", "serve", "--port", str(port), "--home", str(home)],
            stdout=secondary,
            stderr=subprocess.PIPE,
            env={**os.environ, "HAFLOW_DOCKER": "haflow-no-such-docker"},
        )
        os.close(secondary)
        seen = b""
        try:
            with os.fdopen(primary, "rb", buffering=0) as terminal:
                while b"open the UI" not in seen or not seen.endswith(b"\n"):
                    chunk = terminal.read(4096)
                    assert chunk, seen
                    seen += chunk
                token = (home / "token").read_text().strip()
                assert f"open the UI: http://127.0.0.1:{port}/?token={token}".encode() in seen
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=15)
        assert token.encode() not in err

    def test_login_url_without_a_token(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        """`login-url` before the daemon ever ran says where the token will be, exit 1, and makes none."""
        assert main(["login-url", "--home", str(tmp_path)]) == 1
        assert "no token in" in capsys.readouterr().err
        assert not (tmp_path / "token").exists()

    def test_port_in_use_is_a_clear_error(self, tmp_path: Path) -> None:
        """A port another process holds gives a one-line error and exit 1, no traceback."""
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            done = subprocess.run(
                [sys.executable, "-m", "haflowd", "serve", "--port", str(port), "--home", str(tmp_path)],
                capture_output=True,
                text=True,
                timeout=30,
                env={**os.environ, "HAFLOW_DOCKER": "haflow-no-such-docker"},
            )
        assert done.returncode == 1
        assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
        assert "Traceback" not in done.stderr

    def test_invalid_user_workflow_is_a_clear_startup_error(self, tmp_path: Path) -> None:
        """A broken workflow file stops start-up with its path and the problem."""
        broken = tmp_path / "workflows" / "mine.json"
        broken.parent.mkdir(parents=True)
        broken.write_text('{"workflow_id": "mine"}')
        done = subprocess.run(
            [sys.executable, "-m", "haflowd", "serve", "--port", str(free_port()), "--home", str(tmp_path)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 1
        assert str(broken) in done.stderr
        assert "required field missing @ $.name" in done.stderr


def _get_when_up(url: str | urllib.request.Request) -> object:
    def answer() -> object:
        try:
            with urllib.request.urlopen(url, timeout=10) as resp:
                return json.loads(resp.read())
        except OSError:
            return None

    return eventually_sync(answer, what=f"the daemon to answer {url}")
