"""The Kubernetes provider's failure paths end to end, on the fake API server with its FAKE Docker-backed kubelet.

The shared behaviour is in ``tests/sandbox/test_provider_conformance.py``
(``kubernetes-fake``); here are what only the Kubernetes provider has: the
transfer tokens (a refused one fails the fetch; a refused upload fails the
collect), secrets by ``secretKeyRef``, and the Job's own deadline.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import attrs
import pytest

from haflowd.sandbox import Limits, Mount, SandboxError, SandboxSpec
from haflowd.sandbox.kubernetes.manifests import job_name
from haflowd.sandbox.kubernetes.provider import KILLED
from tests.docker_support import haflow_containers
from tests.sandbox.kubernetes.kube_support import FakeKube

pytestmark = pytest.mark.docker
pytest.importorskip("kubernetes_asyncio")

SECRET_VALUE = "sk-fake-kubelet-0123456789"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "raw-input.md").write_text("hello\n")
    return folder


@pytest.fixture
def make_spec(docker_image: str, artifacts: Path) -> Callable[..., SandboxSpec]:
    def make(*command: str, **changes: Any) -> SandboxSpec:
        fields: dict[str, Any] = dict(
            mission_id="m-0000abcd",
            run_id="r-" + uuid.uuid4().hex[:8],
            step_id="cleanup",
            image=docker_image,
            command=command,
            mounts=(Mount(artifacts, "/mission/artifacts"),),
            limits=Limits(memory="128m", cpus=0.5, pids=64),
        )
        fields.update(changes)
        return SandboxSpec(**fields)

    return make


@attrs.define
class WrongInToken:
    """Issues real tickets, but hands the pod a token the daemon never issued for the way in."""

    tickets: Any

    def issue(self, *, direction: Literal["in", "out"], **kwargs: Any) -> str:
        token = self.tickets.issue(direction=direction, **kwargs)
        return "x" * 43 if direction == "in" else token

    def revoke(self, run_id: str) -> None:
        self.tickets.revoke(run_id)


async def nothing_left(kube: FakeKube, run_id: str) -> None:
    await kube.kubelet.settled()
    name = job_name(run_id)
    assert name not in kube.cluster.jobs and name not in kube.cluster.secrets and name not in kube.cluster.policies
    assert kube.cluster.pods == {}
    assert haflow_containers() == []
    assert not any(json.loads(p.read_bytes())["run_id"] == run_id for p in kube.tickets.root.glob("*.json"))


@pytest.fixture(params=["python", "containers"])
def kube(request: pytest.FixtureRequest, fake_kube: FakeKube, kube_cert: tuple[Path, Path]) -> FakeKube:
    """The fake cluster, its fetch and collect emulated in Python, or run as real containers of the transfer image.

    With containers, the manifest's own FETCH_SCRIPT and COLLECT_SCRIPT run (busybox ``sh`` and ``tar``, the
    host's ``curl``), trusting the daemon's certificate through the CA ConfigMap of the settings.
    """
    if request.param == "containers":
        return fake_kube.run_transfer_containers(request.getfixturevalue("transfer_image"), kube_cert[0])
    return fake_kube


class TestFakeKubelet:
    async def test_round_trip(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], artifacts: Path, tmp_path: Path
    ) -> None:
        """Areas go in and the writable ones come back: written, changed, deleted, linked; nested .git untouched."""
        work = tmp_path / "work"
        (work / ".git").mkdir(parents=True)
        (work / "a.txt").write_text("a\n")
        gitdir = tmp_path / "git"
        gitdir.mkdir()
        (gitdir / "HEAD").write_text("ref: refs/heads/main\n")
        notes = tmp_path / "notes.md"
        notes.write_text("old\n")
        mounts = (
            Mount(artifacts, "/mission/artifacts"),
            Mount(work, "/workspace"),
            Mount(gitdir, "/workspace/.git", read_only=True),
            Mount(notes, "/mission/notes.md"),
        )
        script = (
            "cat /workspace/.git/HEAD /mission/notes.md; echo new > /mission/notes.md; "
            "cd /mission/artifacts && tr a-z A-Z < raw-input.md > out.md && ln -s out.md link && rm raw-input.md && "
            "cd /workspace && echo b > b.txt && rm a.txt && mkdir -p deep/er && echo x > deep/er/f"
        )
        provider = kube.provider()
        spec = make_spec("sh", "-c", script, mounts=mounts)
        sandbox_id = await provider.start(spec)
        assert await provider.wait(sandbox_id) == 0
        assert [line async for line in provider.output(sandbox_id)] == [b"ref: refs/heads/main\n", b"old\n"]
        assert notes.read_text() == "new\n"
        assert sorted(p.name for p in artifacts.iterdir()) == ["link", "out.md"]
        assert (artifacts / "out.md").read_text() == "HELLO\n" and (artifacts / "link").readlink() == Path("out.md")
        assert sorted(p.name for p in work.iterdir()) == [".git", "b.txt", "deep"]
        assert (work / "deep" / "er" / "f").read_text() == "x\n" and list((work / ".git").iterdir()) == []
        assert [p.name for p in gitdir.iterdir()] == ["HEAD"]
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_runs_the_agent_as_the_manifest_says(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], tmp_path: Path
    ) -> None:
        """The agent container runs the manifest's command, as the pod's user, read-only, without a network."""
        prompt = tmp_path / "prompt.md"
        prompt.write_text("the prompt\n")
        spec = make_spec(
            "sh", "-c", "echo $KEY; id -u", secrets={"KEY": SECRET_VALUE},
            mounts=(Mount(tmp_path / "artifacts", "/mission/artifacts"), Mount(prompt, "/mission/prompt.md", True)),
        )  # fmt: skip
        provider = kube.provider()
        sandbox_id = await provider.start(spec)
        assert await provider.wait(sandbox_id) == 0
        assert [line async for line in provider.output(sandbox_id)] == [SECRET_VALUE.encode() + b"\n", b"65534\n"]
        job = kube.cluster.jobs[sandbox_id]
        agent = job["spec"]["template"]["spec"]["containers"][0]
        (args,) = kube.kubelet.runs
        assert args[args.index("--entrypoint") + 1] == agent["command"][0]
        assert args[args.index("--entrypoint") + 2 :] == [spec.image, *agent["command"][1:]]
        assert args[args.index("--user") + 1] == "65534:65534"
        assert args[args.index("--network") + 1] == "none"
        assert "--read-only" in args
        mounts = [args[i + 1] for i, a in enumerate(args) if a == "--mount"]
        prompt_mount = next(m for m in mounts if "target=/mission/prompt.md" in m)
        assert prompt_mount.endswith(",readonly")
        assert SECRET_VALUE not in json.dumps(job) and all(SECRET_VALUE not in a for a in args)
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_refused_in_token_fails_the_fetch(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec]
    ) -> None:
        """A token the daemon refuses (401) fails the fetch container, and wait() says the files did not arrive."""
        provider = kube.provider(issuer=WrongInToken(kube.tickets))
        spec = make_spec("echo", "never")
        sandbox_id = await provider.start(spec)
        refused = r"brought into its pod: the fetch container exited with [1-9][0-9]* .*error: 401"
        with pytest.raises(SandboxError, match=refused):
            await provider.wait(sandbox_id)
        assert [line async for line in provider.output(sandbox_id)] == []
        assert kube.kubelet.runs == []
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_refused_upload_fails_the_collect(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], artifacts: Path
    ) -> None:
        """An upload over the area's cap (413) fails the collect container; the host folder stays as it was."""
        spec = make_spec(
            "sh", "-c", "dd if=/dev/zero of=/mission/artifacts/big bs=1024 count=200 2>/dev/null",
            mounts=(Mount(artifacts, "/mission/artifacts", max_bytes=64 * 1024),),
        )  # fmt: skip
        provider = kube.provider()
        sandbox_id = await provider.start(spec)
        with pytest.raises(SandboxError, match=r"files did not come back.*exited with 22"):
            await provider.wait(sandbox_id)
        assert sorted(p.name for p in artifacts.iterdir()) == ["raw-input.md"]
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_job_deadline_kills_the_run(self, kube: FakeKube, make_spec: Callable[..., SandboxSpec]) -> None:
        """Past the Job's activeDeadlineSeconds its pod goes, container and all, and wait() reports a kill."""
        kube.settings = attrs.evolve(kube.settings, pending_seconds=1)
        provider = kube.provider()
        spec = make_spec("sh", "-c", "echo up; sleep 600", limits=Limits(memory="128m", timeout_seconds=1))
        sandbox_id = await provider.start(spec)
        assert kube.cluster.jobs[sandbox_id]["spec"]["activeDeadlineSeconds"] == 2
        assert await provider.wait(sandbox_id) == KILLED
        failed = kube.cluster.jobs[sandbox_id]["status"]["conditions"]
        assert [(c["type"], c["reason"]) for c in failed] == [("Failed", "DeadlineExceeded")]
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_stop_before_the_pod_started(self, kube: FakeKube, make_spec: Callable[..., SandboxSpec]) -> None:
        """A run stopped while its pod waits for a node fails at the Job's deadline: a kill, nothing ran."""
        kube.kubelet.hold = asyncio.Event()
        provider = kube.provider()
        spec = make_spec("echo", "never")
        sandbox_id = await provider.start(spec)
        await provider.stop(sandbox_id)
        assert kube.cluster.jobs[sandbox_id]["spec"]["activeDeadlineSeconds"] == 1
        assert await provider.wait(sandbox_id) == KILLED
        assert [line async for line in provider.output(sandbox_id)] == []
        kube.kubelet.hold.set()
        await provider.remove(sandbox_id)
        assert kube.kubelet.runs == []
        await nothing_left(kube, spec.run_id)

    async def test_agent_ignoring_sigterm_is_killed(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], artifacts: Path
    ) -> None:
        """An agent that ignores SIGTERM is killed after the grace period; its exit unrecorded, no files come back."""
        kube.settings = attrs.evolve(kube.settings, termination_grace_seconds=1)
        provider = kube.provider()
        script = "trap '' TERM; echo x > /mission/artifacts/late; echo up; while :; do sleep 1; done"
        spec = make_spec("sh", "-c", script)
        sandbox_id = await provider.start(spec)
        items = provider.output(sandbox_id)
        assert await anext(items) == b"up\n"
        await provider.stop(sandbox_id)
        assert await provider.wait(sandbox_id) == KILLED
        assert [line async for line in items] == []
        assert sorted(p.name for p in artifacts.iterdir()) == ["raw-input.md"]
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_unreadable_file_sends_nothing_back(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], artifacts: Path
    ) -> None:
        """A file the agent made unreadable (to itself) fails the collect, and the host's area stays as it was.

        The collect container's tar runs as the agent's user: before COLLECT_SCRIPT checked, it left such a
        file out of a stream the daemon accepted as the whole area, deleting the file on the host.
        """
        (artifacts / "keep.md").write_text("keep\n")
        provider = kube.provider()
        script = "cd /mission/artifacts && echo new > new.md && chmod 000 keep.md"
        spec = make_spec("sh", "-c", script)
        sandbox_id = await provider.start(spec)
        with pytest.raises(SandboxError, match=r"exited with 3 .*a0/keep\.md unreadable"):
            await provider.wait(sandbox_id)
        assert sorted(p.name for p in artifacts.iterdir()) == ["keep.md", "raw-input.md"]
        assert (artifacts / "keep.md").read_text() == "keep\n"
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)

    async def test_link_out_is_dropped(
        self, kube: FakeKube, make_spec: Callable[..., SandboxSpec], artifacts: Path
    ) -> None:
        """A symlink out of the area is left out and the rest comes back, as on the remote Docker provider."""
        provider = kube.provider()
        spec = make_spec("sh", "-c", "cd /mission/artifacts && ln -s /usr/bin/env python && echo ok > fine")
        sandbox_id = await provider.start(spec)
        assert await provider.wait(sandbox_id) == 0
        assert sorted(p.name for p in artifacts.iterdir()) == ["fine", "raw-input.md"]
        assert (artifacts / "fine").read_text() == "ok\n"
        await provider.remove(sandbox_id)
        await nothing_left(kube, spec.run_id)
