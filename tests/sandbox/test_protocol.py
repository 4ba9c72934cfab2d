"""The sandbox protocol: the real providers satisfy it, and a spec keeps its secrets out of sight."""

from __future__ import annotations

from pathlib import Path

from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider
from haflowd.sandbox.kubernetes.provider import KubernetesProvider
from haflowd.sandbox.protocol import LABEL_MISSION, LABEL_RUN, LABEL_STEP, SandboxProvider, SandboxSpec, instance_id
from tests.fakes import FakeSandbox

METHODS = ("check", "start", "output", "wait", "stop", "remove", "list", "aclose")


class TestProviders:
    def test_docker_and_the_fake_are_providers(self) -> None:
        """The local Docker provider and the tests' fake satisfy SandboxProvider."""
        assert isinstance(DockerProvider(), SandboxProvider)
        assert isinstance(FakeSandbox(), SandboxProvider)

    def test_every_provider_class_has_the_methods(self) -> None:
        """Remote Docker and Kubernetes providers define every method of the protocol."""
        for cls in (DockerProvider, RemoteDockerProvider, KubernetesProvider):
            assert all(callable(getattr(cls, name, None)) for name in METHODS), cls


class TestSpec:
    def test_secrets_are_not_in_repr_nor_compared(self) -> None:
        """A spec's repr never shows secret values, and specs differing only in secrets are equal."""
        spec = SandboxSpec("m-0123abcd", "r-0123abcd", "plan", "img", ("run",), secrets={"KEY": "sk-hidden"})
        assert "sk-hidden" not in repr(spec)
        assert spec == SandboxSpec("m-0123abcd", "r-0123abcd", "plan", "img", ("run",))

    def test_labels_name_the_run(self) -> None:
        """The labels carry the mission, run and step ids."""
        spec = SandboxSpec("m-0123abcd", "r-0123abcd", "plan", "img", ())
        assert spec.labels == {LABEL_MISSION: "m-0123abcd", LABEL_RUN: "r-0123abcd", LABEL_STEP: "plan"}


class TestInstanceId:
    def test_stable_per_resolved_home(self, tmp_path: Path) -> None:
        """The same home (however spelled) gives the same short id; another home another."""
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        first = instance_id(tmp_path / "a")
        assert first == instance_id(f"{tmp_path}/b/../a")
        assert first != instance_id(tmp_path / "b")
        assert len(first) == 12 and int(first, 16) >= 0
