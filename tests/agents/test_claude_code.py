"""Claude Code adapter: argv, environment, stream-json parsing, and a run of the stand-in."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.agents.claude_code import ClaudeCodeAdapter, ClaudeCodeParser
from haflowd.agents.protocol import MAX_RESULT_CHARS, Outcome
from haflowd.models import AdapterId, Usage
from tests.agents.conftest import agent, feed_all, recording, run_step, step
from tests.agents.standin_image import run_in_image

SPEC = agent(AdapterId.CLAUDE_CODE)
FAKE_USAGE = Usage(
    input_tokens=3000 + 400 + 6000,
    output_tokens=84,
    cached_input_tokens=6000,
    cost_usd=0.013560000000000001,
    model="claude-sonnet-4-5",
)


class TestInvocation:
    def test_headless_argv(self) -> None:
        """The command is print mode with stream-json, --verbose and bypassed permissions, prompt not in argv."""
        inv = ClaudeCodeAdapter().invocation(step(SPEC))
        assert inv.command == (
            "claude",
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--permission-mode",
            "bypassPermissions",
            "--no-session-persistence",
        )
        assert inv.stdin is not None and "Output file: /mission/artifacts/structured-text.md" in inv.stdin
        assert not any("Dark mode" in item for item in inv.command)

    def test_model_and_limits(self) -> None:
        """The agent file's model and limits become --model, --max-turns and --max-budget-usd."""
        spec = agent(AdapterId.CLAUDE_CODE, model="claude-opus-4-1", max_budget_usd=2.5, max_turns=7)
        inv = ClaudeCodeAdapter().invocation(step(spec))
        assert inv.command[-6:] == ("--model", "claude-opus-4-1", "--max-turns", "7", "--max-budget-usd", "2.5")

    def test_environment(self) -> None:
        """The env bounds retries, allows bypass in the sandbox and turns off updates and telemetry."""
        inv = ClaudeCodeAdapter().invocation(step(SPEC))
        for key, value in {
            "IS_SANDBOX": "1",
            "CLAUDE_CODE_MAX_RETRIES": "2",
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "HUSKY": "0",
            "NO_COLOR": "1",
        }.items():
            assert inv.env[key] == value
        assert "ANTHROPIC_BASE_URL" not in inv.env

    def test_secrets_default_and_override(self) -> None:
        """Secrets default to ANTHROPIC_API_KEY, and the agent file's list wins."""
        assert ClaudeCodeAdapter().invocation(step(SPEC)).secrets == ("ANTHROPIC_API_KEY",)
        spec = agent(AdapterId.CLAUDE_CODE, secrets=("CLAUDE_KEY",))
        assert ClaudeCodeAdapter().invocation(step(spec)).secrets == ("CLAUDE_KEY",)

    def test_base_url_and_own_env(self) -> None:
        """base_url becomes ANTHROPIC_BASE_URL and the agent file's env overrides the defaults."""
        spec = agent(AdapterId.CLAUDE_CODE, base_url="http://127.0.0.1:9", env={"CLAUDE_CODE_MAX_RETRIES": "0"})
        env = ClaudeCodeAdapter().invocation(step(spec)).env
        assert env["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:9"
        assert env["CLAUDE_CODE_MAX_RETRIES"] == "0"

    def test_structured(self) -> None:
        """Claude Code's output is JSON events worth keeping raw."""
        assert ClaudeCodeAdapter().structured is True
        assert ClaudeCodeAdapter().adapter_id == "claude-code"


def parse(name: str, exit_code: int = 0) -> tuple[Outcome, list[str]]:
    parser = ClaudeCodeParser()
    log = feed_all(parser, recording(name))
    return parser.finish(exit_code), log


class TestParser:
    def test_fake_run(self) -> None:
        """A tool-using run succeeds with its usage, cost, final message and readable lines."""
        outcome, log = parse("claude-fake")
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert log == [
            "[init] claude 2.1.331, model claude-sonnet-4-5, cwd /workspace",
            "[assistant] I'll create the file.",
            "[tool] Write /workspace/hello.txt",
            "[tool result] File created successfully at: /workspace/hello.txt "
            "(file state is current in your context — no need to Read it back)",
            "[assistant] Created hello.txt.",
            "[result] done (2 turns, $0.0136)",
        ]

    def test_fake_run_without_cache(self) -> None:
        """The run recorded with the network cut to the fake server counts no cached tokens."""
        outcome, _ = parse("claude-fake-netnone")
        assert outcome.success
        assert outcome.usage == Usage(
            input_tokens=3000,
            output_tokens=84,
            cached_input_tokens=0,
            cost_usd=0.010260000000000002,
            model="claude-sonnet-4-5",
        )

    def test_bad_key_is_a_failure_despite_subtype_success(self) -> None:
        """A 401 ends in subtype success with is_error true, which fails the run with the CLI's words."""
        outcome, log = parse("claude-401", exit_code=1)
        error = "Failed to authenticate. API Error: 401 Incorrect API key provided: sk-fake."
        assert not outcome.success
        assert outcome.error == error
        assert outcome.result == error
        assert "[retry] API retry 1/1 (authentication_failed, HTTP 401)" in log
        assert f"[error] {error}" in log

    def test_bad_key_fails_even_with_exit_zero(self) -> None:
        """is_error decides, whatever the exit code says."""
        outcome, _ = parse("claude-401", exit_code=0)
        assert not outcome.success

    def test_no_key(self) -> None:
        """Without a key the CLI says it is not logged in; that is the error."""
        outcome, _ = parse("claude-nokey", exit_code=1)
        assert outcome.success is False
        assert outcome.error == "Not logged in · Please run /login"
        assert outcome.usage is not None and outcome.usage.input_tokens == 0

    def test_no_network(self) -> None:
        """Without network the retries are logged and the run fails naming the connection."""
        outcome, log = parse("claude-nonet", exit_code=1)
        assert not outcome.success
        assert outcome.error == "API Error: Can't reach the API server — check your internet or DNS (EAI_AGAIN)"
        assert sum(line.startswith("[retry] API retry") for line in log) == 10

    def test_permission_denial_is_a_failure(self) -> None:
        """A denied write reports success, but permission_denials fail the run."""
        outcome, log = parse("claude-dontask")
        assert not outcome.success
        assert outcome.error == "permission denied: Write /workspace/hello.txt"
        assert outcome.usage == FAKE_USAGE
        assert outcome.result == "Created hello.txt."
        assert log == ["[result] failed: permission denied: Write /workspace/hello.txt (2 turns, $0.0136)"]

    def test_turn_limit(self) -> None:
        """A result whose subtype is not success (a limit was hit) fails, naming the subtype."""
        parser = ClaudeCodeParser()
        parser.feed('{"type":"result","subtype":"error_max_turns","is_error":false,"num_turns":7}')
        assert parser.finish(1).error == "error_max_turns"

    def test_no_result_event(self) -> None:
        """A run killed before its result event fails, naming the last retry notice."""
        parser = ClaudeCodeParser()
        feed_all(parser, recording("claude-nonet")[:3])
        outcome = parser.finish(137)
        assert not outcome.success
        assert outcome.error == (
            "claude exited with code 137 before reporting a result; last notice: API retry 2/10 (unknown)"
        )

    def test_nonzero_exit_after_success(self) -> None:
        """A successful result followed by a failing exit code is a failure."""
        outcome, _ = parse("claude-fake", exit_code=1)
        assert outcome.success is False and outcome.error == "claude exited with code 1"

    @pytest.mark.parametrize(
        "line",
        ["not json", "{broken", "[1, 2]", '{"type": "assistant"}', '{"type": "assistant", "message": 3}', "{}"],
    )
    def test_odd_lines_are_text(self, line: str) -> None:
        """Malformed or unexpected lines come back as text (or nothing) and never raise."""
        assert ClaudeCodeParser().feed(line) in ([line], [])

    def test_result_is_bounded(self) -> None:
        """The final message is cut to 4 Ki characters."""
        parser = ClaudeCodeParser()
        parser.feed('{"type":"result","subtype":"success","is_error":false,"result":"' + "x" * 10_000 + '"}')
        result = parser.finish(0).result
        assert result is not None and len(result) == MAX_RESULT_CHARS


@pytest.mark.docker
class TestStandIn:
    def test_document_step(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in accepts the exact argv, reads the prompt on stdin and writes the output artifact."""
        outcome, log = run_step(standin_image, ClaudeCodeAdapter(), step(SPEC), mission_dirs)
        assert outcome == Outcome(success=True, usage=FAKE_USAGE, result="Created hello.txt.")
        assert "[tool] Write /workspace/hello.txt" in log
        artifacts, workspace = mission_dirs
        assert (workspace / "hello.txt").read_text() == "hello from claude\n"
        output = (artifacts / "structured-text.md").read_text()
        assert output.startswith("# Written by the claude stand-in") and "dark mode toggle" in output

    def test_bad_key(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """A replayed 401 fails the run and writes nothing."""
        outcome, _ = run_step(standin_image, ClaudeCodeAdapter(), step(SPEC), mission_dirs, case="401")
        assert not outcome.success and outcome.error is not None and "401" in outcome.error
        assert not (mission_dirs[0] / "structured-text.md").exists()

    def test_argv_drift_fails(self, standin_image: str, mission_dirs: tuple[Path, Path]) -> None:
        """The stand-in rejects a flag the adapter does not pass, so argv drift fails a test."""
        adapter = ClaudeCodeAdapter()
        ctx = step(SPEC)
        inv = adapter.invocation(ctx)
        done = run_in_image(
            standin_image, (*inv.command, "--bogus"), stdin=inv.stdin, env=inv.env, artifacts=mission_dirs[0]
        )
        assert done.returncode == 2 and "unknown option '--bogus'" in done.stdout
