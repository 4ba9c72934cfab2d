"""Config is the one statement of every setting: the environment, the flags and the docs' table come from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from haflowd.config import CONFIG_DOC, Config, markdown_table, settings, with_table
from haflowd.sandbox.kubernetes.manifests import DEFAULT_TRANSFER_IMAGE

ROOT = Path(__file__).parents[1]


class TestDocs:
    def test_configuration_table_is_generated(self) -> None:
        """docs/configuration.md holds exactly the table Config generates."""
        doc = (ROOT / CONFIG_DOC).read_text()
        assert with_table(doc) == doc, (
            "docs/configuration.md's settings table differs from haflowd/config.py; "
            "regenerate it with: python -m haflowd.config --write"
        )

    def test_every_variable_is_in_the_table(self) -> None:
        """Each field's variables and flag appear in the table, the transfer image's real default too."""
        table = markdown_table()
        for meta in settings().values():
            for var in meta.env:
                assert f"`{var}`" in table
            assert meta.flag is None or f"`{meta.flag}`" in table
        assert DEFAULT_TRANSFER_IMAGE in table


class TestFromEnv:
    @pytest.mark.parametrize(
        ("env", "field", "value"),
        [
            ({"PORT": "4100"}, "port", 4100),
            ({"HOST": "::1"}, "host", "::1"),
            ({"haflow_HOME": "/seed"}, "home", Path("/seed")),
            ({"HAFLOW_HOME": "/h", "haflow_HOME": "/seed"}, "home", Path("/h")),
            ({"HAFLOW_AGENT_IMAGE": "img:1"}, "agent_image", "img:1"),
            ({"HAFLOW_CORS_ORIGINS": " http://a:1, ,http://b:2"}, "cors_origins", ("http://a:1", "http://b:2")),
            ({"HAFLOW_DOCKER": "podman"}, "docker", "podman"),
            ({"HAFLOW_TOKEN": "t0ken"}, "token", "t0ken"),
            ({"HAFLOW_AUTH": "NONE"}, "auth", "none"),
            ({"HAFLOW_ALLOWED_HOSTS": "a.example,b.example"}, "allowed_hosts", ("a.example", "b.example")),
            ({"HAFLOW_MAX_BODY_BYTES": "10"}, "max_body_bytes", 10),
            ({"HAFLOW_MAX_ARTIFACTS": "3"}, "max_artifacts", 3),
            ({"HAFLOW_MAX_MISSION_BYTES": "99"}, "max_mission_bytes", 99),
            ({"HAFLOW_MAX_CONNECTIONS": "7"}, "max_connections", 7),
            ({"HAFLOW_SANDBOX": "Remote-Docker", "HAFLOW_DOCKER_HOST": "ssh://h"}, "sandbox", "remote-docker"),
            ({"HAFLOW_SANDBOX": "remote-docker", "HAFLOW_DOCKER_CONTEXT": "c"}, "docker_context", "c"),
            ({"HAFLOW_TLS_CERT": "/c.pem", "HAFLOW_TLS_KEY": "/k.pem"}, "tls_key", Path("/k.pem")),
            ({"HAFLOW_KUBE_NAMESPACE": "ns"}, "kube_namespace", "ns"),
            ({"HAFLOW_KUBECONFIG": "/kc"}, "kubeconfig", "/kc"),
            ({"HAFLOW_KUBE_CONTEXT": "ctx"}, "kube_context", "ctx"),
            ({"HAFLOW_KUBE_DAEMON_CIDR": "10.0.0.1"}, "kube_daemon_cidr", "10.0.0.1"),
            ({"HAFLOW_KUBE_TRANSFER_IMAGE": "curl:1"}, "kube_transfer_image", "curl:1"),
            ({"HAFLOW_KUBE_CA_CONFIGMAP": "ca"}, "kube_ca_configmap", "ca"),
            ({"HAFLOW_LOG_FORMAT": "json"}, "log_format", "json"),
            ({"PORT": "", "HAFLOW_DOCKER": ""}, "port", 4000),
        ],
    )
    def test_each_variable(self, env: dict[str, str], field: str, value: object) -> None:
        """Each variable sets its field, parsed as before; an empty variable counts as unset."""
        assert getattr(Config.from_env(env), field) == value

    def test_kubernetes_url(self) -> None:
        """HAFLOW_KUBE_DAEMON_URL sets the address pods reach the daemon at."""
        config = Config.from_env({"HAFLOW_SANDBOX": "kubernetes", "HAFLOW_KUBE_DAEMON_URL": "https://10.0.0.1:4000"})
        assert config.kube_daemon_url == "https://10.0.0.1:4000"

    def test_defaults_are_the_fields(self, tmp_path: Path) -> None:
        """With no environment every setting is its field's default."""
        assert Config.from_env({}, home=tmp_path) == Config(home=tmp_path)

    def test_bad_log_format_is_refused(self) -> None:
        """An unknown HAFLOW_LOG_FORMAT is an error naming the allowed values."""
        with pytest.raises(ValueError, match="json"):
            Config.from_env({"HAFLOW_LOG_FORMAT": "xml"})
