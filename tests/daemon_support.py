"""A real ``python -m haflowd serve`` process on a free port, for tests of the whole program."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from tests.waiting import WAIT_SECONDS, eventually_sync

REPO = Path(__file__).resolve().parent.parent
#: How long a daemon may take to answer after start (on a loaded machine); a hang fails by name.
START_SECONDS = WAIT_SECONDS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def poll(check: Callable[[], bool], *, timeout: float = START_SECONDS) -> None:
    """Wait until ``check()`` is true; fail by name if it never is (:func:`tests.waiting.eventually_sync`)."""
    eventually_sync(check, timeout=timeout)


def child_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a haflowd child: no Docker, no inherited haflow settings, the repo importable."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HAFLOW_", "haflow_"))}
    env.pop("HOST", None)
    env.pop("PORT", None)
    env["HAFLOW_DOCKER"] = "haflow-no-such-docker"
    # Tests of authentication set HAFLOW_AUTH themselves.
    env["HAFLOW_AUTH"] = "none"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


@attrs.define
class Daemon:
    """One daemon process; ``stop()`` returns its exit code and output."""

    home: Path
    port: int = attrs.field(factory=free_port)
    env: dict[str, str] = attrs.field(factory=dict)
    args: tuple[str, ...] = ()
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    #: Output goes to files: a pipe nobody reads would block a chatty daemon.
    logs: Path | None = None

    @property
    def stdout(self) -> str:
        return self._read("stdout")

    @property
    def stderr(self) -> str:
        return self._read("stderr")

    def _read(self, name: str) -> str:
        path = self._logs / f"haflowd.{name}"
        return path.read_text(errors="replace") if path.exists() else ""

    @property
    def _logs(self) -> Path:
        return self.logs or self.home.parent

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daemon:
        command = [sys.executable, "-m", "haflowd", "serve", "--port", str(self.port), "--home", str(self.home)]
        self._logs.mkdir(parents=True, exist_ok=True)
        with (self._logs / "haflowd.stdout").open("wb") as out, (self._logs / "haflowd.stderr").open("wb") as err:
            self.proc = subprocess.Popen(
                [*command, *self.args], stdout=out, stderr=err, env=child_env(self.env), cwd=self.cwd or REPO
            )
        self.wait_up()
        return self

    def wait_up(self) -> None:
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                self.stop()
                raise AssertionError(f"daemon exited with {self.proc.returncode}: {self.stderr}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"daemon never listened on {self.url}")

    def request(
        self, method: str, path: str, body: object = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        all_headers = {"Content-Type": "application/json", **(headers or {})} if data else dict(headers or {})
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=all_headers)
        try:
            with urllib.request.urlopen(req, timeout=WAIT_SECONDS) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=WAIT_SECONDS)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> Daemon:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
