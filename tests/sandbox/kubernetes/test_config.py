"""Choosing the Kubernetes provider from the environment (HAFLOW_SANDBOX=kubernetes and HAFLOW_KUBE_*)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import attrs
import pytest

from haflowd.config import Config
from haflowd.sandbox import SandboxUnavailable
from haflowd.sandbox.protocol import instance_id
from haflowd.sandbox.registry import kube_settings, provider_for

URL = "https://haflow.example:4443"


class TestConfig:
    def test_from_environment(self, tmp_path: Path) -> None:
        """Every HAFLOW_KUBE_* variable lands in the configuration."""
        config = Config.from_env(
            {
                "HAFLOW_SANDBOX": "Kubernetes",
                "HAFLOW_KUBE_NAMESPACE": "agents",
                "HAFLOW_KUBECONFIG": "/etc/haflow/kubeconfig",
                "HAFLOW_KUBE_CONTEXT": "prod",
                "HAFLOW_KUBE_DAEMON_URL": URL,
                "HAFLOW_KUBE_DAEMON_CIDR": "10.0.0.5",
                "HAFLOW_KUBE_TRANSFER_IMAGE": "registry.example/transfer:1",
            },
            home=tmp_path,
        )
        assert config.sandbox == "kubernetes"
        assert (config.kube_namespace, config.kubeconfig, config.kube_context) == (
            "agents",
            "/etc/haflow/kubeconfig",
            "prod",
        )
        assert (config.kube_daemon_url, config.kube_daemon_cidr) == (URL, "10.0.0.5")
        assert config.kube_transfer_image == "registry.example/transfer:1"

    def test_defaults(self, tmp_path: Path) -> None:
        """Only the daemon URL is required: namespace default, kubeconfig and context from kubectl's defaults."""
        config = Config.from_env({"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": URL}, home=tmp_path)
        assert (config.kube_namespace, config.kubeconfig, config.kube_context, config.kube_transfer_image) == (
            "default",
            None,
            None,
            None,
        )

    @pytest.mark.parametrize(
        ("env", "match"),
        [
            ({}, "HAFLOW_KUBE_DAEMON_URL"),
            ({"HAFLOW_KUBE_DAEMON_URL": "http://haflow.example:4000"}, "https://"),
        ],
    )
    def test_daemon_url_required_and_https(self, tmp_path: Path, env: dict[str, str], match: str) -> None:
        """Without an https:// daemon URL the kubernetes sandbox is refused at start-up."""
        with pytest.raises(ValueError, match=match):
            Config.from_env({"HAFLOW_SANDBOX": "kubernetes", **env}, home=tmp_path)

    def test_settings(self, tmp_path: Path) -> None:
        """The provider's settings follow the configuration, labelled with this installation."""
        config = Config.from_env(
            {
                "HAFLOW_SANDBOX": "kubernetes",
                "HAFLOW_KUBE_DAEMON_URL": URL,
                "HAFLOW_KUBE_NAMESPACE": "agents",
                "HAFLOW_KUBE_DAEMON_CIDR": "10.0.0.5",
                "HAFLOW_KUBE_TRANSFER_IMAGE": "registry.example/transfer:1",
                "HAFLOW_KUBE_CA_CONFIGMAP": "haflow-ca",
            },
            home=tmp_path,
        )
        settings = kube_settings(config)
        assert settings.ca_configmap == "haflow-ca"
        assert (settings.daemon_url, settings.namespace, settings.daemon_cidr) == (URL, "agents", "10.0.0.5/32")
        assert settings.transfer_image == "registry.example/transfer:1"
        assert settings.instance == instance_id(config.home)
        assert kube_settings(attrs.evolve(config, kube_ca_configmap=None)).ca_configmap is None

    def test_wide_cidr_with_a_named_daemon(self, tmp_path: Path) -> None:
        """A daemon URL naming a host needs HAFLOW_KUBE_DAEMON_CIDR to be one address; a range stops the start."""
        env = {"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": URL, "HAFLOW_KUBE_DAEMON_CIDR": "10.0.0.0/24"}
        config = Config.from_env(env, home=tmp_path)
        with pytest.raises(SandboxUnavailable, match="HAFLOW_KUBE_DAEMON_CIDR must be the single address"):
            provider_for(config)
        ip = Config.from_env({**env, "HAFLOW_KUBE_DAEMON_URL": "https://10.0.0.9:4443"}, home=tmp_path)
        assert kube_settings(ip).daemon_cidr == "10.0.0.0/24"

    def test_invalid_namespace(self, tmp_path: Path) -> None:
        """A namespace Kubernetes would refuse is reported as a setting error."""
        config = Config.from_env(
            {"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": URL, "HAFLOW_KUBE_NAMESPACE": "Agents_1"},
            home=tmp_path,
        )
        with pytest.raises(SandboxUnavailable, match="Invalid Kubernetes namespace"):
            provider_for(config)

    def test_provider_gets_the_daemons_tickets(self, tmp_path: Path) -> None:
        """Kubernetes is built with the daemon's transfer tickets, the ones its endpoints redeem."""
        from haflowd.sandbox.kubernetes.provider import KubernetesProvider
        from haflowd.sandbox.kubernetes.transfers import TransferTickets

        config = Config.from_env({"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": URL}, home=tmp_path)
        tickets = TransferTickets(tmp_path / "transfers", writable_roots=(tmp_path,))
        provider = provider_for(config, tickets)
        assert isinstance(provider, KubernetesProvider)
        assert provider.issuer is tickets
        assert provider.settings.daemon_url == URL
        own = provider_for(config)
        assert isinstance(own, KubernetesProvider) and isinstance(own.issuer, TransferTickets)
        assert own.issuer.root == tickets.root

    def test_extra_missing(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without the kubernetes extra installed, the error names the extra to install."""
        real = importlib.util.find_spec

        def find_spec(name: str, *args: Any) -> Any:
            return None if name == "kubernetes_asyncio" else real(name, *args)

        monkeypatch.setattr(importlib.util, "find_spec", find_spec)
        config = Config.from_env({"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": URL}, home=tmp_path)
        with pytest.raises(SandboxUnavailable, match=r"haflowd\[kubernetes\]"):
            provider_for(config)
