"""A run's end is worded for the person reading the mission: why it failed, and what to do next."""

from __future__ import annotations

import errno

import pytest

from haflowd.agents.protocol import Outcome
from haflowd.models import StepType, WorkflowStep
from haflowd.supervisor import Failure, FailureKind, RunEnd, Stop
from haflowd.verdict import failure, unrecorded

STEP = WorkflowStep("research", "Research", StepType.AGENT, agent="a", output_artifact="research.md")


class TestFailure:
    @pytest.mark.parametrize(
        ("end", "expected"),
        [
            (RunEnd(0), None),
            (RunEnd(0, outcome=Outcome(success=True)), None),
            (RunEnd(0, stop=Stop("Cancelled by user")), "Cancelled by user"),
            (RunEnd(2), "Step 'Research' failed: the agent exited with code 2."),
            (
                RunEnd(1, outcome=Outcome(success=False, error="rate limited")),
                "Step 'Research' failed: the agent exited with code 1: rate limited.",
            ),
            (RunEnd(0, outcome=Outcome(success=False)), "Step 'Research' failed: the agent reported a failure."),
            (
                RunEnd(None, failure=Failure(FailureKind.NOT_STARTED, "no image")),
                "Step 'Research' could not start: no image; continue to retry.",
            ),
            (
                RunEnd(None, failure=Failure(FailureKind.LOST, "engine gone")),
                "Lost the sandbox of step 'Research': engine gone; continue to retry.",
            ),
            (
                RunEnd(None, failure=Failure(FailureKind.INTERNAL)),
                "Internal error while watching step 'Research' (see the daemon log); continue to retry.",
            ),
        ],
    )
    def test_message_of_each_end(self, end: RunEnd, expected: str | None) -> None:
        """Each way a run can end gives its own message; a clean exit gives none."""
        assert failure(STEP, end) == expected

    def test_stop_wins_over_exit_code(self) -> None:
        """A run stopped on purpose fails for that reason, not for the exit code the stop caused."""
        assert failure(STEP, RunEnd(137, stop=Stop("over quota"))) == "over quota"


class TestUnrecorded:
    @pytest.mark.parametrize(
        ("exc", "words"),
        [
            (OSError(errno.ENOSPC, "full"), "the disk under HAFLOW_HOME is full"),
            (OSError(errno.EROFS, "ro"), "HAFLOW_HOME is read-only"),
            (ValueError("bug"), "see the daemon log"),
        ],
    )
    def test_the_cause_is_named(self, exc: Exception, words: str) -> None:
        """A full or read-only disk is named as such; anything else points at the daemon log."""
        assert words in unrecorded(exc)
