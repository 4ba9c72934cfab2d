"""The Kubernetes objects of one agent run, as plain dicts (EXPERIMENTAL).

Pure functions: a :class:`~haflowd.sandbox.protocol.SandboxSpec` and the
provider's :class:`KubeSettings` in, manifests out. Nothing here talks to a
cluster; :mod:`haflowd.sandbox.kubernetes.provider` sends what is built here.

One run is three objects, all named ``haflow-<run_id>``:

* a **Job** (``backoffLimit: 0``, created ``suspend: true``) whose one pod
  runs the agent under the restricted Pod Security profile;
* a **Secret** holding the run's secret values and its two one-time transfer
  tokens, owned by the Job (garbage-collected with it);
* a deny-all **NetworkPolicy** for the run's pod, owned by the Job, opening
  only TCP to the daemon's transfer address and port (when files travel) and
  the egress proxy (when the step has an egress allowlist).

DNS is never opened. A NetworkPolicy applies to the whole pod, so a DNS rule
meant for ``fetch`` and ``collect`` would also let the ``agent`` container,
which must have no network, send data out in DNS queries. When the daemon URL
names a host rather than an IP address, the pod instead gets a
``hostAliases`` entry mapping that name to the daemon's one address
(``daemon_cidr``, which must then be a single address): the name resolves
from ``/etc/hosts``, TLS still verifies it, and the policy opens TCP to that
address and port only.

Order of creation: the Job first, *suspended* (no pod exists yet), then the
Secret and NetworkPolicy with an ``ownerReference`` carrying the Job's uid,
then the Job is resumed. So no pod ever runs before its NetworkPolicy exists
or without its Secret, and deleting the Job removes everything.

How the files travel (every area is an ``emptyDir`` volume; see
:func:`~haflowd.sandbox.areas.plan_areas` for the ``aN`` layout):

1. **In**: the init container ``fetch`` (``transfer_image``: any image with
   ``sh``, ``tar`` and ``curl``, e.g. ``curlimages/curl``) mounts every area
   at ``/haflow/in/aN`` and runs :data:`FETCH_SCRIPT`: ``GET
   {daemon_url}/api/transfers/in`` with the in-token, piped into ``tar -x``.
2. **Run**: the container ``agent`` runs the agent image's own shell
   (``agent_shell``, ``/bin/sh``) with :data:`AGENT_SCRIPT` and the step's
   command as positional arguments: it runs ``"$@"``, forwards SIGTERM to it
   (the shell is PID 1 and would otherwise ignore it), then writes the exit
   code to ``/haflow/done/exit`` and exits with it. The exit code the
   provider reports is the ``agent`` container's terminated state.
3. **Out** (only when an area is writable): the container ``collect``
   (``transfer_image``) runs :data:`COLLECT_SCRIPT`: it waits for
   ``/haflow/done/exit``, then ``tar -c`` of the writable areas (mounted
   read-only at ``/haflow/out/aN``; their names are its positional
   arguments) is ``PUT`` to ``{daemon_url}/api/transfers/out`` with the
   out-token.

The scripts are constants. Data reaches them only through environment
variables and positional arguments, never by interpolation. Tokens come from
the Secret (``secretKeyRef``) and reach ``curl`` through a here-document as a
``--config`` file, never through its arguments.

What Kubernetes cannot express that the Docker provider does: a per-pod
process limit (``--pids-limit``; the kubelet's ``podPidsLimit`` is a node
setting), an init process reaping zombies (``--init``), and ``--memory-swap``
(swap is a node setting).
"""

from __future__ import annotations

import base64
import ipaddress
import math
import posixpath
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import attrs

from ..areas import AreaPlan, plan_areas
from ..protocol import LABEL_INSTANCE, LABEL_RUN, SandboxError, SandboxSpec

Manifest = dict[str, Any]

#: Containers of a run's pod.
AGENT = "agent"
FETCH = "fetch"
COLLECT = "collect"

#: Keys of the run's Secret holding the one-time transfer tokens.
TOKEN_IN_KEY = "haflow.transfer-in"  # noqa: S105 (a key name)
TOKEN_OUT_KEY = "haflow.transfer-out"  # noqa: S105 (a key name)
#: Prefix of the Secret's keys holding the step's secret values.
SECRET_KEY_PREFIX = "env."  # noqa: S105 (a key prefix)

