"""The remote Docker provider's parts that need no engine: configuration and volume planning."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest

from haflowd.config import Config
from haflowd.sandbox import Mount, SandboxError, SandboxSpec
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider, pack, plan_volumes
from haflowd.sandbox.registry import provider_for


def spec(*mounts: Mount, **changes: Any) -> SandboxSpec:
    return SandboxSpec(
        mission_id="m-0000abcd", run_id="r-1", step_id="s", image="img:1", command=("true",), mounts=mounts, **changes
    )


class TestConfig:
    def test_default_is_local(self, tmp_path: Path) -> None:
        """Without HAFLOW_SANDBOX the daemon uses the local Docker provider."""
        config = Config.from_env({}, home=tmp_path)
        assert config.sandbox == "docker"
        assert type(provider_for(config)) is DockerProvider

    @pytest.mark.parametrize(
        ("env", "host", "context"),
        [
            ({"HAFLOW_DOCKER_HOST": "ssh://agent@builder"}, "ssh://agent@builder", None),
            ({"HAFLOW_DOCKER_CONTEXT": "builder-tls"}, None, "builder-tls"),
        ],
    )
    def test_remote(self, tmp_path: Path, env: dict[str, str], host: str | None, context: str | None) -> None:
        """HAFLOW_SANDBOX=remote-docker picks the remote provider, pointed by host or context."""
        config = Config.from_env({"HAFLOW_SANDBOX": "remote-docker", **env}, home=tmp_path)
        sandbox = provider_for(config)
        assert isinstance(sandbox, RemoteDockerProvider)
        assert (sandbox.docker_host, sandbox.context) == (host, context)

    @pytest.mark.parametrize(
        "env",
        [
            {"HAFLOW_SANDBOX": "remote-docker"},
            {"HAFLOW_SANDBOX": "remote-docker", "HAFLOW_DOCKER_HOST": "tcp://x:2376", "HAFLOW_DOCKER_CONTEXT": "c"},
            {"HAFLOW_SANDBOX": "podman"},
        ],
    )
    def test_invalid(self, tmp_path: Path, env: dict[str, str]) -> None:
        """A remote sandbox without exactly one engine, or an unknown kind, is refused at start-up."""
        with pytest.raises(ValueError, match=r"HAFLOW_DOCKER_HOST|sandbox"):
            Config.from_env(env, home=tmp_path)


class TestEnvironment:
    def test_host_replaces_inherited_engine(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The CLI's environment names the configured engine, whatever the daemon inherited."""
        monkeypatch.setenv("DOCKER_CONTEXT", "elsewhere")
        env = RemoteDockerProvider(docker_host="ssh://a@b").target_env()
        assert env["DOCKER_HOST"] == "ssh://a@b" and "DOCKER_CONTEXT" not in env
        env = RemoteDockerProvider(context="ctx").target_env({"DOCKER_HOST": "tcp://old", "X": "1"})
        assert env == {"DOCKER_CONTEXT": "ctx", "X": "1"}

    def test_needs_exactly_one_engine(self) -> None:
        """A provider without an engine, or with two, cannot be made."""
        with pytest.raises(ValueError, match="exactly one"):
            RemoteDockerProvider()


class TestPlan:
    def test_folders_and_file(self, tmp_path: Path) -> None:
        """Each mount becomes a volume; a file's volume sits on its folder; nested mounts are kept out."""
        (tmp_path / "w" / ".git").mkdir(parents=True)
        (tmp_path / "g").mkdir()
        (tmp_path / "p.md").write_text("p")
        volumes = plan_volumes(
            spec(
                Mount(tmp_path / "w", "/workspace"),
                Mount(tmp_path / "g", "/workspace/.git", read_only=True),
                Mount(tmp_path / "p.md", "/mission/prompt.md", read_only=True),
            )
        )
        assert [(v.name, v.target, v.member, v.is_file, v.read_only, v.keep) for v in volumes] == [
            ("haflow-r-1-0", "/workspace", "workspace", False, False, (".git",)),
            ("haflow-r-1-1", "/workspace/.git", ".git", False, True, ()),
            ("haflow-r-1-2", "/mission", "prompt.md", True, True, ()),
        ]
        args = RemoteDockerProvider(docker_host="unix:///x").run_args(spec(Mount(tmp_path / "w", "/workspace")))
        assert "type=volume,src=haflow-r-1-0,dst=/workspace,volume-nocopy" in args
        assert not any("type=bind" in arg for arg in args)

    @pytest.mark.parametrize(
        ("mounts", "message"),
        [
            ((Mount(Path("/nonexistent-haflow"), "/m"),), "does not exist"),
            ((Mount(Path("."), "/"),), "Cannot mount"),
            ((Mount(Path("."), "/a"), Mount(Path("."), "/a/b/c")), "nested deeper"),
        ],
    )
    def test_refused(self, mounts: tuple[Mount, ...], message: str) -> None:
        """Mounts a remote engine cannot carry are refused before anything is created."""
        with pytest.raises(SandboxError, match=message):
            plan_volumes(spec(*mounts))

    def test_egress_refused(self) -> None:
        """An egress allowlist is refused rather than run with an open network."""
        with pytest.raises(SandboxError, match="not supported"):
            RemoteDockerProvider(docker_host="unix:///x").run_args(spec(egress=("example.com:443",)))


class TestPack:
    def test_owner_and_symlinks(self, tmp_path: Path) -> None:
        """The tar stream is owned by the agent's user, keeps symlinks unfollowed and leaves out pipes."""
        src = tmp_path / "src"
        src.mkdir()
        (src / "a").write_text("a")
        (src / "out").symlink_to("/etc/passwd")
        os.mkfifo(src / "pipe")
        (volume,) = plan_volumes(spec(Mount(src, "/mission/artifacts")))
        out = io.BytesIO()
        pack(volume, out, 1234, 5678)
        out.seek(0)
        with tarfile.open(fileobj=out) as tar:
            members = {m.name: m for m in tar}
        assert sorted(members) == ["artifacts", "artifacts/a", "artifacts/out"]
        assert {(m.uid, m.gid) for m in members.values()} == {(1234, 5678)}
        assert members["artifacts/out"].issym() and members["artifacts/out"].linkname == "/etc/passwd"
