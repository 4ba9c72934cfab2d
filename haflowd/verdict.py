"""What a run's end means for its mission, in the words a person reads.

The engine decides *whether* a mission moves on or fails; this module says
*why* it failed: the user sees these messages as the mission's
``lastError``, and each ends by saying what to do next where there is
something to do.
"""

from __future__ import annotations

import errno

from .models import WorkflowStep
from .supervisor import Failure, FailureKind, RunEnd


def failure(step: WorkflowStep, end: RunEnd) -> str | None:
    """Why ``end`` fails ``step``, or ``None`` if the run itself succeeded (its work is judged apart)."""
    outcome = end.outcome
    if end.stop is not None:
        return end.stop.message
    if end.failure is not None:
        return _not_watched(step, end.failure)
    if end.exit_code != 0:
        reason = outcome.error if outcome is not None and outcome.error else None
        detail = f": {reason}" if reason else ""
        return f"Step '{step.name}' failed: the agent exited with code {end.exit_code}{detail}."
    if outcome is not None and not outcome.success:
        return f"Step '{step.name}' failed: {outcome.error or 'the agent reported a failure'}."
    return None


def unrecorded(exc: Exception) -> str:
    """Why a run's result could not be recorded: the disk, or a bug (then the daemon log has it)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            "Could not record the step's result: the disk under HAFLOW_HOME is full; "
            "free some space, then continue to retry."
        )
    if isinstance(exc, OSError) and exc.errno == errno.EROFS:
        return "Could not record the step's result: HAFLOW_HOME is read-only; continue to retry."
    return "Internal error while recording the step's result (see the daemon log); continue to retry."


def _not_watched(step: WorkflowStep, failure: Failure) -> str:
    if failure.kind is FailureKind.NOT_STARTED:
        return f"Step '{step.name}' could not start: {failure.detail}; continue to retry."
    if failure.kind is FailureKind.LOST:
        return f"Lost the sandbox of step '{step.name}': {failure.detail}; continue to retry."
    return f"Internal error while watching step '{step.name}' (see the daemon log); continue to retry."
