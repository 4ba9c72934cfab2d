"""Fixtures for running the Kubernetes provider end to end (loaded by ``tests/conftest.py``).

* ``kube_cert``: a self-signed certificate for ``127.0.0.1`` (the daemon's
  HTTPS, as the ``https://`` daemon URL of the manifests requires).
* ``fake_kube``: the fake API server of :mod:`tests.sandbox.kubernetes.fake_apiserver`
  with the Docker-backed FAKE kubelet of :mod:`tests.sandbox.kubernetes.fake_kubelet`,
  and a daemon (``create_app``) serving the transfer endpoints over that
  certificate with real :class:`~haflowd.sandbox.kubernetes.transfers.TransferTickets`.

``kubernetes_asyncio`` is imported only where used: the rest of the suite
runs without the ``kubernetes`` extra.
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest
from pytest_aiohttp import AiohttpServer

from haflowd.config import Config
from haflowd.sandbox.kubernetes.manifests import KubeSettings
from haflowd.sandbox.kubernetes.transfers import TransferTickets
from haflowd.web.keys import TRANSFERS
from haflowd.web.tls import server_context
from tests.docker_support import SESSION_INSTANCE
from tests.sandbox.kubernetes.fake_apiserver import FakeCluster
from tests.sandbox.kubernetes.fake_kubelet import FakeKubelet
from tests.tls_support import missing, self_signed_cert

if TYPE_CHECKING:
    from haflowd.sandbox.kubernetes.provider import ApiClientFactory, KubernetesProvider

#: How often the tests' providers look at a run (the daemon's default is 2 s).
POLL_SECONDS = 0.05


#: A transfer image the suite builds: the test agent image with the host's ``curl`` and its libraries.
TRANSFER_IMAGE = "haflow-transfer:test"


@pytest.fixture(scope="session")
def transfer_image(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """:data:`TRANSFER_IMAGE`, built offline (``sh``, ``tar`` from busybox; ``curl`` from the host).

    Skipped when the host has no ``curl`` or ``ldd`` to copy it with.
    """
    curl, ldd = shutil.which("curl"), shutil.which("ldd")
    if curl is None or ldd is None:
        missing("building a transfer image needs the host's curl and ldd")
    context = tmp_path_factory.mktemp("transfer-image")
    libraries = subprocess.run([ldd, curl], capture_output=True, text=True, check=True, timeout=60).stdout
    files = [Path(curl)]
    for line in libraries.splitlines():
        for word in line.split():
            if word.startswith("/") and Path(word).exists():
                files.append(Path(word))
    for source in files:
        target = context / "rootfs" / source.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source.resolve(), target)
    (context / "Dockerfile").write_text(f"FROM {docker_image}\nCOPY rootfs/ /\n")
    subprocess.run(
        ["docker", "build", "--quiet", "--tag", TRANSFER_IMAGE, str(context)], capture_output=True, check=True,
        timeout=300,
    )  # fmt: skip
    return TRANSFER_IMAGE


@pytest.fixture(scope="session")
def kube_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("kube-tls"))


def client_factory(url: str) -> ApiClientFactory:
    """An API client for the fake API server at ``url`` (plain HTTP, no credentials)."""

    async def make() -> Any:
        from kubernetes_asyncio.client import ApiClient, Configuration

        return ApiClient(Configuration(host=url))

    return make


def tls_config(home: Path, cert: tuple[Path, Path], **env: str) -> Config:
    """A daemon configuration serving HTTPS with ``cert``, authentication off."""
    values = {"HAFLOW_AUTH": "none", "HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(cert[1]), **env}
    return Config.from_env(values, home=home, port=0)


def trusting(cert: Path) -> ssl.SSLContext:
    """A client context trusting only ``cert`` (what the fake node and the tests' clients use)."""
    return ssl.create_default_context(cafile=str(cert))


@attrs.define
class FakeKube:
    """A fake cluster with a fake node, and the daemon whose transfer endpoints its pods use."""

    cluster: FakeCluster
    kubelet: FakeKubelet
    api_url: str
    settings: KubeSettings
    tickets: TransferTickets
    made: list[KubernetesProvider] = attrs.field(factory=list)

    def provider(self, **changes: Any) -> KubernetesProvider:
        """A fresh provider on this cluster (a daemon "restart" when called again); closed at teardown."""
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider

        fields: dict[str, Any] = {
            "settings": self.settings,
            "issuer": self.tickets,
            "api_client": client_factory(self.api_url),
            "poll_seconds": POLL_SECONDS,
        }
        made = KubernetesProvider(**{**fields, **changes})
        self.made.append(made)
        return made

    def run_transfer_containers(self, image: str, cert: Path) -> FakeKube:
        """Run fetch and collect as real containers of ``image``, trusting ``cert`` through a CA ConfigMap."""
        self.settings = attrs.evolve(self.settings, transfer_image=image, ca_configmap="haflow-ca")
        self.kubelet.transfer_containers = True
        self.kubelet.configmaps["haflow-ca"] = {"ca.crt": cert.read_text()}
        return self

    async def close(self) -> None:
        for provider in self.made:
            await provider.aclose()
        await self.kubelet.close()


@pytest.fixture
async def fake_kube(
    aiohttp_server: AiohttpServer, tmp_path: Path, kube_cert: tuple[Path, Path], docker_image: str
) -> AsyncIterator[FakeKube]:
    pytest.importorskip("kubernetes_asyncio")
    from haflowd.web.app import create_app
    from tests.fakes import FakeSandbox

    cluster = FakeCluster()
    api = await aiohttp_server(cluster.app())
    config = tls_config(tmp_path / "daemon-home", kube_cert)
    # The daemon's own app; its tickets may write back anywhere in this test's folder (the specs' areas).
    app = create_app(config, sandbox=FakeSandbox())
    tickets = TransferTickets(tmp_path / "transfers", writable_roots=(tmp_path,))
    app[TRANSFERS] = tickets
    daemon = await aiohttp_server(app, ssl=server_context(config))
    settings = KubeSettings(
        daemon_url=f"https://127.0.0.1:{daemon.port}", namespace="agents", instance=SESSION_INSTANCE
    )
    node = tmp_path / "node"
    node.mkdir()
    kubelet = FakeKubelet(cluster, node, ssl=trusting(kube_cert[0])).attach()
    found = FakeKube(cluster, kubelet, str(api.make_url("")).rstrip("/"), settings, tickets)
    yield found
    await found.close()


@attrs.define
class RealKube:
    """A real cluster named by ``HAFLOW_TEST_KUBECONFIG``, and this test's daemon serving its transfers."""

    kubeconfig: str
    context: str | None
    settings: KubeSettings
    tickets: TransferTickets
    #: The agent image the cluster pulls (the test image, pushed where the cluster can reach it).
    image: str
    made: list[KubernetesProvider] = attrs.field(factory=list)

    def provider(self) -> KubernetesProvider:
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider, kubeconfig_client

        made = KubernetesProvider(
            settings=self.settings,
            issuer=self.tickets,
            api_client=kubeconfig_client(self.kubeconfig, self.context),
            poll_seconds=1.0,
        )
        self.made.append(made)
        return made

    async def close(self) -> None:
        for provider in self.made:
            await provider.aclose()


#: What the ``kubernetes`` target needs, each of them.
REAL_KUBE_ENV = {
    "HAFLOW_TEST_KUBECONFIG": "a kubeconfig of a real cluster whose namespace allows Jobs, Secrets, NetworkPolicies",
    "HAFLOW_TEST_KUBE_DAEMON_URL": "the https://host:port its pods reach this machine at",
    "HAFLOW_TEST_KUBE_TLS_CERT": "the certificate (PEM) served there, for the URL's host",
    "HAFLOW_TEST_KUBE_TLS_KEY": "its key (PEM)",
    "HAFLOW_TEST_KUBE_IMAGE": "the test agent image (haflow-agent:test) pushed where the cluster pulls from",
}


@pytest.fixture
async def real_kube(aiohttp_server: AiohttpServer, tmp_path: Path) -> AsyncIterator[RealKube]:
    """The ``kubernetes`` target; skipped, naming what is missing, unless the environment names a cluster.

    Optional: ``HAFLOW_TEST_KUBE_CONTEXT``, ``HAFLOW_TEST_KUBE_NAMESPACE``
    (default ``default``), ``HAFLOW_TEST_KUBE_CA_CONFIGMAP`` (a ConfigMap
    holding the CA that signed the certificate, key ``ca.crt``),
    ``HAFLOW_TEST_KUBE_DAEMON_CIDR``, ``HAFLOW_TEST_KUBE_TRANSFER_IMAGE``,
    ``HAFLOW_TEST_KUBE_LISTEN_PORT`` (default: the URL's port; the daemon
    listens on every interface there).
    """
    import os
    from urllib.parse import urlsplit

    missing = [key for key in REAL_KUBE_ENV if not os.environ.get(key)]
    if missing:
        pytest.skip(
            f"kubernetes runs only against a real cluster: set {', '.join(missing)} (see REAL_KUBE_ENV in "
            "tests/sandbox/kubernetes/kube_support.py)"
        )
    pytest.importorskip("kubernetes_asyncio")
    from haflowd.sandbox.kubernetes.manifests import DEFAULT_TRANSFER_IMAGE
    from haflowd.web.app import create_app
    from tests.fakes import FakeSandbox

    env = os.environ
    url = env["HAFLOW_TEST_KUBE_DAEMON_URL"]
    port = int(env.get("HAFLOW_TEST_KUBE_LISTEN_PORT") or urlsplit(url).port or 443)
    config = tls_config(
        tmp_path / "daemon-home", (Path(env["HAFLOW_TEST_KUBE_TLS_CERT"]), Path(env["HAFLOW_TEST_KUBE_TLS_KEY"]))
    )
    app = create_app(config, sandbox=FakeSandbox())
    tickets = TransferTickets(tmp_path / "transfers", writable_roots=(tmp_path,))
    app[TRANSFERS] = tickets
    await aiohttp_server(app, host="0.0.0.0", port=port, ssl=server_context(config))  # pods reach it from elsewhere
    settings = KubeSettings(
        daemon_url=url,
        namespace=env.get("HAFLOW_TEST_KUBE_NAMESPACE") or "default",
        instance=SESSION_INSTANCE,
        transfer_image=env.get("HAFLOW_TEST_KUBE_TRANSFER_IMAGE") or DEFAULT_TRANSFER_IMAGE,
        ca_configmap=env.get("HAFLOW_TEST_KUBE_CA_CONFIGMAP") or None,
        daemon_cidr=env.get("HAFLOW_TEST_KUBE_DAEMON_CIDR") or None,
    )
    found = RealKube(
        env["HAFLOW_TEST_KUBECONFIG"], env.get("HAFLOW_TEST_KUBE_CONTEXT") or None, settings, tickets,
        env["HAFLOW_TEST_KUBE_IMAGE"],
    )  # fmt: skip
    yield found
    await found.close()
