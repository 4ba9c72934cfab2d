"""Claude Code (``claude``), headless with ``--output-format stream-json``.

Facts of version 2.1.331 this adapter is built on (see the recordings in
``tests/agents/recordings/``):

- ``-p`` with no prompt argument reads the prompt from stdin;
  ``stream-json`` needs ``--verbose``.
- ``bypassPermissions`` is refused as root unless ``IS_SANDBOX=1``.
- Without network it retries for ~200 s unless ``CLAUDE_CODE_MAX_RETRIES``
  is set; retries show as ``system``/``api_retry`` events.
- API failures end in a ``result`` with ``subtype: "success"`` *and*
  ``is_error: true``; a denied tool call still reports success but lists
  ``permission_denials``. Both are failures here.
- ``usage.input_tokens`` excludes the cache; we report the whole input
  (plus cache writes and reads) as ``input_tokens`` and the cache reads as
  ``cached_input_tokens``, as the OpenAI-style CLIs do.
- ``--max-budget-usd`` is in the help; ``--max-turns`` is not, but the
  binary accepts it (checked against 2.1.331: an unknown option is refused
  with "error: unknown option"). Hitting either limit ends in a ``result``
  whose subtype is not ``success``.
"""

from __future__ import annotations

from typing import Any

import attrs

from ..models import AdapterId, Usage
from .events import EventParser, as_float, as_int, clip, lines, short, tool_summary
from .prompts import PromptLibrary
from .protocol import Invocation, Outcome, StepContext

BINARY = "claude"
DEFAULT_SECRETS = ("ANTHROPIC_API_KEY",)
#: Retries before an API failure ends the run (the CLI's default waits minutes).
MAX_RETRIES = "2"
ENV = {
    "IS_SANDBOX": "1",
    "CLAUDE_CODE_MAX_RETRIES": MAX_RETRIES,
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    "HUSKY": "0",
    "NO_COLOR": "1",
    "CI": "1",
}


def argv(ctx: StepContext) -> tuple[str, ...]:
    """The headless command line; the prompt goes to stdin."""
    agent = ctx.agent
    args = [
        BINARY,
        "-p",
        "--output-format",
        "stream-json",
        "--verbose",
        "--permission-mode",
        "bypassPermissions",
        "--no-session-persistence",
    ]
    if agent.model:
        args += ["--model", agent.model]
    if agent.max_turns is not None:
        args += ["--max-turns", str(agent.max_turns)]
    if agent.max_budget_usd is not None:
        args += ["--max-budget-usd", f"{agent.max_budget_usd:g}"]
    return tuple(args)