DEFAULT_TRANSFER_IMAGE = "curlimages/curl:8.11.0"

#: Where the agent's wrapper writes the exit code and ``collect`` waits for it.
DONE_DIR = "/haflow/done"
IN_DIR = "/haflow/in"
OUT_DIR = "/haflow/out"
CA_DIR = "/haflow/ca"

#: Runs the step's command (``"$@"``), passes SIGTERM/SIGINT on to it, records its exit code.
#: ``wait`` is interrupted by a trapped signal (status > 128): it is repeated while the child lives.
#: Its stderr is silenced: the shell reports a signalled background job there ("Terminated"),
#: which would land in the agent's log as a line the agent never wrote.
AGENT_SCRIPT = """\
"$@" &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
  wait "$child" 2>/dev/null
  code=$?
  kill -0 "$child" 2>/dev/null || break
done
printf '%s\\n' "$code" > /haflow/done/exit
exit "$code"
"""

#: Fetches every area as one tar stream. Env: HAFLOW_TRANSFER_URL, HAFLOW_TRANSFER_TOKEN, HAFLOW_CA_FILE (optional).
#: No ``--retry``: the token is good once, and a retried stream would reach ``tar`` spliced.
FETCH_SCRIPT = """\
set -eu
set -o pipefail
curl --fail --silent --show-error --proto =https \\
  ${HAFLOW_CA_FILE:+--cacert "$HAFLOW_CA_FILE"} --config /dev/fd/3 \\
  "$HAFLOW_TRANSFER_URL" 3<<EOF | tar -x -C /haflow/in
header = "Authorization: Bearer $HAFLOW_TRANSFER_TOKEN"
EOF
"""

#: Waits for the agent's exit, then sends the writable areas (positional arguments) back as one tar stream.
#: A file or folder the agent left unreadable to itself would be missing from the stream while the
#: daemon took the rest as the whole area (deleting it there): then nothing is sent, and collect fails.
COLLECT_SCRIPT = """\
set -eu
while [ ! -s /haflow/done/exit ]; do sleep 1; done
cd /haflow/out
unreadable=$(find "$@" \\( -type d ! -perm -500 \\) -o \\( -type f ! -perm -400 \\) 2>/dev/null | head -n 1)
if [ -n "$unreadable" ]; then
  printf 'haflow: the agent left %s unreadable: nothing is sent back\\n' "$unreadable" >&2
  exit 3
fi
set -o pipefail
tar -c -C /haflow/out "$@" | curl --fail --silent --show-error --proto =https \\
  ${HAFLOW_CA_FILE:+--cacert "$HAFLOW_CA_FILE"} --config /dev/fd/3 \\
  -X PUT -H 'Content-Type: application/x-tar' --upload-file - "$HAFLOW_TRANSFER_URL" 3<<EOF
header = "Authorization: Bearer $HAFLOW_TRANSFER_TOKEN"
EOF
"""

