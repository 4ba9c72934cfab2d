"""Parsers over output the real CLIs printed on this project's machine (bench/agent_contract.py).

Each recording is a real binary, in its built image, run with the adapter's
exact argv and prompt against a scripted fake model server; they pin the
formats of the pinned versions beyond the reference recordings.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from haflowd.agents.aider import AiderParser
from haflowd.agents.claude_code import ClaudeCodeParser
from haflowd.agents.codex import CodexParser
from haflowd.agents.gemini import GeminiParser
from haflowd.agents.opencode import OpencodeParser
from haflowd.agents.protocol import Outcome, OutputParser
from haflowd.models import Usage
from tests.agents.conftest import feed_all, recording

WROTE = "Wrote the brief."
TWO_CALLS = Usage(input_tokens=3000, output_tokens=84, cached_input_tokens=0)
CASES: list[tuple[str, Callable[[], OutputParser], Outcome, str]] = [
    (
        "claude-contract",
        ClaudeCodeParser,
        Outcome(
            success=True,
            usage=Usage(4500, 126, 0, 0.02052, "claude-opus-5-5"),
            result="Created hello.txt and the brief.",
        ),
        "[tool] Write /mission/artifacts/structured-text.md",
    ),
    (
        "codex-contract",
        CodexParser,
        Outcome(success=True, usage=TWO_CALLS, result=WROTE),
        "[command] exit 0: /bin/bash -lc \"printf '# Brief\\\\n' > /mission/artifacts/structured-text.md\"",
    ),
    (
        "gemini-contract",
        GeminiParser,
        Outcome(success=True, usage=Usage(3000, 84, 0, None, "gemini-2.5-flash"), result=WROTE),
        "[tool] write_file /mission/artifacts/structured-text.md",
    ),
    (
        "opencode-contract",
        OpencodeParser,
        Outcome(success=True, usage=Usage(3000, 84, 0, 0.0), result=WROTE),
        "[tool] write /mission/artifacts/structured-text.md",
    ),
    (
        "aider-contract",
        AiderParser,
        Outcome(
            success=True,
            usage=Usage(758, 21, 0, None, "openai/fake-model"),
            result="I'll write the brief.\n\nstructured-text.md\n```\n# Brief\n\nDark mode toggle.\n```",
        ),
        "[tool] Applied edit to structured-text.md",
    ),
]


class TestRealCliOutput:
    @pytest.mark.parametrize(("name", "make", "outcome", "line"), CASES, ids=[c[0] for c in CASES])
    def test_parses_to_success(self, name: str, make: Callable[[], OutputParser], outcome: Outcome, line: str) -> None:
        """The real CLI's output parses to its success, usage and final message, with readable tool lines."""
        parser = make()
        log = feed_all(parser, recording(name))
        assert parser.finish(0) == outcome
        assert line in log
