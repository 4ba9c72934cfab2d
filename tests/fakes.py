"""A hand-written in-process sandbox provider for tests that need no Docker.

It behaves like the v0 stand-in agent: prints progress lines, writes the
step's output artifact (a header naming step and agent, then the input) into
the mounted artifacts folder and exits. Tests steer it per step.
"""

from __future__ import annotations

import asyncio
import builtins
import itertools
from collections.abc import AsyncIterator
from pathlib import Path

import attrs

from haflowd.sandbox import SandboxInfo, SandboxSpec, SandboxUnavailable

KILLED = 137


@attrs.define
class Behaviour:
    """What the fake agent does for one step."""

    exit_code: int = 0
    #: When set, the agent waits for it after its first line (a "slow" agent).
    gate: asyncio.Event | None = None
    extra_lines: tuple[bytes, ...] = ()
    #: Like a real CLI at a codegen step: change the work tree, write no output artifact.
    code_only: bool = False


@attrs.define
class FakeRun:
    spec: SandboxSpec
    sandbox_id: str
    lines: list[bytes] = attrs.field(factory=list)
    exit_code: int | None = None
    removed: bool = False
    changed: asyncio.Event = attrs.field(factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    def emit(self, line: bytes) -> None:
        self.lines.append(line)
        self.changed.set()

    def exit(self, code: int) -> None:
        if self.exit_code is None:
            self.exit_code = code
            self.changed.set()


@attrs.define
class FakeSandbox:
    behaviours: dict[str, Behaviour] = attrs.field(factory=dict)
    #: Behaviour by mission id, before ``behaviours``: runs start in the
    #: background after ``continue`` answered, so swapping ``behaviours``
    #: between missions would race with their starts.
    for_mission: dict[str, Behaviour] = attrs.field(factory=dict)
    runs: dict[str, FakeRun] = attrs.field(factory=dict)
    unavailable: str | None = None
    #: When set, start() waits for it (a slow image build or container start).
    start_gate: asyncio.Event | None = None
    #: How often :meth:`aclose` was called.
    closed: int = 0
    _ids: itertools.count[int] = attrs.field(factory=itertools.count)

    @property
    def started(self) -> list[SandboxSpec]:
        return [r.spec for r in self.runs.values()]

    async def check(self) -> None:
        if self.unavailable:
            raise SandboxUnavailable(self.unavailable)

    async def start(self, spec: SandboxSpec) -> str:
        await self.check()
        if self.start_gate is not None:
            await self.start_gate.wait()
        run = FakeRun(spec=spec, sandbox_id=f"fake-{next(self._ids)}")
        self.runs[run.sandbox_id] = run
        run.task = asyncio.create_task(self._act(run))
        return run.sandbox_id

    async def _act(self, run: FakeRun) -> None:
        spec = run.spec
        behaviour = self.for_mission.get(spec.mission_id) or self.behaviours.get(spec.step_id, Behaviour())
        step_id, agent_id, inp, out = spec.command[1:5]
        run.emit(f"[agent] {agent_id} starting step {step_id}\n".encode())
        if behaviour.gate is not None:
            await behaviour.gate.wait()
        for line in behaviour.extra_lines:
            run.emit(line)
        if behaviour.code_only:
            tree = next(Path(m.source) for m in spec.mounts if m.target == "/workspace")
            (tree / "added-by-agent.txt").write_text("hello\n")
        elif behaviour.exit_code == 0 and spec.mounts:  # a review command has no artifacts folder
            folder = Path(spec.mounts[0].source)
            content = (folder / inp).read_text() if inp else ""
            (folder / out).write_text(f"# {step_id} (by {agent_id})\n\n{content}")
            run.emit(f"[agent] wrote {out}\n".encode())
        run.exit(behaviour.exit_code)

    async def output(self, sandbox_id: str) -> AsyncIterator[bytes]:
        run = self.runs[sandbox_id]
        sent = 0
        while True:
            while sent < len(run.lines):
                yield run.lines[sent]
                sent += 1
            if run.exit_code is not None:
                return
            run.changed.clear()
            await run.changed.wait()

    async def wait(self, sandbox_id: str) -> int:
        run = self.runs[sandbox_id]
        while run.exit_code is None:
            run.changed.clear()
            await run.changed.wait()
        return run.exit_code

    async def stop(self, sandbox_id: str, *, grace_seconds: float = 3.0) -> None:
        run = self.runs[sandbox_id]
        if run.task is not None and not run.task.done():
            run.task.cancel()
        run.exit(KILLED)

    async def remove(self, sandbox_id: str) -> None:
        run = self.runs.get(sandbox_id)
        if run is not None:
            await self.stop(sandbox_id)
            run.removed = True

    async def list(self) -> list[SandboxInfo]:
        return [
            SandboxInfo(
                sandbox_id=r.sandbox_id,
                mission_id=r.spec.mission_id,
                run_id=r.spec.run_id,
                step_id=r.spec.step_id,
                running=r.exit_code is None,
            )
            for r in self.runs.values()
            if not r.removed
        ]

    async def aclose(self) -> None:
        """Nothing to release (runs keep going, as a real provider's do); counted for tests."""
        self.closed += 1

    def live(self) -> builtins.list[FakeRun]:
        return [r for r in self.runs.values() if not r.removed]
