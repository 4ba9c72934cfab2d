"""Child processes: run a CLI to completion, or reap one we started, never leaking it.

Every external program haflowd runs (the Docker CLI, git) goes through
:func:`asyncio.create_subprocess_exec` with an argument list: no shell ever
sees a value.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping

import attrs


@attrs.frozen
class Completed:
    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def error(self) -> str:
        """The CLI's complaint, one line, for messages."""
        text = self.stderr.decode(errors="replace").strip() or self.stdout.decode(errors="replace").strip()
        first = text.splitlines()[0] if text else f"exit status {self.returncode}"
        return first.removeprefix("docker: ").removeprefix("Error response from daemon: ")


async def reap(proc: asyncio.subprocess.Process) -> None:
    """Kill ``proc`` if it still runs and wait for it, even when cancelled."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    waiter = asyncio.ensure_future(proc.wait())
    try:
        await asyncio.shield(waiter)
    except asyncio.CancelledError:
        # Killed already: this returns promptly, and the child is reaped.
        await waiter
        raise


async def run_cli(
    argv: Iterable[str],
    *,
    env: Mapping[str, str] | None = None,
    limit: float | None = None,
) -> Completed:
    """Run one short CLI command to completion and collect its output.

    Raises :class:`FileNotFoundError` / :class:`PermissionError` if the binary
    cannot be executed and :class:`TimeoutError` after ``limit`` seconds (the
    child is killed and reaped in both that case and on cancellation).
    """
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env) if env is not None else None,
    )
    try:
        async with asyncio.timeout(limit):
            out, err = await proc.communicate()
    except BaseException:
        await reap(proc)
        raise
    assert proc.returncode is not None
    return Completed(proc.returncode, out, err)
