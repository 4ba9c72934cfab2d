"""aider adapter: argv, environment, plain-text parsing, and a run of the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.aider import AiderAdapter, AiderParser, count
from haflowd.agents.protocol import Outcome
from haflowd.models import AdapterId, Usage
from tests.agents.conftest import agent, feed_all, recording, run_step, step

SPEC = agent(AdapterId.AIDER)
FAKE_USAGE = Usage(input_tokens=2300, output_tokens=150, cached_input_tokens=0, model="openai/fake-model")
FAKE_RESULT = "I'll create the file.\n\nhello.txt\n\n```diff\n@@ -0,0 +1 @@\n+hello from aider\n```"
COMMON = (
    "aider",
    "--message-file",
    "/dev/stdin",
    "--yes-always",
    "--no-pretty",
    "--no-fancy-input",
    "--no-check-update",
    "--no-show-release-notes",
    "--analytics-disable",
    "--no-show-model-warnings",
    "--no-auto-commits",
    "--no-dirty-commits",
    "--no-gitignore",
    "--chat-history-file",
    "/dev/null",
    "--input-history-file",
    "/dev/null",
)


class TestInvocation:
    def test_document_step_argv(self) -> None:
        """A document step reads the message from stdin, runs without git and adds the output file."""
        inv = AiderAdapter().invocation(step(SPEC))
        assert inv.command == (*COMMON, "--no-git", "/mission/artifacts/structured-text.md")
        assert inv.stdin is not None and "Output file: /mission/artifacts/structured-text.md" in inv.stdin

    def test_codegen_step_argv(self) -> None:
        """A codegen step works in the repository it runs in, never committing."""
        inv = AiderAdapter().invocation(step(SPEC, codegen=True))
        assert inv.command == COMMON
        assert inv.stdin is not None and "Do not commit" in inv.stdin

    def test_model_and_local_endpoint(self) -> None:
        """model and base_url become --model and --openai-api-base."""
        spec = agent(AdapterId.AIDER, model="openai/qwen3-coder", base_url="http://127.0.0.1:8080/v1")
        inv = AiderAdapter().invocation(step(spec, codegen=True))
        assert inv.command[len(COMMON) :] == (
            "--model",
            "openai/qwen3-coder",
            "--openai-api-base",
            "http://127.0.0.1:8080/v1",
        )

    def test_environment_and_secrets(self) -> None:
        """The local price list is used (no fetch at start-up); OPENAI_API_KEY is the default secret."""
        inv = AiderAdapter().invocation(step(SPEC))
        assert inv.env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
        assert inv.secrets == ("OPENAI_API_KEY",)
        assert AiderAdapter().structured is False


class TestParser:
    def test_fake_run(self) -> None:
        """The recorded run succeeds with its token line as usage and its reply as result."""
        parser = AiderParser()
        log = feed_all(parser, recording("aider-fake"))
        assert parser.finish(0) == Outcome(success=True, usage=FAKE_USAGE, result=FAKE_RESULT)
        assert "[init] Model: openai/fake-model with whole edit format" in log
        assert "[assistant] I'll create the file." in log
        assert "[usage] Tokens: 2.3k sent, 150 received." in log
        assert log[-1] == "[tool] Applied edit to hello.txt"
        assert sum(line.startswith("[warning] HTTPSConnectionPool") for line in log) == 4

    def test_real_network_failure_exits_zero_but_fails(self) -> None:
        """Recorded here from the real aider 0.86.2 without network: exit 0, yet the run failed."""
        parser = AiderParser()
        log = feed_all(parser, recording("aider-nonet"))
        outcome = parser.finish(0)
        assert outcome == Outcome(success=False, error="The API provider's servers are down or overloaded.")
        assert "[init] Analytics have been permanently disabled." in log
        assert sum(line.startswith("[error] litellm.InternalServerError") for line in log) == 9

    def test_model_error_with_exit_zero_is_a_failure(self) -> None:
        """aider exits 0 after a model error; the error line decides."""
        parser = AiderParser()
        feed_all(
            parser,
            [
                "Aider v0.86.2",
                "litellm.AuthenticationError: AuthenticationError: OpenAIException - Incorrect API key provided",
                "The API provider is not able to authenticate you. Check your API key.",
            ],
        )
        outcome = parser.finish(0)
        assert outcome == Outcome(
            success=False, error="The API provider is not able to authenticate you. Check your API key."
        )

    def test_recovered_error(self) -> None:
        """An error followed by a reply (aider retried) is not a failure."""
        parser = AiderParser()
        feed_all(
            parser,
            [
                "litellm.APIConnectionError: down",
                "Retrying in 0.2 seconds...",
                "Done.",
                "Tokens: 3k sent, 1.5k cache hit, 20 received. Cost: $0.01 message, $0.03 session.",
            ],
        )
        outcome = parser.finish(0)
        assert outcome.success
        assert outcome.usage == Usage(input_tokens=3000, output_tokens=20, cached_input_tokens=1500, cost_usd=0.03)

    def test_nonzero_exit(self) -> None:
        """A non-zero exit fails the run."""
        parser = AiderParser()
        feed_all(parser, recording("aider-fake"))
        assert parser.finish(1).error == "aider exited with code 1"

    def test_no_reply(self) -> None:
        """Exit 0 with no reply from the model is not a success."""
        assert AiderParser().finish(0).success is False

    @pytest.mark.parametrize(("text", "tokens"), [("150", 150), ("2.3k", 2300), ("1.25M", 1_250_000)])
    def test_counts(self, text: str, tokens: int) -> None:
        """aider's rounded counts are read back."""
        assert count(text) == tokens


@pytest.mark.docker
class TestStandIn:
    def test_document_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the exact argv, reads the message file /dev/stdin and writes the output."""
        outcome, _ = run_step(standin_image, AiderAdapter(), step(SPEC), mission_dirs)
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result=FAKE_RESULT)
        assert "dark mode toggle" in (mission_dirs[0] / "structured-text.md").read_text()

    def test_codegen_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A codegen step edits the workspace and writes no artifact."""
        outcome, _ = run_step(standin_image, AiderAdapter(), step(SPEC, codegen=True), mission_dirs)
        assert outcome.success
        assert (mission_dirs[1] / "hello.txt").read_text() == "hello from aider\n"
        assert not (mission_dirs[0] / "implementation-result.json").exists()
