"""Child processes: argument lists no shell sees, and a child killed and reaped even when cancelled."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from haflowd.proc import Completed, reap, run_cli
from tests.waiting import eventually

ECHO_ARGS = "import sys, json; print(json.dumps(sys.argv[1:]))"
SLEEP_AND_TELL = "import os, sys, time; open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(600)"


def gone(pid: int) -> bool:
    """Whether no process (not even a zombie) has ``pid`` among our children."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


class TestRunCli:
    async def test_arguments_reach_the_program_literally(self) -> None:
        """Each argument arrives as one argv entry: quotes, spaces and ``$(...)`` are not interpreted."""
        hostile = ["$(touch /tmp/pwned)", "a b", "'q'", "; rm -rf /", "*"]
        done = await run_cli([sys.executable, "-c", ECHO_ARGS, *hostile])
        assert done.returncode == 0
        assert done.stdout.decode().strip() == '["$(touch /tmp/pwned)", "a b", "\'q\'", "; rm -rf /", "*"]'

    async def test_exit_status_and_streams(self) -> None:
        """The exit status and both streams are collected."""
        script = "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)"
        done = await run_cli([sys.executable, "-c", script])
        assert done == Completed(3, b"out\n", b"err\n")

    async def test_env_replaces_the_environment(self) -> None:
        """A given ``env`` is the child's whole environment."""
        script = "import os; print(sorted(k for k in os.environ if k.startswith('HAFLOW_T')))"
        done = await run_cli([sys.executable, "-c", script], env={"HAFLOW_TEST_X": "1"})
        assert done.stdout.decode().strip() == "['HAFLOW_TEST_X']"

    async def test_missing_binary(self, tmp_path: Path) -> None:
        """A binary that does not exist raises FileNotFoundError."""
        with pytest.raises(FileNotFoundError):
            await run_cli([str(tmp_path / "no-such-program")])

    async def test_cancelled_child_is_killed_and_reaped(self, tmp_path: Path) -> None:
        """Cancelling ``run_cli`` kills the child and waits for it: no process or zombie is left."""
        marker = tmp_path / "pid"
        task = asyncio.create_task(run_cli([sys.executable, "-c", SLEEP_AND_TELL, str(marker)]))
        await eventually(lambda: marker.exists() and marker.read_text(), what="the child's pid")
        pid = int(marker.read_text())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert gone(pid)

    async def test_limit_kills_and_reaps(self, tmp_path: Path) -> None:
        """Over its ``limit`` the child is killed and reaped and TimeoutError is raised."""
        marker = tmp_path / "pid"
        with pytest.raises(TimeoutError):
            await run_cli([sys.executable, "-c", SLEEP_AND_TELL, str(marker)], limit=0.5)
        if marker.exists() and marker.read_text():
            assert gone(int(marker.read_text()))


class TestReap:
    async def test_reap_kills_a_running_child(self) -> None:
        """A child still running is killed and waited for."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(600)")
        await reap(proc)
        assert proc.returncode is not None and proc.returncode < 0

    async def test_reap_survives_cancellation(self) -> None:
        """Cancelled while waiting, reap still waits the killed child out, then re-raises."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import time; time.sleep(600)")
        task = asyncio.ensure_future(reap(proc))
        await asyncio.sleep(0)  # let reap kill and start waiting
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert proc.returncode is not None

    async def test_reap_of_a_finished_child(self) -> None:
        """Reaping a child that already exited keeps its status."""
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(4)")
        await proc.wait()
        await reap(proc)
        assert proc.returncode == 4


class TestCompleted:
    @pytest.mark.parametrize(
        ("stdout", "stderr", "error"),
        [
            (b"", b"docker: Error response from daemon: no such image\nmore", "no such image"),
            (b"only out\n", b"", "only out"),
            (b"", b"", "exit status 2"),
        ],
    )
    def test_error_is_the_first_line_of_the_complaint(self, stdout: bytes, stderr: bytes, error: str) -> None:
        """``error`` is stderr's first line (else stdout's, else the status) without Docker's prefixes."""
        assert Completed(2, stdout, stderr).error == error
