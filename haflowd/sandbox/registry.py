"""The sandbox provider the configuration names (``Config.sandbox``), from one table.

Each entry builds its provider from the configuration and imports its wing
only when chosen: the Kubernetes one needs the optional ``kubernetes`` extra,
and a daemon running Docker never loads it.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from ..config import Config
from .protocol import SandboxProvider, SandboxUnavailable, instance_id

if TYPE_CHECKING:
    from .kubernetes.manifests import KubeSettings
    from .kubernetes.transfers import TransferTickets

#: Builds a provider from the configuration and the daemon's transfer tickets (used by providers without a shared disk).
Factory = Callable[[Config, "TransferTickets | None"], SandboxProvider]


def _docker(config: Config, transfers: TransferTickets | None) -> SandboxProvider:
    from .docker.local import DockerProvider

    return DockerProvider(
        docker=config.docker, default_image=config.agent_image, instance=instance_id(config.home), home=config.home
    )


def _remote_docker(config: Config, transfers: TransferTickets | None) -> SandboxProvider:
    from .docker.remote import RemoteDockerProvider

    return RemoteDockerProvider(
        docker=config.docker,
        default_image=config.agent_image,
        instance=instance_id(config.home),
        docker_host=config.docker_host,
        context=config.docker_context,
        writable_roots=(config.home,),
    )


def _kubernetes(config: Config, transfers: TransferTickets | None) -> SandboxProvider:
    """The EXPERIMENTAL Kubernetes Jobs provider; needs the ``kubernetes`` extra."""
    if importlib.util.find_spec("kubernetes_asyncio") is None:
        raise SandboxUnavailable(
            "HAFLOW_SANDBOX=kubernetes needs the kubernetes extra: pip install 'haflowd[kubernetes]'"
        )
    from .kubernetes.provider import KubernetesProvider, kubeconfig_client
    from .kubernetes.transfers import tickets_in

    return KubernetesProvider(
        settings=kube_settings(config),
        issuer=transfers or tickets_in(config.home),
        api_client=kubeconfig_client(config.kubeconfig, config.kube_context),
    )


#: Every provider by the name ``Config.sandbox`` (``HAFLOW_SANDBOX``) gives it.
PROVIDERS: Mapping[str, Factory] = {
    "docker": _docker,
    "remote-docker": _remote_docker,
    "kubernetes": _kubernetes,
}


def provider_for(config: Config, transfers: TransferTickets | None = None) -> SandboxProvider:
    """The provider ``config`` chooses; ``transfers`` issues the tickets of pods (Kubernetes; default: the home's)."""
    factory = PROVIDERS.get(config.sandbox)
    if factory is None:
        raise SandboxUnavailable(f"Unknown sandbox {config.sandbox!r}: choose one of {', '.join(PROVIDERS)}")
    return factory(config, transfers)


def kube_settings(config: Config) -> KubeSettings:
    """The Kubernetes provider's settings from the configuration (EXPERIMENTAL)."""
    from .kubernetes.manifests import DEFAULT_TRANSFER_IMAGE, KubeSettings

    assert config.kube_daemon_url is not None  # Config refuses kubernetes without it
    try:
        return KubeSettings(
            daemon_url=config.kube_daemon_url,
            namespace=config.kube_namespace,
            instance=instance_id(config.home),
            transfer_image=config.kube_transfer_image or DEFAULT_TRANSFER_IMAGE,
            daemon_cidr=config.kube_daemon_cidr,
            ca_configmap=config.kube_ca_configmap,
        )
    except ValueError as e:
        raise SandboxUnavailable(f"Invalid Kubernetes setting: {e}") from None
