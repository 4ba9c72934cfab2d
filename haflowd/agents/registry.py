"""Which adapter runs an agent: chosen by the agent file's ``adapter``."""

from __future__ import annotations

from ..models import AdapterId, AgentSpec
from .aider import AiderAdapter
from .claude_code import ClaudeCodeAdapter
from .codex import CodexAdapter
from .command import CommandAdapter
from .gemini import GeminiAdapter
from .opencode import OpencodeAdapter
from .prompts import PromptLibrary
from .protocol import AgentAdapter


def adapter_for(spec: AgentSpec, *, prompts: PromptLibrary | None = None) -> AgentAdapter:
    """The adapter for ``spec``; ``prompts`` is where its prompt templates are found.

    Pass ``PromptLibrary.for_home(config.home)`` so a user's templates win.
    """
    library = prompts if prompts is not None else PromptLibrary()
    match spec.adapter:
        case AdapterId.COMMAND:
            return CommandAdapter()
        case AdapterId.CLAUDE_CODE:
            return ClaudeCodeAdapter(prompts=library)
        case AdapterId.CODEX:
            return CodexAdapter(prompts=library, model=spec.model)
        case AdapterId.GEMINI:
            return GeminiAdapter(prompts=library)
        case AdapterId.OPENCODE:
            return OpencodeAdapter(prompts=library, model=spec.model)
        case AdapterId.AIDER:
            return AiderAdapter(prompts=library)
