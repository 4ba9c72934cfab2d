"""Codex adapter: argv, environment, ``exec --json`` parsing, and a run of the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.codex import CodexAdapter, CodexParser
from haflowd.agents.protocol import Outcome
from haflowd.models import AdapterId, Usage
from tests.agents.conftest import agent, feed_all, recording, run_step, step

SPEC = agent(AdapterId.CODEX)
FAKE_USAGE = Usage(input_tokens=4800, output_tokens=120, cached_input_tokens=2048)
ERROR_401 = (
    "unexpected status 401 Unauthorized: Incorrect API key provided: sk-fake., url: http://127.0.0.1:18083/v1/responses"
)


class TestInvocation:
    def test_headless_argv(self) -> None:
        """codex exec --json reads the prompt from stdin ('-') with the container as its sandbox."""
        inv = CodexAdapter().invocation(step(SPEC))
        assert inv.command == (
            "codex",
            "exec",
            "--json",
            "--skip-git-repo-check",
            "--ephemeral",
            "--color",
            "never",
            "--dangerously-bypass-approvals-and-sandbox",
            "-",
        )
        assert inv.stdin is not None and "Output file: /mission/artifacts/structured-text.md" in inv.stdin

    def test_model(self) -> None:
        """The model goes before the stdin marker; turn and budget limits are not passed (no such flags)."""
        spec = agent(AdapterId.CODEX, model="gpt-5.1-codex", max_turns=3, max_budget_usd=1.0)
        assert CodexAdapter().invocation(step(spec)).command[-3:] == ("--model", "gpt-5.1-codex", "-")

    def test_environment_and_secrets(self) -> None:
        """OPENAI_API_KEY is the default secret; colour and git hooks are off."""
        inv = CodexAdapter().invocation(step(SPEC))
        assert inv.secrets == ("OPENAI_API_KEY",)
        assert inv.env["NO_COLOR"] == "1" and inv.env["HUSKY"] == "0"

    def test_base_url_is_a_model_provider(self) -> None:
        """codex ignores OPENAI_BASE_URL, so base_url becomes a provider defined with -c (TOML strings)."""
        spec = agent(AdapterId.CODEX, base_url="http://127.0.0.1:8080/v1", secrets=("LOCAL_KEY",))
        inv = CodexAdapter().invocation(step(spec))
        assert inv.command[-11:] == (
            "--config",
            'model_provider="haflow"',
            "--config",
            'model_providers.haflow.name="haflow"',
            "--config",
            'model_providers.haflow.base_url="http://127.0.0.1:8080/v1"',
            "--config",
            'model_providers.haflow.wire_api="responses"',
            "--config",
            'model_providers.haflow.env_key="LOCAL_KEY"',
            "-",
        )
        assert "OPENAI_BASE_URL" not in inv.env


def parse(name: str, exit_code: int = 0, model: str | None = None) -> tuple[Outcome, list[str]]:
    parser = CodexParser(model=model)
    log = feed_all(parser, recording(name))
    return parser.finish(exit_code), log


class TestParser:
    def test_fake_run(self) -> None:
        """A run with a shell command succeeds with its usage and last message."""
        outcome, log = parse("codex-fake")
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert log == [
            "[init] codex thread 01a211dd-63b8-7970-9f19-94a9235f7a5d",
            "[warning] Model metadata for `gpt-5.1-codex` not found. Defaulting to fallback metadata; "
            "this can degrade performance and cause issues.",
            "[assistant] I'll create the file.",
            "[command] /bin/bash -lc \"printf 'hello from codex\\\\n' > hello.txt\"",
            "[command] exit 0: /bin/bash -lc \"printf 'hello from codex\\\\n' > hello.txt\"",
            "[assistant] Created hello.txt.",
        ]

    def test_model_comes_from_the_agent_file(self) -> None:
        """Codex does not name its model, so usage carries the configured one."""
        outcome, _ = parse("codex-fake", model="gpt-5.1-codex")
        assert outcome.usage is not None and outcome.usage.model == "gpt-5.1-codex"

    def test_bad_key(self) -> None:
        """error lines are retry notices; turn.failed is the failure, with its message."""
        outcome, log = parse("codex-401", exit_code=1)
        assert outcome == Outcome(success=False, error=ERROR_401)
        assert sum(line.startswith("[retry] Reconnecting...") for line in log) == 5
        assert log[-1] == f"[error] {ERROR_401}"

    def test_retry_notices_alone_are_not_a_failure_verdict(self) -> None:
        """A run that saw error lines but completed its turn succeeds."""
        parser = CodexParser()
        feed_all(parser, recording("codex-401")[:5] + recording("codex-fake")[3:])
        assert parser.finish(0).success

    def test_network_down_killed_by_timeout(self) -> None:
        """Waiting for the network forever ends when the sandbox kills it; the last notice says why."""
        outcome, _ = parse("codex-down", exit_code=137)
        assert not outcome.success
        assert outcome.error == (
            "codex exited with code 137 before finishing its turn; "
            "last notice: Reconnecting... waiting for network (Connection failed: error sending request)"
        )

    @pytest.mark.parametrize("line", ["plain", "{", '{"type":"item.completed"}', '{"type":"turn.completed","usage":7}'])
    def test_odd_lines_are_text(self, line: str) -> None:
        """Malformed or unexpected lines come back as text and never raise."""
        assert CodexParser().feed(line) in ([line], [])


@pytest.mark.docker
class TestStandIn:
    def test_document_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the exact argv, takes the prompt on stdin and writes the output."""
        outcome, _ = run_step(standin_image, CodexAdapter(), step(SPEC), mission_dirs)
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        artifacts, workspace = mission_dirs
        assert (workspace / "hello.txt").read_text() == "hello from codex\n"
        assert "dark mode toggle" in (artifacts / "structured-text.md").read_text()

    def test_local_endpoint(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the provider overrides a base_url adds."""
        spec = agent(AdapterId.CODEX, base_url="http://127.0.0.1:8080/v1")
        outcome, _ = run_step(standin_image, CodexAdapter(), step(spec), mission_dirs)
        assert outcome.success

    def test_bad_key(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A replayed 401 fails with turn.failed's message."""
        outcome, _ = run_step(standin_image, CodexAdapter(), step(SPEC), mission_dirs, case="401")
        assert outcome == Outcome(success=False, error=ERROR_401)
