"""Fixtures for tests that need a real Docker engine (loaded by conftest.py).

The agent image is built once per session from the host's busybox; the
session fails if any haflow-labelled container is left behind.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import uuid
from collections.abc import Iterator

import pytest

from haflowd.sandbox import LABEL_RUN
from haflowd.sandbox.docker.standin_image import build_image
from haflowd.sandbox.protocol import LABEL_INSTANCE

#: The agent image the suite builds once, tagged apart from a user's own.
TEST_IMAGE = "haflow-agent:test"
#: The provider instance of provider-level tests; daemons use their home's.
SESSION_INSTANCE = "test-" + uuid.uuid4().hex[:8]
#: Every instance this session started containers under: other sessions and
#: daemons on the same engine are none of our business.
OWNED_INSTANCES = {SESSION_INSTANCE}


def engine_problem(docker: str = "docker") -> str | None:
    """Why no Docker engine can be used here, or None if one answers."""
    try:
        done = subprocess.run(
            [docker, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"the docker CLI cannot be run: {e}"
    if done.returncode != 0:
        return f"no Docker engine answers: {done.stderr.decode(errors='replace').strip()}"
    return None


def haflow_containers() -> list[str]:
    """Ids of the haflow containers of every instance this session owns."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--all",
            "--no-trunc",
            "--filter",
            f"label={LABEL_RUN}",
            "--format",
            f'{{{{.ID}}}} {{{{.Label "{LABEL_INSTANCE}"}}}}',
        ],
        capture_output=True,
        check=True,
    )
    found = (line.split(" ") for line in out.stdout.decode().splitlines())
    return [fields[0] for fields in found if len(fields) == 2 and fields[1] in OWNED_INSTANCES]


@pytest.fixture(scope="session")
def docker_image() -> Iterator[str]:
    """The test agent image, built once; the session ends with no haflow containers.

    Skips when no engine answers, unless ``HAFLOW_REQUIRE_DOCKER`` is set (CI),
    where it fails instead.
    """
    problem = engine_problem()
    if problem is not None:
        if os.environ.get("HAFLOW_REQUIRE_DOCKER"):
            pytest.fail(f"HAFLOW_REQUIRE_DOCKER is set but {problem}")
        pytest.skip(f"Docker tests need a Docker engine; {problem}")
    asyncio.run(build_image("docker", TEST_IMAGE))
    yield TEST_IMAGE
    left = haflow_containers()
    if left:
        subprocess.run(["docker", "rm", "--force", *left], capture_output=True, check=False)
        pytest.fail(f"haflow containers were left behind: {left}")
