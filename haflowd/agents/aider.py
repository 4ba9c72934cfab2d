"""aider (``aider --message-file /dev/stdin``): plain text output.

Facts of version 0.86.2 (see the recording):

- ``--message-file`` runs one message and exits; ``/dev/stdin`` makes that
  message the prompt on stdin, keeping it out of argv.
- It exits 0 even when the model call fails, so the verdict also reads the
  output: a ``litellm.*Error`` or "The API provider ..." line with no
  ``Tokens:`` line after it is a failure (the engine checks the work tree).
- Usage comes from ``Tokens: 2.3k sent, 150 received.`` lines (and
  ``Cost: ... $x session``), summed over replies.
- Without ``LITELLM_LOCAL_MODEL_COST_MAP`` it fetches a price list from the
  internet at start-up (the ``HTTPSConnectionPool`` noise in the recording).
- A document step adds the output file to the chat and runs without git;
  a codegen step works in the repository in the working directory and
  never commits.
"""

from __future__ import annotations

import re

import attrs

from ..models import AdapterId, Usage
from .events import clip, short
from .prompts import PromptLibrary
from .protocol import Invocation, Outcome, StepContext

BINARY = "aider"
DEFAULT_SECRETS = ("OPENAI_API_KEY",)
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "AIDER_ANALYTICS": "false",
    "NO_COLOR": "1",
    "HUSKY": "0",
    "CI": "1",
}

_TOKENS = re.compile(
    r"^Tokens: (?P<sent>[\d.]+[kM]?) sent"
    r"(?:, (?P<write>[\d.]+[kM]?) cache write)?"
    r"(?:, (?P<hit>[\d.]+[kM]?) cache hit)?"
    r", (?P<received>[\d.]+[kM]?) received\."
    r"(?: Cost: \$(?P<message>[\d.]+) message, \$(?P<session>[\d.]+) session\.)?"
)
_MODEL = re.compile(r"^(?:Main )?[Mm]odel: (?P<model>\S+)")
_ERROR = re.compile(r"^(?:litellm\.\w*Error|The API provider\b|Error: |Unable to )")
_BANNER = re.compile(
    r"^(?:Aider v|(?:Main |Weak |Editor )?[Mm]odel: |Git repo: |Repo-map: |Added .* to the chat|"
    r"https://aider\.chat/|Use /help|Cur working dir|Creating empty file |Note: |Analytics have been )"
)
_NOISE = re.compile(r"^(?:HTTPSConnectionPool\(|Retrying in |Warning)")


def count(text: str | None) -> int:
    """``2.3k`` -> 2300: aider's rounded token counts."""
    if not text:
        return 0
    scale = {"k": 1_000, "M": 1_000_000}.get(text[-1], 1)
    number = text[:-1] if scale != 1 else text
    return round(float(number) * scale)


def argv(ctx: StepContext) -> tuple[str, ...]:
    """The one-shot command line; the message is read from stdin."""
    agent = ctx.agent
    args = [
        BINARY,
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
        # Its history files would land in the work tree (or fail on /mission).
        "--chat-history-file",
        "/dev/null",
        "--input-history-file",
        "/dev/null",
    ]
    if agent.model:
        args += ["--model", agent.model]
    if agent.base_url:
        args += ["--openai-api-base", agent.base_url]
    if not ctx.codegen:
        args.append("--no-git")
        if ctx.output_artifact:
            args.append(f"{ctx.artifacts_dir}/{ctx.output_artifact}")
    return tuple(args)


@attrs.define
class AiderParser:
    """Reads aider's plain output."""

    model: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: float | None = None
    replies: int = 0
    edits: int = 0
    error: str | None = None
    result: str | None = None
    reply: list[str] = attrs.field(factory=list)

    def feed(self, line: str) -> list[str]:
        text = line.rstrip()
        if not text.strip():
            if self.reply:
                self.reply.append("")
            return []
        try:
            return self._line(text)
        except ValueError:
            return [text]

    def _line(self, text: str) -> list[str]:
        tokens = _TOKENS.match(text)
        if tokens:
            self.replies += 1
            # "sent" is the prompt's size, cached parts included (OpenAI's convention).
            self.input_tokens += count(tokens["sent"])
            self.cached_tokens += count(tokens["hit"])
            self.output_tokens += count(tokens["received"])
            if tokens["session"]:
                self.cost_usd = float(tokens["session"])
            reply = re.sub(r"\n{3,}", "\n\n", "\n".join(self.reply).strip())
            self.result = clip(reply) or self.result
            self.reply = []
            # A reply after an error means aider recovered.
            self.error = None
            return [f"[usage] {text}"]
        if text.startswith("Applied edit to "):
            self.edits += 1
            return [f"[tool] {text}"]
        if _ERROR.match(text):
            self.error = clip(text)
            return [f"[error] {text}"]
        if _NOISE.match(text):
            return [f"[warning] {short(text)}"]
        model = _MODEL.match(text)
        if model and self.model is None:
            self.model = model["model"]
        if _BANNER.match(text):
            self.reply = []
            return [f"[init] {text}"]
        self.reply.append(text)
        return [f"[assistant] {text}"]

    def usage(self) -> Usage | None:
        """What the run used, once aider printed any ``Tokens:`` line."""
        if not self.replies:
            return None
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cached_input_tokens=self.cached_tokens,
            cost_usd=self.cost_usd,
            model=self.model,
        )

    def finish(self, exit_code: int) -> Outcome:
        usage = self.usage()
        if exit_code != 0:
            error = f"aider exited with code {exit_code}" + (f": {self.error}" if self.error else "")
            return Outcome(success=False, error=clip(error), usage=usage, result=self.result)
        if self.error is not None:
            return Outcome(success=False, error=self.error, usage=usage, result=self.result)
        if not self.replies:
            return Outcome(success=False, error="aider exited without a reply from the model", result=self.result)
        return Outcome(success=True, usage=usage, result=self.result)


@attrs.define
class AiderAdapter:
    """aider, one message, no commits."""

    prompts: PromptLibrary = attrs.field(factory=PromptLibrary)
    adapter_id: str = AdapterId.AIDER.value
    structured: bool = False

    def invocation(self, ctx: StepContext) -> Invocation:
        return Invocation(
            command=argv(ctx),
            env={**ENV, **ctx.agent.env},
            secrets=ctx.agent.secrets or DEFAULT_SECRETS,
            stdin=self.prompts.prompt_for(ctx),
        )

    def parser(self) -> AiderParser:
        return AiderParser()
