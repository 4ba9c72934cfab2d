"""A whole mission through the HTTP API with its agents on a remote Docker engine.

The engine is the second dockerd of :mod:`tests.remote_engine`: artifacts
reach the agents and come back only as tar streams, and no container of the
mission has a bind mount.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.sandbox.docker.remote import RemoteDockerProvider
from haflowd.sandbox.protocol import instance_id
from haflowd.sandbox.registry import provider_for
from haflowd.web.app import create_app
from tests.conftest import RAW_INPUT, api, create_mission, until, wait_status
from tests.e2e.test_code_missions import PLAN_DIFF, create, fingerprint, git, link, make_repo, step
from tests.remote_engine import Engine

pytestmark = pytest.mark.docker


@attrs.define
class InspectingProvider(RemoteDockerProvider):
    """The remote provider, noting each finished container's mounts before it is removed."""

    mounts: list[list[tuple[str, str]]] = attrs.field(factory=list)
    engine: Engine = attrs.field(factory=Engine)

    async def wait(self, sandbox_id: str) -> int:
        code = await super().wait(sandbox_id)
        done = await asyncio.to_thread(self.engine.docker, "inspect", "--format", "{{json .Mounts}}", sandbox_id)
        self.mounts.append([(m["Type"], m["Destination"]) for m in json.loads(done.stdout)])
        return code


@pytest.fixture
def remote_config(home: Path, docker_image: str, remote_engine: Engine) -> Config:
    env = {"HAFLOW_AUTH": "none", "HAFLOW_SANDBOX": "remote-docker", "HAFLOW_DOCKER_HOST": remote_engine.host or ""}
    return Config.from_env(env, home=home, port=0, agent_image=docker_image)


async def advance(client: Any, mission_id: str, *statuses: str) -> dict[str, Any]:
    status, body = await api(client, "POST", f"/api/missions/{mission_id}/continue")
    assert status == 200, body
    return await wait_status(client, mission_id, *statuses)


def nothing_left_on(engine: Engine, instance: str) -> Callable[[], Awaitable[bool]]:
    """A check that no container or volume of ``instance`` is left on ``engine``."""

    async def check() -> bool:
        label = f"label=haflow.instance={instance}"
        containers = engine.lines("ps", "--all", "--quiet", "--filter", label)
        volumes = engine.lines("volume", "ls", "--quiet", "--filter", label)
        return containers == [] and volumes == []

    return check


class TestRemoteMission:
    def test_configuration_chooses_remote_provider(self, remote_config: Config, remote_engine: Engine) -> None:
        """HAFLOW_SANDBOX=remote-docker with HAFLOW_DOCKER_HOST makes the daemon use the remote provider."""
        sandbox = provider_for(remote_config)
        assert isinstance(sandbox, RemoteDockerProvider)
        assert sandbox.docker_host == remote_engine.host
        assert sandbox.instance == instance_id(remote_config.home)

    async def test_whole_workflow(
        self, aiohttp_client: AiohttpClient, remote_config: Config, remote_engine: Engine
    ) -> None:
        """Four remote agent runs take a mission to completed, a human edit flowing on; nothing is bind-mounted."""
        instance = instance_id(remote_config.home)
        provider = InspectingProvider(
            docker_host=remote_engine.host,
            default_image=remote_config.agent_image,
            instance=instance,
            engine=remote_engine,
            writable_roots=(remote_config.home,),
        )
        client = await aiohttp_client(create_app(remote_config, sandbox=provider))
        mid = (await create_mission(client))["mission_id"]

        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert found["artifacts"]["structured-text.md"] == (f"# Output of step cleanup by cleanup-agent\n\n{RAW_INPUT}")
        edited = "# Structured by a human\n\nDark mode, but only for admins.\n"
        status, body = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/structured-text.md", json={"content": edited}
        )
        assert status == 200, body
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["artifacts"]["research-output.md"] == (f"# Output of step research by research-agent\n\n{edited}")
        found = await advance(client, mid, "waiting_human", "failed")
        assert "only for admins" in found["artifacts"]["implementation-plan.md"]
        found = await advance(client, mid, "waiting_human", "failed")
        result = json.loads(found["artifacts"]["implementation-result.json"])
        assert result["step_id"] == "implementation"
        found = await advance(client, mid, "completed")
        assert found["errors"] == []
        assert [r["exit_code"] for r in found["runs"]] == [0, 0, 0, 0]

        assert len(provider.mounts) == 4
        for mounts in provider.mounts:
            assert mounts and {kind for kind, _ in mounts} == {"volume"}
            assert ("volume", "/mission/artifacts") in mounts
        await until(nothing_left_on(remote_engine, instance))

    @pytest.mark.timeout(300)
    async def test_code_mission_to_delivery(
        self, aiohttp_client: AiohttpClient, remote_config: Config, remote_engine: Engine, tmp_path: Path, home: Path
    ) -> None:
        """A code mission's work tree travels to the remote engine and back: commit, diff, command, delivery."""
        instance = instance_id(remote_config.home)
        provider = InspectingProvider(
            docker_host=remote_engine.host,
            default_image=remote_config.agent_image,
            instance=instance,
            engine=remote_engine,
            writable_roots=(remote_config.home,),
        )
        client = await aiohttp_client(create_app(remote_config, sandbox=provider))
        repo = make_repo(tmp_path / "repo")
        before = fingerprint(repo)
        project = await link(client, repo)
        meta = await create(client, project["project_id"])
        mid = meta["mission_id"]
        await step(client, mid, "waiting_human")
        await step(client, mid, "waiting_human")
        status, _ = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/implementation-plan.md", json={"content": PLAN_DIFF}
        )
        assert status == 200
        data = await step(client, mid, "waiting_code_review")
        impl = data["runs"][-1]
        assert impl["changes"] == {"files": 2, "insertions": 3, "deletions": 0}
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-status")
        assert body["data"]["files"] == [{"path": "README.md", "status": "M"}, {"path": "src/greet.py", "status": "A"}]

        status, body = await api(
            client, "POST", f"/api/missions/{mid}/run-command", json={"command": "cat README.md; echo x > README.md"}
        )
        assert status == 200, body
        exec_id = body["data"]["executionId"]

        async def finished() -> bool:
            _, found = await api(client, "GET", f"/api/missions/{mid}/execution/{exec_id}")
            return bool(found["data"]["status"] != "running")

        await until(finished, timeout=60)
        _, found = await api(client, "GET", f"/api/missions/{mid}/execution/{exec_id}")
        assert found["data"]["exitCode"] == 0 and "Hello from the mission." in found["data"]["output"]
        assert (home / "missions" / mid / "workspace" / "README.md").read_text().endswith("Hello from the mission.\n")

        status, body = await api(client, "POST", f"/api/missions/{mid}/deliver", json={})
        assert status == 200, body
        assert git(repo, "show", f"{meta['branch']}:src/greet.py").startswith("def greet")
        assert fingerprint(repo) == before
        assert provider.mounts and all({kind for kind, _ in mounts} == {"volume"} for mounts in provider.mounts)
        await until(nothing_left_on(remote_engine, instance))
