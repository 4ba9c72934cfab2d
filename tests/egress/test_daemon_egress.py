"""Through the daemon, on real Docker: an agent file with egress reaches its pair and nothing else.

The daemon runs in-process over real Docker, its provider's egress resolver
pointed at the fake internet of :mod:`tests.egress.test_sidecar`. An agent
file overriding ``cleanup-agent`` probes every route out and writes its
output artifact only if the allowed one worked.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.catalog import builtin_dir, load_catalog
from haflowd.config import Config
from haflowd.errors import InvalidDefinition
from haflowd.sandbox import Limits, SandboxError, SandboxSpec
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.protocol import instance_id
from haflowd.web.app import create_app
from tests.conftest import AppClient, api, create_mission, detail, until, wait_status
from tests.docker_support import OWNED_INSTANCES, haflow_containers
from tests.egress.test_sidecar import API_PORT, OTHER_PORT, Internet, internet  # noqa: F401 (fixture)

AGENT_ARGS = ["{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"]
#: How long the first networked step may take (it builds the sidecar image).
FIRST_STEP_SECONDS = 180.0


def probes(net: Internet) -> str:
    """Shell probes printing ``### name`` and what came back; the proxy is read from $HTTPS_PROXY."""
    get = r"GET / HTTP/1.0\r\n\r\n"
    connect = 'printf "CONNECT {} HTTP/1.1\\r\\nHost: {}\\r\\n\\r\\n' + get + '" | nc -w 5 "$ph" "$pp"'
    checks = {
        "proxy": 'echo "proxy=${HTTPS_PROXY:-none}"',
        "allowed": connect.format(f"api.test:{API_PORT}", "api.test"),
        "other_host": connect.format(f"forbidden.test:{API_PORT}", "forbidden.test"),
        "other_port": connect.format(f"api.test:{OTHER_PORT}", "api.test"),
        "raw_ip": connect.format(f"{net.api}:{API_PORT}", net.api),
        "plain_http": f'printf "GET http://api.test:{API_PORT}/ HTTP/1.1\\r\\nHost: api.test\\r\\n\\r\\n"'
        ' | nc -w 5 "$ph" "$pp"',
        "direct_api": f'printf "{get}" | nc -w 3 {net.api} {API_PORT}',
        "direct_forbidden": f'printf "{get}" | nc -w 3 {net.forbidden} {API_PORT}',
        "gateway": f"nc -w 3 {net.gateway} {net.host_port} </dev/null",
        "docker0": f"nc -w 3 172.17.0.1 {net.host_port} </dev/null",
        "dns_logger": f"nslookup api.test {net.dns}",
        "dns_default": "nslookup leak.test",
        "interfaces": "ip -o addr",
    }
    body = "\n".join(f"echo '### {name}'; {{ {command}; }} 2>&1; echo" for name, command in checks.items())
    # Only the allowed probe's section decides whether the agent does its work.
    return (
        'p=${HTTPS_PROXY#http://}; ph=${p%:*}; pp=${p##*:}; [ -n "$p" ] || { ph=127.0.0.1; pp=3128; }\n'
        f"{{ {body}\n}} > /tmp/probes 2>&1\n"
        "cat /tmp/probes\n"
        "sed -n '/^### allowed$/,/^### other_host$/p' /tmp/probes | grep -q API-OK"
        ' && exec haflow-agent "$@"\n'
        'echo "allowed probe failed"; exit 3'
    )


def write_agent(home: Path, agent_id: str, script: str, **fields: Any) -> Path:
    """An agent file in HAFLOW_HOME overriding a built-in one."""
    folder = home / "workflows" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    command = ["sh", "-c", f"cd /mission/artifacts && {{ {script}\n}}", "sh", *AGENT_ARGS]
    definition = {"agent_id": agent_id, "command": command, "memory": "128m", "pids_limit": 64, **fields}
    path = folder / f"{agent_id}.json"
    path.write_text(json.dumps(definition))
    return path


def parse_probes(out: str) -> dict[str, str]:
    """Split probe output by ``### name`` markers."""
    results: dict[str, str] = {}
    name = ""
    for line in out.splitlines():
        if line.startswith("### "):
            name = line[4:]
            results[name] = ""
        elif name:
            results[name] += line + "\n"
    return results


@pytest.fixture
def instance(home: Path) -> Iterator[str]:
    """The provider instance of the test's HAFLOW_HOME."""
    found = instance_id(home)
    OWNED_INSTANCES.add(found)
    yield found


