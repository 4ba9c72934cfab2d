"""The stand-in agent image (haflow-agent), built offline from the host's static busybox."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from haflowd.proc import run_cli
from haflowd.sandbox import SandboxUnavailable
from haflowd.sandbox.docker.standin_image import ensure_image, image_exists, is_buildable, is_static_elf


class TestImage:
    def test_host_busybox_is_static(self) -> None:
        """The host busybox the image is built from is recognised as statically linked."""
        assert is_static_elf("/bin/busybox")
        assert not is_static_elf("/bin/ls" if Path("/bin/ls").exists() else __file__)

    @pytest.mark.parametrize(
        ("image", "buildable"),
        [
            ("haflow-agent:latest", True),
            ("haflow-agent:0.1.0", True),
            ("haflow-agent", True),
            ("example.org/haflow-agent:1", False),
            ("python:3.11", False),
        ],
    )
    def test_is_buildable(self, image: str, buildable: bool) -> None:
        """Only the local haflow-agent repository is built; other images are pulled."""
        assert is_buildable(image) is buildable

    @pytest.mark.docker
    async def test_ensure_builds_missing_agent_image(self, docker_image: str) -> None:
        """A missing haflow-agent image is built from scratch without a registry."""
        tag = f"haflow-agent:test-{uuid.uuid4().hex[:8]}"
        try:
            await ensure_image("docker", tag)
            assert await image_exists("docker", tag)
            ran = await run_cli(
                ["docker", "run", "--rm", "--pull", "never", tag, "sh", "-c", "command -v haflow-agent && id -u"]
            )
            assert ran.stdout.decode().split() == ["/usr/local/bin/haflow-agent", "65534"]
        finally:
            await run_cli(["docker", "rmi", "--force", tag])

    @pytest.mark.docker
    async def test_missing_agent_image_without_build(self, docker_image: str) -> None:
        """With building disabled, a missing agent image says how to build it."""
        with pytest.raises(SandboxUnavailable, match="haflowd image build"):
            await ensure_image("docker", "haflow-agent:never-built", build_if_missing=False)

    @pytest.mark.docker
    async def test_missing_foreign_image(self, docker_image: str) -> None:
        """A missing image that cannot be pulled says which image and what to do."""
        with pytest.raises(SandboxUnavailable, match="not available locally"):
            await ensure_image("docker", "localhost:1/haflow-missing/none:1")
