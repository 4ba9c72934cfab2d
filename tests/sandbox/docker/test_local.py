"""The Docker CLI sandbox provider, against a real Docker engine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from haflowd.proc import run_cli
from haflowd.sandbox import (
    Limits,
    Mount,
    SandboxError,
    SandboxProvider,
    SandboxSpec,
    SandboxUnavailable,
)
from haflowd.sandbox.docker.local import DockerProvider
from tests.docker_support import SESSION_INSTANCE, haflow_containers
from tests.waiting import eventually

#: ``make_spec(*command, **changes)``: a spec for a run of ``command``.
MakeSpec = Callable[..., SandboxSpec]
#: ``started(spec)``: the sandbox id of a run the test's teardown removes.
Start = Callable[[SandboxSpec], Awaitable[str]]


@pytest.fixture
def provider(docker_image: str) -> DockerProvider:
    return DockerProvider(default_image=docker_image, instance=SESSION_INSTANCE)


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = tmp_path / "artifacts"
    folder.mkdir()
    (folder / "raw-input.md").write_text("hello\nworld\n")
    return folder


@pytest.fixture
def make_spec(docker_image: str, artifacts: Path) -> MakeSpec:
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


@pytest.fixture
async def started(provider: DockerProvider) -> AsyncIterator[Start]:
    """Start specs through the provider; remove every container afterwards."""
    ids: list[str] = []

    async def start(spec: SandboxSpec) -> str:
        sandbox_id = await provider.start(spec)
        ids.append(sandbox_id)
        return sandbox_id

    yield start
    for sandbox_id in ids:
        await provider.remove(sandbox_id)


async def collect(provider: DockerProvider, sandbox_id: str) -> list[bytes]:
    return [item async for item in provider.output(sandbox_id)]


def inspect(sandbox_id: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", sandbox_id], capture_output=True, check=True)
    found: dict[str, Any] = json.loads(out.stdout)[0]
    return found


def child_pids() -> set[int]:
    """This process's live children (Linux), to prove no CLI process leaks."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        pids.update(int(p) for p in (task / "children").read_text().split())
    return {p for p in pids if Path(f"/proc/{p}/stat").exists()}


class TestChownTree:
    def test_deep_trees_are_handed_over(self, tmp_path: Path) -> None:
        """1,200 nested folders (deeper than the recursion limit and PATH_MAX) are all chowned."""
        import os

        from haflowd.sandbox.docker.local import _chown_tree

        # Root may give files away; others can only "change" them to themselves.
        uid, gid = (54321, 54321) if os.getuid() == 0 else (os.getuid(), os.getgid())
        root = tmp_path / "root"
        root.mkdir()
        (root / "link").symlink_to("/nonexistent")
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for _ in range(1200):
                os.mkdir("d", dir_fd=fd)
                child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = child
            os.close(os.open("file", os.O_WRONLY | os.O_CREAT, dir_fd=fd))
            _chown_tree(root, uid, gid)
            assert os.stat("file", dir_fd=fd).st_uid == uid
            assert os.stat(".", dir_fd=fd).st_gid == gid
        finally:
            # Removed here, bottom up: pytest's own clean-up would recurse too deep.
            with contextlib.suppress(FileNotFoundError):
                os.unlink("file", dir_fd=fd)
            while os.fstat(fd).st_ino != root.stat().st_ino:
                up = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
                os.close(fd)
                fd = up
                os.rmdir("d", dir_fd=fd)
            os.close(fd)
        assert os.lstat(root / "link").st_uid == uid