# Kubernetes object names (DNS-1123 labels) and label values.
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
# A hostAliases host name (a DNS-1123 subdomain): dot-separated labels, at most 253 characters.
_HOSTNAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\Z")
_LABEL_VALUE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
# Pod names are the Job's name plus "-" and five characters, within 63.
_MAX_JOB_NAME = 52
_DOCKER_MEMORY = re.compile(r"(\d+)([bkmg]?)\Z", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_ENV_RESERVED = frozenset({"HAFLOW_TRANSFER_URL", "HAFLOW_TRANSFER_TOKEN", "HAFLOW_CA_FILE"})


@attrs.frozen
class KubeSettings:
    """How runs look in one cluster: everything a manifest needs besides the spec."""

    #: The HTTPS address pods reach the daemon's transfer endpoints at.
    daemon_url: str
    namespace: str = "default"
    #: Labels every object with the daemon installation (see :func:`haflowd.sandbox.protocol.instance_id`).
    instance: str | None = None
    #: Any image with ``sh``, ``tar`` and ``curl`` (busybox ``sh`` for ``pipefail``).
    transfer_image: str = DEFAULT_TRANSFER_IMAGE
    #: The agent image's shell that wraps the step's command.
    agent_shell: str = "/bin/sh"
    run_as_user: int = 65534
    run_as_group: int = 65534
    #: Seconds a finished Job (and its pod's logs) stays: long enough to collect after a daemon restart.
    ttl_seconds_after_finished: int = 3600
    #: Seconds a pod may wait for a node and its images before the Job's deadline counts it against the run.
    pending_seconds: int = 1800
    #: SIGTERM to SIGKILL when a run is stopped (Kubernetes fixes it at creation).
    termination_grace_seconds: int = 10
    #: Size of the in-memory ``/tmp`` (the agent's HOME), counted against its memory limit.
    tmp_size: str = "256Mi"
    #: A ConfigMap in the namespace holding the CA bundle that signed the daemon's certificate (key ``ca_key``).
    ca_configmap: str | None = None
    ca_key: str = "ca.crt"
    #: Where pods reach the daemon, for the NetworkPolicy (``HAFLOW_KUBE_DAEMON_CIDR``; default: the
    #: daemon URL's IP address). A CIDR or a bare IP address (normalised to ``/32`` or ``/128``).
    #: Required when the URL names a host, and then a single address: pods get no DNS, so the name
    #: is mapped to this address by a ``hostAliases`` entry, and the NetworkPolicy opens only it.
    daemon_cidr: str | None = None
    #: ``http://host:port`` of an egress proxy that enforces allowlists, and the NetworkPolicy peer it is.
    #: Pods get no DNS: a host name here resolves only if the agent image itself maps it.
    egress_proxy_url: str | None = None
    egress_proxy_peer: Mapping[str, Any] | None = None
    #: Whether a step asking for an unrestricted network may have one.
    allow_network: bool = False
    #: Resources of the fetch and collect containers.
    transfer_memory: str = "128Mi"
    transfer_cpu: str = "250m"
    image_pull_secrets: tuple[str, ...] = ()

    def __attrs_post_init__(self) -> None:
        parts = urlsplit(self.daemon_url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"The daemon URL for Kubernetes pods must be https://host[:port], not {self.daemon_url!r}")
        if not _NAME.match(self.namespace):
            raise ValueError(f"Invalid Kubernetes namespace {self.namespace!r}")
        if self.ca_configmap is not None and not _NAME.match(self.ca_configmap):
            raise ValueError(f"Invalid ConfigMap name {self.ca_configmap!r}")
        if (self.egress_proxy_url is None) != (self.egress_proxy_peer is None):
            raise ValueError("An egress proxy needs both its URL and its NetworkPolicy peer")
        if self.instance is not None and not _LABEL_VALUE.match(self.instance):
            raise ValueError(f"Invalid instance label {self.instance!r}")
        host = parts.hostname
        address = _ip_address(host)
        if address is None and (len(host) > 253 or not _HOSTNAME.match(host)):
            raise ValueError(f"The daemon URL's host {host!r} is neither an IP address nor a DNS name")
        if self.daemon_cidr is not None:
            try:
                network = ipaddress.ip_network(self.daemon_cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(
                    f"The daemon's address for pods (HAFLOW_KUBE_DAEMON_CIDR) must be an IP address or a CIDR, "
                    f"not {self.daemon_cidr!r}"
                ) from None
            if address is None and network.num_addresses != 1:
                raise ValueError(
                    f"The daemon URL names the host {host!r}, so HAFLOW_KUBE_DAEMON_CIDR must be the single "
                    f"address pods reach it at (an IP address, /32 or /128), not {self.daemon_cidr!r}: run pods "
                    "get no DNS (it would let the agent send data out), so the name is mapped to one address "
                    "in the pod's /etc/hosts and the NetworkPolicy opens only that address"
                )
            object.__setattr__(self, "daemon_cidr", str(network))

    @property
    def transfer_url(self) -> str:
        return self.daemon_url.rstrip("/") + "/api/transfers"

    def daemon_peer(self) -> tuple[dict[str, Any], int]:
        """The daemon's NetworkPolicy peer and its port."""
        parts = urlsplit(self.daemon_url)
        port = parts.port or 443
        cidr = self.daemon_cidr
        if cidr is None:
            address = _ip_address(parts.hostname or "")
            if address is None:
                raise SandboxError(
                    f"The daemon is reached at {parts.hostname!r}, a name: set the one address pods reach it at "
                    "(HAFLOW_KUBE_DAEMON_CIDR) so the pod can resolve the name without DNS and the run's "
                    "NetworkPolicy can allow it"
                )
            cidr = f"{address}/{address.max_prefixlen}"
        return {"ipBlock": {"cidr": cidr}}, port

    def daemon_host_alias(self) -> dict[str, Any] | None:
        """The pod's ``hostAliases`` entry mapping the daemon URL's host name to its one address (None for an IP)."""
        host = urlsplit(self.daemon_url).hostname or ""
        if _ip_address(host) is not None:
            return None
        peer, _ = self.daemon_peer()  # refuses a name without an address
        network = ipaddress.ip_network(peer["ipBlock"]["cidr"])
        assert network.num_addresses == 1  # checked in __attrs_post_init__
        return {"ip": str(network.network_address), "hostnames": [host]}


def _ip_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def job_name(run_id: str) -> str:
    """The name of a run's Job, Secret and NetworkPolicy."""
    name = f"haflow-{run_id}"
    if not _NAME.match(name) or len(name) > _MAX_JOB_NAME:
        raise SandboxError(f"The run id {run_id!r} cannot name a Kubernetes Job")
    return name


def run_labels(spec: SandboxSpec, settings: KubeSettings) -> dict[str, str]:
    """The haflow labels of every object of the run, checked as Kubernetes label values."""
    labels = dict(spec.labels)
    if settings.instance is not None:
        labels[LABEL_INSTANCE] = settings.instance
    for key, value in labels.items():
        if len(value) > 63 or not _LABEL_VALUE.match(value):
            raise SandboxError(f"{key} {value!r} cannot be a Kubernetes label value")
    return labels


def selector(run_id: str, settings: KubeSettings) -> dict[str, str]:
    """The labels that pick out one run's objects (and only this installation's)."""
    found = {LABEL_RUN: run_id}
    if settings.instance is not None:
        found[LABEL_INSTANCE] = settings.instance
    return found


def memory_bytes(value: str) -> int:
    """A Docker memory size (``512m``, ``2g``, ``1048576``) in bytes."""
    match = _DOCKER_MEMORY.match(value.strip())
    if match is None:
        raise SandboxError(f"Cannot read the memory limit {value!r}")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _resources(memory: str, cpu: str) -> dict[str, Any]:
    # Requests equal to limits: the pod is "Guaranteed", the last to be evicted under pressure.
    return {"limits": {"memory": memory, "cpu": cpu}, "requests": {"memory": memory, "cpu": cpu}}


def _container_security() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _ca(settings: KubeSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """The CA bundle's volume, mount and environment (none without ``ca_configmap``)."""
    if settings.ca_configmap is None:
        return [], [], []
    volume = {
        "name": "ca",
        "configMap": {"name": settings.ca_configmap, "items": [{"key": settings.ca_key, "path": "ca.crt"}]},
    }
    mount = {"name": "ca", "mountPath": CA_DIR, "readOnly": True}
    env = {"name": "HAFLOW_CA_FILE", "value": f"{CA_DIR}/ca.crt"}
    return [volume], [mount], [env]


def _transfer_env(name: str, url: str, key: str) -> list[dict[str, Any]]:
    return [
        {"name": "HAFLOW_TRANSFER_URL", "value": url},
        {"name": "HAFLOW_TRANSFER_TOKEN", "valueFrom": {"secretKeyRef": {"name": name, "key": key}}},
    ]


def _agent_env(spec: SandboxSpec, name: str, settings: KubeSettings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    for key, value in spec.env.items():
        if not _ENV_NAME.match(key) or key in _ENV_RESERVED:
            raise SandboxError(f"Agent environment variable {key!r} is not a valid name")
        env.append({"name": key, "value": value})
    if "HOME" not in spec.env:
        # A read-only root leaves no home: CLIs keep their state in /tmp.
        env.append({"name": "HOME", "value": "/tmp"})  # noqa: S108 (an emptyDir inside the pod)
    if spec.egress:
        assert settings.egress_proxy_url is not None
        for proxy in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
            if proxy not in spec.env:
                env.append({"name": proxy, "value": settings.egress_proxy_url})
    for key in spec.secrets:
        if not _ENV_NAME.match(key) or key in _ENV_RESERVED:
            raise SandboxError(f"Secret {key!r} is not a valid environment variable name")
        # By reference only: the value lives in the run's Secret.
        env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": SECRET_KEY_PREFIX + key}}})
    return env


def _check_spec(spec: SandboxSpec, settings: KubeSettings) -> None:
    if not spec.image or spec.image.startswith("-") or any(c.isspace() for c in spec.image):
        raise SandboxError(f"Invalid image {spec.image!r}")
    if not spec.command:
        raise SandboxError("A Kubernetes run needs a command")
    if spec.network and not settings.allow_network:
        raise SandboxError(
            "This step asks for an unrestricted network, which the Kubernetes provider is not configured to allow"
        )
    if spec.local_ports:
        raise SandboxError("Ports of the daemon's host cannot be reached from a Kubernetes pod")
    if spec.egress and settings.egress_proxy_url is None:
        # Never a fallback to an open network.
        raise SandboxError("This step has an egress allowlist, but no egress proxy is configured for Kubernetes")
    if not posixpath.isabs(spec.workdir):
        raise SandboxError(f"The working folder {spec.workdir!r} is not an absolute path")


def job_manifest(spec: SandboxSpec, settings: KubeSettings, plans: Sequence[AreaPlan] | None = None) -> Manifest:
    """The run's Job, created suspended (see the module's docstring for the pod's design)."""
    _check_spec(spec, settings)
    plans = plan_areas(spec.mounts) if plans is None else plans
    name = job_name(spec.run_id)
    labels = run_labels(spec, settings)
    limits = spec.limits
    memory = str(memory_bytes(limits.memory))
    cpu = f"{max(1, round(float(limits.cpus) * 1000))}m"
    ca_volumes, ca_mounts, ca_env = _ca(settings)
    writable = [plan for plan in plans if plan.writable]

    volumes: list[dict[str, Any]] = [
        {"name": "tmp", "emptyDir": {"medium": "Memory", "sizeLimit": settings.tmp_size}},
        {"name": "done", "emptyDir": {"medium": "Memory", "sizeLimit": "1Mi"}},
        *ca_volumes,
    ]
    agent_mounts: list[dict[str, Any]] = [
        {"name": "tmp", "mountPath": "/tmp"},  # noqa: S108 (an emptyDir inside the pod)
        {"name": "done", "mountPath": DONE_DIR},
    ]
    for plan in plans:
        volumes.append({"name": plan.member, "emptyDir": {"sizeLimit": str(plan.mount.max_bytes)}})
        mount: dict[str, Any] = {"name": plan.member, "mountPath": plan.target, "readOnly": not plan.writable}
        if plan.file_name is not None:
            mount["subPath"] = plan.file_name
        agent_mounts.append(mount)

    agent = {
        "name": AGENT,
        "image": spec.image,
        "command": [settings.agent_shell, "-c", AGENT_SCRIPT, "haflow", *spec.command],
        "workingDir": spec.workdir,
        "env": _agent_env(spec, name, settings),
        "volumeMounts": agent_mounts,
        "resources": _resources(memory, cpu),
        "securityContext": _container_security(),
    }
    transfer_resources = _resources(settings.transfer_memory, settings.transfer_cpu)
    containers = [agent]
    if writable:
        containers.append(
            {
                "name": COLLECT,
                "image": settings.transfer_image,
                "command": ["sh", "-c", COLLECT_SCRIPT, "haflow-collect", *[plan.member for plan in writable]],
                "env": [*_transfer_env(name, f"{settings.transfer_url}/out", TOKEN_OUT_KEY), *ca_env],
                "volumeMounts": [
                    {"name": "done", "mountPath": DONE_DIR, "readOnly": True},
                    *[{"name": p.member, "mountPath": f"{OUT_DIR}/{p.member}", "readOnly": True} for p in writable],
                    *ca_mounts,
                ],
                "resources": transfer_resources,
                "securityContext": _container_security(),
            }
        )
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_group,
            "fsGroup": settings.run_as_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": containers,
        "volumes": volumes,
    }
    if plans:
        pod_spec["initContainers"] = [
            {
                "name": FETCH,
                "image": settings.transfer_image,
                "command": ["sh", "-c", FETCH_SCRIPT],
                "env": [*_transfer_env(name, f"{settings.transfer_url}/in", TOKEN_IN_KEY), *ca_env],
                "volumeMounts": [
                    *[{"name": p.member, "mountPath": f"{IN_DIR}/{p.member}"} for p in plans],
                    *ca_mounts,
                ],
                "resources": transfer_resources,
                "securityContext": _container_security(),
            }
        ]
    if plans:
        # The daemon by name resolves from /etc/hosts: the pod has no DNS.
        alias = settings.daemon_host_alias()
        if alias is not None:
            pod_spec["hostAliases"] = [alias]
    if settings.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": secret} for secret in settings.image_pull_secrets]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": settings.namespace, "labels": labels},
        "spec": {
            "suspend": True,
            "backoffLimit": 0,
            # The supervisor stops a run at its time limit itself; this is the backstop
            # while the daemon is away, with room for scheduling and pulling images.
            "activeDeadlineSeconds": math.ceil(float(limits.timeout_seconds)) + settings.pending_seconds,
            "ttlSecondsAfterFinished": settings.ttl_seconds_after_finished,
            # An evicted or preempted pod fails the Job with reason PodFailurePolicy, naming the disruption.
            "podFailurePolicy": {
                "rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
            },
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def owner_reference(job: Mapping[str, Any]) -> dict[str, Any]:
    """An ``ownerReference`` to the created ``job`` (its uid comes from the API server)."""
    metadata = job.get("metadata") or {}
    uid = metadata.get("uid")
    if not uid:
        raise SandboxError("The created Job carries no uid")
    return {"apiVersion": "batch/v1", "kind": "Job", "name": metadata.get("name"), "uid": uid}


def secret_manifest(
    spec: SandboxSpec,
    settings: KubeSettings,
    *,
    tokens: Mapping[str, str],
    owner: Mapping[str, Any] | None = None,
) -> Manifest:
    """The run's Secret: its secret values and transfer ``tokens`` (by key), owned by the Job."""
    name = job_name(spec.run_id)
    data = {SECRET_KEY_PREFIX + key: value for key, value in spec.secrets.items()}
    data.update(tokens)
    metadata: dict[str, Any] = {"name": name, "namespace": settings.namespace, "labels": run_labels(spec, settings)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": metadata,
        "type": "Opaque",
        "immutable": True,
        "data": {key: base64.b64encode(value.encode()).decode("ascii") for key, value in data.items()},
    }


def network_policy_manifest(
    spec: SandboxSpec,
    settings: KubeSettings,
    plans: Sequence[AreaPlan] | None = None,
    *,
    owner: Mapping[str, Any] | None = None,
) -> Manifest:
    """Deny-all for the run's pod, but for the daemon's transfers and the egress proxy when needed; never DNS."""
    _check_spec(spec, settings)
    plans = plan_areas(spec.mounts) if plans is None else plans
    name = job_name(spec.run_id)
    egress: list[dict[str, Any]] = []
    if spec.network:
        egress.append({})  # allowed by settings.allow_network (checked above): anywhere
    if plans:
        peer, port = settings.daemon_peer()
        egress.append({"to": [peer], "ports": [{"protocol": "TCP", "port": port}]})
    if spec.egress:
        assert settings.egress_proxy_url is not None and settings.egress_proxy_peer is not None
        proxy_port = urlsplit(settings.egress_proxy_url).port or 3128
        egress.append({"to": [dict(settings.egress_proxy_peer)], "ports": [{"protocol": "TCP", "port": proxy_port}]})
    metadata: dict[str, Any] = {"name": name, "namespace": settings.namespace, "labels": run_labels(spec, settings)}
    if owner is not None:
        metadata["ownerReferences"] = [dict(owner)]
    policy_spec: dict[str, Any] = {
        "podSelector": {"matchLabels": selector(spec.run_id, settings)},
        "policyTypes": ["Ingress", "Egress"],
        "ingress": [],
    }
    policy_spec["egress"] = egress
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": metadata, "spec": policy_spec}
