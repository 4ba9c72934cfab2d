"""Daemon configuration: one frozen value built from the environment and flags."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import attrs

from . import __version__

DEFAULT_PORT = 4000
DEFAULT_HOST = "127.0.0.1"
DEFAULT_AGENT_IMAGE = f"haflow-agent:{__version__}"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


#: Where everything lives unless HAFLOW_HOME (or the seed's haflow_HOME) says otherwise.
DEFAULT_HOME = "~/.haflow"


class ConfigError(ValueError):
    """A setting, or a combination of settings, that cannot work; the message names them."""


def home_from_env(env: Mapping[str, str]) -> Path:
    """The data folder named by the environment, ``~`` expanded."""
    return Path(env.get("HAFLOW_HOME") or env.get("haflow_HOME") or DEFAULT_HOME).expanduser()


def _csv(value: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser().absolute() if value else None


@attrs.frozen
class Config:
    """Everything that may differ between two haflowd installations."""

    home: Path
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    agent_image: str = DEFAULT_AGENT_IMAGE
    #: Browser origins allowed besides loopback ones (exact ``scheme://host:port``).
    cors_origins: tuple[str, ...] = ()
    docker: str = "docker"
    #: Characters of the running step's log shown as ``current_log_tail``.
    log_tail_chars: int = 2000
    max_body_bytes: int = 5 * 1024 * 1024
    #: Bearer token every /api request must carry; ``None`` means no auth
    #: (only allowed on loopback; see :mod:`haflowd.auth`).
    token: str | None = attrs.field(default=None, repr=False)
    #: Host names (``Host`` header) accepted besides loopback ones and the bind address.
    allowed_hosts: tuple[str, ...] = ()
    #: Per mission: the most artifact files, and their total size.
    max_artifacts: int = 100
    max_mission_bytes: int = 50 * 1024 * 1024
    #: ``"token"`` (the default): every /api request needs the token, loopback
    #: included; ``"none"``: no authentication (single-user machines only).
    auth: str = attrs.field(default="token", validator=attrs.validators.in_(("token", "none")))
    #: Client connections held at once; ``None``: just below the descriptor limit.
    max_connections: int | None = None
    #: Where agents run: ``"docker"`` (the local engine, folders bind-mounted),
    #: ``"remote-docker"`` (an engine that does not share this disk; docs/remote.md) or
    #: ``"kubernetes"`` (EXPERIMENTAL: Jobs in a cluster, files through /api/transfers).
    sandbox: str = attrs.field(
        default="docker", validator=attrs.validators.in_(("docker", "remote-docker", "kubernetes"))
    )
    #: The remote engine, as a ``DOCKER_HOST`` value (``ssh://user@host``, ``tcp://host:2376``) ...
    docker_host: str | None = None
    #: ... or as the name of a Docker context (e.g. one holding TLS material).
    docker_context: str | None = None
    #: PEM certificate (chain) and private key: both set, the daemon speaks HTTPS
    #: (TLS 1.2 or later), e.g. for pods of a remote engine fetching a run's areas.
    tls_cert: Path | None = None
    tls_key: Path | None = None
    #: ``"kubernetes"`` (EXPERIMENTAL): agents run as Jobs in this namespace, ...
    kube_namespace: str = "default"
    #: ... of the cluster named by this kubeconfig (default: ``$KUBECONFIG``, ``~/.kube/config``, or in-cluster) ...
    kubeconfig: str | None = None
    #: ... and this context of it (default: its current context).
    kube_context: str | None = None
    #: The ``https://`` address pods reach this daemon's transfer endpoints at (required for Kubernetes).
    kube_daemon_url: str | None = None
    #: Where pods reach the daemon, as a CIDR or an IP address, for the runs' NetworkPolicy (default: the
    #: URL's IP address). Required when the URL names a host, and then one address (pods get no DNS; the
    #: name is mapped to it in their /etc/hosts): a wider range is refused.
    kube_daemon_cidr: str | None = None
    #: The image of the pods' file transfer containers (``sh``, ``tar``, ``curl``); None: the provider's default.
    kube_transfer_image: str | None = None
    #: A ConfigMap in the namespace whose ``ca.crt`` signed the daemon's certificate (None: the image's CAs).
    kube_ca_configmap: str | None = None

    def __attrs_post_init__(self) -> None:
        if self.sandbox == "remote-docker" and (self.docker_host is None) == (self.docker_context is None):
            raise ValueError(
                "HAFLOW_SANDBOX=remote-docker needs exactly one of HAFLOW_DOCKER_HOST and HAFLOW_DOCKER_CONTEXT"
            )
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ConfigError("HTTPS needs both HAFLOW_TLS_CERT and HAFLOW_TLS_KEY (or neither, for plain HTTP)")
        if self.sandbox == "kubernetes":
            if not self.kube_daemon_url:
                raise ConfigError(
                    "The kubernetes sandbox needs HAFLOW_KUBE_DAEMON_URL, the https:// address pods reach the daemon at"
                )
            if not self.kube_daemon_url.startswith("https://"):
                raise ConfigError(f"HAFLOW_KUBE_DAEMON_URL must be an https:// address, not {self.kube_daemon_url!r}")

    @property
    def tls(self) -> bool:
        """Whether the daemon serves HTTPS."""
        return self.tls_cert is not None

    @property
    def missions_dir(self) -> Path:
        return self.home / "missions"

    @property
    def projects_dir(self) -> Path:
        return self.home / "projects"

    @property
    def user_workflows_dir(self) -> Path:
        return self.home / "workflows"

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Config:
        """Read ``PORT``, ``HOST``, ``HAFLOW_HOME`` (or the seed's ``haflow_HOME``) and friends.

        Keyword ``overrides`` (command-line flags) win over the environment;
        ``None`` values are ignored.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {
            "home": home_from_env(env),
            "host": env.get("HOST") or DEFAULT_HOST,
            "port": int(env.get("PORT") or DEFAULT_PORT),
            "agent_image": env.get("HAFLOW_AGENT_IMAGE") or DEFAULT_AGENT_IMAGE,
            "cors_origins": _csv(env.get("HAFLOW_CORS_ORIGINS")),
            "docker": env.get("HAFLOW_DOCKER") or "docker",
            "token": env.get("HAFLOW_TOKEN") or None,
            "auth": (env.get("HAFLOW_AUTH") or "token").lower(),
            "allowed_hosts": _csv(env.get("HAFLOW_ALLOWED_HOSTS")),
            "sandbox": (env.get("HAFLOW_SANDBOX") or "docker").lower(),
            "docker_host": env.get("HAFLOW_DOCKER_HOST") or None,
            "docker_context": env.get("HAFLOW_DOCKER_CONTEXT") or None,
            "tls_cert": _path(env.get("HAFLOW_TLS_CERT")),
            "tls_key": _path(env.get("HAFLOW_TLS_KEY")),
            "kube_namespace": env.get("HAFLOW_KUBE_NAMESPACE") or "default",
            "kubeconfig": env.get("HAFLOW_KUBECONFIG") or None,
            "kube_context": env.get("HAFLOW_KUBE_CONTEXT") or None,
            "kube_daemon_url": env.get("HAFLOW_KUBE_DAEMON_URL") or None,
            "kube_daemon_cidr": env.get("HAFLOW_KUBE_DAEMON_CIDR") or None,
            "kube_transfer_image": env.get("HAFLOW_KUBE_TRANSFER_IMAGE") or None,
            "kube_ca_configmap": env.get("HAFLOW_KUBE_CA_CONFIGMAP") or None,
        }
        for key, name in (
            ("max_body_bytes", "HAFLOW_MAX_BODY_BYTES"),
            ("max_artifacts", "HAFLOW_MAX_ARTIFACTS"),
            ("max_mission_bytes", "HAFLOW_MAX_MISSION_BYTES"),
            ("max_connections", "HAFLOW_MAX_CONNECTIONS"),
        ):
            if env.get(name):
                values[key] = int(env[name])
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = Path(str(values["home"])).expanduser().absolute()
        return cls(**values)  # type: ignore[arg-type]
