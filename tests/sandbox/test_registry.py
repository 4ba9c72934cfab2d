"""The sandbox registry: the provider ``Config.sandbox`` names, its wing imported only when chosen."""

from __future__ import annotations

import importlib.util
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest

from haflowd.config import Config
from haflowd.sandbox import SandboxProvider, SandboxUnavailable
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider
from haflowd.sandbox.registry import PROVIDERS, provider_for
from tests.conftest import AppClient
from tests.fakes import FakeSandbox

KUBE_URL = "https://haflow.example:4443"
needs_kube = pytest.mark.skipif(
    importlib.util.find_spec("kubernetes_asyncio") is None, reason="the kubernetes extra is not installed"
)

#: The environment each name needs besides HAFLOW_SANDBOX.
ENVIRONMENTS: dict[str, dict[str, str]] = {
    "docker": {},
    "remote-docker": {"HAFLOW_DOCKER_HOST": "ssh://agent@builder"},
    "kubernetes": {"HAFLOW_KUBE_DAEMON_URL": KUBE_URL},
}


def config_for(name: str, home: Path) -> Config:
    return Config.from_env({"HAFLOW_SANDBOX": name, **ENVIRONMENTS[name]}, home=home)


def provider_class(name: str) -> type[Any]:
    if name == "kubernetes":
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider

        return KubernetesProvider
    return {"docker": DockerProvider, "remote-docker": RemoteDockerProvider}[name]


NAMES = [pytest.param(name, marks=needs_kube) if name == "kubernetes" else name for name in ENVIRONMENTS]


class TestProviderFor:
    def test_names_are_the_configurations(self) -> None:
        """The registry knows exactly the sandboxes Config accepts, so no accepted name lacks a provider."""
        validator = attrs.fields(Config).sandbox.validator
        assert set(PROVIDERS) == set(validator.options) == set(ENVIRONMENTS)  # type: ignore[union-attr]

    @pytest.mark.parametrize("name", NAMES)
    def test_each_name_yields_its_provider(self, tmp_path: Path, name: str) -> None:
        """Each configured name builds its own provider class (not a subclass standing in for it)."""
        provider = provider_for(config_for(name, tmp_path))
        assert type(provider) is provider_class(name)
        assert isinstance(provider, SandboxProvider)

    def test_unknown_name_fails_clearly(self, tmp_path: Path) -> None:
        """A name no wing provides (past Config's own check) is refused naming the ones there are."""
        config = Config.from_env({}, home=tmp_path)
        object.__setattr__(config, "sandbox", "podman")  # Config itself refuses it
        with pytest.raises(SandboxUnavailable, match=r"Unknown sandbox 'podman': choose one of docker, remote-docker"):
            provider_for(config)

    def test_docker_leaves_kubernetes_unloaded(self, tmp_path: Path) -> None:
        """Choosing Docker (and building the web app) never imports the Kubernetes provider or its client library."""
        code = (
            "import sys\n"
            "from haflowd.config import Config\n"
            "from haflowd.web.app import create_app\n"
            f"create_app(Config.from_env({{'HAFLOW_AUTH': 'none'}}, home={str(tmp_path)!r}, port=0))\n"
            "unwanted = ('kubernetes_asyncio', 'haflowd.sandbox.kubernetes.provider')\n"
            "loaded = [m for m in sys.modules if m.startswith(unwanted)]\n"
            "assert not loaded, loaded\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr


class TestAclose:
    @pytest.mark.parametrize("cls", [DockerProvider, RemoteDockerProvider, FakeSandbox])
    def test_every_provider_class_has_aclose(self, cls: type[Any]) -> None:
        """Every provider class (and the fake) implements the protocol's aclose as a coroutine."""
        assert inspect.iscoroutinefunction(cls.aclose)

    @needs_kube
    def test_kubernetes_has_aclose(self) -> None:
        """The Kubernetes provider implements aclose as a coroutine (and has no old close())."""
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider

        assert inspect.iscoroutinefunction(KubernetesProvider.aclose)
        assert not hasattr(KubernetesProvider, "close")

    @pytest.mark.parametrize("name", NAMES)
    async def test_aclose_is_idempotent(self, tmp_path: Path, name: str) -> None:
        """Closing a provider that never ran anything, twice, does nothing and raises nothing."""
        provider = provider_for(config_for(name, tmp_path))
        await provider.aclose()
        await provider.aclose()

    async def test_the_app_closes_its_sandbox(self, aiohttp_client: Any, config: Config, fake: FakeSandbox) -> None:
        """When the daemon stops, its cleanup closes the sandbox provider once."""
        from haflowd.web.app import create_app

        client: AppClient = await aiohttp_client(create_app(config, sandbox=fake))
        assert fake.closed == 0
        await client.close()
        assert fake.closed == 1