@pytest.fixture
def provider(docker_image: str, instance: str, home: Path, internet: Internet) -> Iterator[DockerProvider]:  # noqa: F811
    """A Docker provider whose egress resolves the fake internet's names; its socket folders are removed afterwards."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    provider = DockerProvider(default_image=docker_image, instance=instance, home=home)
    provider.egress.resolver = internet.resolver()
    provider.egress.exempt_networks = (internet.subnet,)
    root = provider.egress.root()
    yield provider
    shutil.rmtree(root, ignore_errors=True)


#: ``await daemon()``: a client of the daemon, started once the test wrote its agent files.
StartDaemon = Callable[[], Awaitable[AppClient]]


@pytest.fixture
async def daemon(aiohttp_client: AiohttpClient, home: Path, docker_image: str, provider: DockerProvider) -> StartDaemon:
    """Build the daemon over real Docker (call it after writing the agent files)."""

    async def make() -> AppClient:
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, agent_image=docker_image)
        return await aiohttp_client(create_app(config, sandbox=provider))

    return make


async def no_containers_left() -> bool:
    """Agent containers and sidecars alike are removed once the run is recorded."""
    return haflow_containers() == []


def log_of(home: Path, mission_id: str, run_id: str) -> str:
    return (home / "missions" / mission_id / "logs" / f"{run_id}.log").read_text()


async def run_cleanup_step(client: AppClient) -> tuple[str, dict[str, Any]]:
    """Create a mission, run its first (cleanup) step, and return its id and detail."""
    mid = (await create_mission(client))["mission_id"]
    status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
    assert status == 200, body
    found = await wait_status(client, mid, "waiting_human", "failed", timeout=FIRST_STEP_SECONDS)
    return mid, found


@pytest.mark.docker
class TestDaemonEgress:
    """A real agent file with egress runs through the daemon with nothing else reachable."""

    async def test_agent_reaches_only_its_pair(
        self,
        daemon: StartDaemon,
        provider: DockerProvider,
        home: Path,
        instance: str,
        internet: Internet,  # noqa: F811
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """Only CONNECT api.test:8443 works; the daemon logs every decision and leaves no sidecar or socket."""
        caplog.set_level(logging.INFO)
        dns_before = internet.dns_queries()
        write_agent(home, "cleanup-agent", probes(internet), egress=[f"api.test:{API_PORT}"])
        client = await daemon()
        mid, found = await run_cleanup_step(client)
        (run,) = found["runs"]
        log = log_of(home, mid, run["run_id"])
        assert found["status"] == "waiting_human", (found.get("last_error"), log)
        assert run["exit_code"] == 0
        assert found["artifacts"]["structured-text.md"].startswith("# Output of step cleanup by cleanup-agent")

        results = parse_probes(log)
        assert "proxy=http://127.0.0.1:3128" in results["proxy"]
        assert "200 Connection Established" in results["allowed"] and "API-OK" in results["allowed"]
        assert "403 Forbidden" in results["other_host"] and "FORBIDDEN-OK" not in results["other_host"]
        assert "403 Forbidden" in results["other_port"] and "API-OTHER-PORT" not in results["other_port"]
        assert "400 Bad Request" in results["raw_ip"] and "API-OK" not in results["raw_ip"]
        assert "405 Method Not Allowed" in results["plain_http"] and "API-OK" not in results["plain_http"]
        for name in ("direct_api", "direct_forbidden"):
            assert "OK" not in results[name] and "HTTP/" not in results[name], (name, results[name])
        for name in ("gateway", "docker0"):
            assert "HOST-OK" not in results[name], (name, results[name])
        assert "Address" not in results["dns_default"].split("Server:")[-1]
        interfaces = {line.split()[1] for line in results["interfaces"].splitlines() if line[:1].isdigit()}
        assert interfaces == {"lo"}, results["interfaces"]
        assert internet.dns_queries() == dns_before

        # A command agent's log is its raw output (re-attaching counts its
        # bytes), so the decisions go to the daemon log only.
        assert "[haflow] egress" not in log
        decisions = {
            (r.target, r.allowed)  # type: ignore[attr-defined]
            for r in caplog.records
            if r.getMessage() == "egress.connection" and getattr(r, "run_id", None) == run["run_id"]
        }
        assert decisions == {
            (f"api.test:{API_PORT}", True),
            (f"forbidden.test:{API_PORT}", False),
            (f"api.test:{OTHER_PORT}", False),
            (f"{internet.api}:{API_PORT}", False),
            (f"http://api.test:{API_PORT}/", False),
        }

        await until(no_containers_left, timeout=60)
        folder = provider.egress.folder(run["run_id"])

        async def socket_gone() -> bool:
            return not folder.exists()

        # The proxy closes right after its sidecar is removed.
        await until(socket_gone)

    async def test_agent_without_egress_has_no_network(
        self,
        daemon: StartDaemon,
        home: Path,
        internet: Internet,  # noqa: F811
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        """An agent with "network": false and no egress gets --network none: no proxy, no sidecar, every probe fails."""
        caplog.set_level(logging.INFO)
        write_agent(home, "cleanup-agent", probes(internet), network=False)
        client = await daemon()
        mid, found = await run_cleanup_step(client)
        (run,) = found["runs"]
        log = log_of(home, mid, run["run_id"])
        assert found["status"] == "failed", log
        assert run["exit_code"] == 3
        assert log.rstrip().endswith("allowed probe failed")
        results = parse_probes(log)
        assert "proxy=none" in results["proxy"]
        for name in ("allowed", "direct_api", "direct_forbidden", "gateway", "docker0"):
            assert "OK" not in results[name] and "HTTP/" not in results[name], (name, results[name])
        interfaces = {line.split()[1] for line in results["interfaces"].splitlines() if line[:1].isdigit()}
        assert interfaces == {"lo"}, results["interfaces"]
        assert not [r for r in caplog.records if r.getMessage().startswith("egress.")]
        await until(no_containers_left, timeout=60)

    async def test_run_survives_a_daemon_restart(
        self,
        daemon: StartDaemon,
        provider: DockerProvider,
        aiohttp_client: AiohttpClient,
        home: Path,
        docker_image: str,
        instance: str,
        internet: Internet,  # noqa: F811
    ) -> None:
        """A new daemon re-attaches a running egress agent and serves its proxy again (from the agent's label)."""
        script = (
            'echo "[agent] waiting for go"; until [ -f go ]; do sleep 0.05; done\n'
            f'printf "CONNECT api.test:{API_PORT} HTTP/1.1\\r\\n\\r\\nGET / HTTP/1.0\\r\\n\\r\\n"'
            " | nc -w 5 127.0.0.1 3128 > /tmp/allowed 2>&1; cat /tmp/allowed\n"
            'grep -q API-OK /tmp/allowed && exec haflow-agent "$@"; exit 3'
        )
        write_agent(home, "cleanup-agent", script, egress=[f"api.test:{API_PORT}"])
        first = await daemon()
        mid = (await create_mission(first))["mission_id"]
        status, body = await api(first, "POST", f"/api/missions/{mid}/continue")
        assert status == 200, body

        async def waiting() -> bool:
            return "waiting for go" in (await detail(first, mid)).get("current_log_tail", "")

        await until(waiting, timeout=FIRST_STEP_SECONDS)
        await first.close()  # containers keep running, as when a daemon stops

        fresh = DockerProvider(default_image=docker_image, instance=instance, home=home)
        fresh.egress.resolver = internet.resolver()
        fresh.egress.exempt_networks = (internet.subnet,)
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, agent_image=docker_image)
        second = await aiohttp_client(create_app(config, sandbox=fresh))
        (run,) = (await detail(second, mid))["runs"]
        assert fresh.egress.serving(run["run_id"])
        (home / "missions" / mid / "artifacts" / "go").write_text("")  # the API refuses writes while a step runs
        found = await wait_status(second, mid, "waiting_human", "failed", timeout=60)
        assert found["status"] == "waiting_human", (found.get("last_error"), log_of(home, mid, run["run_id"]))
        assert "200 Connection Established" in log_of(home, mid, run["run_id"])
        await until(no_containers_left, timeout=60)

        async def proxy_closed() -> bool:
            return not fresh.egress.serving(run["run_id"])

        await until(proxy_closed)
        await provider.egress.close(run["run_id"])  # the first daemon's proxy object, unreachable by now

    @pytest.mark.parametrize("how", ["cancel", "time limit"])
    async def test_stopped_run_leaves_nothing(
        self,
        daemon: StartDaemon,
        provider: DockerProvider,
        home: Path,
        instance: str,
        how: str,
    ) -> None:
        """A cancelled or timed-out egress run fails the mission and leaves no sidecar, proxy or socket."""
        limit = {"timeout_seconds": 3} if how == "time limit" else {}
        write_agent(
            home, "cleanup-agent", 'echo "[agent] waiting"; sleep 600', egress=[f"api.test:{API_PORT}"], **limit
        )
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
        assert status == 200, body
        if how == "cancel":

            async def waiting() -> bool:
                return "[agent] waiting" in (await detail(client, mid)).get("current_log_tail", "")

            await until(waiting, timeout=FIRST_STEP_SECONDS)
            status, body = await api(client, "POST", f"/api/missions/{mid}/cancel")
            assert status == 200, body
        found = await wait_status(client, mid, "failed", timeout=FIRST_STEP_SECONDS)
        assert ("ancel" if how == "cancel" else "time limit") in found["last_error"]
        (run,) = found["runs"]
        await until(no_containers_left, timeout=60)
        folder = provider.egress.folder(run["run_id"])

        async def socket_gone() -> bool:
            return not folder.exists()

        await until(socket_gone)


