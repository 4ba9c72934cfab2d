"""Fixtures of the agent adapter tests: step contexts, recordings, the stand-in image."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from haflowd.agents.protocol import AgentAdapter, Outcome, OutputParser, StepContext
from haflowd.models import AdapterId, AgentSpec
from tests.agents.standin_image import RECORDINGS, build_standin_image, run_in_image

INPUT_TEXT = "Add a dark mode toggle to the settings page."


def agent(adapter: AdapterId, **fields: Any) -> AgentSpec:
    """An agent file's spec for ``adapter``."""
    return AgentSpec(agent_id=f"{adapter.value}-agent", adapter=adapter, **fields)


def step(spec: AgentSpec, *, codegen: bool = False, **fields: Any) -> StepContext:
    """A cleanup step (or an implementation step with ``codegen``) run by ``spec``."""
    values: dict[str, Any] = {
        "mission_id": "m-0001",
        "mission_title": "Dark mode",
        "mission_type": "feature",
        "run_id": "r-0001",
        "step_id": "implementation" if codegen else "cleanup",
        "step_name": "Implementation" if codegen else "Cleanup",
        "agent": spec,
        "prompt": "implementation" if codegen else "cleanup",
        "input_artifact": "implementation-plan.md" if codegen else "raw-input.md",
        "output_artifact": "implementation-result.json" if codegen else "structured-text.md",
        "input_text": INPUT_TEXT,
        "codegen": codegen,
    }
    values.update(fields)
    return StepContext(**values)


def recording(name: str) -> list[str]:
    """The lines of one recording, standard output first, then standard error."""
    found = [RECORDINGS / f"{name}.stdout", RECORDINGS / f"{name}.stderr", RECORDINGS / f"{name}.json"]
    out: list[str] = []
    for path in found:
        if path.exists():
            out += path.read_text(encoding="utf-8").splitlines()
    assert out or (RECORDINGS / f"{name}.stdout").exists(), f"no recording {name}"
    return out


def feed_all(parser: OutputParser, lines: Sequence[str]) -> list[str]:
    """Feed every line to ``parser`` and return the readable log."""
    log: list[str] = []
    for line in lines:
        log += parser.feed(line)
    return log


@pytest.fixture(scope="session")
def standin_image(docker_image: str) -> Iterator[str]:
    """The busybox test image plus the stand-in CLIs and the recordings."""
    yield build_standin_image(docker_image)


@pytest.fixture
def mission_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """An artifacts folder holding the input and an empty workspace, writable by the sandbox's user."""
    artifacts = tmp_path / "artifacts"
    workspace = tmp_path / "workspace"
    for folder in (artifacts, workspace):
        folder.mkdir()
        folder.chmod(0o777)
    (artifacts / "raw-input.md").write_text(INPUT_TEXT + "\n")
    (artifacts / "implementation-plan.md").write_text("1. Add the toggle.\n")
    return artifacts, workspace


def run_step(
    image: str,
    adapter: AgentAdapter,
    ctx: StepContext,
    dirs: tuple[Path, Path],
    *,
    case: str = "fake",
) -> tuple[Outcome, list[str]]:
    """Run ``adapter``'s invocation for ``ctx`` in ``image`` and parse its output.

    Secrets get placeholder values; ``case`` picks the stand-in's recording.
    """
    invocation = adapter.invocation(ctx)
    env = {**invocation.env, "HAFLOW_STANDIN_CASE": case}
    env.update({name: "sk-test-not-a-key" for name in invocation.secrets})
    artifacts, workspace = dirs
    done = run_in_image(
        image, invocation.command, stdin=invocation.stdin, env=env, artifacts=artifacts, workspace=workspace
    )
    parser = adapter.parser()
    log = feed_all(parser, done.stdout.splitlines())
    return parser.finish(done.returncode), log
