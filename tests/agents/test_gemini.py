"""Gemini CLI adapter: argv, environment, stream-json parsing, and a run of the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.gemini import GeminiAdapter, GeminiParser
from haflowd.agents.protocol import Outcome
from haflowd.models import AdapterId, Usage
from tests.agents.conftest import agent, feed_all, recording, run_step, step

SPEC = agent(AdapterId.GEMINI)
FAKE_USAGE = Usage(input_tokens=1900, output_tokens=25, cached_input_tokens=800, model="gemini-2.5-flash")
NONET = "[API Error: exception TypeError: fetch failed sending request]"


class TestInvocation:
    def test_headless_argv(self) -> None:
        """stream-json output, every tool approved, the workspace trusted; the prompt goes to stdin."""
        inv = GeminiAdapter().invocation(step(SPEC))
        assert inv.command == (
            "gemini",
            "--output-format",
            "stream-json",
            "--approval-mode",
            "yolo",
            "--skip-trust",
            "--include-directories",
            "/mission/artifacts",
        )
        assert inv.stdin is not None and inv.stdin.startswith("You are the cleanup step")

    def test_model(self) -> None:
        """The agent file's model becomes --model."""
        inv = GeminiAdapter().invocation(step(agent(AdapterId.GEMINI, model="gemini-2.5-pro")))
        assert inv.command[-2:] == ("--model", "gemini-2.5-pro")

    def test_environment_and_secrets(self) -> None:
        """GEMINI_API_KEY is the default secret; telemetry and the CLI's own sandbox are off."""
        inv = GeminiAdapter().invocation(step(SPEC))
        assert inv.secrets == ("GEMINI_API_KEY",)
        assert inv.env["GEMINI_TELEMETRY_ENABLED"] == "false"
        assert inv.env["GEMINI_SANDBOX"] == "false"
        assert "GOOGLE_GEMINI_BASE_URL" not in inv.env

    def test_base_url(self) -> None:
        """base_url becomes GOOGLE_GEMINI_BASE_URL."""
        inv = GeminiAdapter().invocation(step(agent(AdapterId.GEMINI, base_url="http://127.0.0.1:9")))
        assert inv.env["GOOGLE_GEMINI_BASE_URL"] == "http://127.0.0.1:9"


def parse(name: str, exit_code: int = 0) -> tuple[Outcome, list[str]]:
    parser = GeminiParser()
    log = feed_all(parser, recording(name))
    return parser.finish(exit_code), log


class TestParser:
    def test_fake_run(self) -> None:
        """A tool-using run succeeds with stats as usage; deltas are joined into messages."""
        outcome, log = parse("gemini-fake")
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert log[:6] == [
            "[init] gemini, model gemini-2.5-flash",
            "[assistant] I will create the file.",
            "[tool] write_file /workspace/hello.txt",
            "[tool result] success",
            "[assistant] Created hello.txt.",
            "[result] done (1 tool calls)",
        ]
        # Standard error (warnings) is kept as text.
        assert "YOLO mode is enabled. All tool calls will be automatically approved." in log

    def test_no_network(self) -> None:
        """result.status error fails the run with the error's message."""
        outcome, log = parse("gemini-nonet", exit_code=1)
        assert not outcome.success
        assert outcome.error == f"gemini exited with code 1 (error): {NONET}"
        assert f"[result] failed: {NONET}" in log
        assert outcome.usage == Usage(0, 0, 0, None, "gemini-2.5-flash")

    def test_status_error_with_exit_zero(self) -> None:
        """A failing status fails the run even when the exit code is 0."""
        outcome, _ = parse("gemini-nonet", exit_code=0)
        assert outcome == Outcome(
            success=False, error=NONET, usage=Usage(0, 0, 0, None, "gemini-2.5-flash"), result=None
        )

    @pytest.mark.parametrize(
        ("code", "meaning"),
        [
            (41, "authentication failed"),
            (42, "invalid input"),
            (52, "configuration error"),
            (53, "turn limit exceeded"),
            (130, "cancelled"),
        ],
    )
    def test_exit_codes(self, code: int, meaning: str) -> None:
        """Gemini's documented exit codes are named in the error."""
        outcome = GeminiParser().finish(code)
        assert outcome.error == f"gemini exited with code {code} ({meaning})"

    def test_no_result(self) -> None:
        """Exit 0 without a result event is not a success."""
        assert GeminiParser().finish(0).success is False

    def test_error_events(self) -> None:
        """error events are logged by severity."""
        parser = GeminiParser()
        assert parser.feed('{"type":"error","severity":"warning","message":"loop detected"}') == [
            "[warning] loop detected"
        ]
        assert parser.feed('{"type":"error","severity":"error","message":"quota"}') == ["[error] quota"]

    @pytest.mark.parametrize("line", ["Attempt 1 failed.", "{", '{"type":"result","stats":5}'])
    def test_odd_lines_are_text(self, line: str) -> None:
        """Malformed or unexpected lines come back as text and never raise."""
        assert GeminiParser().feed(line) == [line]


@pytest.mark.docker
class TestStandIn:
    def test_document_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the exact argv, takes the prompt on stdin and writes the output."""
        outcome, _ = run_step(standin_image, GeminiAdapter(), step(SPEC), mission_dirs)
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert (mission_dirs[1] / "hello.txt").read_text() == "hello from gemini\n"
        assert (mission_dirs[0] / "structured-text.md").exists()

    def test_no_network(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A replayed network failure fails the run."""
        outcome, _ = run_step(standin_image, GeminiAdapter(), step(SPEC), mission_dirs, case="nonet")
        assert not outcome.success and outcome.error is not None and NONET in outcome.error