@pytest.mark.docker
class TestProviderEgressCleanup:
    """The Docker provider removes a run's sidecar and proxy on paths that start no agent."""

    def spec(self, image: str, **changes: Any) -> SandboxSpec:
        fields: dict[str, Any] = {
            "mission_id": "m-0e9e55aa",
            "run_id": "r-" + os.urandom(4).hex(),
            "step_id": "cleanup",
            "image": image,
            "command": ("sleep", "600"),
            "egress": (f"api.test:{API_PORT}",),
            "limits": Limits(memory="64m", pids=16),
        }
        return SandboxSpec(**{**fields, **changes})

    async def test_start_failure_after_sidecar(
        self, provider: DockerProvider, docker_image: str, instance: str
    ) -> None:
        """A start that fails after the sidecar came up (a bad env value) leaves no sidecar, proxy or socket."""
        spec = self.spec(docker_image, env={"BAD": "a\nb"})
        with pytest.raises(SandboxError, match="line break"):
            await provider.start(spec)
        assert haflow_containers() == []
        assert not provider.egress.serving(spec.run_id)
        assert not provider.egress.folder(spec.run_id).exists()

    async def test_notes_carry_the_decisions(self, provider: DockerProvider, docker_image: str) -> None:
        """With a notes sink (the engine gives one to structured agents) every decision reaches the run's log."""
        notes: list[str] = []
        connect = "printf 'CONNECT {} HTTP/1.1\\r\\n\\r\\n' | nc -w 3 127.0.0.1 3128"
        script = f"{connect.format(f'api.test:{API_PORT}')}; {connect.format(f'forbidden.test:{API_PORT}')}; true"
        spec = self.spec(docker_image, command=("sh", "-c", script), notes=notes.append)
        sandbox_id = await provider.start(spec)
        try:
            assert await provider.wait(sandbox_id) == 0
        finally:
            await provider.remove(sandbox_id)
        assert notes == [
            f"egress: only api.test:{API_PORT} reachable, through the daemon's proxy",
            f"egress allowed: api.test:{API_PORT}",
            f"egress refused (not on the allowlist): forbidden.test:{API_PORT}",
        ]
        assert haflow_containers() == []

    async def test_lonely_sidecar_removed_by_list(
        self, provider: DockerProvider, docker_image: str, instance: str
    ) -> None:
        """A sidecar whose agent never started (the daemon died in between) is removed by the next daemon's list()."""
        spec = self.spec(docker_image)
        await provider.egress.open(spec)
        try:
            assert len(haflow_containers()) == 1
            # Still starting in this process: left alone.
            assert await provider.list() == []
            assert len(haflow_containers()) == 1
            restarted = DockerProvider(default_image=docker_image, instance=instance)
            assert await restarted.list() == []
            assert haflow_containers() == []
        finally:
            await provider.egress.close(spec.run_id)


