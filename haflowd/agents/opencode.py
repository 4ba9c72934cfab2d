"""opencode (``opencode run --format json``).

Facts of version 1.18.33 (see the recordings):

- Piped stdin is appended to the (here empty) message, so the prompt goes
  there.
- Events: ``text`` parts, ``tool_use`` parts with a ``state``, one
  ``step_finish`` per model call carrying that call's ``tokens`` and
  ``cost`` (summed here), and ``error`` (e.g. ``APIError`` with the HTTP
  status), which is the failure signal.
- ``tokens.input`` excludes cache reads; we count them into
  ``input_tokens`` and report them as ``cached_input_tokens``.
- A local, OpenAI-compatible endpoint (``base_url``) becomes a provider
  ``haflow`` in ``OPENCODE_CONFIG_CONTENT``; the model is then
  ``haflow/<model>``.
- No turn or budget flags.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..models import AdapterId, Usage
from .events import EventParser, as_float, as_int, clip, lines, short, tool_summary
from .prompts import PromptLibrary
from .protocol import Invocation, Outcome, StepContext

BINARY = "opencode"
DEFAULT_SECRETS = ("ANTHROPIC_API_KEY",)
#: The key of a ``base_url`` endpoint (any value for one that needs none).
LOCAL_SECRETS = ("OPENAI_API_KEY",)
#: The provider a ``base_url`` is configured as.
LOCAL_PROVIDER = "haflow"
ENV = {
    "OPENCODE_DISABLE_AUTOUPDATE": "1",
    "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
    "OPENCODE_DISABLE_MODELS_FETCH": "1",
    "OPENCODE_DISABLE_DEFAULT_PLUGINS": "1",
    "NO_COLOR": "1",
    "HUSKY": "0",
    "CI": "1",
}


def model_name(ctx: StepContext) -> str | None:
    """The ``provider/model`` opencode is asked for."""
    model = ctx.agent.model
    if model and ctx.agent.base_url and "/" not in model:
        return f"{LOCAL_PROVIDER}/{model}"
    return model


def config(ctx: StepContext, secrets: tuple[str, ...]) -> str:
    """``OPENCODE_CONFIG_CONTENT``: no updates or sharing, and the local provider if any."""
    content: dict[str, Any] = {"autoupdate": False, "share": "disabled"}
    if ctx.agent.base_url:
        model = (model_name(ctx) or f"{LOCAL_PROVIDER}/default").split("/", 1)[1]
        options: dict[str, str] = {"baseURL": ctx.agent.base_url}
        if secrets:
            # opencode reads the key itself; the value never enters this text.
            options["apiKey"] = "{env:" + secrets[0] + "}"
        content["provider"] = {
            LOCAL_PROVIDER: {
                "npm": "@ai-sdk/openai-compatible",
                "name": "haflow (OpenAI-compatible)",
                "options": options,
                "models": {model: {}},
            }
        }
    return json.dumps(content, sort_keys=True)


def argv(ctx: StepContext) -> tuple[str, ...]:
    """The headless command line; the prompt goes to stdin."""
    args = [BINARY, "run", "--format", "json", "--auto", "--pure"]
    model = model_name(ctx)
    if model:
        args += ["--model", model]
    return tuple(args)


@attrs.define
class OpencodeParser(EventParser):
    """Reads ``opencode run --format json`` events."""

    model: str | None = None
    usage: Usage | None = None
    error: str | None = None
    last_text: str | None = None
    steps: int = 0
    #: The error was marked retryable: a later finished step clears it.
    retryable: bool = False

    def event(self, event: dict[str, Any]) -> list[str]:
        kind = event["type"]
        part = event.get("part", {})
        if kind == "text":
            self.last_text = str(part.get("text", ""))
            return lines("[assistant]", self.last_text)
        if kind == "reasoning":
            return [f"[thinking] {short(part.get('text', ''))}"]
        if kind == "tool_use":
            return self._tool(part)
        if kind == "step_finish":
            self._add_usage(part)
            return []
        if kind == "error":
            return self._error(event.get("error") or {})
        return []

    def _tool(self, part: dict[str, Any]) -> list[str]:
        state = part.get("state") or {}
        line = f"[tool] {tool_summary(part.get('tool', '?'), state.get('input'))}"
        if state.get("status") == "error":
            return [line, f"[tool error] {short(state.get('error', ''))}"]
        return [line]

    def _add_usage(self, part: dict[str, Any]) -> None:
        self.steps += 1
        if self.retryable:
            self.error, self.retryable = None, False
        tokens = part.get("tokens") or {}
        cache = tokens.get("cache") or {}
        read = as_int(cache.get("read"))
        step = Usage(
            input_tokens=as_int(tokens.get("input")) + read + as_int(cache.get("write")),
            output_tokens=as_int(tokens.get("output")) + as_int(tokens.get("reasoning")),
            cached_input_tokens=read,
            cost_usd=as_float(part.get("cost")),
            model=self.model,
        )
        self.usage = step if self.usage is None else self.usage + step

    def _error(self, error: dict[str, Any]) -> list[str]:
        data = error.get("data") or {}
        message = data.get("message") or error.get("message") or json.dumps(error)
        status = data.get("statusCode")
        self.retryable = data.get("isRetryable") is True
        self.error = clip(f"{error.get('name', 'error')}: {message}" + (f" (HTTP {status})" if status else ""))
        return [f"[error] {self.error}"]

    def finish(self, exit_code: int) -> Outcome:
        result = clip(self.last_text) if self.last_text else None
        if self.error is not None:
            return Outcome(success=False, error=self.error, usage=self.usage, result=result)
        if exit_code != 0:
            error = f"opencode exited with code {exit_code}"
            return Outcome(success=False, error=error, usage=self.usage, result=result)
        if self.steps == 0:
            return Outcome(success=False, error="opencode exited without running a step", result=result)
        return Outcome(success=True, usage=self.usage, result=result)


@attrs.define
class OpencodeAdapter:
    """``opencode run`` with permissions auto-approved inside the sandbox."""

    prompts: PromptLibrary = attrs.field(factory=PromptLibrary)
    #: The agent file's model, reported in usage since opencode's events do not say.
    model: str | None = None
    adapter_id: str = AdapterId.OPENCODE.value
    structured: bool = True

    def invocation(self, ctx: StepContext) -> Invocation:
        secrets = ctx.agent.secrets or (LOCAL_SECRETS if ctx.agent.base_url else DEFAULT_SECRETS)
        env = {**ENV, "OPENCODE_CONFIG_CONTENT": config(ctx, secrets), **ctx.agent.env}
        return Invocation(command=argv(ctx), env=env, secrets=secrets, stdin=self.prompts.prompt_for(ctx))

    def parser(self) -> OpencodeParser:
        return OpencodeParser(model=self.model)
