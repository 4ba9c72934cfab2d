"""The seam between the engine and whatever runs agent containers.

The engine only ever talks to a :class:`SandboxProvider`. Each engine family
is a wing of its own (:mod:`haflowd.sandbox.docker`: the local and the remote
Docker providers; :mod:`haflowd.sandbox.kubernetes`: Jobs in a cluster), chosen
by :mod:`haflowd.sandbox.registry`; the wings never import each other, so what
they share (labels, the line limit, the installation's id) lives here. Nothing
in here knows about Docker.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

import attrs

from ..errors import SandboxError, SandboxUnavailable
from ..models import DEFAULT_LIMITS, Limits

__all__ = [
    "LABEL_INSTANCE",
    "LABEL_MISSION",
    "LABEL_RUN",
    "LABEL_STEP",
    "MAX_LINE_BYTES",
    "Limits",
    "Mount",
    "SandboxError",
    "SandboxInfo",
    "SandboxProvider",
    "SandboxSpec",
    "SandboxUnavailable",
    "instance_id",
]

#: Label keys every sandbox carries, so a provider can find its own containers.
LABEL_MISSION = "haflow.mission_id"
LABEL_RUN = "haflow.run_id"
LABEL_STEP = "haflow.step_id"
#: Label naming the daemon installation a sandbox belongs to, so two
#: daemons (two users, two HAFLOW_HOMEs) sharing one engine never see, let
#: alone remove, each other's sandboxes.
LABEL_INSTANCE = "haflow.instance"

#: Longest item a provider's ``output`` yields by default; longer lines are split.
MAX_LINE_BYTES = 64 * 1024


def instance_id(home: os.PathLike[str] | str) -> str:
    """A stable short id for the installation whose data lives in ``home`` (the value of :data:`LABEL_INSTANCE`)."""
    return hashlib.sha256(str(Path(home).resolve()).encode()).hexdigest()[:12]


#: What a writable area may hand back at most, unless its step says otherwise.
DEFAULT_AREA_BYTES = 1024 * 1024 * 1024
DEFAULT_AREA_FILES = 100_000


@attrs.frozen
class Mount:
    """An area of a step: a folder or file of the daemon's, seen at ``target`` in the sandbox.

    A provider that shares the daemon's disk binds ``source``; the others
    carry it as a tar stream (:mod:`haflowd.sandbox.areas`) and, unless
    ``read_only``, bring it back after the run, refusing more than
    ``max_bytes`` in ``max_files`` entries.
    """

    source: Path
    target: str
    read_only: bool = False
    #: What the area is (``artifacts``, ``workspace``, ``git-dir``, ``prompt``), for messages and labels.
    name: str = ""
    max_bytes: int = DEFAULT_AREA_BYTES
    max_files: int = DEFAULT_AREA_FILES


@attrs.frozen
class SandboxSpec:
    """Everything a provider needs to start one agent run.

    ``secrets`` values must reach the sandbox without being written anywhere
    (files, logs, process arguments).
    """

    mission_id: str
    run_id: str
    step_id: str
    image: str
    command: tuple[str, ...]
    #: Plain settings; providers may show them to the engine (e.g. inspect).
    env: Mapping[str, str] = attrs.field(factory=dict)
    #: Secret values by name: passed by name only, never written anywhere.
    secrets: Mapping[str, str] = attrs.field(factory=dict, repr=False, eq=False)
    mounts: tuple[Mount, ...] = ()
    workdir: str = "/mission"
    #: Unrestricted network (unsafe; agent files must say so explicitly).
    network: bool = False
    #: Exact ``host:port`` pairs the agent may reach through the egress proxy.
    egress: tuple[str, ...] = ()
    #: Ports of the daemon's host (a local model server) the agent may reach.
    local_ports: tuple[int, ...] = ()
    limits: Limits = DEFAULT_LIMITS
    #: Where the provider reports what the run's log should show (egress decisions).
    notes: Callable[[str], None] | None = attrs.field(default=None, eq=False, repr=False)

    @property
    def labels(self) -> dict[str, str]:
        return {
            LABEL_MISSION: self.mission_id,
            LABEL_RUN: self.run_id,
            LABEL_STEP: self.step_id,
        }


@attrs.frozen
class SandboxInfo:
    """A sandbox the provider found carrying haflow labels."""

    sandbox_id: str
    mission_id: str
    run_id: str
    step_id: str
    running: bool


@runtime_checkable
class SandboxProvider(Protocol):
    """Runs agent steps in isolated, ephemeral sandboxes.

    Every method that takes a ``sandbox_id`` accepts the value :meth:`start`
    returned, also after a daemon restart (it is persisted in the run file).
    """

    async def check(self) -> None:
        """Raise :class:`SandboxUnavailable` with advice if runs cannot start."""

    async def start(self, spec: SandboxSpec) -> str:
        """Start a sandbox in the background and return its id.

        Raises :class:`SandboxError` if it cannot be started.
        """

    def output(self, sandbox_id: str) -> AsyncIterator[bytes]:
        """Yield the sandbox's combined output from its very beginning.

        Each item is one line including its trailing ``\\n`` (the last may
        lack it). Lines longer than the provider's limit arrive split into
        several items. Iteration follows a running sandbox and ends once it
        has exited and all output was yielded.

        Following may be best effort, but once :meth:`wait` returned, a new
        call must yield exactly the complete stored output, each byte once:
        the supervisor reconciles the run's log with it.
        """

    async def wait(self, sandbox_id: str) -> int:
        """Wait for the sandbox to exit and return its exit code."""

    async def stop(self, sandbox_id: str, *, grace_seconds: float = 3.0) -> None:
        """Stop a running sandbox (no error if it already exited)."""

    async def remove(self, sandbox_id: str) -> None:
        """Remove a sandbox and everything it holds (no error if gone)."""

    async def list(self) -> list[SandboxInfo]:
        """Every sandbox, running or exited, that carries haflow labels."""

    async def aclose(self) -> None:
        """Release what the provider holds in the daemon (event streams, API connections); sandboxes keep running.

        Idempotent: a second call does nothing. The provider may be used again
        afterwards (what it needs is opened anew).
        """
