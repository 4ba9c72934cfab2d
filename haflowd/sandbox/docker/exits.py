"""Exit codes of every running container from one ``docker events`` stream.

``docker wait`` costs one CLI process per running step; 50 steps cost 50
helpers. :class:`ExitWatch` instead keeps a single ``docker events`` process
(containers' ``die`` events, of this provider's instance only) for all of
them, started when the first caller waits and stopped when the last one is
done, and restarted if it dies while someone waits.

There is no race between a container exiting and its waiter subscribing:
the stream is started first (with ``--since`` a little in the past, so the
engine replays what happened while it connected), exits it reports are
remembered, and only then is the container inspected once: whatever
happened, either the inspect or the stream saw the exit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping

import attrs

from ...proc import Completed, reap
from ..protocol import SandboxError, SandboxUnavailable

logger = logging.getLogger(__name__)

#: Seconds of the engine's recent events the stream asks to replay (clock
#: differences and the time it takes to connect).
SINCE_MARGIN = 5.0
#: Exits remembered for waiters that come after the event.
REMEMBERED_EXITS = 4096
#: Pause before restarting a stream that died.
RESTART_DELAY = 1.0
#: Inspects confirming an exit the stream reported, and the pause between them.
CONFIRM_TRIES = 100
CONFIRM_DELAY = 0.05
#: ``docker inspect`` format: full id, status, exit code.
INSPECT_FORMAT = "{{.Id}} {{.State.Status}} {{.State.ExitCode}}"


@attrs.define
class ExitWatch:
    """Resolves waiters for container exits from one shared ``docker events`` process.

    ``binary`` returns the Docker CLI's path (raising
    :class:`SandboxUnavailable`); ``inspect`` runs ``docker inspect --format
    INSPECT_FORMAT -- id``. ``instance`` limits the stream to containers
    carrying that ``haflow.instance`` label.
    """

    binary: Callable[[], str]
    inspect: Callable[[str], Awaitable[Completed]]
    label: str | None = None
    #: The CLI's environment (``None``: the daemon's), e.g. pointed at a remote engine.
    env: Callable[[], Mapping[str, str] | None] = lambda: None
    _waiters: dict[str, set[asyncio.Future[int]]] = attrs.field(factory=dict, init=False)
    _exits: collections.OrderedDict[str, int] = attrs.field(factory=collections.OrderedDict, init=False)
    _task: asyncio.Task[None] | None = attrs.field(default=None, init=False)
    _proc: asyncio.subprocess.Process | None = attrs.field(default=None, init=False)
    _confirming: set[asyncio.Task[None]] = attrs.field(factory=set, init=False)

    def exit_code(self, sandbox_id: str) -> int | None:
        """The exit code the stream saw for ``sandbox_id`` (a full id), if any."""
        return self._exits.get(sandbox_id)

    @property
    def streaming(self) -> bool:
        """Whether the ``docker events`` process runs (for tests)."""
        return self._task is not None and not self._task.done()

    async def wait(self, sandbox_id: str) -> int:
        """Wait for the container to exit and return its exit code."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        key = sandbox_id
        self._waiters.setdefault(key, set()).add(future)
        try:
            self._ensure_stream()
            full_id = await self._check(sandbox_id, future)
            if full_id != key and not future.done():
                # Asked by name or short id: events carry the full id.
                self._forget(key, future)
                key = full_id
                self._waiters.setdefault(key, set()).add(future)
                if (code := self._exits.get(key)) is not None:
                    future.set_result(code)
            return await future
        finally:
            self._forget(key, future)
            if not self._waiters:
                await asyncio.shield(self._stop())

    def _forget(self, key: str, future: asyncio.Future[int]) -> None:
        found = self._waiters.get(key)
        if found is not None:
            found.discard(future)
            if not found:
                del self._waiters[key]

    async def _check(self, sandbox_id: str, future: asyncio.Future[int]) -> str:
        """Inspect once; settle ``future`` if the container already exited. Returns the full id."""
        result = await self.inspect(sandbox_id)
        if result.returncode != 0:
            # Gone (removed): even if its exit was seen, nobody may rely on it.
            raise SandboxError(f"Lost track of the agent container: {result.error}")
        fields = result.stdout.decode(errors="replace").split()
        if len(fields) != 3:
            raise SandboxError(f"Unexpected answer from docker inspect: {result.stdout!r}")
        full_id, status, code = fields
        if future.done():
            return full_id
        if status in ("exited", "dead"):
            self._remember(full_id, int(code))
            future.set_result(int(code))
        elif (seen := self._exits.get(full_id)) is not None:
            # It died after this inspect: confirm as the stream would have.
            self._confirm_soon(full_id, seen)
        elif status == "created":
            # Created but never started (the CLI died in between): no exit will come.
            raise SandboxError("The agent container was created but never started")
        return full_id

    def _confirm_soon(self, sandbox_id: str, code: int) -> None:
        task = asyncio.create_task(self._confirm(sandbox_id, code), name=f"confirm exit {sandbox_id[:12]}")
        self._confirming.add(task)
        task.add_done_callback(self._confirming.discard)

    async def _confirm(self, sandbox_id: str, code: int) -> None:
        """Settle the waiters once the engine has finished the exit the stream announced.

        The engine sends ``die`` before it has recorded the exit (``docker ps``
        may still say running) and, possibly, before the last output reached
        the log; ``docker wait`` only returns later. One inspect (it waits for
        the engine's lock on the container) tells when that is done.
        """
        for _ in range(CONFIRM_TRIES):
            if not any(not f.done() for f in self._waiters.get(sandbox_id, ())):
                return
            try:
                result = await self.inspect(sandbox_id)
            except SandboxError:
                break
            fields = result.stdout.decode(errors="replace").split()
            if result.returncode != 0 or len(fields) != 3:
                break
            if fields[1] in ("exited", "dead"):
                code = int(fields[2])
                break
            await asyncio.sleep(CONFIRM_DELAY)
        for f in self._waiters.get(sandbox_id, ()):
            if not f.done():
                f.set_result(code)

    def _ensure_stream(self) -> None:
        if self._task is None or self._task.done():
            since = time.time() - SINCE_MARGIN
            self._task = asyncio.create_task(self._stream(since), name="docker events")

    async def _stop(self) -> None:
        task, self._task = self._task, None
        tasks = [t for t in (task, *self._confirming) if t is not None and not t.done()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _stream(self, since: float) -> None:
        """Follow die events until cancelled; restart the CLI whenever it ends."""
        first = True
        while True:
            if not first:
                await asyncio.sleep(RESTART_DELAY)
            first = False
            started = time.time()
            try:
                await self._follow(since)
            except SandboxUnavailable as exc:
                self._fail_all(exc)
                return
            logger.warning("sandbox.events_restarted")
            since = started - SINCE_MARGIN
            # While nobody listened an exit may have gone unseen: look again.
            for key in list(self._waiters):
                await self._recheck(key)

    async def _recheck(self, key: str) -> None:
        waiters = [f for f in self._waiters.get(key, ()) if not f.done()]
        if not waiters:
            return
        probe: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        try:
            await self._check(key, probe)
        except SandboxError as exc:
            for f in waiters:
                if not f.done():
                    f.set_exception(SandboxError(exc.message))
            return
        if probe.done():
            self._settle(key, probe.result())

    def _fail_all(self, exc: SandboxUnavailable) -> None:
        for found in self._waiters.values():
            for f in found:
                if not f.done():
                    f.set_exception(SandboxUnavailable(exc.message))

    async def _follow(self, since: float) -> None:
        argv = [
            self.binary(),
            "events",
            "--since",
            f"{since:.3f}",
            "--filter",
            "type=container",
            "--filter",
            "event=die",
            "--format",
            "{{json .}}",
        ]
        if self.label is not None:
            argv[2:2] = ["--filter", f"label={self.label}"]
        try:
            env = self.env()
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.DEVNULL,
                env=dict(env) if env is not None else None,
            )
        except OSError as e:
            raise SandboxUnavailable(f"The Docker CLI cannot be run ({e.strerror})") from None
        self._proc = proc
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                self._event(line)
        finally:
            self._proc = None
            await reap(proc)

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            actor = event.get("Actor") or {}
            sandbox_id = str(actor.get("ID") or event["id"])
            code = int((actor.get("Attributes") or {})["exitCode"])
        except (ValueError, KeyError, TypeError, AttributeError):
            logger.warning("sandbox.event_unreadable", extra={"event": line[:200].decode(errors="replace")})
            return
        self._settle(sandbox_id, code)

    def _remember(self, sandbox_id: str, code: int) -> None:
        self._exits[sandbox_id] = code
        self._exits.move_to_end(sandbox_id)
        while len(self._exits) > REMEMBERED_EXITS:
            self._exits.popitem(last=False)

    def _settle(self, sandbox_id: str, code: int) -> None:
        self._remember(sandbox_id, code)
        if sandbox_id in self._waiters:
            self._confirm_soon(sandbox_id, code)

    async def aclose(self) -> None:
        """Stop the stream (waiters still waiting restart it); a second call does nothing."""
        with contextlib.suppress(Exception):
            await self._stop()
