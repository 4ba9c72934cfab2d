"""Prompt templates: rendering, lookup order, and what each step is told."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from haflowd.agents.prompts import PLACEHOLDERS, PromptLibrary, render
from haflowd.catalog import builtin_dir
from haflowd.errors import InvalidDefinition
from haflowd.models import AdapterId
from tests.agents.conftest import INPUT_TEXT, agent, step

SPEC = agent(AdapterId.CLAUDE_CODE)
SHIPPED = ("cleanup", "research", "planning", "implementation", "document", "request-changes")


class TestRender:
    def test_known_names(self) -> None:
        """Known placeholders are replaced."""
        assert render("{mission_title} ({mission_type})", {"mission_title": "T", "mission_type": "bug"}) == "T (bug)"

    @pytest.mark.parametrize("text", ["{unknown}", "{mission_title.__class__}", "{0}", "{}", "{ mission_title }"])
    def test_other_braces_stay(self, text: str) -> None:
        """Unknown names and format-string syntax are left alone."""
        assert render(text, {"mission_title": "T"}) == text

    def test_values_are_not_rendered_again(self) -> None:
        """A mission text holding a placeholder is inserted literally."""
        assert render("{input_text}", {"input_text": "{output_path}", "output_path": "/x"}) == "{output_path}"


class TestShippedTemplates:
    @pytest.mark.parametrize("name", SHIPPED)
    def test_only_known_placeholders(self, name: str) -> None:
        """Every shipped template exists and uses only known placeholders."""
        import re

        text = PromptLibrary().template(name)
        assert set(re.findall(r"\{([a-z_]+)\}", text)) <= PLACEHOLDERS

    @pytest.mark.parametrize("name", ["cleanup", "research", "planning", "document"])
    def test_document_steps_name_their_output(self, name: str) -> None:
        """A document step is told to write /mission/artifacts/<output>, on a marker line."""
        ctx = step(SPEC, prompt=name)
        text = PromptLibrary().prompt_for(ctx)
        assert "Output file: /mission/artifacts/structured-text.md\n" in text
        assert "Input file: /mission/artifacts/raw-input.md" in text
        assert INPUT_TEXT in text
        assert 'mission "Dark mode" (a feature)' in text

    def test_codegen_step(self) -> None:
        """The implementation step works in /workspace and does not commit."""
        text = PromptLibrary().prompt_for(step(SPEC, codegen=True))
        assert "Workspace: /workspace" in text
        assert "Do not commit" in text
        assert "Output file:" not in text

    def test_request_changes(self) -> None:
        """With a reviewer's feedback the request-changes section follows the step's prompt."""
        ctx = step(SPEC, feedback_artifact="feedback.md", feedback_text="Shorter, please.")
        text = PromptLibrary().prompt_for(ctx)
        assert text.index("Output file:") < text.index("## The reviewer asked for changes")
        assert "Feedback file: /mission/artifacts/feedback.md" in text
        assert "<feedback>\nShorter, please.\n</feedback>" in text

    def test_without_feedback(self) -> None:
        """Without feedback nothing is said about a review."""
        assert "reviewer" not in PromptLibrary().prompt_for(step(SPEC))

    def test_agent_prompt_wins(self) -> None:
        """An agent file's prompt names the template instead of the step kind."""
        spec = attrs.evolve(SPEC, prompt="research")
        assert "research step" in PromptLibrary().prompt_for(step(spec))

    def test_shipped_folder(self) -> None:
        """The shipped templates are found in the definitions folder."""
        assert PromptLibrary().folders == (builtin_dir() / "prompts",)


class TestLookup:
    def test_user_folder_first(self, tmp_path: Path) -> None:
        """HAFLOW_HOME/workflows/prompts replaces a shipped template of the same name."""
        user = tmp_path / "workflows" / "prompts"
        user.mkdir(parents=True)
        (user / "cleanup.md").write_text("Tidy {mission_title}.\nOutput file: {output_path}\n")
        library = PromptLibrary.for_home(tmp_path)
        assert library.prompt_for(step(SPEC)) == "Tidy Dark mode.\nOutput file: /mission/artifacts/structured-text.md\n"
        assert "research step" in library.template("research")

    @pytest.mark.parametrize("name", ["../secrets", "/etc/passwd", "a/b", "", ".hidden", "x" * 80])
    def test_names_are_plain(self, name: str) -> None:
        """A template name cannot leave the prompts folders."""
        with pytest.raises(InvalidDefinition):
            PromptLibrary().template(name)

    def test_missing(self) -> None:
        """A missing template names itself."""
        with pytest.raises(InvalidDefinition, match=r"nope\.md"):
            PromptLibrary().template("nope")


class TestDefaultPrompt:
    @pytest.mark.parametrize(
        ("step_id", "codegen", "expected"),
        [
            ("research-2", False, "research"),
            ("planning", False, "planning"),
            ("draft", False, "document"),
            ("implementation", False, "document"),
            ("anything", True, "implementation"),
        ],
    )
    def test_template_of_a_step(self, step_id: str, codegen: bool, expected: str) -> None:
        """A codegen step gets the codegen template; a document step its kind's template, else the generic one."""
        assert PromptLibrary().default_prompt(step_id, codegen=codegen) == expected

    def test_users_template_counts(self, tmp_path: Path) -> None:
        """A step kind only the user's prompts folder has a template for gets that template."""
        user = tmp_path / "workflows" / "prompts"
        user.mkdir(parents=True)
        (user / "triage.md").write_text("Triage.\nOutput file: {output_path}\n")
        assert PromptLibrary.for_home(tmp_path).default_prompt("triage-1", codegen=False) == "triage"
        assert PromptLibrary().default_prompt("triage-1", codegen=False) == "document"
