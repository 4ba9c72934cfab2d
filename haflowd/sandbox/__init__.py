"""Sandbox providers: where agent steps run, all behind :class:`SandboxProvider`."""

from .protocol import (
    LABEL_MISSION,
    LABEL_RUN,
    LABEL_STEP,
    Limits,
    Mount,
    SandboxError,
    SandboxInfo,
    SandboxProvider,
    SandboxSpec,
    SandboxUnavailable,
)

__all__ = [
    "LABEL_MISSION",
    "LABEL_RUN",
    "LABEL_STEP",
    "Limits",
    "Mount",
    "SandboxError",
    "SandboxInfo",
    "SandboxProvider",
    "SandboxSpec",
    "SandboxUnavailable",
]
