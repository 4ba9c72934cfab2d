"""opencode adapter: argv, environment and config, JSON event parsing, and a run of the stand-in."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from haflowd.agents.opencode import OpencodeAdapter, OpencodeParser
from haflowd.agents.protocol import Outcome
from haflowd.models import AdapterId, Usage
from tests.agents.conftest import agent, feed_all, recording, run_step, step

SPEC = agent(AdapterId.OPENCODE)
# Two model calls of 812 + 40 tokens each, as the fake server answered.
FAKE_USAGE = Usage(input_tokens=1624, output_tokens=80, cached_input_tokens=0, cost_usd=0.0)
ERROR_401 = "APIError: Incorrect API key provided: sk-fake. (HTTP 401)"


class TestInvocation:
    def test_headless_argv(self) -> None:
        """opencode run with JSON events, permissions auto-approved, no plugins; prompt on stdin."""
        inv = OpencodeAdapter().invocation(step(SPEC))
        assert inv.command == ("opencode", "run", "--format", "json", "--auto", "--pure")
        assert inv.stdin is not None and "Output file:" in inv.stdin

    def test_model(self) -> None:
        """A provider/model passes as is."""
        inv = OpencodeAdapter().invocation(step(agent(AdapterId.OPENCODE, model="anthropic/claude-sonnet-4-5")))
        assert inv.command[-2:] == ("--model", "anthropic/claude-sonnet-4-5")
        assert inv.secrets == ("ANTHROPIC_API_KEY",)

    def test_local_endpoint(self) -> None:
        """base_url configures an OpenAI-compatible provider whose key opencode reads from the env."""
        spec = agent(AdapterId.OPENCODE, model="qwen3-coder", base_url="http://127.0.0.1:11434/v1")
        inv = OpencodeAdapter().invocation(step(spec))
        assert inv.command[-2:] == ("--model", "haflow/qwen3-coder")
        assert inv.secrets == ("OPENAI_API_KEY",)
        config = json.loads(inv.env["OPENCODE_CONFIG_CONTENT"])
        assert config["autoupdate"] is False and config["share"] == "disabled"
        provider = config["provider"]["haflow"]
        assert provider["options"] == {"baseURL": "http://127.0.0.1:11434/v1", "apiKey": "{env:OPENAI_API_KEY}"}
        assert provider["models"] == {"qwen3-coder": {}}

    def test_environment(self) -> None:
        """Updates, downloads and the models fetch are off."""
        env = OpencodeAdapter().invocation(step(SPEC)).env
        assert env["OPENCODE_DISABLE_AUTOUPDATE"] == "1"
        assert env["OPENCODE_DISABLE_MODELS_FETCH"] == "1"
        assert json.loads(env["OPENCODE_CONFIG_CONTENT"]) == {"autoupdate": False, "share": "disabled"}


def parse(name: str, exit_code: int = 0) -> tuple[Outcome, list[str]]:
    parser = OpencodeParser()
    log = feed_all(parser, recording(name))
    return parser.finish(exit_code), log


class TestParser:
    def test_fake_run(self) -> None:
        """A run's step_finish tokens are summed; text and tool parts are readable."""
        outcome, log = parse("opencode-fake")
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert log == [
            "[assistant] I'll create the file.",
            "[tool] write /workspace/hello.txt",
            "[assistant] Created hello.txt.",
        ]

    def test_bad_key(self) -> None:
        """The error event fails the run, naming the API error and status."""
        outcome, log = parse("opencode-401", exit_code=1)
        assert outcome == Outcome(success=False, error=ERROR_401)
        assert log == [f"[error] {ERROR_401}"]

    def test_error_event_with_exit_zero(self) -> None:
        """An error event fails the run even when opencode exits 0."""
        outcome, _ = parse("opencode-401", exit_code=0)
        assert not outcome.success

    def test_retryable_error_then_success(self) -> None:
        """A retryable error followed by a finished step (opencode retried) is not a failure."""
        lines = recording("opencode-fake")
        error = (
            '{"type":"error","error":{"name":"APIError","data":{"message":"Cannot connect to API","isRetryable":true}}}'
        )
        parser = OpencodeParser()
        log = feed_all(parser, [error, *lines])
        assert log[0] == "[error] APIError: Cannot connect to API"
        assert parser.finish(0).success

    def test_retryable_error_alone(self) -> None:
        """A retryable error with nothing after it (killed while retrying) fails the run."""
        parser = OpencodeParser()
        parser.feed('{"type":"error","error":{"name":"APIError","data":{"message":"down","isRetryable":true}}}')
        assert parser.finish(124) == Outcome(success=False, error="APIError: down")

    def test_failed_tool(self) -> None:
        """A tool part in error state is logged as a tool error."""
        line = json.dumps(
            {
                "type": "tool_use",
                "part": {
                    "tool": "bash",
                    "state": {"status": "error", "input": {"command": "make"}, "error": "make: not found"},
                },
            }
        )
        assert OpencodeParser().feed(line) == ["[tool] bash make", "[tool error] make: not found"]

    @pytest.mark.parametrize("line", ["INFO something", "{", '{"type":"step_finish","part":[]}'])
    def test_odd_lines_are_text(self, line: str) -> None:
        """Malformed or unexpected lines come back as text and never raise."""
        assert OpencodeParser().feed(line) == [line]


@pytest.mark.docker
class TestStandIn:
    def test_document_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the exact argv, takes the prompt on stdin and writes the output."""
        outcome, _ = run_step(standin_image, OpencodeAdapter(), step(SPEC), mission_dirs)
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert (mission_dirs[1] / "hello.txt").read_text() == "hello from opencode\n"
        assert (mission_dirs[0] / "structured-text.md").exists()

    def test_bad_key(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A replayed 401 fails the run."""
        outcome, _ = run_step(standin_image, OpencodeAdapter(), step(SPEC), mission_dirs, case="401")
        assert outcome == Outcome(success=False, error=ERROR_401)
