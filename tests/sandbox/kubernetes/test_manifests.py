"""The Kubernetes manifests of a run: schema-valid, hardened, and free of secret values and command data."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]  # it ships no stubs or py.typed
import pytest

from haflowd.sandbox import Limits, Mount, SandboxError, SandboxSpec
from haflowd.sandbox.areas import plan_areas
from haflowd.sandbox.kubernetes.manifests import (
    AGENT,
    AGENT_SCRIPT,
    COLLECT,
    COLLECT_SCRIPT,
    FETCH,
    FETCH_SCRIPT,
    TOKEN_IN_KEY,
    TOKEN_OUT_KEY,
    KubeSettings,
    job_manifest,
    memory_bytes,
    network_policy_manifest,
    owner_reference,
    secret_manifest,
)

#: A Kubernetes version whose schemas the installed kubernetes-validate ships.
K8S_VERSION = "1.30.0"
SECRET_VALUE = "sk-live-very-secret-value-123"
TOKENS = {TOKEN_IN_KEY: "tok-in-abc", TOKEN_OUT_KEY: "tok-out-def"}
#: Command data that would do harm if it were ever pasted into a script.
HOSTILE = "'; rm -rf / #$(reboot)`id`"
SETTINGS = KubeSettings(daemon_url="https://10.0.0.5:4443", namespace="agents", instance="abc123def456")


@pytest.fixture
def areas(tmp_path: Path) -> dict[str, Path]:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    (artifacts / "raw-input.md").write_text("hello\n")
    prompt = tmp_path / "prompt.md"
    prompt.write_text("do it\n")
    return {"artifacts": artifacts, "prompt": prompt}


def make_spec(*mounts: Mount, **changes: Any) -> SandboxSpec:
    fields: dict[str, Any] = dict(
        mission_id="m-0000abcd",
        run_id="r-0000beef",
        step_id="implement",
        image="registry.example/haflow-agent:1",
        command=("sh", "-c", HOSTILE),
        mounts=mounts,
        env={"HAFLOW_STEP": "implement"},
        limits=Limits(memory="512m", cpus=0.5, pids=64, timeout_seconds=600),
    )
    fields.update(changes)
    return SandboxSpec(**fields)


def variants(areas: dict[str, Path]) -> dict[str, SandboxSpec]:
    artifacts = Mount(areas["artifacts"], "/mission/artifacts", name="artifacts")
    return {
        "plain": make_spec(artifacts),
        "secrets": make_spec(artifacts, secrets={"ANTHROPIC_API_KEY": SECRET_VALUE}),
        "egress": make_spec(artifacts, egress=("api.anthropic.com:443",)),
        "read-only": make_spec(Mount(areas["artifacts"], "/mission/artifacts", read_only=True)),
        "file": make_spec(artifacts, Mount(areas["prompt"], "/mission/prompt.md", read_only=True, name="prompt")),
        "no-areas": make_spec(),
    }


EGRESS_SETTINGS = KubeSettings(
    daemon_url="https://haflow.example:4443",
    namespace="agents",
    instance="abc123def456",
    daemon_cidr="10.0.0.5/32",
    egress_proxy_url="http://egress-proxy.haflow.svc:3128",
    egress_proxy_peer={
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "haflow"}},
        "podSelector": {"matchLabels": {"app": "egress-proxy"}},
    },
    ca_configmap="haflow-ca",
)


#: The daemon by name, its address given bare (normalised to /32), without CA or proxy.
NAMED_SETTINGS = KubeSettings(daemon_url="https://haflow.example:4443", namespace="agents", daemon_cidr="10.0.0.5")
#: The daemon by name over IPv6.
NAMED_V6_SETTINGS = KubeSettings(daemon_url="https://haflow.example", namespace="agents", daemon_cidr="fd00::5/128")
ALL_SETTINGS = [SETTINGS, EGRESS_SETTINGS, NAMED_SETTINGS, NAMED_V6_SETTINGS]
ALL_SETTINGS_IDS = ["ip-daemon", "named-daemon-ca-proxy", "named-daemon-bare-ip", "named-daemon-v6"]


def allows_dns(rule: dict[str, Any]) -> bool:
    """Whether one egress rule lets anything reach port 53 (a rule without ports allows every port)."""
    ports = rule.get("ports")
    if not ports:
        return True
    return any(
        port.get("port") in (53, "53", "dns", "domain")
        or (isinstance(port.get("port"), int) and port["port"] <= 53 <= port.get("endPort", port["port"]))
        for port in ports
    )


def manifests(spec: SandboxSpec, settings: KubeSettings = EGRESS_SETTINGS) -> list[dict[str, Any]]:
    job = job_manifest(spec, settings)
    uid = "0b5c2c8e-1111-2222-3333-444455556666"
    owner = owner_reference({"metadata": {"name": job["metadata"]["name"], "uid": uid}})
    return [
        job,
        secret_manifest(spec, settings, tokens=TOKENS, owner=owner),
        network_policy_manifest(spec, settings, owner=owner),
    ]


def pod_spec(job: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def container(job: dict[str, Any], name: str) -> dict[str, Any]:
    spec = pod_spec(job)
    found = [c for c in spec["containers"] + spec.get("initContainers", []) if c["name"] == name]
    assert len(found) == 1, name
    one: dict[str, Any] = found[0]
    return one


class TestSchema:
    @pytest.mark.parametrize("variant", ["plain", "secrets", "egress", "read-only", "file", "no-areas"])
    @pytest.mark.parametrize("settings", ALL_SETTINGS, ids=ALL_SETTINGS_IDS)
    def test_every_manifest_validates(self, areas: dict[str, Path], variant: str, settings: KubeSettings) -> None:
        """Job, Secret and NetworkPolicy of every variant validate strictly against the Kubernetes schemas."""
        spec = variants(areas)[variant]
        if spec.egress and settings.egress_proxy_url is None:
            with pytest.raises(SandboxError, match="egress proxy"):
                job_manifest(spec, settings)
            return
        built = manifests(spec, settings)
        assert [m["kind"] for m in built] == ["Job", "Secret", "NetworkPolicy"]
        for manifest in built:
            kubernetes_validate.validate(manifest, K8S_VERSION, strict=True)

    def test_validator_is_strict(self, areas: dict[str, Path]) -> None:
        """The validator really checks: an unknown field in the pod is refused."""
        job = job_manifest(variants(areas)["plain"], SETTINGS)
        pod_spec(job)["privilegedMode"] = True
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(job, K8S_VERSION, strict=True)


class TestJob:
    def test_job_fields(self, areas: dict[str, Path]) -> None:
        """One Job per run, named for it, suspended, never retried, with deadline, TTL and a disruption policy."""
        job = job_manifest(variants(areas)["plain"], SETTINGS)
        assert job["metadata"]["name"] == "haflow-r-0000beef"
        assert job["metadata"]["namespace"] == "agents"
        assert job["metadata"]["labels"] == {
            "haflow.mission_id": "m-0000abcd",
            "haflow.run_id": "r-0000beef",
            "haflow.step_id": "implement",
            "haflow.instance": "abc123def456",
        }
        spec = job["spec"]
        assert spec["suspend"] is True
        assert spec["backoffLimit"] == 0
        assert spec["activeDeadlineSeconds"] == 600 + SETTINGS.pending_seconds
        assert spec["ttlSecondsAfterFinished"] == 3600
        assert spec["podFailurePolicy"] == {
            "rules": [{"action": "FailJob", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}]
        }
        assert pod_spec(job)["restartPolicy"] == "Never"
        assert spec["template"]["metadata"]["labels"] == job["metadata"]["labels"]

    @pytest.mark.parametrize("variant", ["plain", "secrets", "egress", "read-only", "file", "no-areas"])
    def test_restricted_profile(self, areas: dict[str, Path], variant: str) -> None:
        """Every pod and every container follows the restricted Pod Security profile, set explicitly."""
        job = job_manifest(variants(areas)[variant], EGRESS_SETTINGS)
        spec = pod_spec(job)
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": 65534,
            "runAsGroup": 65534,
            "fsGroup": 65534,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        every = spec["containers"] + spec.get("initContainers", [])
        assert every
        for c in every:
            security = c["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
            assert security["runAsNonRoot"] is True
            assert c["resources"]["limits"]["memory"] and c["resources"]["limits"]["cpu"]

    def test_user_is_configurable(self, areas: dict[str, Path]) -> None:
        """runAsUser, runAsGroup and fsGroup follow the settings."""
        settings = KubeSettings(daemon_url="https://10.0.0.5", run_as_user=1000, run_as_group=2000)
        security = pod_spec(job_manifest(variants(areas)["plain"], settings))["securityContext"]
        assert (security["runAsUser"], security["runAsGroup"], security["fsGroup"]) == (1000, 2000, 2000)

    def test_limits(self, areas: dict[str, Path]) -> None:
        """Memory and CPUs come from the spec's limits, requested as much as limited."""
        agent = container(job_manifest(variants(areas)["plain"], SETTINGS), AGENT)
        assert agent["resources"] == {
            "limits": {"memory": str(512 * 1024 * 1024), "cpu": "500m"},
            "requests": {"memory": str(512 * 1024 * 1024), "cpu": "500m"},
        }

    @pytest.mark.parametrize(("text", "size"), [("512m", 512 * 2**20), ("2g", 2 * 2**30), ("64k", 65536), ("100", 100)])
    def test_memory_sizes(self, text: str, size: int) -> None:
        """Docker memory sizes are read as binary units."""
        assert memory_bytes(text) == size

    def test_tmpfs_home(self, areas: dict[str, Path]) -> None:
        """/tmp is an in-memory emptyDir with a size limit, and HOME points at it."""
        job = job_manifest(variants(areas)["plain"], SETTINGS)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["tmp"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "256Mi"}
        agent = container(job, AGENT)
        assert {"name": "tmp", "mountPath": "/tmp"} in agent["volumeMounts"]
        assert {"name": "HOME", "value": "/tmp"} in agent["env"]

    def test_agent_wrapper(self, areas: dict[str, Path]) -> None:
        """The agent's command runs as positional arguments of a constant script; its data never enters the script."""
        spec = variants(areas)["plain"]
        agent = container(job_manifest(spec, SETTINGS), AGENT)
        assert agent["command"] == ["/bin/sh", "-c", AGENT_SCRIPT, "haflow", "sh", "-c", HOSTILE]
        assert agent["workingDir"] == "/mission"
        assert agent["image"] == spec.image
        for script in (AGENT_SCRIPT, FETCH_SCRIPT, COLLECT_SCRIPT):
            assert HOSTILE not in script and "rm -rf" not in script

    def test_scripts_are_constant(self, areas: dict[str, Path]) -> None:
        """Every ``sh -c`` script in every variant is one of the three constants."""
        for spec in variants(areas).values():
            if spec.egress:
                job = job_manifest(spec, EGRESS_SETTINGS)
            else:
                job = job_manifest(spec, SETTINGS)
            spec_ = pod_spec(job)
            for c in spec_["containers"] + spec_.get("initContainers", []):
                assert c["command"][1] == "-c"
                assert c["command"][2] in (AGENT_SCRIPT, FETCH_SCRIPT, COLLECT_SCRIPT)
                assert c["command"][2] == {AGENT: AGENT_SCRIPT, FETCH: FETCH_SCRIPT, COLLECT: COLLECT_SCRIPT}[c["name"]]