@pytest.mark.docker
class TestRun:
    def test_is_a_sandbox_provider(self, provider: DockerProvider) -> None:
        """DockerProvider satisfies the SandboxProvider protocol."""
        assert isinstance(provider, SandboxProvider)

    async def test_check_passes(self, provider: DockerProvider) -> None:
        """check() is quiet when the engine answers and the image exists."""
        await provider.check()

    async def test_agent_writes_artifact(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """The stand-in agent prints progress lines and writes its output artifact."""
        spec = make_spec("haflow-agent", "cleanup", "cleanup-agent", "raw-input.md", "out.md")
        sandbox_id = await started(spec)
        lines = await collect(provider, sandbox_id)
        assert await provider.wait(sandbox_id) == 0
        assert lines[0] == b"[agent] cleanup-agent starting step cleanup\n"
        assert lines[-1] == b"[agent] done: wrote out.md\n"
        assert all(line.startswith(b"[agent] ") for line in lines)
        text = (artifacts / "out.md").read_text()
        assert text == "# Output of step cleanup by cleanup-agent\n\nhello\nworld\n"

    async def test_agent_writes_json(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """An output artifact named .json is valid JSON carrying the input."""
        (artifacts / "plan.md").write_text('say "hi"\n\tback\\slash\n')
        spec = make_spec("haflow-agent", "implementation", "impl-agent", "plan.md", "r.json")
        sandbox_id = await started(spec)
        assert await provider.wait(sandbox_id) == 0
        data = json.loads((artifacts / "r.json").read_text())
        assert data == {
            "step_id": "implementation",
            "agent": "impl-agent",
            "input": 'say "hi"\n\tback\\slash\n',
        }

    @pytest.mark.parametrize("code", [1, 7, 42])
    async def test_exit_code(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path, code: int
    ) -> None:
        """wait() returns the agent's exit code; --fail writes no output."""
        spec = make_spec("haflow-agent", "--fail", str(code), "s", "a", "raw-input.md", "o.md")
        sandbox_id = await started(spec)
        assert await provider.wait(sandbox_id) == code
        lines = await collect(provider, sandbox_id)
        assert lines[-1] == f"[agent] failing on purpose with exit code {code}\n".encode()
        assert not (artifacts / "o.md").exists()

    async def test_output_after_exit_starts_at_beginning(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """Output read after the exit, and read twice, is the whole output each time."""
        sandbox_id = await started(make_spec("sh", "-c", "seq 1 500"))
        await provider.wait(sandbox_id)
        expected = [f"{i}\n".encode() for i in range(1, 501)]
        assert await collect(provider, sandbox_id) == expected
        assert await collect(provider, sandbox_id) == expected

    async def test_output_follows_running_container(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """Lines arrive while the container still runs, and iteration ends at exit."""
        script = "echo one; until [ -f go ]; do sleep 0.05; done; echo two"
        spec = make_spec("sh", "-c", script, workdir="/mission/artifacts")
        sandbox_id = await started(spec)
        items = provider.output(sandbox_id)
        assert await anext(items) == b"one\n"
        state = await run_cli(["docker", "inspect", "-f", "{{.State.Running}}", sandbox_id])
        assert state.stdout == b"true\n"
        (artifacts / "go").write_text("")
        assert [item async for item in items] == [b"two\n"]
        assert await provider.wait(sandbox_id) == 0

    async def test_stdout_and_stderr_merged_in_order(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """stdout and stderr arrive as one stream in the order they were written."""
        script = "for i in 1 2 3; do echo out$i; sleep 0.1; echo err$i >&2; sleep 0.1; done"
        sandbox_id = await started(make_spec("sh", "-c", script))
        lines = await collect(provider, sandbox_id)
        assert lines == [b"out1\n", b"err1\n", b"out2\n", b"err2\n", b"out3\n", b"err3\n"]

    async def test_unterminated_last_line(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """A last line without newline is still yielded."""
        sandbox_id = await started(make_spec("sh", "-c", "echo a; printf b"))
        assert await collect(provider, sandbox_id) == [b"a\n", b"b"]

    async def test_long_line_in_pieces(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """A 1.5 MiB line arrives in pieces no longer than the limit, nothing lost."""
        n = 1536 * 1024
        script = f"head -c {n} /dev/zero | tr '\\0' a; echo; echo end"
        sandbox_id = await started(make_spec("sh", "-c", script))
        # Read once the container is done: Docker's own follow mode was seen
        # (once, under heavy load) to garble a line this long while it was
        # being written; splitting is what this test is about.
        assert await provider.wait(sandbox_id) == 0
        items = await collect(provider, sandbox_id)
        assert max(len(i) for i in items) <= provider.max_line_bytes
        joined = b"".join(items)
        assert (len(joined), joined.count(b"a"), joined[-5:]) == (n + 5, n, b"\nend\n")
        assert joined == b"a" * n + b"\nend\n"
        assert items[-1] == b"end\n"
        assert len(items) == n // provider.max_line_bytes + 2

    async def test_binary_output(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """Binary output, NUL bytes and all, is read without error and line structure kept."""
        script = "echo start; head -c 200000 /dev/urandom; printf '\\000\\377x\\n'; echo; echo end"
        sandbox_id = await started(make_spec("sh", "-c", script))
        items = await collect(provider, sandbox_id)
        assert await provider.wait(sandbox_id) == 0
        assert items[0] == b"start\n"
        assert items[-1] == b"end\n"
        assert max(len(i) for i in items) <= provider.max_line_bytes

    async def test_stop(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """stop() ends a running container, whose exit code then shows the signal."""
        sandbox_id = await started(make_spec("sh", "-c", "echo up; sleep 600"))
        items = provider.output(sandbox_id)
        assert await anext(items) == b"up\n"
        await provider.stop(sandbox_id, grace_seconds=1)
        assert await provider.wait(sandbox_id) in (137, 143)
        assert [item async for item in items] == []
        await provider.stop(sandbox_id)  # already stopped: quiet

    async def test_remove_is_idempotent(self, provider: DockerProvider, make_spec: MakeSpec) -> None:
        """remove() deletes the container, and a second remove() is quiet."""
        sandbox_id = await provider.start(make_spec("true"))
        await provider.remove(sandbox_id)
        await provider.remove(sandbox_id)
        assert sandbox_id not in haflow_containers()

    async def test_wait_on_removed_container(self, provider: DockerProvider, make_spec: MakeSpec) -> None:
        """wait() on a container that is gone raises a SandboxError, never hangs."""
        sandbox_id = await provider.start(make_spec("true"))
        await provider.remove(sandbox_id)
        with pytest.raises(SandboxError):
            await provider.wait(sandbox_id)

    async def test_list_finds_labelled_containers(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """list() reports each container of its instance with its labels and whether it runs."""
        running = make_spec("sleep", "600", step_id="research")
        done = make_spec("true")
        running_id = await started(running)
        done_id = await started(done)
        await provider.wait(done_id)
        found = {info.sandbox_id: info for info in await provider.list()}
        assert found[running_id].run_id == running.run_id
        assert found[running_id].mission_id == "m-0000abcd"
        assert found[running_id].step_id == "research"
        assert found[running_id].running is True
        assert found[done_id].running is False
        other = DockerProvider(instance="someone-else")
        assert not {running_id, done_id} & {info.sandbox_id for info in await other.list()}
        await provider.stop(running_id, grace_seconds=0)

    async def test_hardening(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """The container runs locked down, labelled, with only the artifacts mounted."""
        spec = make_spec("id", "-u")
        sandbox_id = await started(spec)
        await provider.wait(sandbox_id)
        info = inspect(sandbox_id)
        host = info["HostConfig"]
        assert host["CapDrop"] == ["ALL"]
        assert host["CapAdd"] is None
        assert host["SecurityOpt"] == ["no-new-privileges"]
        assert host["ReadonlyRootfs"] is True
        assert host["NetworkMode"] == "none"
        assert host["PidsLimit"] == 64
        assert host["Memory"] == 128 * 1024 * 1024
        assert host["NanoCpus"] == 500_000_000
        assert host["Privileged"] is False
        assert list(host["Tmpfs"]) == ["/tmp"]
        assert info["Config"]["User"] not in ("", "0", "root", "0:0")
        assert info["Config"]["WorkingDir"] == "/mission"
        labels = info["Config"]["Labels"]
        assert {k: v for k, v in labels.items() if k.startswith("haflow.")} == {
            "haflow.mission_id": "m-0000abcd",
            "haflow.run_id": spec.run_id,
            "haflow.step_id": "cleanup",
            "haflow.instance": SESSION_INSTANCE,
        }
        mounts = [(m["Type"], m["Source"], m["Destination"]) for m in info["Mounts"]]
        assert mounts == [("bind", str(artifacts.resolve()), "/mission/artifacts")]
        uid = (await collect(provider, sandbox_id))[0].strip()
        assert uid != b"0"

    async def test_network_when_asked(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """An agent whose definition asks for network is not put on network none."""
        sandbox_id = await started(make_spec("true", network=True))
        await provider.wait(sandbox_id)
        assert inspect(sandbox_id)["HostConfig"]["NetworkMode"] != "none"

    async def test_env_values_stay_out_of_argv(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """Env values reach the agent, but never the container's command line."""
        secret = "s3cr3t-" + uuid.uuid4().hex
        spec = make_spec("sh", "-c", 'echo "${#API_KEY}"', env={"API_KEY": secret})
        assert secret not in provider.run_args(spec)
        assert not any(secret in arg for arg in provider.run_args(spec))
        sandbox_id = await started(spec)
        assert await collect(provider, sandbox_id) == [f"{len(secret)}\n".encode()]
        info = inspect(sandbox_id)
        assert secret not in json.dumps([info["Path"], info["Args"], info["Config"]["Cmd"]])

    async def test_env_home_and_path(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """HOME and PATH go to the agent without redirecting the docker CLI."""
        env = {"HOME": "/tmp", "PATH": "/nonexistent:/bin"}
        sandbox_id = await started(make_spec("sh", "-c", 'echo "$HOME $PATH"', env=env))
        assert await collect(provider, sandbox_id) == [b"/tmp /nonexistent:/bin\n"]

    @pytest.mark.parametrize("name", ["DOCKER_HOST", "LD_PRELOAD", "PATH", "BASH_ENV", "PYTHONSTARTUP"])
    async def test_secret_names_that_steer_the_cli_are_refused(
        self, provider: DockerProvider, make_spec: MakeSpec, name: str
    ) -> None:
        """Secrets travel in the docker CLI's environment, so names that would change that process are refused."""
        with pytest.raises(SandboxError, match=name):
            await provider.start(make_spec("true", secrets={name: "x"}))

    async def test_agent_can_write_tmp_and_home(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """/tmp is a tmpfs the agent's user owns (mode 1777 alone is ignored by the engine), and HOME points there."""
        sandbox_id = await started(make_spec("sh", "-c", 'echo hi > /tmp/x && cat /tmp/x && echo "$HOME"'))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"hi\n", b"/tmp\n"]

    async def test_agent_env_never_reaches_the_cli(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """Agent env (LD_PRELOAD, DOCKER_HOST) reaches the agent through a private env file, not the host CLI."""
        env = {"LD_PRELOAD": "/nonexistent/evil.so", "DOCKER_HOST": "tcp://192.0.2.1:2375"}
        sandbox_id = await started(make_spec("sh", "-c", 'echo "$LD_PRELOAD $DOCKER_HOST"', env=env))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"/nonexistent/evil.so tcp://192.0.2.1:2375\n"]

    async def test_secret_passed_by_name(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """A secret's value reaches the agent by name and is not in docker inspect's argv."""
        sandbox_id = await started(make_spec("sh", "-c", 'echo "${#API_KEY}"', secrets={"API_KEY": "sk-123456"}))
        assert await provider.wait(sandbox_id) == 0
        assert await collect(provider, sandbox_id) == [b"9\n"]

    async def test_agent_can_write_artifacts(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec, artifacts: Path
    ) -> None:
        """The unprivileged agent may replace artifacts the daemon wrote."""
        (artifacts / "mine.md").write_text("daemon wrote this\n")
        (artifacts / "mine.md").chmod(0o644)
        sandbox_id = await started(
            make_spec("sh", "-c", "echo agent > mine.md && echo x > new.md", workdir="/mission/artifacts")
        )
        assert await provider.wait(sandbox_id) == 0
        assert (artifacts / "mine.md").read_text() == "agent\n"

    async def test_missing_command(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """A command missing from the image exits 127 with a log line saying so."""
        sandbox_id = await started(make_spec("no-such-agent-binary"))
        assert await provider.wait(sandbox_id) == 127
        (line,) = await collect(provider, sandbox_id)
        assert b"no-such-agent-binary" in line

    async def test_start_failure_leaves_nothing(
        self, provider: DockerProvider, make_spec: MakeSpec, tmp_path: Path
    ) -> None:
        """A container that cannot be created fails start() and leaves no container."""
        spec = make_spec("true", mounts=(Mount(tmp_path / "missing", "/mission/artifacts"),))
        before = set(haflow_containers())
        with pytest.raises(SandboxError, match="Could not start the agent container"):
            await provider.start(spec)
        assert set(haflow_containers()) == before

    async def test_start_same_run_twice(self, provider: DockerProvider, started: Start, make_spec: MakeSpec) -> None:
        """A run id can have only one container; the second start is refused, the first kept."""
        spec = make_spec("sleep", "600")
        sandbox_id = await started(spec)
        with pytest.raises(SandboxError):
            await provider.start(spec)
        assert sandbox_id in {i.sandbox_id for i in await provider.list()}
        await provider.stop(sandbox_id, grace_seconds=0)

    async def test_closing_output_reaps_cli(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """Abandoning output() mid-stream kills and reaps its docker logs process."""
        before = child_pids()
        sandbox_id = await started(make_spec("sh", "-c", "echo a; sleep 600"))
        items = cast(AsyncGenerator[bytes, None], provider.output(sandbox_id))  # an async generator: has aclose()
        assert await anext(items) == b"a\n"
        assert child_pids() - before
        await items.aclose()
        assert child_pids() - before == set()
        await provider.stop(sandbox_id, grace_seconds=0)

    async def test_cancelled_wait_reaps_cli(
        self, provider: DockerProvider, started: Start, make_spec: MakeSpec
    ) -> None:
        """Cancelling wait() kills and reaps its docker wait process."""
        before = child_pids()
        sandbox_id = await started(make_spec("sleep", "600"))
        task = asyncio.create_task(provider.wait(sandbox_id))
        await eventually(lambda: child_pids() - before, what="the docker wait process")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert child_pids() - before == set()
        await provider.stop(sandbox_id, grace_seconds=0)


@pytest.mark.docker
class TestCheck:
    async def test_missing_binary(self, docker_image: str) -> None:
        """A docker binary that does not exist gives advice, not a traceback."""
        with pytest.raises(SandboxUnavailable, match=r"not found\. Install Docker"):
            await DockerProvider(docker="/nonexistent/docker").check()

    async def test_binary_is_not_docker(self, tmp_path: Path, docker_image: str) -> None:
        """A 'docker' that fails says the engine does not answer and how to start it."""
        fake = tmp_path / "docker"
        fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
        fake.chmod(0o755)
        with pytest.raises(SandboxUnavailable, match=r"does not answer: Cannot connect.*dockerd"):
            await DockerProvider(docker=str(fake)).check()

    async def test_missing_image_cannot_be_built(self, docker_image: str) -> None:
        """check() with a missing image that may not be built says what to run."""
        provider = DockerProvider(default_image="haflow-agent:never-built", build_if_missing=False)
        with pytest.raises(SandboxUnavailable, match="haflowd image build"):
            await provider.check()
