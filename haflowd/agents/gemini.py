"""Gemini CLI (``gemini --output-format stream-json``).

Facts of version 0.61.0 (see the recordings):

- Piped stdin is the prompt and makes the run headless.
- Its file tools only touch the working directory and
  ``--include-directories`` (a write to ``/mission/artifacts`` from
  ``/workspace`` fails with "Path not in workspace" otherwise).
- Assistant text arrives as ``message`` deltas; they are joined until the
  next other event so the log shows whole messages.
- The final ``result`` event has ``status`` ("success" or "error", with an
  ``error`` object) and ``stats`` whose ``input_tokens`` include ``cached``.
- Exit codes: 41 authentication, 42 bad input, 52 configuration, 53 turn
  limit, 130 cancelled. Under a 256 MB memory limit it never finishes, so
  its agent file asks for 2 GB or more.
- No turn or budget flags (turn limits are a settings-file matter).
- ``base_url`` becomes ``GOOGLE_GEMINI_BASE_URL``. That variable alone
  switches the CLI to "gateway" auth ("Invalid auth method selected",
  exit 41), so our image ships ``/etc/gemini-cli/settings.json`` selecting
  ``gemini-api-key`` (see ``workflows/images/agent-images.json``).
"""

from __future__ import annotations

from typing import Any

import attrs

from ..models import AdapterId, Usage
from .events import EventParser, as_int, clip, lines, short, tool_summary
from .prompts import PromptLibrary
from .protocol import Invocation, Outcome, StepContext

BINARY = "gemini"
DEFAULT_SECRETS = ("GEMINI_API_KEY",)
EXIT_CODES = {
    41: "authentication failed",
    42: "invalid input",
    52: "configuration error",
    53: "turn limit exceeded",
    130: "cancelled",
}
ENV = {
    "GEMINI_TELEMETRY_ENABLED": "false",
    # The CLI would otherwise re-launch itself (or Docker) to sandbox tools.
    "GEMINI_SANDBOX": "false",
    "NO_COLOR": "1",
    "HUSKY": "0",
    "CI": "1",
}


def argv(ctx: StepContext) -> tuple[str, ...]:
    """The headless command line; the prompt goes to stdin.

    The file tools refuse paths outside the working directory, so the
    artifacts folder is included explicitly.
    """
    args = [BINARY, "--output-format", "stream-json", "--approval-mode", "yolo", "--skip-trust"]
    args += ["--include-directories", ctx.artifacts_dir]
    if ctx.agent.model:
        args += ["--model", ctx.agent.model]
    return tuple(args)


@attrs.define
class GeminiParser(EventParser):
    """Reads Gemini CLI's stream-json events."""

    model: str | None = None
    usage: Usage | None = None
    status: str | None = None
    error: str | None = None
    last_message: str | None = None
    pending: str = ""

    def _flush(self) -> list[str]:
        if not self.pending:
            return []
        self.last_message, self.pending = self.pending, ""
        return lines("[assistant]", self.last_message)

    def event(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        if kind == "message" and event.get("role") == "assistant":
            self.pending += str(event.get("content", ""))
            if not event.get("delta"):
                return self._flush()
            return []
        out = self._flush()
        if kind == "init":
            self.model = event.get("model") or self.model
            out.append(f"[init] gemini, model {self.model}")
        elif kind == "tool_use":
            out.append(f"[tool] {tool_summary(event.get('tool_name', '?'), event.get('parameters'))}")
        elif kind == "tool_result":
            if event.get("status") == "success":
                output = event.get("output")
                out.append(f"[tool result] {short(output)}" if output else "[tool result] success")
            else:
                error = event.get("error") or {}
                out.append(f"[tool error] {short(error.get('message') or event.get('status'))}")
        elif kind == "error":
            tag = "[warning]" if event.get("severity") == "warning" else "[error]"
            out.append(f"{tag} {short(event.get('message', ''))}")
        elif kind == "result":
            out += self._result(event)
        return out

    def _result(self, event: dict[str, Any]) -> list[str]:
        self.status = str(event.get("status"))
        stats = event.get("stats") or {}
        models = stats.get("models") or {}
        model = next(iter(models)) if len(models) == 1 else self.model
        self.usage = Usage(
            input_tokens=as_int(stats.get("input_tokens")),
            output_tokens=as_int(stats.get("output_tokens")),
            cached_input_tokens=as_int(stats.get("cached")),
            model=model,
        )
        if self.status == "success":
            return [f"[result] done ({as_int(stats.get('tool_calls'))} tool calls)"]
        error = event.get("error") or {}
        self.error = clip(str(error.get("message") or f"gemini reported status {self.status}"))
        return [f"[result] failed: {self.error}"]

    def finish(self, exit_code: int) -> Outcome:
        if self.pending:
            self.last_message, self.pending = self.pending, ""
        result = clip(self.last_message) if self.last_message else None
        if exit_code != 0:
            meaning = EXIT_CODES.get(exit_code, "error")
            error = f"gemini exited with code {exit_code} ({meaning})"
            if self.error:
                error += f": {self.error}"
            return Outcome(success=False, error=clip(error), usage=self.usage, result=result)
        if self.status is None:
            error = "gemini exited without reporting a result"
            return Outcome(success=False, error=error, usage=self.usage, result=result)
        if self.status != "success":
            return Outcome(success=False, error=self.error, usage=self.usage, result=result)
        return Outcome(success=True, usage=self.usage, result=result)


@attrs.define
class GeminiAdapter:
    """Gemini CLI headless, every tool call approved inside the sandbox."""

    prompts: PromptLibrary = attrs.field(factory=PromptLibrary)
    adapter_id: str = AdapterId.GEMINI.value
    structured: bool = True

    def invocation(self, ctx: StepContext) -> Invocation:
        env = dict(ENV)
        if ctx.agent.base_url:
            env["GOOGLE_GEMINI_BASE_URL"] = ctx.agent.base_url
        env.update(ctx.agent.env)
        return Invocation(
            command=argv(ctx),
            env=env,
            secrets=ctx.agent.secrets or DEFAULT_SECRETS,
            stdin=self.prompts.prompt_for(ctx),
        )

    def parser(self) -> GeminiParser:
        return GeminiParser()