class TestAreas:
    def test_folder_and_file_areas(self, areas: dict[str, Path]) -> None:
        """A folder area is an emptyDir at its target; a file area is mounted by subPath; read-only stays read-only."""
        job = job_manifest(variants(areas)["file"], SETTINGS)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert "emptyDir" in volumes["a0"] and "emptyDir" in volumes["a1"]
        mounts = {m["name"]: m for m in container(job, AGENT)["volumeMounts"]}
        assert mounts["a0"] == {"name": "a0", "mountPath": "/mission/artifacts", "readOnly": False}
        prompt = {"name": "a1", "mountPath": "/mission/prompt.md", "readOnly": True, "subPath": "prompt.md"}
        assert mounts["a1"] == prompt

    def test_fetch_brings_every_area(self, areas: dict[str, Path]) -> None:
        """The init container mounts every area at /haflow/in/aN and takes its token from the Secret."""
        job = job_manifest(variants(areas)["file"], SETTINGS)
        fetch = container(job, FETCH)
        assert fetch["image"] == "curlimages/curl:8.11.0"
        assert fetch["command"] == ["sh", "-c", FETCH_SCRIPT]
        assert [m["mountPath"] for m in fetch["volumeMounts"]] == ["/haflow/in/a0", "/haflow/in/a1"]
        env = {e["name"]: e for e in fetch["env"]}
        assert env["HAFLOW_TRANSFER_URL"]["value"] == "https://10.0.0.5:4443/api/transfers/in"
        assert env["HAFLOW_TRANSFER_TOKEN"]["valueFrom"] == {
            "secretKeyRef": {"name": "haflow-r-0000beef", "key": TOKEN_IN_KEY}
        }

    def test_collect_sends_writable_areas_only(self, areas: dict[str, Path]) -> None:
        """collect waits for the exit file and sends only the writable areas, named as arguments."""
        job = job_manifest(variants(areas)["file"], SETTINGS)
        collect = container(job, COLLECT)
        assert collect["command"] == ["sh", "-c", COLLECT_SCRIPT, "haflow-collect", "a0"]
        assert {"name": "done", "mountPath": "/haflow/done", "readOnly": True} in collect["volumeMounts"]
        assert {"name": "a0", "mountPath": "/haflow/out/a0", "readOnly": True} in collect["volumeMounts"]
        assert all(m["name"] != "a1" for m in collect["volumeMounts"])
        env = {e["name"]: e for e in collect["env"]}
        assert env["HAFLOW_TRANSFER_URL"]["value"].endswith("/api/transfers/out")
        assert env["HAFLOW_TRANSFER_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == TOKEN_OUT_KEY

    def test_read_only_areas_need_no_collect(self, areas: dict[str, Path]) -> None:
        """Without a writable area there is no collect container; without areas no fetch either."""
        job = job_manifest(variants(areas)["read-only"], SETTINGS)
        assert [c["name"] for c in pod_spec(job)["containers"]] == [AGENT]
        assert [c["name"] for c in pod_spec(job)["initContainers"]] == [FETCH]
        bare = job_manifest(variants(areas)["no-areas"], SETTINGS)
        assert [c["name"] for c in pod_spec(bare)["containers"]] == [AGENT]
        assert "initContainers" not in pod_spec(bare)

    def test_ca_bundle(self, areas: dict[str, Path]) -> None:
        """A configured CA ConfigMap is mounted into the transfer containers and named by HAFLOW_CA_FILE."""
        job = job_manifest(variants(areas)["plain"], EGRESS_SETTINGS)
        volumes = {v["name"]: v for v in pod_spec(job)["volumes"]}
        assert volumes["ca"]["configMap"]["name"] == "haflow-ca"
        for name in (FETCH, COLLECT):
            c = container(job, name)
            assert {"name": "HAFLOW_CA_FILE", "value": "/haflow/ca/ca.crt"} in c["env"]
            assert {"name": "ca", "mountPath": "/haflow/ca", "readOnly": True} in c["volumeMounts"]
        assert all(m["name"] != "ca" for m in container(job, AGENT)["volumeMounts"])


class TestSecrets:
    def test_values_only_in_the_secret(self, areas: dict[str, Path]) -> None:
        """Secret values and tokens appear in the Secret (base64) and nowhere in the Job or NetworkPolicy."""
        spec = variants(areas)["secrets"]
        job, secret, policy = manifests(spec)
        for value in (SECRET_VALUE, *TOKENS.values()):
            assert value not in json.dumps(job)
            assert value not in json.dumps(policy)
            assert base64.b64encode(value.encode()).decode() not in json.dumps(job)
        data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
        assert data == {"env.ANTHROPIC_API_KEY": SECRET_VALUE, **TOKENS}
        assert {
            "name": "ANTHROPIC_API_KEY",
            "valueFrom": {"secretKeyRef": {"name": "haflow-r-0000beef", "key": "env.ANTHROPIC_API_KEY"}},
        } in container(job, AGENT)["env"]

    def test_secret_owned_by_job(self, areas: dict[str, Path]) -> None:
        """The Secret and NetworkPolicy carry an ownerReference to the created Job's uid."""
        _, secret, policy = manifests(variants(areas)["secrets"])
        for manifest in (secret, policy):
            assert manifest["metadata"]["ownerReferences"] == [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": "haflow-r-0000beef",
                    "uid": "0b5c2c8e-1111-2222-3333-444455556666",
                }
            ]
        assert secret["immutable"] is True

    def test_reserved_names_refused(self, areas: dict[str, Path]) -> None:
        """A secret or setting named like the transfer variables is refused."""
        with pytest.raises(SandboxError, match="HAFLOW_TRANSFER_TOKEN"):
            job_manifest(make_spec(secrets={"HAFLOW_TRANSFER_TOKEN": "x"}), SETTINGS)
        with pytest.raises(SandboxError, match="not a valid"):
            job_manifest(make_spec(env={"BAD NAME": "x"}), SETTINGS)


