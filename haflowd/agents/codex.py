"""OpenAI Codex (``codex exec --json``).

Facts of version 0.169.0 (see the recordings):

- With no prompt argument (or ``-``) the prompt is read from stdin.
- Top-level ``{"type": "error"}`` lines are *retry notices*
  ("Reconnecting... 2/5"); the turn fails only with ``turn.failed``.
  Without network it waits forever, so the sandbox's timeout ends it.
- ``turn.completed`` carries the usage; ``input_tokens`` already includes
  ``cached_input_tokens``. Codex reports no cost and no model name.
- Codex's own sandbox (Landlock/seccomp) is redundant inside ours and may
  not start in a locked-down container, so approvals and sandbox are
  bypassed: the container is the sandbox, as the help says that flag is for.
- There are no turn or budget limits on the command line.
- ``OPENAI_BASE_URL`` is ignored: a ``base_url`` becomes a model provider
  ``haflow`` defined with ``-c`` overrides (Responses API, key from the
  first secret).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..models import AdapterId, Usage
from .events import EventParser, as_int, clip, lines, short, tool_summary
from .prompts import PromptLibrary
from .protocol import Invocation, Outcome, StepContext

BINARY = "codex"
DEFAULT_SECRETS = ("OPENAI_API_KEY",)
#: The model provider a ``base_url`` is configured as.
LOCAL_PROVIDER = "haflow"
ENV = {
    "NO_COLOR": "1",
    "HUSKY": "0",
    "CI": "1",
}


def provider_overrides(base_url: str, key_env: str | None) -> list[str]:
    """``-c`` options defining the ``base_url`` endpoint as a model provider (values as TOML strings)."""
    settings = {"name": LOCAL_PROVIDER, "base_url": base_url, "wire_api": "responses"}
    if key_env:
        settings["env_key"] = key_env
    args = ["--config", f"model_provider={json.dumps(LOCAL_PROVIDER)}"]
    for key, value in settings.items():
        args += ["--config", f"model_providers.{LOCAL_PROVIDER}.{key}={json.dumps(value)}"]
    return args


def argv(ctx: StepContext) -> tuple[str, ...]:
    """The headless command line; ``-`` makes codex read the prompt from stdin."""
    args = [
        BINARY,
        "exec",
        "--json",
        "--skip-git-repo-check",
        "--ephemeral",
        "--color",
        "never",
        "--dangerously-bypass-approvals-and-sandbox",
    ]
    if ctx.agent.model:
        args += ["--model", ctx.agent.model]
    if ctx.agent.base_url:
        secrets = ctx.agent.secrets or DEFAULT_SECRETS
        args += provider_overrides(ctx.agent.base_url, secrets[0] if secrets else None)
    args.append("-")
    return tuple(args)


@attrs.define
class CodexParser(EventParser):
    """Reads ``codex exec --json`` events."""

    model: str | None = None
    usage: Usage | None = None
    completed: bool = False
    failure: str | None = None
    last_message: str | None = None
    last_notice: str | None = None

    def event(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        if kind == "thread.started":
            return [f"[init] codex thread {event.get('thread_id')}"]
        if kind == "turn.started":
            return []
        if kind == "error":
            self.last_notice = str(event.get("message", ""))
            return [f"[retry] {short(self.last_notice)}"]
        if kind == "turn.completed":
            self.completed = True
            self._add_usage(event.get("usage") or {})
            return []
        if kind == "turn.failed":
            error = event.get("error") or {}
            self.failure = clip(str(error.get("message") or "the turn failed"))
            return [f"[error] {self.failure}"]
        if kind in ("item.started", "item.updated", "item.completed"):
            return self._item(kind, event["item"])
        return []

    def _add_usage(self, usage: dict[str, Any]) -> None:
        turn = Usage(
            input_tokens=as_int(usage.get("input_tokens")),
            output_tokens=as_int(usage.get("output_tokens")),
            cached_input_tokens=as_int(usage.get("cached_input_tokens")),
            model=self.model,
        )
        self.usage = turn if self.usage is None else self.usage + turn

    def _item(self, kind: str, item: dict[str, Any]) -> list[str]:
        item_type = item.get("type")
        done = kind == "item.completed"
        if item_type == "command_execution":
            if kind == "item.started":
                return [f"[command] {short(item.get('command', ''))}"]
            if done:
                return [f"[command] exit {item.get('exit_code')}: {short(item.get('command', ''))}"]
            return []
        if not done:
            return []
        if item_type == "agent_message":
            self.last_message = str(item.get("text", ""))
            return lines("[assistant]", self.last_message)
        if item_type == "reasoning":
            return [f"[thinking] {short(item.get('text', ''))}"]
        if item_type == "file_change":
            changes = item.get("changes") or []
            return [f"[tool] {c.get('kind', 'edit')} {c.get('path')}" for c in changes] or ["[tool] file change"]
        if item_type == "mcp_tool_call":
            return [f"[tool] {item.get('server')}.{item.get('tool')}"]
        if item_type == "web_search":
            return [f"[tool] web search {short(item.get('query', ''))}"]
        if item_type == "todo_list":
            return [f"[plan] {short(t.get('text', ''))}" for t in item.get("items") or []]
        if item_type == "error":
            # Item errors are warnings (e.g. unknown model metadata); turn.failed is the failure.
            return [f"[warning] {short(item.get('message', ''))}"]
        return [f"[{item_type}] {tool_summary(str(item_type), item)}"]

    def finish(self, exit_code: int) -> Outcome:
        result = clip(self.last_message) if self.last_message else None
        if self.failure is not None:
            return Outcome(success=False, error=self.failure, usage=self.usage, result=result)
        if not self.completed:
            why = f"; last notice: {self.last_notice}" if self.last_notice else ""
            error = f"codex exited with code {exit_code} before finishing its turn{why}"
            return Outcome(success=False, error=clip(error), usage=self.usage, result=result)
        if exit_code != 0:
            return Outcome(success=False, error=f"codex exited with code {exit_code}", usage=self.usage, result=result)
        return Outcome(success=True, usage=self.usage, result=result)


@attrs.define
class CodexAdapter:
    """``codex exec`` with the container as its only sandbox."""

    prompts: PromptLibrary = attrs.field(factory=PromptLibrary)
    #: The agent file's model, reported in usage since codex does not say.
    model: str | None = None
    adapter_id: str = AdapterId.CODEX.value
    structured: bool = True

    def invocation(self, ctx: StepContext) -> Invocation:
        env = {**ENV, **ctx.agent.env}
        return Invocation(
            command=argv(ctx),
            env=env,
            secrets=ctx.agent.secrets or DEFAULT_SECRETS,
            stdin=self.prompts.prompt_for(ctx),
        )

    def parser(self) -> CodexParser:
        return CodexParser(model=self.model)
