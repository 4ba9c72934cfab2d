"""Every adapter against its stand-in: codegen steps and review rounds, in the real sandbox shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.protocol import AgentAdapter
from haflowd.agents.registry import adapter_for
from haflowd.models import AdapterId
from tests.agents.conftest import agent, run_step, step
from tests.agents.standin_image import run_in_image

REAL = [a for a in AdapterId if a is not AdapterId.COMMAND]
CLI = {
    AdapterId.CLAUDE_CODE: "claude",
    AdapterId.CODEX: "codex",
    AdapterId.GEMINI: "gemini",
    AdapterId.OPENCODE: "opencode",
    AdapterId.AIDER: "aider",
}


def adapter(kind: AdapterId) -> AgentAdapter:
    return adapter_for(agent(kind, model="some-model"))


@pytest.mark.docker
class TestEveryStandIn:
    @pytest.mark.parametrize("kind", REAL)
    def test_codegen_step(self, kind: AdapterId, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A codegen step (model flag included) edits /workspace and writes no artifact."""
        ctx = step(agent(kind, model="some-model"), codegen=True)
        outcome, _ = run_step(standin_image, adapter(kind), ctx, mission_dirs)
        assert outcome.success, outcome.error
        artifacts, workspace = mission_dirs
        assert (workspace / "hello.txt").read_text() == f"hello from {CLI[kind]}\n"
        assert not (artifacts / "implementation-result.json").exists()

    @pytest.mark.parametrize("kind", REAL)
    def test_review_round(self, kind: AdapterId, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A step re-run with a reviewer's feedback still writes its output."""
        ctx = step(agent(kind), feedback_artifact="feedback.md", feedback_text="More detail.")
        outcome, _ = run_step(standin_image, adapter(kind), ctx, mission_dirs)
        assert outcome.success, outcome.error
        assert (mission_dirs[0] / "structured-text.md").exists()

    @pytest.mark.parametrize("kind", REAL)
    def test_prompt_in_argv_is_refused(
        self, kind: AdapterId, standin_image: str, mission_dirs: tuple[Path, Path]
    ) -> None:
        """Each stand-in refuses a prompt in argv, as our adapters never put one there."""
        inv = adapter(kind).invocation(step(agent(kind)))
        done = run_in_image(
            standin_image, (*inv.command, "do it"), stdin=inv.stdin, env=inv.env, artifacts=mission_dirs[0]
        )
        assert done.returncode == 2, done.stdout
