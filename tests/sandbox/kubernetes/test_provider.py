"""The Kubernetes provider against a fake API server: start, output, wait, stop, remove, list, check."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest
from aiohttp.test_utils import TestServer
from kubernetes_asyncio.client import ApiClient, Configuration
from pytest_aiohttp import AiohttpServer

from haflowd.sandbox import Limits, Mount, SandboxError, SandboxInfo, SandboxProvider, SandboxSpec, SandboxUnavailable
from haflowd.sandbox.areas import AreaPlan
from haflowd.sandbox.kubernetes.manifests import TOKEN_IN_KEY, TOKEN_OUT_KEY, KubeSettings, job_manifest
from haflowd.sandbox.kubernetes.provider import KILLED, ApiClientFactory, KubernetesProvider, kubeconfig_client
from haflowd.sandbox.lines import split_lines
from tests.sandbox.kubernetes.fake_apiserver import FakeCluster
from tests.waiting import eventually

INSTANCE = "abc123def456"
SECRET_VALUE = "sk-live-never-in-a-job-42"
JOB = "haflow-r-0000beef"


@attrs.define
class FakeIssuer:
    """Records the tickets asked for; tokens are predictable."""

    issued: list[dict[str, Any]] = attrs.field(factory=list)
    revoked: list[str] = attrs.field(factory=list)

    def issue(
        self,
        *,
        run_id: str,
        plans: Sequence[AreaPlan],
        direction: Literal["in", "out"],
        uid: int,
        gid: int,
        ttl_seconds: float,
    ) -> str:
        token = f"tok-{direction}-{len(self.issued)}"
        self.issued.append(
            {"run_id": run_id, "members": [p.member for p in plans], "direction": direction, "uid": uid, "gid": gid}
        )
        return token

    def revoke(self, run_id: str) -> None:
        self.revoked.append(run_id)


def client_factory(url: str) -> ApiClientFactory:
    async def make() -> ApiClient:
        return ApiClient(Configuration(host=url))

    return make


@attrs.frozen
class Rig:
    cluster: FakeCluster
    server: TestServer
    issuer: FakeIssuer
    settings: KubeSettings

    def provider(self, **changes: Any) -> KubernetesProvider:
        """A fresh provider (a daemon "restart" when called again)."""
        return KubernetesProvider(
            settings=self.settings,
            issuer=self.issuer,
            api_client=client_factory(str(self.server.make_url("")).rstrip("/")),
            poll_seconds=0.01,
            **changes,
        )


@pytest.fixture
async def rig(aiohttp_server: AiohttpServer) -> Rig:
    cluster = FakeCluster()
    server = await aiohttp_server(cluster.app())
    settings = KubeSettings(daemon_url="https://10.0.0.5:4443", namespace="agents", instance=INSTANCE)
    return Rig(cluster, server, FakeIssuer(), settings)


@pytest.fixture
async def providers(rig: Rig) -> AsyncIterator[list[KubernetesProvider]]:
    """Providers made through this list are closed after the test."""
    made: list[KubernetesProvider] = []
    yield made
    for provider in made:
        await provider.aclose()


@pytest.fixture
def provider(rig: Rig, providers: list[KubernetesProvider]) -> KubernetesProvider:
    made = rig.provider()
    providers.append(made)
    return made


@pytest.fixture
def spec(tmp_path: Path) -> SandboxSpec:
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    prompt = tmp_path / "prompt.md"
    prompt.write_text("go\n")
    return SandboxSpec(
        mission_id="m-0000abcd",
        run_id="r-0000beef",
        step_id="implement",
        image="registry.example/agent:1",
        command=("agent", "--headless"),
        secrets={"ANTHROPIC_API_KEY": SECRET_VALUE},
        mounts=(Mount(artifacts, "/mission/artifacts", name="artifacts"), Mount(prompt, "/mission/prompt.md", True)),
        limits=Limits(memory="256m", cpus=1.0, pids=64, timeout_seconds=60),
    )


async def collect(provider: KubernetesProvider, sandbox_id: str) -> list[bytes]:
    return [item async for item in provider.output(sandbox_id)]


async def running(rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> str:
    sandbox_id = await provider.start(spec)
    rig.cluster.run(sandbox_id)
    return sandbox_id


async def looked_again(rig: Rig) -> None:
    """Wait until the provider asked the server twice more: what it waits for was looked at, and still awaited."""
    seen = len(rig.cluster.requests)
    await eventually(lambda: len(rig.cluster.requests) >= seen + 2, what="the provider to ask the server again")


class TestStart:
    def test_is_a_sandbox_provider(self, provider: KubernetesProvider) -> None:
        """The provider implements the SandboxProvider protocol."""
        assert isinstance(provider, SandboxProvider)

    async def test_start_is_idempotent(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """Two starts of one run make one Job, one Secret, one NetworkPolicy and one pod, and return one id."""
        first = await provider.start(spec)
        second = await provider.start(spec)
        assert first == second == JOB
        cluster = rig.cluster
        assert list(cluster.jobs) == [JOB] and list(cluster.secrets) == [JOB] and list(cluster.policies) == [JOB]
        assert len(cluster.pods) == 1
        assert [m for m, p in cluster.requests if p.endswith("/jobs") and m == "POST"] == ["POST", "POST"]
        assert [i["direction"] for i in rig.issuer.issued] == ["in", "out"]

    async def test_created_suspended_then_resumed(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """The Job is created suspended, its Secret and policy are owned by it, and only then is it resumed."""
        await provider.start(spec)
        job = rig.cluster.jobs[JOB]
        assert job["spec"]["suspend"] is False
        uid = job["metadata"]["uid"]
        for obj in (rig.cluster.secrets[JOB], rig.cluster.policies[JOB]):
            assert obj["metadata"]["ownerReferences"] == [
                {"apiVersion": "batch/v1", "kind": "Job", "name": JOB, "uid": uid}
            ]
        order = [(m, p.rsplit("/", 2)[-2:]) for m, p in rig.cluster.requests if m in ("POST", "PATCH")]
        assert order == [
            ("POST", ["agents", "jobs"]),
            ("POST", ["agents", "secrets"]),
            ("POST", ["agents", "networkpolicies"]),
            ("PATCH", ["jobs", JOB]),
        ]

    async def test_tokens_for_the_areas(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """The in-token carries every area, the out-token too (the writable ones come back), for the pod's user."""
        await provider.start(spec)
        assert rig.issuer.issued == [
            {"run_id": "r-0000beef", "members": ["a0", "a1"], "direction": "in", "uid": 65534, "gid": 65534},
            {"run_id": "r-0000beef", "members": ["a0", "a1"], "direction": "out", "uid": 65534, "gid": 65534},
        ]
        data = rig.cluster.secrets[JOB]["data"]
        assert base64.b64decode(data[TOKEN_IN_KEY]) == b"tok-in-0"
        assert base64.b64decode(data[TOKEN_OUT_KEY]) == b"tok-out-1"

    async def test_secrets_only_in_the_secret(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """The secret value reaches the Secret only: never the Job, its pod or the NetworkPolicy."""
        await provider.start(spec)
        for store in (rig.cluster.jobs, rig.cluster.pods, rig.cluster.policies):
            text = json.dumps(store)
            assert SECRET_VALUE not in text
            assert base64.b64encode(SECRET_VALUE.encode()).decode() not in text
        data = rig.cluster.secrets[JOB]["data"]
        assert base64.b64decode(data["env.ANTHROPIC_API_KEY"]).decode() == SECRET_VALUE

    async def test_half_created_run_is_completed(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """A Job a crashed start left suspended is completed with fresh tokens, never created twice."""
        rig.cluster.jobs[JOB] = {
            **job_manifest(spec, rig.settings),
            "metadata": {**job_manifest(spec, rig.settings)["metadata"], "uid": "old-uid"},
        }
        rig.cluster.secrets[JOB] = {"metadata": {"name": JOB}, "data": {TOKEN_IN_KEY: "c3RhbGU="}}
        assert await provider.start(spec) == JOB
        assert rig.issuer.revoked == ["r-0000beef"]
        assert base64.b64decode(rig.cluster.secrets[JOB]["data"][TOKEN_IN_KEY]) == b"tok-in-0"
        assert rig.cluster.secrets[JOB]["metadata"]["ownerReferences"][0]["uid"] == "old-uid"
        assert JOB in rig.cluster.policies
        assert rig.cluster.jobs[JOB]["spec"]["suspend"] is False and len(rig.cluster.pods) == 1

    async def test_name_of_another_mission_refused(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """A Job of the same name but another mission is not taken over."""
        await provider.start(spec)
        with pytest.raises(SandboxError, match="in use by another run"):
            await provider.start(attrs.evolve(spec, mission_id="m-0000ffff"))

    async def test_failed_start_leaves_nothing(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """When the Secret cannot be created, the Job is deleted again and the tokens revoked."""
        rig.cluster.secrets[JOB] = {"metadata": {"name": JOB}}  # someone else's
        with pytest.raises(SandboxError, match="refused creating the Secret"):
            await provider.start(spec)
        assert rig.cluster.jobs == {} and rig.cluster.policies == {} and rig.cluster.pods == {}
        assert rig.issuer.revoked == ["r-0000beef"]

    async def test_cancelled_start_leaves_nothing(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """A start cancelled while the Job was being created removes the Job the server made anyway."""
        rig.cluster.hang_creates = asyncio.Event()
        task = asyncio.ensure_future(provider.start(spec))
        await eventually(lambda: JOB in rig.cluster.jobs, what="the server to store the Job")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert rig.cluster.jobs == {} and rig.issuer.revoked == ["r-0000beef"]
        rig.cluster.hang_creates.set()

    async def test_unrestricted_network_refused(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """A step asking for an open network is refused before anything is created."""
        with pytest.raises(SandboxError, match="unrestricted network"):
            await provider.start(attrs.evolve(spec, network=True))
        assert rig.cluster.requests == []


class TestOutput:
    async def test_follows_and_ends(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """output() yields lines while the agent runs and ends once it exited."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"first\n")
        items = provider.output(sandbox_id)
        assert await anext(items) == b"first\n"
        rig.cluster.write(sandbox_id, b"second\nthird")
        rig.cluster.exit(sandbox_id, 0)
        assert [item async for item in items] == [b"second\n", b"third"]

    async def test_waits_for_the_agent_to_start(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """Following a pending pod waits for the agent container, then reads from its start."""
        sandbox_id = await provider.start(spec)
        task = asyncio.ensure_future(collect(provider, sandbox_id))
        await looked_again(rig)
        assert not task.done()
        rig.cluster.run(sandbox_id)
        rig.cluster.write(sandbox_id, b"hello\n")
        rig.cluster.exit(sandbox_id, 0)
        assert await asyncio.wait_for(task, 10) == [b"hello\n"]

    async def test_dropped_stream_every_byte_once(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """A stream broken mid-line and one dropped while waiting are reopened; every byte arrives exactly once."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"line-1\npartial")
        rig.cluster.cut_next_stream(sandbox_id, after=10)
        items = provider.output(sandbox_id)
        assert await anext(items) == b"line-1\n"
        rig.cluster.drop_streams(sandbox_id)
        rig.cluster.write(sandbox_id, b"-end\n")
        assert await anext(items) == b"partial-end\n"
        rig.cluster.drop_streams(sandbox_id)
        rig.cluster.write(sandbox_id, b"last")
        rig.cluster.exit(sandbox_id, 0)
        assert [item async for item in items] == [b"last"]
        assert rig.cluster.log_opens >= 3

    async def test_byte_exact_with_long_lines(
        self, rig: Rig, providers: list[KubernetesProvider], spec: SandboxSpec
    ) -> None:
        """Output keeps every byte (binary, CR, no final newline) and splits over-long lines at the limit."""
        provider = rig.provider(max_line_bytes=16)
        providers.append(provider)
        sandbox_id = await running(rig, provider, spec)
        data = b"short\n" + b"x" * 40 + b"\n\x00\xff\r\nno newline at the end"
        for i in range(0, len(data), 7):
            rig.cluster.write(sandbox_id, data[i : i + 7])
        rig.cluster.exit(sandbox_id, 0)
        items = await collect(provider, sandbox_id)
        assert b"".join(items) == data
        assert items == split_lines(bytearray(data), 16, final=True)
        assert items[1] == b"x" * 16 and items[2] == b"x" * 16 and items[3] == b"x" * 8 + b"\n"

    async def test_after_exit_complete_log(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """Once wait() returned, a new output() yields exactly the stored log."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"a\nb\n")
        rig.cluster.exit(sandbox_id, 3)
        assert await provider.wait(sandbox_id) == 3
        assert await collect(provider, sandbox_id) == [b"a\n", b"b\n"]
        assert await collect(provider, sandbox_id) == [b"a\n", b"b\n"]

    async def test_unreadable_log_of_exited_agent(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """An exited agent's log that cannot be read is an error after a few tries, not an endless wait."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, 0)
        rig.cluster.log_error = 500
        with pytest.raises(SandboxError, match="Could not read the agent's log"):
            await collect(provider, sandbox_id)
        assert sum(1 for m, p in rig.cluster.requests if p.endswith("/log")) == 5

    async def test_rotation_limitation(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """After a rotation the older bytes are gone: the follower skips by count (documented limitation)."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"old-1\n")
        items = provider.output(sandbox_id)
        assert await anext(items) == b"old-1\n"
        rig.cluster.rotate(sandbox_id)
        rig.cluster.write(sandbox_id, b"new-1\nnew-2\n")
        rig.cluster.exit(sandbox_id, 0)
        # The first six bytes of the rotated log are taken for ones already read.
        assert [item async for item in items] == [b"new-2\n"]


class TestWait:
    @pytest.mark.parametrize("code", [0, 1, 42])
    async def test_exit_code(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec, code: int) -> None:
        """wait() returns the agent container's exit code from its terminated state."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, code)
        assert await provider.wait(sandbox_id) == code

    async def test_waits_for_files(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """wait() returns only once collect has sent the files back."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, 0, collect=None)
        task = asyncio.ensure_future(provider.wait(sandbox_id))
        await looked_again(rig)
        assert not task.done()
        pod = rig.cluster.pod_of(sandbox_id)
        rig.cluster._set(pod, "collect", {"terminated": {"exitCode": 0, "reason": "Completed"}})
        assert await asyncio.wait_for(task, 10) == 0

    async def test_agent_that_never_started_does_not_wait_for_collect(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec
    ) -> None:
        """An agent container that could not start (no shell in its image) fails the run at once.

        Its wrapper never writes the exit file, so collect would wait for it until the Job's deadline.
        """
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, 128, collect=None)
        pod = rig.cluster.pod_of(sandbox_id)
        rig.cluster._set(pod, "agent", {"terminated": {"exitCode": 128, "reason": "StartError", "message": "no sh"}})
        with pytest.raises(SandboxError, match=r"could not start \(StartError: no sh\)"):
            await asyncio.wait_for(provider.wait(sandbox_id), 10)

    async def test_no_writable_areas_no_collect(
        self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec, tmp_path: Path
    ) -> None:
        """With only read-only areas, the agent's exit alone ends the wait."""
        only_read = attrs.evolve(spec, mounts=(Mount(tmp_path / "prompt.md", "/mission/prompt.md", True),))
        sandbox_id = await running(rig, provider, only_read)
        assert [c["name"] for c in rig.cluster.pod_of(sandbox_id)["spec"]["containers"]] == ["agent"]
        rig.cluster.exit(sandbox_id, 5)
        assert await provider.wait(sandbox_id) == 5

    async def test_eviction(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """An evicted pod is a visible failure, not an exit code."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.evict(sandbox_id)
        with pytest.raises(SandboxError, match="evicted or disrupted"):
            await provider.wait(sandbox_id)

    async def test_collect_failure(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """When collect fails, wait() says the files did not come back."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, 0, collect=22)
        with pytest.raises(SandboxError, match=r"files did not come back.*22"):
            await provider.wait(sandbox_id)

    async def test_fetch_failure(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """When the files cannot be fetched into the pod, wait() says so."""
        sandbox_id = await provider.start(spec)
        rig.cluster.fail_fetch(sandbox_id)
        with pytest.raises(SandboxError, match="could not be brought into its pod"):
            await provider.wait(sandbox_id)
        assert await collect(provider, sandbox_id) == []

    async def test_deadline_exceeded(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """A Job killed at its deadline (its pod deleted) waits as a killed run: 137."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"busy\n")
        rig.cluster.deadline(sandbox_id)
        assert await provider.wait(sandbox_id) == KILLED

    async def test_lost_job(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """A Job deleted behind the daemon's back is a lost run."""
        with pytest.raises(SandboxError, match="Lost track"):
            await provider.wait(JOB)

    async def test_invalid_id(self, provider: KubernetesProvider) -> None:
        """Sandbox ids that are not haflow Job names are refused."""
        with pytest.raises(SandboxError, match="Invalid sandbox id"):
            await provider.wait("kube-system/x")


class TestStop:
    async def test_stop_makes_wait_return(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """stop() ends a running agent through the pod's deadline; wait() returns its signal code; the log stays."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"up\n")
        waiting = asyncio.ensure_future(provider.wait(sandbox_id))
        await looked_again(rig)
        assert not waiting.done()
        await provider.stop(sandbox_id, grace_seconds=1)
        assert await asyncio.wait_for(waiting, 10) == 143
        pod = rig.cluster.pod_of(sandbox_id)
        assert pod["spec"]["activeDeadlineSeconds"] == 1
        assert await collect(provider, sandbox_id) == [b"up\n"]
        await provider.stop(sandbox_id)  # quiet the second time

    async def test_stop_before_files_came_back(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """A stopped run whose collect was killed still reports the agent's exit (its files are lost)."""
        rig.cluster.stop_exit_code, rig.cluster.stop_collect_code = 137, 137
        sandbox_id = await running(rig, provider, spec)
        await provider.stop(sandbox_id)
        assert await provider.wait(sandbox_id) == 137

    async def test_stop_pending(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """Stopping a run whose pod never started fails the Job at its deadline; wait() reports a kill."""
        sandbox_id = await provider.start(spec)
        await provider.stop(sandbox_id)
        assert rig.cluster.jobs[JOB]["spec"]["activeDeadlineSeconds"] == 1
        assert await provider.wait(sandbox_id) == KILLED


class TestRemoveAndList:
    async def test_remove(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """remove() deletes the Job with its pod, the Secret and the NetworkPolicy, and revokes the tokens."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.exit(sandbox_id, 0)
        await provider.remove(sandbox_id)
        cluster = rig.cluster
        assert (cluster.jobs, cluster.secrets, cluster.policies, cluster.pods) == ({}, {}, {}, {})
        assert rig.issuer.revoked == ["r-0000beef"]
        deletes = [p for m, p in cluster.requests if m == "DELETE"]
        assert deletes == [
            f"/apis/batch/v1/namespaces/agents/jobs/{JOB}",
            f"/api/v1/namespaces/agents/secrets/{JOB}",
            f"/apis/networking.k8s.io/v1/namespaces/agents/networkpolicies/{JOB}",
        ]
        await provider.remove(sandbox_id)  # quiet when gone

    async def test_reattach_after_restart(
        self, rig: Rig, provider: KubernetesProvider, providers: list[KubernetesProvider], spec: SandboxSpec
    ) -> None:
        """A new provider (a restarted daemon) finds the run by label and follows and waits on it."""
        sandbox_id = await running(rig, provider, spec)
        rig.cluster.write(sandbox_id, b"before restart\n")
        await provider.aclose()
        again = rig.provider()
        providers.append(again)
        assert await again.list() == [
            SandboxInfo(sandbox_id=JOB, mission_id="m-0000abcd", run_id="r-0000beef", step_id="implement", running=True)
        ]
        items = again.output(sandbox_id)
        assert await anext(items) == b"before restart\n"
        rig.cluster.write(sandbox_id, b"after\n")
        rig.cluster.exit(sandbox_id, 7)
        assert await again.wait(sandbox_id) == 7
        assert [item async for item in items] == [b"after\n"]
        assert (await again.list())[0].running is False

    async def test_list_only_this_instance(self, rig: Rig, provider: KubernetesProvider, spec: SandboxSpec) -> None:
        """Jobs of another installation, or without a run label, are not listed."""
        await provider.start(spec)
        other = job_manifest(attrs.evolve(spec, run_id="r-0000cafe"), attrs.evolve(rig.settings, instance="other"))
        rig.cluster.jobs["haflow-r-0000cafe"] = other
        rig.cluster.jobs["unrelated"] = {"metadata": {"name": "unrelated", "labels": {"app": "x"}}, "spec": {}}
        assert [info.sandbox_id for info in await provider.list()] == [JOB]


class TestCheck:
    async def test_check_passes(self, provider: KubernetesProvider) -> None:
        """check() passes against a reachable API server."""
        await provider.check()

    async def test_unreachable(self, rig: Rig, providers: list[KubernetesProvider]) -> None:
        """An API server nobody listens at is SandboxUnavailable, with advice."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        provider = KubernetesProvider(
            settings=rig.settings, issuer=rig.issuer, api_client=client_factory(f"http://127.0.0.1:{port}")
        )
        providers.append(provider)
        with pytest.raises(SandboxUnavailable, match=r"cannot be reached.*HAFLOW_KUBECONFIG"):
            await provider.check()

    async def test_forbidden(self, rig: Rig, provider: KubernetesProvider) -> None:
        """An account without the rights is SandboxUnavailable naming the RBAC rules it needs."""
        rig.cluster.refuse = 403
        with pytest.raises(SandboxUnavailable, match=r"403.*pods/log"):
            await provider.check()

    async def test_kubeconfig(self, rig: Rig, providers: list[KubernetesProvider], tmp_path: Path) -> None:
        """kubeconfig_client() reads a kubeconfig's server, context and credentials."""
        kubeconfig = tmp_path / "kubeconfig"
        server = str(rig.server.make_url("")).rstrip("/")
        kubeconfig.write_text(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "fake", "cluster": {"server": server}}],
                    "users": [{"name": "haflow", "user": {"token": "kube-token-1"}}],
                    "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "haflow"}}],
                    "current-context": "elsewhere",
                }
            )
        )
        provider = KubernetesProvider(
            settings=rig.settings, issuer=rig.issuer, api_client=kubeconfig_client(str(kubeconfig), "fake")
        )
        providers.append(provider)
        await provider.check()
        assert rig.cluster.credentials == ["Bearer kube-token-1"]

    async def test_kubeconfig_missing(self, rig: Rig, providers: list[KubernetesProvider], tmp_path: Path) -> None:
        """A kubeconfig that cannot be read is SandboxUnavailable naming the settings to fix."""
        provider = KubernetesProvider(
            settings=rig.settings, issuer=rig.issuer, api_client=kubeconfig_client(str(tmp_path / "none"), None)
        )
        providers.append(provider)
        with pytest.raises(SandboxUnavailable, match="HAFLOW_KUBECONFIG"):
            await provider.check()