class TestEgressAgentFiles:
    """An agent file's egress is checked when definitions load."""

    @pytest.mark.parametrize(
        "entry",
        ["api.test", "*.anthropic.com:443", "10.0.0.1:443", "https://api.anthropic.com:443", "API.test:443"],
    )
    def test_malformed_entry(self, home: Path, entry: str) -> None:
        """A malformed egress entry stops loading, naming the file and the entry."""
        path = write_agent(home, "cleanup-agent", "true", egress=[entry])
        with pytest.raises(InvalidDefinition) as caught:
            load_catalog([builtin_dir(), home / "workflows"])
        assert str(path) in caught.value.message
        assert repr(entry) in caught.value.message

    def test_network_true_with_egress(self, home: Path) -> None:
        """network: true together with egress is refused, naming the file."""
        path = write_agent(home, "cleanup-agent", "true", network=True, egress=["api.anthropic.com:443"])
        with pytest.raises(InvalidDefinition, match="exclude each other") as caught:
            load_catalog([builtin_dir(), home / "workflows"])
        assert str(path) in caught.value.message

    def test_daemon_refuses_to_start(self, home: Path) -> None:
        """create_app fails on a bad agent file, so a daemon never runs with a half-checked allowlist."""
        path = write_agent(home, "cleanup-agent", "true", egress=["api.test:http"])
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0)
        with pytest.raises(InvalidDefinition, match=r"api\.test:http") as caught:
            create_app(config)
        assert str(path) in caught.value.message

    @pytest.mark.parametrize(
        ("agent_id", "expected"),
        [
            ("claude-code", ("api.anthropic.com:443",)),
            ("codex", ("api.openai.com:443",)),
            ("gemini", ("generativelanguage.googleapis.com:443",)),
            ("opencode", ("api.anthropic.com:443",)),
            ("aider", ("api.anthropic.com:443",)),
        ],
    )
    def test_shipped_real_agents(self, agent_id: str, expected: tuple[str, ...]) -> None:
        """The shipped real-agent files load with their model API as their only egress."""
        agent = load_catalog([builtin_dir()]).agents[agent_id]
        assert agent.egress == expected
        assert not agent.network and not agent.local_ports
