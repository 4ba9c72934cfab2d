"""A whole mission through the HTTP API with its agents run as Kubernetes Jobs, without a cluster.

The daemon is configured ``HAFLOW_SANDBOX=kubernetes``: its kubeconfig names
the fake API server of :mod:`tests.sandbox.kubernetes.fake_apiserver`, whose pods the FAKE,
Docker-backed kubelet of :mod:`tests.sandbox.kubernetes.fake_kubelet` runs (real agent
commands in the busybox test image). The daemon serves HTTPS at the
``HAFLOW_KUBE_DAEMON_URL`` the pods use: every artifact reaches the agents
through ``GET /api/transfers/in`` and comes back through ``PUT
/api/transfers/out`` of this same daemon, with tickets it issued itself.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import attrs
import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from haflowd.config import Config
from haflowd.sandbox.protocol import instance_id
from haflowd.sandbox.registry import provider_for
from haflowd.web.app import create_app
from haflowd.web.keys import SANDBOX
from haflowd.web.tls import server_context
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, until, wait_status
from tests.daemon_support import free_port
from tests.docker_support import OWNED_INSTANCES, haflow_containers
from tests.e2e.test_code_missions import PLAN_DIFF, create, fingerprint, git, link, make_repo, step
from tests.sandbox.kubernetes.fake_apiserver import FakeCluster
from tests.sandbox.kubernetes.fake_kubelet import NODE_LABEL, FakeKubelet
from tests.sandbox.kubernetes.kube_support import tls_config, trusting

if TYPE_CHECKING:
    from haflowd.sandbox.kubernetes.provider import KubernetesProvider

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]
pytest.importorskip("kubernetes_asyncio")

NAMESPACE = "agents"


@attrs.frozen
class Rig:
    cluster: FakeCluster
    kubelet: FakeKubelet
    config: Config
    port: int


def kubeconfig(path: Path, server: str) -> Path:
    """A kubeconfig naming the fake API server (plain HTTP, no credentials: it checks none)."""
    path.write_text(
        json.dumps(  # JSON is YAML
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": server}}],
                "users": [{"name": "haflow", "user": {"token": "unused-by-the-fake"}}],
                "contexts": [
                    {"name": "fake", "context": {"cluster": "fake", "user": "haflow", "namespace": NAMESPACE}}
                ],
                "current-context": "fake",
            }
        )
    )
    return path


@pytest.fixture
async def rig(
    aiohttp_server: AiohttpServer, tmp_path: Path, home: Path, kube_cert: tuple[Path, Path], docker_image: str
) -> AsyncIterator[Rig]:
    cluster = FakeCluster()
    api_server = await aiohttp_server(cluster.app())
    port = free_port()
    env = {
        "HAFLOW_SANDBOX": "kubernetes",
        "HAFLOW_KUBECONFIG": str(kubeconfig(tmp_path / "kubeconfig", str(api_server.make_url("")).rstrip("/"))),
        "HAFLOW_KUBE_NAMESPACE": NAMESPACE,
        "HAFLOW_KUBE_DAEMON_URL": f"https://127.0.0.1:{port}",
    }
    config = attrs.evolve(tls_config(home, kube_cert, **env), agent_image=docker_image)
    OWNED_INSTANCES.add(instance_id(home))  # the session fails if a container of this daemon is left
    node = tmp_path / "node"
    node.mkdir()
    kubelet = FakeKubelet(cluster, node, ssl=trusting(kube_cert[0])).attach()
    yield Rig(cluster, kubelet, config, port)
    await kubelet.close()


async def advance(client: AppClient, mission_id: str, *statuses: str) -> dict[str, Any]:
    status, body = await api(client, "POST", f"/api/missions/{mission_id}/continue")
    assert status == 200, body
    return await wait_status(client, mission_id, *statuses, timeout=120)


def nothing_left(rig: Rig, home: Path) -> Callable[[], Awaitable[bool]]:
    """A check that the fake cluster holds no object of the daemon, its node no container, the daemon no ticket."""

    async def check() -> bool:
        await rig.kubelet.settled()
        cluster = rig.cluster
        tickets = [p for p in (home / "transfers").glob("*") if p.is_file()]
        containers = [c for c in haflow_containers() if c]
        return not (cluster.jobs or cluster.secrets or cluster.policies or cluster.pods or tickets or containers)

    return check


class TestKubernetesMission:
    def test_configuration_chooses_kubernetes(self, rig: Rig) -> None:
        """HAFLOW_SANDBOX=kubernetes builds the Kubernetes provider with the configured daemon URL and namespace."""
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider

        sandbox = provider_for(rig.config)
        assert isinstance(sandbox, KubernetesProvider)
        assert sandbox.settings.daemon_url == f"https://127.0.0.1:{rig.port}"
        assert sandbox.settings.namespace == NAMESPACE
        assert sandbox.settings.instance == instance_id(rig.config.home)

    @pytest.mark.parametrize("transfers", ["python", "containers"])
    async def test_whole_workflow(
        self, request: pytest.FixtureRequest, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient,
        rig: Rig, home: Path, transfers: str,
    ) -> None:  # fmt: skip
        """Four agent pods take a mission to completed, a human edit flowing on; nothing is left behind.

        With ``containers``, the pods' fetch and collect run the manifest's scripts in real containers of
        the configured transfer image (``HAFLOW_KUBE_TRANSFER_IMAGE``), trusting the daemon's self-signed
        certificate through the ConfigMap named by ``HAFLOW_KUBE_CA_CONFIGMAP``, which the node holds.
        """
        config = rig.config
        if transfers == "containers":
            image = request.getfixturevalue("transfer_image")
            config = attrs.evolve(config, kube_transfer_image=image, kube_ca_configmap="haflow-ca")
        app = create_app(config)
        if transfers == "containers":
            assert cast("KubernetesProvider", app[SANDBOX]).settings.ca_configmap == "haflow-ca"
            rig.kubelet.transfer_containers = True
            assert rig.config.tls_cert is not None
            rig.kubelet.configmaps["haflow-ca"] = {"ca.crt": rig.config.tls_cert.read_text()}
        server = await aiohttp_server(app, port=rig.port, ssl=server_context(rig.config))
        # tls_config() gave the rig's daemon a certificate; pytest-aiohttp types a TestServer's client loosely.
        connector = aiohttp.TCPConnector(ssl=trusting(cast(Path, rig.config.tls_cert)))
        client = cast(AppClient, await aiohttp_client(server, connector=connector))
        mid = (await create_mission(client))["mission_id"]

        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert found["artifacts"]["structured-text.md"] == f"# Output of step cleanup by cleanup-agent\n\n{RAW_INPUT}"
        edited = "# Structured by a human\n\nDark mode, but only for admins.\n"
        status, body = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/structured-text.md", json={"content": edited}
        )
        assert status == 200, body
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert found["artifacts"]["research-output.md"] == f"# Output of step research by research-agent\n\n{edited}"
        found = await advance(client, mid, "waiting_human", "failed")
        assert "only for admins" in found["artifacts"]["implementation-plan.md"]
        found = await advance(client, mid, "waiting_human", "failed")
        result = json.loads(found["artifacts"]["implementation-result.json"])
        assert result["step_id"] == "implementation"
        found = await advance(client, mid, "completed")
        assert found["errors"] == []
        assert [r["exit_code"] for r in found["runs"]] == [0, 0, 0, 0]

        # Every run was a Job whose agent ran in the fake node's Docker, no bind mount of the daemon's folders.
        assert len(rig.kubelet.runs) == 4
        for args in rig.kubelet.runs:
            mounts = [args[i + 1] for i, a in enumerate(args) if a == "--mount"]
            assert mounts and all(str(home) not in m for m in mounts)
            assert f"{NODE_LABEL}=1" in args
        assert cast("KubernetesProvider", app[SANDBOX]).settings.daemon_url == f"https://127.0.0.1:{rig.port}"
        await until(nothing_left(rig, home))

    async def test_oneshot(
        self, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, rig: Rig, home: Path
    ) -> None:
        """The oneshot workflow: one agent pod, its gate, completed; nothing is left behind."""
        app = create_app(rig.config)
        server = await aiohttp_server(app, port=rig.port, ssl=server_context(rig.config))
        # tls_config() gave the rig's daemon a certificate; pytest-aiohttp types a TestServer's client loosely.
        connector = aiohttp.TCPConnector(ssl=trusting(cast(Path, rig.config.tls_cert)))
        client = cast(AppClient, await aiohttp_client(server, connector=connector))
        mid = (await create_mission(client, workflowId="oneshot"))["mission_id"]
        found = await advance(client, mid, "waiting_human", "failed")
        assert found["status"] == "waiting_human", found.get("last_error")
        assert [r["exit_code"] for r in found["runs"]] == [0]
        found = await advance(client, mid, "completed")
        assert found["errors"] == []
        assert len(rig.kubelet.runs) == 1
        await until(nothing_left(rig, home))

    async def test_code_mission_to_delivery(
        self, aiohttp_server: AiohttpServer, aiohttp_client: AiohttpClient, rig: Rig, home: Path, tmp_path: Path
    ) -> None:
        """A code mission's work tree (and its read-only .git) travels to the pods and back: diff, command, delivery."""
        app = create_app(rig.config)
        server = await aiohttp_server(app, port=rig.port, ssl=server_context(rig.config))
        # tls_config() gave the rig's daemon a certificate; pytest-aiohttp types a TestServer's client loosely.
        connector = aiohttp.TCPConnector(ssl=trusting(cast(Path, rig.config.tls_cert)))
        client = cast(AppClient, await aiohttp_client(server, connector=connector))
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
        assert data["runs"][-1]["changes"] == {"files": 2, "insertions": 3, "deletions": 0}
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
        await until(nothing_left(rig, home))