class TestNetworkPolicy:
    def test_deny_all_without_areas(self) -> None:
        """A run without areas gets no way in and no way out."""
        policy = network_policy_manifest(make_spec(), SETTINGS)
        assert policy["spec"] == {
            "podSelector": {"matchLabels": {"haflow.run_id": "r-0000beef", "haflow.instance": "abc123def456"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [],
            "egress": [],
        }

    def test_daemon_by_address(self, areas: dict[str, Path]) -> None:
        """Transfers open exactly the daemon's address and port, and no DNS when the URL holds an address."""
        policy = network_policy_manifest(variants(areas)["plain"], SETTINGS)
        assert policy["spec"]["egress"] == [
            {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 4443}]}
        ]

    def test_daemon_by_name_and_proxy(self, areas: dict[str, Path]) -> None:
        """A daemon reached by name opens its one address, and no DNS; an egress step adds the proxy and its env."""
        spec = variants(areas)["egress"]
        policy = network_policy_manifest(spec, EGRESS_SETTINGS)
        assert policy["spec"]["egress"] == [
            {"to": [{"ipBlock": {"cidr": "10.0.0.5/32"}}], "ports": [{"protocol": "TCP", "port": 4443}]},
            {"to": [dict(EGRESS_SETTINGS.egress_proxy_peer or {})], "ports": [{"protocol": "TCP", "port": 3128}]},
        ]
        env = container(job_manifest(spec, EGRESS_SETTINGS), AGENT)["env"]
        assert {"name": "HTTPS_PROXY", "value": "http://egress-proxy.haflow.svc:3128"} in env

    @pytest.mark.parametrize("variant", ["plain", "secrets", "egress", "read-only", "file", "no-areas"])
    @pytest.mark.parametrize("settings", ALL_SETTINGS, ids=ALL_SETTINGS_IDS)
    def test_never_dns(self, areas: dict[str, Path], variant: str, settings: KubeSettings) -> None:
        """No egress rule of any variant reaches port 53, nor any peer but an address or the egress proxy."""
        spec = variants(areas)[variant]
        if spec.egress and settings.egress_proxy_url is None:
            return
        policy = network_policy_manifest(spec, settings)
        for rule in policy["spec"]["egress"]:
            assert not allows_dns(rule), rule
            for peer in rule["to"]:
                assert "ipBlock" in peer or peer == dict(settings.egress_proxy_peer or {}), peer
        assert "53" not in json.dumps(policy["spec"]["egress"])
        assert "dns" not in json.dumps(policy).lower()

    @pytest.mark.parametrize(
        ("settings", "ip", "cidr"),
        [(EGRESS_SETTINGS, "10.0.0.5", "10.0.0.5/32"), (NAMED_SETTINGS, "10.0.0.5", "10.0.0.5/32"),
         (NAMED_V6_SETTINGS, "fd00::5", "fd00::5/128")],
        ids=["cidr-32", "bare-ip", "v6"],
    )  # fmt: skip
    def test_named_daemon_host_alias(self, areas: dict[str, Path], settings: KubeSettings, ip: str, cidr: str) -> None:
        """A daemon by name resolves from the pod's hostAliases to its one address, the only one the policy opens."""
        spec = variants(areas)["plain"]
        assert settings.daemon_cidr == cidr
        assert pod_spec(job_manifest(spec, settings))["hostAliases"] == [{"ip": ip, "hostnames": ["haflow.example"]}]
        port = urlsplit(settings.daemon_url).port or 443
        assert network_policy_manifest(spec, settings)["spec"]["egress"][0] == {
            "to": [{"ipBlock": {"cidr": cidr}}],
            "ports": [{"protocol": "TCP", "port": port}],
        }
        # The transfer containers still use the name, so TLS verifies it.
        fetch = container(job_manifest(spec, settings), FETCH)
        assert {"name": "HAFLOW_TRANSFER_URL", "value": f"{settings.transfer_url}/in"} in fetch["env"]
        assert "haflow.example" in settings.transfer_url

    def test_no_host_alias_by_address_or_without_transfers(self, areas: dict[str, Path]) -> None:
        """A daemon by IP address needs no hostAliases; nor does a run without areas (it never reaches the daemon)."""
        assert "hostAliases" not in pod_spec(job_manifest(variants(areas)["plain"], SETTINGS))
        assert "hostAliases" not in pod_spec(job_manifest(variants(areas)["no-areas"], NAMED_SETTINGS))
        wide = KubeSettings(daemon_url="https://10.0.0.5", daemon_cidr="10.0.0.0/24")
        assert "hostAliases" not in pod_spec(job_manifest(variants(areas)["plain"], wide))
        assert network_policy_manifest(variants(areas)["plain"], wide)["spec"]["egress"] == [
            {"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}], "ports": [{"protocol": "TCP", "port": 443}]}
        ]

    @pytest.mark.parametrize("cidr", ["10.0.0.0/24", "10.0.0.4/31", "fd00::/64", "0.0.0.0/0"])
    def test_named_daemon_wide_cidr_refused(self, cidr: str) -> None:
        """A daemon by name needs exactly one address: a wider range is refused, saying why."""
        with pytest.raises(ValueError, match="single address") as raised:
            KubeSettings(daemon_url="https://haflow.example:4443", daemon_cidr=cidr)
        assert "DNS" in str(raised.value) and "HAFLOW_KUBE_DAEMON_CIDR" in str(raised.value)

    @pytest.mark.parametrize("cidr", ["haflow.example", "10.0.0.300", "10.0.0.5/33", ""])
    def test_invalid_cidr_refused(self, cidr: str) -> None:
        """Something that is not an address or a CIDR is refused when the settings are made."""
        with pytest.raises(ValueError, match="HAFLOW_KUBE_DAEMON_CIDR"):
            KubeSettings(daemon_url="https://10.0.0.5", daemon_cidr=cidr)

    def test_name_without_cidr_refused(self, areas: dict[str, Path]) -> None:
        """A daemon reached by name without an address range cannot be allowed, so the run is refused."""
        settings = KubeSettings(daemon_url="https://haflow.example")
        with pytest.raises(SandboxError, match="HAFLOW_KUBE_DAEMON_CIDR"):
            network_policy_manifest(variants(areas)["plain"], settings)

    def test_network_refused_unless_allowed(self, areas: dict[str, Path]) -> None:
        """An unrestricted network is refused unless the provider allows it; then egress is open."""
        spec = make_spec(network=True)
        with pytest.raises(SandboxError, match="unrestricted network"):
            job_manifest(spec, SETTINGS)
        settings = KubeSettings(daemon_url="https://10.0.0.5", allow_network=True)
        assert network_policy_manifest(spec, settings)["spec"]["egress"] == [{}]

    def test_local_ports_refused(self) -> None:
        """Ports of the daemon's host cannot be given to a pod."""
        with pytest.raises(SandboxError, match="daemon's host"):
            job_manifest(make_spec(local_ports=(11434,)), SETTINGS)


class TestSettings:
    @pytest.mark.parametrize("url", ["http://10.0.0.5", "10.0.0.5:443", "https://"])
    def test_daemon_url_must_be_https(self, url: str) -> None:
        """Pods reach the daemon over HTTPS only."""
        with pytest.raises(ValueError, match="https"):
            KubeSettings(daemon_url=url)

    @pytest.mark.parametrize("url", ["https://haflow_x.example", "https://-haflow.example", "https://a..b"])
    def test_daemon_host_must_be_a_name_or_address(self, url: str) -> None:
        """A daemon host that could not be a hostAliases name is refused when the settings are made."""
        with pytest.raises(ValueError, match="neither an IP address nor a DNS name"):
            KubeSettings(daemon_url=url, daemon_cidr="10.0.0.5")

    def test_bad_run_id(self) -> None:
        """A run id that cannot name a Job is refused."""
        with pytest.raises(SandboxError, match="cannot name"):
            job_manifest(make_spec(run_id="R_1"), SETTINGS)

    def test_plans_shared(self, areas: dict[str, Path]) -> None:
        """Manifests take the provider's area plans as they are."""
        spec = variants(areas)["file"]
        plans = plan_areas(spec.mounts)
        assert job_manifest(spec, SETTINGS, plans) == job_manifest(spec, SETTINGS)
