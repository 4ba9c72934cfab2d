"""Prompt templates: Markdown data files that tell an agent CLI what a step wants.

Templates live in ``workflows/prompts/`` (shipped as package data) and may be
replaced by a file of the same name in ``HAFLOW_HOME/workflows/prompts/``.
They hold ``{name}`` placeholders for the names in :data:`PLACEHOLDERS`;
rendering substitutes those in one pass and leaves every other brace alone,
so neither a template nor a mission's text (which may well contain braces)
can reach anything beyond these values.

Every document template ends with an ``Output file: <path>`` line and the
codegen template with ``Workspace: <path>``: agents read prose, but tests
and stand-ins can find the path by that marker.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import attrs

from ..catalog import builtin_dir
from ..errors import InvalidDefinition
from .protocol import StepContext

PROMPTS = "prompts"
#: The prompt template of every codegen step (it edits the work tree).
CODEGEN_PROMPT = "implementation"
#: The prompt template of a document step no template is named after.
DOCUMENT_PROMPT = "document"
#: Appended to a step's prompt when a reviewer asked for changes.
REQUEST_CHANGES = "request-changes"
PLACEHOLDERS = frozenset(
    {
        "mission_id",
        "mission_title",
        "mission_type",
        "run_id",
        "step_id",
        "step_name",
        "agent_id",
        "input_artifact",
        "input_path",
        "input_text",
        "output_artifact",
        "output_path",
        "feedback_artifact",
        "feedback_path",
        "feedback_text",
        "workspace",
        "artifacts_dir",
    }
)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def render(template: str, values: Mapping[str, str]) -> str:
    """Replace ``{name}`` for each known ``name`` in ``values``; leave all else as is.

    One pass over the template: a value that itself contains ``{name}`` is
    not expanded again.
    """

    def one(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in PLACEHOLDERS and name in values:
            return values[name]
        return match.group(0)

    return _PLACEHOLDER.sub(one, template)


def values_for(ctx: StepContext) -> dict[str, str]:
    """The placeholder values of one step, paths as the agent sees them."""

    def path(name: str | None) -> str:
        return f"{ctx.artifacts_dir}/{name}" if name else ""

    return {
        "mission_id": ctx.mission_id,
        "mission_title": ctx.mission_title,
        "mission_type": ctx.mission_type,
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "step_name": ctx.step_name,
        "agent_id": ctx.agent.agent_id,
        "input_artifact": ctx.input_artifact or "",
        "input_path": path(ctx.input_artifact),
        "input_text": ctx.input_text,
        "output_artifact": ctx.output_artifact or "",
        "output_path": path(ctx.output_artifact),
        "feedback_artifact": ctx.feedback_artifact or "",
        "feedback_path": path(ctx.feedback_artifact),
        "feedback_text": ctx.feedback_text or "",
        "workspace": ctx.workspace_dir,
        "artifacts_dir": ctx.artifacts_dir,
    }


@attrs.frozen
class PromptLibrary:
    """Where templates are looked up: ``folders`` in order, first match wins."""

    folders: tuple[Path, ...] = attrs.field(factory=lambda: (builtin_dir() / PROMPTS,))

    @classmethod
    def for_home(cls, home: Path | None) -> PromptLibrary:
        """The user's ``HAFLOW_HOME/workflows/prompts/`` first, then the shipped ones."""
        shipped = builtin_dir() / PROMPTS
        return cls((home / "workflows" / PROMPTS, shipped) if home is not None else (shipped,))

    def template(self, name: str) -> str:
        """The text of template ``name`` (``.md`` optional).

        Raises :class:`InvalidDefinition` for a name that is not a plain file
        name or that no folder holds.
        """
        stem = name.removesuffix(".md")
        if not _NAME.match(stem) or ".." in stem:
            raise InvalidDefinition(name, "a prompt template name is a plain file name")
        for folder in self.folders:
            candidate = folder / f"{stem}.md"
            if candidate.is_file():
                return candidate.read_text(encoding="utf-8")
        raise InvalidDefinition(f"{stem}.md", f"no such prompt template in {', '.join(map(str, self.folders))}")

    def default_prompt(self, step_id: str, *, codegen: bool) -> str:
        """The default prompt template of a step (blocking: it looks for template files).

        A codegen step gets the codegen template whatever its id. A document
        step gets the template named after its id without a numeric suffix
        ("research-2" -> research.md) if there is one and it is a document
        template; otherwise (oneshot's "draft", standard-feature's document
        "implementation" step) the generic document template, which names
        the output file: the codegen template does not, and a missing
        template would fail the step before it starts.
        """
        if codegen:
            return CODEGEN_PROMPT
        kind = step_id.rstrip("0123456789-_") or step_id
        if kind == CODEGEN_PROMPT:
            return DOCUMENT_PROMPT
        try:
            self.template(kind)
        except InvalidDefinition:
            return DOCUMENT_PROMPT
        return kind

    def prompt_for(self, ctx: StepContext) -> str:
        """The full prompt of one step: its template, plus the reviewer's request if any."""
        values = values_for(ctx)
        text = render(self.template(ctx.agent.prompt or ctx.prompt), values)
        if ctx.feedback_text or ctx.feedback_artifact:
            text = text.rstrip("\n") + "\n" + render(self.template(REQUEST_CHANGES), values)
        return text
