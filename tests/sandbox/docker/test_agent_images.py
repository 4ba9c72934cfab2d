"""Agent image recipes and build contexts (the real build is run by hand; see the report)."""

from __future__ import annotations

import pytest

from haflowd.models import AdapterId
from haflowd.sandbox import SandboxUnavailable
from haflowd.sandbox.docker.agent_images import _dockerfile, build_agent_image, load_recipes


class TestRecipes:
    def test_every_real_adapter_is_pinned(self) -> None:
        """Each real adapter has a recipe with an exact version and a base."""
        recipes = load_recipes()
        assert set(recipes) == {a.value for a in AdapterId} - {"command"}
        assert recipes["claude-code"].version == "2.1.331"
        assert recipes["claude-code"].tag == "haflow-agent-claude-code:2.1.331"
        assert recipes["aider"].base.suite == "bookworm"
        assert recipes["gemini"].base.suite == "trixie"
        for recipe in recipes.values():
            assert recipe.version[0].isdigit()
            assert {"nodejs", "git", "ca-certificates", "bash", "ripgrep", "python3", "patch"} <= set(
                recipe.base.packages
            )

    def test_dockerfile_npm(self) -> None:
        """An npm CLI is copied into /usr/local and checked by running --version, as a non-root user."""
        recipe = load_recipes()["claude-code"]
        text = _dockerfile(recipe, recipe.base.tag)
        assert text.startswith("FROM haflow-agent-base:trixie-1\n")
        assert "COPY prefix/ /usr/local/\n" in text
        assert 'RUN ["claude", "--version"]' in text
        assert "USER 1000:1000" in text

    def test_dockerfile_pip(self) -> None:
        """A pip CLI is copied to its target with a launcher on PATH."""
        recipe = load_recipes()["aider"]
        text = _dockerfile(recipe, recipe.base.tag)
        assert "COPY target/ /opt/haflow-pip/\n" in text and "COPY launcher /usr/local/bin/aider\n" in text

    def test_gemini_settings_are_baked_in(self) -> None:
        """Gemini's image carries system settings selecting API-key auth (needed with a base URL)."""
        recipe = load_recipes()["gemini"]
        settings = recipe.files["etc/gemini-cli/settings.json"]
        assert settings["security"] == {"auth": {"selectedType": "gemini-api-key"}}  # type: ignore[index]
        assert "COPY files/ /\n" in _dockerfile(recipe, recipe.base.tag)
        assert "COPY files/" not in _dockerfile(load_recipes()["codex"], "b")

    async def test_unknown_adapter(self) -> None:
        """An unknown adapter is refused before anything is built."""
        with pytest.raises(SandboxUnavailable, match="no agent image recipe"):
            await build_agent_image("docker", "nope", progress=lambda _: None)
