"""Serving: a cap on open connections below the descriptor limit, and clear start-up errors."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from haflowd.web.serving import RESERVED_FDS, connection_cap, raise_fd_limit
from tests.daemon_support import Daemon, child_env, poll


class TestConnectionCap:
    def test_idle_connections_past_the_cap_cost_one_log_line(self, tmp_path: Path) -> None:
        """Connections past the cap are closed at once with one log line, and the daemon serves again once they go."""
        with Daemon(tmp_path / "home", env={"HAFLOW_MAX_CONNECTIONS": "20"}) as daemon:
            idle = []
            try:
                for _ in range(120):
                    idle.append(socket.create_connection(("127.0.0.1", daemon.port), timeout=5))
                poll(lambda: "daemon.connections_capped" in daemon.stderr)
                assert daemon.proc is not None and daemon.proc.poll() is None
            finally:
                for conn in idle:
                    conn.close()
            poll(lambda: _health(daemon) == 200)
            assert daemon.stderr.count("daemon.connections_capped") == 1
            assert "Traceback" not in daemon.stderr

    def test_cap_leaves_descriptors_free(self) -> None:
        """The default cap stays below the soft descriptor limit, which is raised to the hard one where allowed."""
        limit = raise_fd_limit()
        assert connection_cap(limit) == max(16, limit - RESERVED_FDS) < limit


class TestStartupErrors:
    def test_home_that_is_a_file_is_named(self, tmp_path: Path) -> None:
        """A HAFLOW_HOME whose missions folder cannot be made (a file in the way)
        is reported as a HAFLOW_HOME problem."""
        home = tmp_path / "home"
        home.mkdir()
        (home / "missions").write_text("not a folder")
        done = _serve(home)
        assert done.returncode == 1
        assert f"cannot write to HAFLOW_HOME {home}" in done.stderr and "cannot listen" not in done.stderr


def _serve(home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "haflowd", "serve", "--port", "0", "--home", str(home)],
        capture_output=True,
        text=True,
        env=child_env(),
        timeout=60,
    )


def _health(daemon: Daemon) -> int:
    try:
        return daemon.request("GET", "/api/health")[0]
    except OSError:
        return 0
