"""One behaviour for every sandbox provider: local Docker, remote Docker, and Kubernetes.

The remote provider runs against a second dockerd this session starts
(:mod:`tests.remote_engine`), which shares no path with the host's folders:
everything a run reads or writes travels as tar streams through volumes.

The Kubernetes provider runs against the fake API server with its FAKE,
Docker-backed kubelet (``kubernetes-fake``, :mod:`tests.sandbox.kubernetes.fake_kubelet`):
the files travel through a real daemon's transfer endpoints over HTTPS,
fetched and collected by the fake in Python, or (``kubernetes-fake-scripts``)
by the manifest's own scripts in real containers. With
``HAFLOW_TEST_KUBECONFIG`` (and ``HAFLOW_TEST_KUBE_DAEMON_URL``) the same
cases run against a real cluster (``kubernetes``); otherwise that is skipped.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import attrs
import pytest

from haflowd.sandbox import Limits, Mount, SandboxError, SandboxProvider, SandboxSpec, SandboxUnavailable
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider
from haflowd.sandbox.kubernetes.manifests import TOKEN_IN_KEY, TOKEN_OUT_KEY, job_name
from haflowd.sandbox.kubernetes.provider import KubeApiError
from tests.docker_support import SESSION_INSTANCE
from tests.remote_engine import Engine
from tests.sandbox.kubernetes.kube_support import FakeKube, RealKube
from tests.waiting import within

#: ``make_spec(*command, **changes)``: a spec for a run of ``command``.
MakeSpec = Callable[..., SandboxSpec]
#: ``started(spec)``: the sandbox id of a run the test's teardown removes.
Start = Callable[[SandboxSpec], Awaitable[str]]

pytestmark = pytest.mark.docker

#: The provider kinds every case runs on.
KINDS = ["local", "remote", "kubernetes-fake", "kubernetes-fake-scripts", "kubernetes"]


class Target:
    """A provider kind, a way to make a fresh provider (a "restart"), and its engine-specific checks."""

    kind: str
    make: Callable[[], SandboxProvider]
    #: The agent image runs use (None: the test image the session built).
    image: str | None = None

    async def leftovers(self, run_id: str) -> list[str]:
        """What is left of a removed run: must be empty."""
        raise NotImplementedError

    async def check_hardening(self, sandbox_id: str) -> None:
        """Assert the run is locked down, as far as this engine shows."""
        raise NotImplementedError

    def skip_unless(self, *kinds: str, why: str) -> None:
        if self.kind not in kinds:
            pytest.skip(f"{self.kind}: {why}")


@attrs.frozen
class DockerTarget(Target):
    """A Docker engine (the host's or the second dockerd) and its provider."""

    kind: str
    engine: Engine
    make: Callable[[], SandboxProvider]

    def inspect(self, sandbox_id: str) -> dict[str, Any]:
        found: dict[str, Any] = json.loads(self.engine.docker("inspect", sandbox_id).stdout)[0]
        return found

    def containers(self, run_id: str) -> list[str]:
        return self.engine.lines("ps", "--all", "--quiet", "--filter", f"label=haflow.run_id={run_id}")

    def volumes(self, run_id: str) -> list[str]:
        return self.engine.lines("volume", "ls", "--quiet", "--filter", f"label=haflow.run_id={run_id}")

    async def leftovers(self, run_id: str) -> list[str]:
        return [f"container {c}" for c in self.containers(run_id)] + [f"volume {v}" for v in self.volumes(run_id)]

    async def check_hardening(self, sandbox_id: str) -> None:
        info = self.inspect(sandbox_id)
        host = info["HostConfig"]
        assert host["CapDrop"] == ["ALL"]
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none"
        assert host["PidsLimit"] == 64
        assert host["Memory"] == 128 * 1024 * 1024
        assert host["Privileged"] is False
        assert list(host["Tmpfs"]) == ["/tmp"]
        assert info["Config"]["User"] not in ("", "0", "root", "0:0")
        kinds = {m["Type"] for m in info["Mounts"]}
        assert kinds == ({"bind"} if self.kind == "local" else {"volume"})


def check_job_hardening(job: dict[str, Any]) -> None:
    """The Job's pod runs locked down: what the Docker targets see with inspect, said in the manifest."""
    pod = job["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] not in (0, None)
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod.get("hostNetwork", False) is False and pod.get("hostPID", False) is False
    agent = next(c for c in pod["containers"] if c["name"] == "agent")
    context = agent["securityContext"]
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context.get("privileged", False) is False
    assert agent["resources"]["limits"]["memory"] == str(128 * 1024 * 1024)
    tmp = next(v for v in pod["volumes"] if v["name"] == "tmp")
    assert tmp["emptyDir"]["medium"] == "Memory"
    assert all("hostPath" not in v for v in pod["volumes"])
    assert job["spec"]["backoffLimit"] == 0


@attrs.define
class FakeKubeTarget(Target):
    """The Kubernetes provider on the fake API server, its pods run by the FAKE Docker-backed kubelet."""

    kube: FakeKube
    kind: str = "kubernetes-fake"

    def make(self) -> SandboxProvider:
        return self.kube.provider()

    async def leftovers(self, run_id: str) -> list[str]:
        await self.kube.kubelet.settled()  # the node removes a deleted pod's container and folder
        cluster = self.kube.cluster
        name = job_name(run_id)
        found = [f"{kind} {name}" for kind, store in (("job", cluster.jobs), ("secret", cluster.secrets),
                 ("networkpolicy", cluster.policies)) if name in store]  # fmt: skip
        found += [f"pod {p}" for p, pod in cluster.pods.items() if pod["metadata"]["labels"].get("job-name") == name]
        containers = Engine().lines("ps", "--all", "--quiet", "--filter", f"label=haflow.run_id={run_id}")
        found += [f"container {c}" for c in containers]
        found += [f"ticket {p.name}" for p in _tickets_of(self.kube.tickets.root, run_id)]
        return found

    async def check_hardening(self, sandbox_id: str) -> None:
        check_job_hardening(self.kube.cluster.jobs[sandbox_id])
        # The Secret holds the tokens; the Job refers to them, never carries them.
        secret = self.kube.cluster.secrets[sandbox_id]
        tokens = [base64.b64decode(secret["data"][k]).decode() for k in (TOKEN_IN_KEY, TOKEN_OUT_KEY)]
        manifest = json.dumps(self.kube.cluster.jobs[sandbox_id])
        assert all(token not in manifest for token in tokens)


@attrs.define
class RealKubeTarget(Target):
    """The Kubernetes provider on a real cluster (``HAFLOW_TEST_KUBECONFIG``); never run in this repository's CI."""

    kube: RealKube
    kind: str = "kubernetes"

    @property
    def image(self) -> str | None:  # type: ignore[override]
        return self.kube.image

    def make(self) -> SandboxProvider:
        return self.kube.provider()

    async def leftovers(self, run_id: str) -> list[str]:
        provider = self.kube.provider()
        name = job_name(run_id)
        found = []
        if await provider._job(name) is not None:
            found.append(f"job {name}")
        if await provider._pod(name) is not None:
            found.append(f"pod of {name}")
        core = await provider._core()
        networking = await provider._networking()
        for kind, call in (("secret", core.read_namespaced_secret),
                           ("networkpolicy", networking.read_namespaced_network_policy)):  # fmt: skip
            try:
                await provider._json(f"reading the {kind} {name}", call, name, provider.settings.namespace)
            except KubeApiError as e:
                if e.status != 404:
                    raise
            else:
                found.append(f"{kind} {name}")
        found += [f"ticket {p.name}" for p in _tickets_of(self.kube.tickets.root, run_id)]
        return found

    async def check_hardening(self, sandbox_id: str) -> None:
        job = await self.kube.provider()._job(sandbox_id)
        assert job is not None
        check_job_hardening(job)


def _tickets_of(root: Path, run_id: str) -> list[Path]:
    return [p for p in root.glob("*.json") if json.loads(p.read_bytes()).get("run_id") == run_id]


@pytest.fixture(params=KINDS)
def target(request: pytest.FixtureRequest, docker_image: str) -> Target:
    kind = request.param
    if request.param == "local":
        return DockerTarget(
            "local", Engine(), lambda: DockerProvider(default_image=docker_image, instance=SESSION_INSTANCE)
        )
    if request.param == "kubernetes-fake":
        return FakeKubeTarget(request.getfixturevalue("fake_kube"))
    if request.param == "kubernetes-fake-scripts":
        # The same, but fetch and collect run the manifest's scripts in real containers (busybox, the host's curl).
        kube: FakeKube = request.getfixturevalue("fake_kube")
        cert = request.getfixturevalue("kube_cert")[0]
        return FakeKubeTarget(kube.run_transfer_containers(request.getfixturevalue("transfer_image"), cert), kind)
    if request.param == "kubernetes":
        return RealKubeTarget(request.getfixturevalue("real_kube"))
    engine = request.getfixturevalue("remote_engine")
    return DockerTarget(
        "remote",
        engine,
        lambda: RemoteDockerProvider(docker_host=engine.host, default_image=docker_image, instance=SESSION_INSTANCE),
    )


@pytest.fixture
def provider(target: Target) -> SandboxProvider:
    return target.make()


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "raw-input.md").write_text("hello\nworld\n")
    return folder


@pytest.fixture
def make_spec(docker_image: str, artifacts: Path, target: Target) -> MakeSpec:
    def make(*command: str, **changes: Any) -> SandboxSpec:
        fields: dict[str, Any] = dict(
            mission_id="m-0000abcd",
            run_id="r-" + uuid.uuid4().hex[:8],
            step_id="cleanup",
            image=target.image or docker_image,
            command=command,
            mounts=(Mount(artifacts, "/mission/artifacts"),),
            limits=Limits(memory="128m", cpus=0.5, pids=64),
        )
        fields.update(changes)
        return SandboxSpec(**fields)

    return make


@pytest.fixture
async def started(provider: SandboxProvider, target: Target) -> AsyncIterator[Start]:
    """Start specs through the provider; afterwards remove them and prove nothing is left."""
    runs: list[tuple[str, str]] = []

    async def start(spec: SandboxSpec) -> str:
        sandbox_id = await provider.start(spec)
        runs.append((spec.run_id, sandbox_id))
        return sandbox_id

    yield start
    for _, sandbox_id in runs:
        await provider.remove(sandbox_id)
    for run_id, _ in runs:
        assert await target.leftovers(run_id) == []


async def collect(provider: SandboxProvider, sandbox_id: str) -> list[bytes]:
    return [item async for item in provider.output(sandbox_id)]


class TestConformance:
    def test_is_a_sandbox_provider(self, provider: SandboxProvider) -> None:
        """Each provider implements the SandboxProvider protocol."""
        assert isinstance(provider, SandboxProvider)

    async def test_check_passes(self, provider: SandboxProvider) -> None:
        """check() finds the engine and the agent image."""
        await provider.check()

    async def test_output_line_by_line(self, provider: SandboxProvider, started: Start, make_spec: MakeSpec) -> None:
        """output() yields stdout and stderr merged, one line per item, from the beginning."""
        sandbox_id = await started(make_spec("sh", "-c", "echo one; sleep 0.1; echo two >&2; sleep 0.1; printf three"))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"one\n", b"two\n", b"three"]

    async def test_output_follows_running(self, provider: SandboxProvider, started: Start, make_spec: MakeSpec) -> None:
        """output() yields a line while the sandbox still runs, and ends when it exits."""
        sandbox_id = await started(make_spec("sh", "-c", "echo first; sleep 1; echo second"))
        items = provider.output(sandbox_id)
        assert await anext(items) == b"first\n"
        assert [item async for item in items] == [b"second\n"]

    @pytest.mark.parametrize("code", [0, 1, 42])
    async def test_exit_code(self, provider: SandboxProvider, started: Start, make_spec: MakeSpec, code: int) -> None:
        """wait() returns the command's exit code."""
        sandbox_id = await started(make_spec("sh", "-c", f"exit {code}"))
        assert await provider.wait(sandbox_id) == code

    async def test_time_limit(self, provider: SandboxProvider, started: Start, make_spec: MakeSpec) -> None:
        """A run over its time limit is stopped, and its wait() then shows the signal."""
        sandbox_id = await started(make_spec("sh", "-c", "echo up; sleep 600"))
        # The command is running (it printed), however long the engine took to start it.
        items = provider.output(sandbox_id)
        assert await within(anext(items), what="the first line") == b"up\n"
        if isinstance(items, AsyncGenerator):
            await items.aclose()
        with pytest.raises(TimeoutError):  # it would run for 600 s: any wait here only makes the test slower
            await asyncio.wait_for(provider.wait(sandbox_id), 1.0)
        await provider.stop(sandbox_id, grace_seconds=1)
        assert await provider.wait(sandbox_id) in (137, 143)
        assert await collect(provider, sandbox_id) == [b"up\n"]

    async def test_cancel(self, provider: SandboxProvider, started: Start, make_spec: MakeSpec) -> None:
        """stop() while output is followed ends the output; a second stop() is quiet."""
        sandbox_id = await started(make_spec("sh", "-c", "echo up; sleep 600"))
        items = provider.output(sandbox_id)
        assert await anext(items) == b"up\n"
        await provider.stop(sandbox_id, grace_seconds=0)
        assert [item async for item in items] == []
        assert await provider.wait(sandbox_id) in (137, 143)
        await provider.stop(sandbox_id)

    async def test_reattach_after_restart(
        self, target: Target, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """A new provider object lists a running sandbox, follows it from the beginning and collects its files."""
        # Still running when listed: no signal reaches a remote or Kubernetes run, so a window it is, a generous one.
        spec = make_spec("sh", "-c", "echo before; sleep 10; echo after > /mission/artifacts/late.txt; echo after")
        sandbox_id = await started(spec)
        reborn = target.make()
        found = {info.sandbox_id: info for info in await reborn.list()}
        assert found[sandbox_id].run_id == spec.run_id
        assert found[sandbox_id].running is True
        assert await collect(reborn, sandbox_id) == [b"before\n", b"after\n"]
        assert await reborn.wait(sandbox_id) == 0
        assert found[sandbox_id].step_id == "cleanup"
        assert (artifacts / "late.txt").read_text() == "after\n"

    async def test_collect_after_exit(
        self, provider: SandboxProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """What the command wrote, changed and deleted in a writable mount is on the host after wait()."""
        script = (
            "cd /mission/artifacts && tr a-z A-Z < raw-input.md > out.md && mkdir -p deep/er && "
            "echo x > deep/er/f && ln -s out.md link && rm raw-input.md"
        )
        sandbox_id = await started(make_spec("sh", "-c", script))
        assert await provider.wait(sandbox_id) == 0
        assert (artifacts / "out.md").read_text() == "HELLO\nWORLD\n"
        assert (artifacts / "deep" / "er" / "f").read_text() == "x\n"
        assert (artifacts / "link").is_symlink() and (artifacts / "link").readlink() == Path("out.md")
        assert not (artifacts / "raw-input.md").exists()

    async def test_read_only_file_and_folder(
        self, provider: SandboxProvider, started: Start, make_spec: MakeSpec, tmp_path: Path
    ) -> None:
        """A read-only file mount and folder mount are readable, not writable, and keep symlinks."""
        prompt = tmp_path / "prompt.md"
        prompt.write_text("the prompt\n")
        docs = tmp_path / "docs"
        docs.mkdir()
        (docs / "a.txt").write_text("a\n")
        (docs / "to-a").symlink_to("a.txt")
        mounts = (
            Mount(tmp_path / "artifacts", "/mission/artifacts"),
            Mount(prompt, "/mission/prompt.md", read_only=True),
            Mount(docs, "/docs", read_only=True),
        )
        script = (
            "cat /mission/prompt.md; readlink /docs/to-a; cat /docs/to-a; touch /docs/b 2>/dev/null || echo refused"
        )
        sandbox_id = await started(make_spec("sh", "-c", script, mounts=mounts))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"the prompt\n", b"a.txt\n", b"a\n", b"refused\n"]

    async def test_nested_read_only_mount(
        self, provider: SandboxProvider, started: Start, make_spec: MakeSpec, tmp_path: Path
    ) -> None:
        """A read-only folder inside a writable one (a work tree's .git) is read-only and stays as it was."""
        work = tmp_path / "work"
        (work / ".git").mkdir(parents=True)
        (work / "a.txt").write_text("a\n")
        gitdir = tmp_path / "git"
        gitdir.mkdir()
        (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
        mounts = (Mount(work, "/workspace"), Mount(gitdir, "/workspace/.git", read_only=True))
        script = (
            "cd /workspace && cat .git/HEAD && ({ echo x > .git/config; } 2>/dev/null || echo refused) && "
            "echo b > b.txt && rm a.txt"
        )
        sandbox_id = await started(make_spec("sh", "-c", script, mounts=mounts))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"ref: refs/heads/main\n", b"refused\n"]
        assert sorted(p.name for p in work.iterdir()) == [".git", "b.txt"]
        assert list((work / ".git").iterdir()) == []
        assert [p.name for p in gitdir.iterdir()] == ["HEAD"]

    async def test_agent_user_owns_writable_mount(
        self, provider: SandboxProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """The agent's non-root user can create files in the writable mount's root."""
        sandbox_id = await started(make_spec("sh", "-c", "id -u; touch /mission/artifacts/x && echo ok"))
        assert await provider.wait(sandbox_id) == 0
        uid, ok = await collect(provider, sandbox_id)
        assert uid != b"0\n" and ok == b"ok\n"

    async def test_cleanup(self, target: Target, provider: SandboxProvider, make_spec: MakeSpec) -> None:
        """remove() leaves no container and no volume of the run, and a second remove() is quiet."""
        spec = make_spec("true")
        sandbox_id = await provider.start(spec)
        await provider.wait(sandbox_id)
        await provider.remove(sandbox_id)
        await provider.remove(sandbox_id)
        assert await target.leftovers(spec.run_id) == []

    async def test_hardening(
        self, target: Target, provider: SandboxProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """The run is locked down: as docker inspect shows it (the same on both engines), or as its Job says."""
        sandbox_id = await started(make_spec("id", "-u"))
        await provider.wait(sandbox_id)
        await target.check_hardening(sandbox_id)


class TestRemoteOnly:
    @pytest.fixture
    def target(self, docker_image: str, remote_engine: Engine) -> DockerTarget:
        return DockerTarget(
            "remote",
            remote_engine,
            lambda: RemoteDockerProvider(
                docker_host=remote_engine.host, default_image=docker_image, instance=SESSION_INSTANCE
            ),
        )

    async def test_nothing_bind_mounted(
        self, target: DockerTarget, provider: SandboxProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """No path of the daemon's host is mounted: only volumes, and the host folder is not among their sources."""
        sandbox_id = await started(make_spec("true"))
        await provider.wait(sandbox_id)
        info = target.inspect(sandbox_id)
        assert info["HostConfig"]["Binds"] in (None, [])
        assert [(m["Type"], m["Destination"]) for m in info["Mounts"]] == [("volume", "/mission/artifacts")]
        assert all(str(artifacts) not in m["Source"] for m in info["Mounts"])

    async def test_links_out_do_not_come_back(
        self, provider: SandboxProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """A symlink the agent points out of the mount is dropped on the way back; the rest arrives."""
        script = "cd /mission/artifacts && ln -s /etc/passwd out && ln -s ../../x up && echo ok > fine"
        sandbox_id = await started(make_spec("sh", "-c", script))
        assert await provider.wait(sandbox_id) == 0
        assert (artifacts / "fine").read_text() == "ok\n"
        assert not (artifacts / "out").is_symlink() and not (artifacts / "up").is_symlink()

    async def test_oversized_output_is_refused(
        self, target: DockerTarget, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """A writable mount larger than the cap fails wait() and leaves the host folder as it was."""
        provider = attrs.evolve(cast(RemoteDockerProvider, target.make()), max_back_bytes=64 * 1024)
        spec = make_spec("sh", "-c", "dd if=/dev/zero of=/mission/artifacts/big bs=1024 count=200 2>/dev/null")
        sandbox_id = await provider.start(spec)
        try:
            with pytest.raises(Exception, match=r"larger than|more than"):
                await provider.wait(sandbox_id)
            assert sorted(p.name for p in artifacts.iterdir()) == ["raw-input.md"]
        finally:
            await provider.remove(sandbox_id)

    async def test_area_cap_declared_by_the_step(
        self, provider: SandboxProvider, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """An area's own ``max_bytes`` bounds what comes back, below the provider's cap."""
        spec = make_spec(
            "sh",
            "-c",
            "dd if=/dev/zero of=/mission/artifacts/big bs=1024 count=200 2>/dev/null",
            mounts=(Mount(artifacts, "/mission/artifacts", name="artifacts", max_bytes=64 * 1024),),
        )
        sandbox_id = await provider.start(spec)
        try:
            with pytest.raises(Exception, match=r"larger than|more than"):
                await provider.wait(sandbox_id)
            assert sorted(p.name for p in artifacts.iterdir()) == ["raw-input.md"]
        finally:
            await provider.remove(sandbox_id)

    async def test_image_loaded_from_the_daemons_engine(
        self, target: DockerTarget, provider: SandboxProvider, make_spec: MakeSpec, docker_image: str
    ) -> None:
        """An image only the daemon's engine has is streamed to the remote engine (save | load) and the run starts."""
        local = Engine()
        image = f"haflow-load-test:{uuid.uuid4().hex[:8]}"
        local.docker("tag", docker_image, image)
        try:
            assert target.engine.docker("image", "inspect", image, check=False).returncode != 0
            sandbox_id = await provider.start(make_spec("echo", "loaded", image=image))
            try:
                assert await provider.wait(sandbox_id) == 0
                assert [line async for line in provider.output(sandbox_id)] == [b"loaded\n"]
            finally:
                await provider.remove(sandbox_id)
            assert target.engine.docker("image", "inspect", image, check=False).returncode == 0
        finally:
            local.docker("rmi", image, check=False)
            target.engine.docker("rmi", image, check=False)

    async def test_image_nowhere_is_explained(
        self, target: DockerTarget, provider: SandboxProvider, make_spec: MakeSpec
    ) -> None:
        """An image neither engine has (and no registry serves) fails with the copy command, leaving nothing."""
        spec = make_spec("true", image=f"haflow-nowhere-{uuid.uuid4().hex[:8]}:1")
        with pytest.raises(SandboxUnavailable, match=r"docker save .* docker load"):
            await provider.start(spec)
        assert target.containers(spec.run_id) == [] and target.volumes(spec.run_id) == []

    async def test_orphan_volumes_swept(self, target: DockerTarget, provider: SandboxProvider) -> None:
        """Volumes of this instance whose run has no container (a daemon died while filling) go at list()."""
        labels = ["--label", "haflow.run_id=r-orphan01", "--label", f"haflow.instance={SESSION_INSTANCE}"]
        target.engine.docker("volume", "create", *labels, "haflow-r-orphan01-0")
        other = ["--label", "haflow.run_id=r-orphan02", "--label", "haflow.instance=someone-else"]
        target.engine.docker("volume", "create", *other, "haflow-r-orphan02-0")
        try:
            await provider.list()
            assert target.volumes("r-orphan01") == []
            assert target.volumes("r-orphan02") == ["haflow-r-orphan02-0"]
        finally:
            target.engine.docker("volume", "rm", "--force", "haflow-r-orphan01-0", "haflow-r-orphan02-0")

    async def test_writable_mount_outside_roots_refused(
        self, target: DockerTarget, make_spec: MakeSpec, tmp_path: Path
    ) -> None:
        """With writable_roots set, a writable mount elsewhere is refused before anything is created."""
        provider = attrs.evolve(cast(RemoteDockerProvider, target.make()), writable_roots=(tmp_path / "home",))
        spec = make_spec("true")
        with pytest.raises(SandboxError, match="outside"):
            await provider.start(spec)
        assert target.volumes(spec.run_id) == [] and target.containers(spec.run_id) == []

    async def test_forged_writable_label_refused(self, target: DockerTarget, docker_image: str, tmp_path: Path) -> None:
        """A container whose label names a host folder outside the daemon's gets nothing written there."""
        outside = tmp_path / "outside"
        outside.mkdir()
        (outside / "keep.txt").write_text("mine")
        forged = json.dumps([[str(outside), "/mission/artifacts", False, []]])
        run = target.engine.docker(
            "run", "--detach", "--label", "haflow.run_id=r-forged01", "--label", f"haflow.remote.writable={forged}",
            "--mount", "type=volume,src=haflow-r-forged01-0,dst=/mission/artifacts",
            "--user", "0", docker_image, "sh", "-c", "echo evil > /mission/artifacts/evil",
        )  # fmt: skip
        sandbox_id = run.stdout.decode().strip()
        provider = attrs.evolve(cast(RemoteDockerProvider, target.make()), writable_roots=(tmp_path / "home",))
        try:
            with pytest.raises(SandboxError, match="outside"):
                await provider.wait(sandbox_id)
            assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
        finally:
            target.engine.docker("rm", "--force", "--volumes", sandbox_id)
            target.engine.docker("volume", "rm", "--force", "haflow-r-forged01-0")

    async def test_egress_is_refused(self, provider: SandboxProvider, make_spec: MakeSpec) -> None:
        """An egress allowlist is refused on a remote engine, never run with an open network."""
        with pytest.raises(SandboxError, match="not supported"):
            await provider.start(make_spec("true", egress=("example.com:443",)))
