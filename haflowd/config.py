"""Daemon configuration: one frozen value built from the environment and flags."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

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


def _csv(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _path(value: str) -> Path:
    return Path(value).expanduser().absolute()


def _lower(value: str) -> str:
    return value.lower()


@attrs.frozen
class Setting:
    """How one ``Config`` field is set from outside, and what the docs say of it."""

    #: Environment variables read, first set (non-empty) one wins.
    env: tuple[str, ...]
    #: One line: what the setting means.
    meaning: str
    #: The ``haflowd serve`` flag that overrides the environment, if any.
    flag: str | None = None
    #: The default as the docs show it (``None``: none).
    shown: str | None = None
    #: Turns the variable's text into the field's value.
    parse: Callable[[str], object] = str


def setting(
    default: object,
    meaning: str,
    *env: str,
    flag: str | None = None,
    shown: str | None = None,
    parse: Callable[[str], object] = str,
    **field: Any,
) -> Any:
    """A ``Config`` field read from ``env`` (and ``flag``), described once for ``from_env`` and the docs."""
    meta = Setting(env=env, meaning=meaning, flag=flag, shown=shown, parse=parse)
    return attrs.field(default=default, metadata={"setting": meta}, **field)


@attrs.frozen
class Config:
    """Everything that may differ between two haflowd installations.

    Each field set from outside carries a :class:`Setting`: ``from_env`` reads it and
    ``docs/configuration.md``'s table is generated from it (``python -m haflowd.config``).
    """

    home: Path = setting(
        attrs.NOTHING,
        "data folder, created with mode 0700",
        "HAFLOW_HOME",
        "haflow_HOME",
        flag="--home",
        shown=f"`{DEFAULT_HOME}`",
        parse=Path,
    )
    host: str = setting(
        DEFAULT_HOST,
        "address to listen on (loopback only by default)",
        "HOST",
        flag="--host",
        shown=f"`{DEFAULT_HOST}`",
    )
    port: int = setting(DEFAULT_PORT, "port to listen on", "PORT", flag="--port", shown=f"`{DEFAULT_PORT}`", parse=int)
    agent_image: str = setting(
        DEFAULT_AGENT_IMAGE,
        "image of agents that name none (any image a registry serves works too)",
        "HAFLOW_AGENT_IMAGE",
        flag="--agent-image",
        shown="`haflow-agent:<version>`",
    )
    #: Browser origins allowed besides loopback ones (exact ``scheme://host:port``).
    cors_origins: tuple[str, ...] = setting(
        (), "extra browser origins allowed, comma separated", "HAFLOW_CORS_ORIGINS", parse=_csv
    )
    docker: str = setting("docker", "the Docker CLI to use", "HAFLOW_DOCKER", shown="`docker`")
    #: Characters of the running step's log shown as ``current_log_tail``.
    log_tail_chars: int = 2000
    max_body_bytes: int = setting(
        5 * 1024 * 1024, "the largest request body, in bytes", "HAFLOW_MAX_BODY_BYTES", shown="5 MiB", parse=int
    )
    #: Bearer token every /api request must carry; ``None`` means no auth
    #: (only allowed on loopback; see :mod:`haflowd.auth`).
    token: str | None = setting(
        None,
        "bearer token (default: generated once into `HAFLOW_HOME/token`, mode 0600)",
        "HAFLOW_TOKEN",
        repr=False,
    )
    #: Host names (``Host`` header) accepted besides loopback ones and the bind address.
    allowed_hosts: tuple[str, ...] = setting(
        (), "extra `Host` names accepted (DNS-rebinding guard), comma separated", "HAFLOW_ALLOWED_HOSTS", parse=_csv
    )
    #: Per mission: the most artifact files, and their total size.
    max_artifacts: int = setting(
        100, "the most artifact files of one mission", "HAFLOW_MAX_ARTIFACTS", shown="100", parse=int
    )
    max_mission_bytes: int = setting(
        50 * 1024 * 1024,
        "the most bytes of one mission's artifacts",
        "HAFLOW_MAX_MISSION_BYTES",
        shown="50 MiB",
        parse=int,
    )
    #: Review commands (``run-command``), held like agent steps: what their copy of the work
    #: tree gains counts towards HAFLOW_MAX_MISSION_BYTES; these cap its new files and its log.
    max_command_files: int = setting(
        100_000,
        "the most files (and folders) a review command may add to its copy of the work tree",
        "HAFLOW_MAX_COMMAND_FILES",
        shown="100000",
        parse=int,
    )
    max_command_log_bytes: int = setting(
        16 * 1024 * 1024,
        "the most bytes of a review command's output kept in its log",
        "HAFLOW_MAX_COMMAND_LOG_BYTES",
        shown="16 MiB",
        parse=int,
    )
    #: All code missions' folders together (clones, work trees, commands' copies).
    max_workspace_bytes: int = setting(
        20 * 1024 * 1024 * 1024,
        "the most bytes of all code missions' folders together (clones, work trees, command copies)",
        "HAFLOW_MAX_WORKSPACE_BYTES",
        shown="20 GiB",
        parse=int,
    )
    #: The most missions kept at once; creating one more answers 409 (nothing is written).
    max_missions: int = setting(
        100_000,
        "the most missions kept at once; creating one more answers 409",
        "HAFLOW_MAX_MISSIONS",
        shown="100000",
        parse=int,
        validator=attrs.validators.ge(1),
    )
    #: The most code missions (each with its own clone of a repository, its code workspace) kept at once.
    max_code_workspaces: int = setting(
        200,
        "the most code missions (each holds a clone of its repository) kept at once; one more answers 409",
        "HAFLOW_MAX_CODE_WORKSPACES",
        shown="200",
        parse=int,
        validator=attrs.validators.ge(1),
    )
    #: ``"token"`` (the default): every /api request needs the token, loopback
    #: included; ``"none"``: no authentication (single-user machines only).
    auth: str = setting(
        "token",
        "`none` turns authentication off (loopback only; see [security](security.md))",
        "HAFLOW_AUTH",
        shown="`token`",
        parse=_lower,
        validator=attrs.validators.in_(("token", "none")),
    )
    #: Client connections held at once; ``None``: just below the descriptor limit.
    max_connections: int | None = setting(
        None, "client connections held at once", "HAFLOW_MAX_CONNECTIONS", shown="descriptor limit - 256", parse=int
    )
    #: Where agents run: ``"docker"`` (the local engine, folders bind-mounted),
    #: ``"remote-docker"`` (an engine that does not share this disk; docs/remote.md) or
    #: ``"kubernetes"`` (EXPERIMENTAL: Jobs in a cluster, files through /api/transfers).
    sandbox: str = setting(
        "docker",
        "`remote-docker`: agents on a Docker engine that does not share this disk; `kubernetes` (experimental): "
        "agents as Kubernetes Jobs ([remote.md](remote.md))",
        "HAFLOW_SANDBOX",
        shown="`docker`",
        parse=_lower,
        validator=attrs.validators.in_(("docker", "remote-docker", "kubernetes")),
    )
    #: The remote engine, as a ``DOCKER_HOST`` value (``ssh://user@host``, ``tcp://host:2376``) ...
    docker_host: str | None = setting(
        None,
        "`remote-docker`'s engine as a `DOCKER_HOST` value (`ssh://…`, `tcp://…`); this or the next",
        "HAFLOW_DOCKER_HOST",
    )
    #: ... or as the name of a Docker context (e.g. one holding TLS material).
    docker_context: str | None = setting(
        None, "`remote-docker`'s engine as a Docker context name; this or the previous", "HAFLOW_DOCKER_CONTEXT"
    )
    #: PEM certificate (chain) and private key: both set, the daemon speaks HTTPS
    #: (TLS 1.2 or later), e.g. for pods of a remote engine fetching a run's areas.
    tls_cert: Path | None = setting(
        None,
        "PEM certificate (chain); with the key, the daemon speaks HTTPS (TLS 1.2+)",
        "HAFLOW_TLS_CERT",
        parse=_path,
    )
    tls_key: Path | None = setting(None, "PEM private key of that certificate", "HAFLOW_TLS_KEY", parse=_path)
    #: ``"kubernetes"`` (EXPERIMENTAL): agents run as Jobs in this namespace, ...
    kube_namespace: str = setting(
        "default", "the namespace of `kubernetes` runs", "HAFLOW_KUBE_NAMESPACE", shown="`default`"
    )
    #: ... of the cluster named by this kubeconfig (default: ``$KUBECONFIG``, ``~/.kube/config``, or in-cluster) ...
    kubeconfig: str | None = setting(
        None,
        "the kubeconfig of that cluster",
        "HAFLOW_KUBECONFIG",
        shown="`$KUBECONFIG`, `~/.kube/config` or in-cluster",
    )
    #: ... and this context of it (default: its current context).
    kube_context: str | None = setting(
        None, "the context of that kubeconfig", "HAFLOW_KUBE_CONTEXT", shown="its current context"
    )
    #: The ``https://`` address pods reach this daemon's transfer endpoints at (required for Kubernetes).
    kube_daemon_url: str | None = setting(
        None, "the `https://` address pods reach this daemon at (required for `kubernetes`)", "HAFLOW_KUBE_DAEMON_URL"
    )
    #: Where pods reach the daemon, as a CIDR or an IP address, for the runs' NetworkPolicy (default: the
    #: URL's IP address). Required when the URL names a host, and then one address (pods get no DNS; the
    #: name is mapped to it in their /etc/hosts): a wider range is refused.
    kube_daemon_cidr: str | None = setting(
        None,
        "the address (or, for an IP URL, the CIDR) the runs' NetworkPolicy opens; required when the URL names a "
        "host, and then a single address (IP, `/32` or `/128`): pods get no DNS, the name is mapped to it by "
        "`hostAliases`",
        "HAFLOW_KUBE_DAEMON_CIDR",
        shown="the URL's IP",
    )
    #: The image of the pods' file transfer containers (``sh``, ``tar``, ``curl``); None: the provider's default.
    kube_transfer_image: str | None = setting(
        None,
        "image of the pods' file transfer containers (`sh`, `tar`, `curl`)",
        "HAFLOW_KUBE_TRANSFER_IMAGE",
        shown="`curlimages/curl:8.11.0`",
    )
    #: A ConfigMap in the namespace whose ``ca.crt`` signed the daemon's certificate (None: the image's CAs).
    kube_ca_configmap: str | None = setting(
        None,
        "ConfigMap in the namespace whose `ca.crt` signed the daemon's certificate",
        "HAFLOW_KUBE_CA_CONFIGMAP",
        shown="the image's CAs",
    )
    #: How the daemon's log lines look (the CLI configures logging with it).
    log_format: str = setting(
        "text",
        "`json` for one JSON object per log line",
        "HAFLOW_LOG_FORMAT",
        flag="--log-format",
        shown="`text`",
        validator=attrs.validators.in_(("text", "json")),
    )

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
        """Read every field's environment variables (its :class:`Setting`): ``PORT``, ``HOST``, ...

        Keyword ``overrides`` (command-line flags) win over the environment;
        ``None`` values are ignored. An empty variable counts as unset.
        """
        env = os.environ if env is None else env
        values: dict[str, object] = {"home": home_from_env(env)}
        for name, meta in settings().items():
            text = next((env[var] for var in meta.env if env.get(var)), None)
            if text is not None:
                values[name] = meta.parse(text)
        values.update({k: v for k, v in overrides.items() if v is not None})
        values["home"] = Path(str(values["home"])).expanduser().absolute()
        return cls(**values)  # type: ignore[arg-type]


def settings() -> dict[str, Setting]:
    """Every field of ``Config`` set from outside, in declaration order."""
    return {f.name: f.metadata["setting"] for f in attrs.fields(Config) if "setting" in f.metadata}


def markdown_table() -> str:
    """The settings table of ``docs/configuration.md``, generated from ``Config``."""
    rows = ["| environment | flag | default | meaning |", "| --- | --- | --- | --- |"]
    for meta in settings().values():
        env = " (or ".join(f"`{v}`" for v in meta.env) + ")" * (len(meta.env) - 1)
        flag = f"`{meta.flag}`" if meta.flag else ""
        rows.append(f"| {env} | {flag} | {meta.shown or ''} | {meta.meaning} |")
    return "\n".join(rows) + "\n"


#: The lines around the generated table in docs/configuration.md.
TABLE_START = "<!-- settings: generated from haflowd/config.py by `python -m haflowd.config --write` -->"
TABLE_END = "<!-- settings end -->"
CONFIG_DOC = Path("docs/configuration.md")


def with_table(doc: str) -> str:
    """``doc`` with the text between its table markers replaced by :func:`markdown_table`."""
    head, start, rest = doc.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise ValueError(f"the settings table needs the lines {TABLE_START!r} and {TABLE_END!r}")
    return f"{head}{TABLE_START}\n{markdown_table()}{TABLE_END}{tail}"


if __name__ == "__main__":
    import sys

    if sys.argv[1:] == ["--write"]:
        CONFIG_DOC.write_text(with_table(CONFIG_DOC.read_text()))
    else:
        print(markdown_table(), end="")