@attrs.define
class ClaudeCodeParser(EventParser):
    """Reads Claude Code's stream-json events."""

    model: str | None = None
    usage: Usage | None = None
    result: str | None = None
    error: str | None = None
    success: bool | None = None
    last_text: str | None = None
    last_notice: str | None = None

    def event(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        if kind == "system":
            return self._system(event)
        if kind == "assistant":
            return self._assistant(event)
        if kind == "user":
            return self._user(event)
        if kind == "result":
            return self._result(event)
        return []

    def _system(self, event: dict[str, Any]) -> list[str]:
        subtype = event.get("subtype")
        if subtype == "init":
            self.model = event.get("model") or self.model
            version = event.get("claude_code_version", "?")
            return [f"[init] claude {version}, model {self.model}, cwd {event.get('cwd')}"]
        if subtype == "api_retry":
            status = event.get("error_status")
            why = f"{event.get('error')}" + (f", HTTP {status}" if status else "")
            notice = f"API retry {event.get('attempt')}/{event.get('max_retries')} ({why})"
            self.last_notice = notice
            return [f"[retry] {notice}"]
        return []

    def _assistant(self, event: dict[str, Any]) -> list[str]:
        message = event["message"]
        out: list[str] = []
        is_error = bool(event.get("is_api_error_message") or event.get("error"))
        for block in message.get("content") or []:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                self.last_text = block["text"]
                out += lines("[error]" if is_error else "[assistant]", block["text"])
            elif kind == "tool_use":
                out.append(f"[tool] {tool_summary(block.get('name', '?'), block.get('input'))}")
            elif kind == "thinking" and block.get("thinking"):
                out.append(f"[thinking] {short(block['thinking'])}")
        return out

    def _user(self, event: dict[str, Any]) -> list[str]:
        out: list[str] = []
        content = event["message"].get("content")
        for block in content if isinstance(content, list) else []:
            if block.get("type") != "tool_result":
                continue
            body = block.get("content")
            if isinstance(body, list):
                body = " ".join(str(part.get("text", "")) for part in body if isinstance(part, dict))
            tag = "[tool error]" if block.get("is_error") else "[tool result]"
            out.append(f"{tag} {short(body or '')}".rstrip())
        return out

    def _result(self, event: dict[str, Any]) -> list[str]:
        usage = event.get("usage") or {}
        cache_write = as_int(usage.get("cache_creation_input_tokens"))
        cache_read = as_int(usage.get("cache_read_input_tokens"))
        models = event.get("modelUsage") or {}
        model = next(iter(models)) if len(models) == 1 else self.model
        self.usage = Usage(
            input_tokens=as_int(usage.get("input_tokens")) + cache_write + cache_read,
            output_tokens=as_int(usage.get("output_tokens")),
            cached_input_tokens=cache_read,
            cost_usd=as_float(event.get("total_cost_usd")),
            model=model,
        )
        text = event.get("result")
        self.result = clip(text) if isinstance(text, str) else None
        denials = event.get("permission_denials") or []
        subtype = event.get("subtype")
        if event.get("is_error") or subtype != "success":
            self.success = False
            errors = event.get("errors")
            detail = text if isinstance(text, str) and text else (short(errors) if errors else subtype)
            self.error = clip(str(detail or "Claude Code reported an error"))
        elif denials:
            self.success = False
            denied = ", ".join(tool_summary(d.get("tool_name", "?"), d.get("tool_input")) for d in denials)
            self.error = clip(f"permission denied: {denied}")
        else:
            self.success = True
        cost = f", ${self.usage.cost_usd:.4f}" if self.usage.cost_usd else ""
        verdict = "done" if self.success else f"failed: {self.error}"
        return [f"[result] {verdict} ({event.get('num_turns', '?')} turns{cost})"]

    def finish(self, exit_code: int) -> Outcome:
        result = self.result if self.result is not None else (clip(self.last_text) if self.last_text else None)
        if self.success is None:
            why = f"; last notice: {self.last_notice}" if self.last_notice else ""
            error = f"claude exited with code {exit_code} before reporting a result{why}"
            return Outcome(success=False, error=error, usage=self.usage, result=result)
        if not self.success:
            return Outcome(success=False, error=self.error, usage=self.usage, result=result)
        if exit_code != 0:
            return Outcome(success=False, error=f"claude exited with code {exit_code}", usage=self.usage, result=result)
        return Outcome(success=True, usage=self.usage, result=result)


@attrs.define
class ClaudeCodeAdapter:
    """Claude Code in print mode, permissions bypassed inside the sandbox."""

    prompts: PromptLibrary = attrs.field(factory=PromptLibrary)
    adapter_id: str = AdapterId.CLAUDE_CODE.value
    structured: bool = True

    def invocation(self, ctx: StepContext) -> Invocation:
        env = dict(ENV)
        if ctx.agent.base_url:
            env["ANTHROPIC_BASE_URL"] = ctx.agent.base_url
        env.update(ctx.agent.env)
        return Invocation(
            command=argv(ctx),
            env=env,
            secrets=ctx.agent.secrets or DEFAULT_SECRETS,
            stdin=self.prompts.prompt_for(ctx),
        )

    def parser(self) -> ClaudeCodeParser:
        return ClaudeCodeParser()
