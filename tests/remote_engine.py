"""A second Docker engine the test session starts itself, standing in for a remote one.

It has its own data root, exec root and socket under /tmp, no bridge and no
iptables rules, and so shares no file system path with the daemon's mounts:
what a run needs must travel as tar streams. The session's test image is
loaded into it (``docker save | docker load``); the engine is stopped and its
folders removed at the end.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest

from tests.waiting import WAIT_SECONDS


@attrs.frozen
class Engine:
    """One Docker engine as the tests reach it: its ``DOCKER_HOST`` (None: the default one)."""

    host: str | None = None

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("DOCKER_CONTEXT", None)
        if self.host is None:
            env.pop("DOCKER_HOST", None)
        else:
            env["DOCKER_HOST"] = self.host
        return env

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        """Run ``docker *args`` against this engine."""
        return subprocess.run(["docker", *args], capture_output=True, check=check, env=self.env, timeout=120)

    def lines(self, *args: str) -> list[str]:
        return self.docker(*args).stdout.decode().split()


def _problem(why: str) -> None:
    if os.environ.get("HAFLOW_REQUIRE_DOCKER"):
        pytest.fail(f"HAFLOW_REQUIRE_DOCKER is set but the second Docker engine {why}")
    pytest.skip(f"Remote-engine tests need a second dockerd; it {why}")


@pytest.fixture(scope="session")
def remote_engine(docker_image: str) -> Iterator[Engine]:
    """A second ``dockerd`` holding the test image, reached through ``DOCKER_HOST``."""
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        _problem("cannot start: dockerd is not installed")
    # Short: containerd's socket lives under the exec root (sun_path is 108 bytes).
    base = Path(tempfile.mkdtemp(prefix="hfd-", dir="/tmp"))
    socket = base / "d.sock"
    engine = Engine(f"unix://{socket}")
    log = (base / "dockerd.log").open("wb")
    # Its own network namespace: a dockerd without a bridge removes the host's
    # docker0 at start-up, which would break the first engine's containers.
    unshare = shutil.which("unshare")
    isolate = [unshare, "--net", "--"] if unshare else []
    proc = subprocess.Popen(
        [
            *isolate,
            str(dockerd),
            "--data-root", str(base / "data"),
            "--exec-root", str(base / "x"),
            "--pidfile", str(base / "d.pid"),
            "-H", engine.host or "",
            "--iptables=false",
            "--bridge=none",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + WAIT_SECONDS  # a second dockerd starts slowly on a busy machine
        while engine.docker("version", check=False).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (base / "dockerd.log").read_text(errors="replace")[-400:]
                _problem(f"did not start: {tail}")
            time.sleep(0.1)
        save = subprocess.Popen(["docker", "save", docker_image], stdout=subprocess.PIPE, env=Engine().env)
        loaded = subprocess.run(["docker", "load"], stdin=save.stdout, capture_output=True, env=engine.env, check=False)
        assert save.stdout is not None
        save.stdout.close()
        save.wait()
        if loaded.returncode != 0:
            _problem(f"could not load {docker_image}: {loaded.stderr.decode(errors='replace')}")
        yield engine
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # Layers dockerd left mounted would make rmtree fail; it unmounts them on exit.
        shutil.rmtree(base, ignore_errors=True)
