"""On real Docker, an agent behind the sidecar reaches its allowed pair and nothing else.

The test builds a fake internet: its own bridge network with an "API" server,
a "forbidden" server and a DNS logger, plus a TCP service on the host. The
same probes run from the agent (behind the sidecar) and, as a negative
control, from a container on the plain bridge, which proves they can see a
leak.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import socketserver
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import attrs
import pytest

from haflowd.allowlist import PROXY_PORT, Allowlist, parse_allowlist
from haflowd.egress import sidecar
from haflowd.egress.errors import EgressUnavailable
from haflowd.egress.proxy import EgressEvent, EgressProxy, IPNetwork, Resolver
from tests.waiting import eventually

#: The sidecar image the suite builds, tagged apart from a user's own.
EGRESS_IMAGE = "haflow-egress:test"
#: Busybox plus the DNS logger, for the fake internet's servers.
FIXTURE_IMAGE = "haflow-egress-fixture:test"
#: Label on everything the fake internet starts, to find leftovers.
LABEL_TEST = "haflow.test=egress"
API_PORT = 8443
OTHER_PORT = 9000


def docker(*args: str, check: bool = True) -> str:
    """Run the Docker CLI and return its stdout."""
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"docker {args[0]} failed: {done.stderr.strip()}")
    return done.stdout.strip()


class _Banner(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(self.server.banner)  # type: ignore[attr-defined]


def banner_server(host: str, banner: bytes) -> socketserver.ThreadingTCPServer:
    """A TCP server on the host that greets every connection with ``banner``."""
    server = socketserver.ThreadingTCPServer((host, 0), _Banner)
    server.daemon_threads = True
    server.banner = banner  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@attrs.frozen
class Internet:
    """Addresses of the fake internet one test module uses."""

    network: str
    subnet: IPNetwork
    gateway: str
    api: str
    forbidden: str
    dns: str
    dns_container: str
    host_port: int
    local_port: int

    def resolver(self) -> Resolver:
        """The proxy's resolver for this internet: test names to test addresses."""
        names = {"api.test": [self.api], "forbidden.test": [self.forbidden]}

        async def resolve(host: str, port: int) -> Sequence[str]:
            if host not in names:
                raise OSError(-2, "Name or service not known")
            return names[host]

        return resolve

    def dns_queries(self) -> int:
        """How many datagrams the DNS logger has received so far."""
        return docker("logs", self.dns_container).count("query from")


def _server_script(body: str, other: str) -> str:
    return (
        f"mkdir -p /tmp/a /tmp/b && echo {body} > /tmp/a/index.html && echo {other} > /tmp/b/index.html"
        f" && httpd -p {OTHER_PORT} -h /tmp/b && exec httpd -f -p {API_PORT} -h /tmp/a"
    )


@pytest.fixture(scope="module")
def internet(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Internet]:
    """Build the images and start the fake internet; remove all of it afterwards."""
    asyncio.run(sidecar.ensure_image("docker", EGRESS_IMAGE))
    if shutil.which("cc") is None:
        pytest.fail("the egress tests need a C compiler for their DNS logger")
    context = tmp_path_factory.mktemp("fixture-image")
    subprocess.run(
        ["cc", "-static", "-O2", "-o", str(context / "dnslog"), str(Path(__file__).with_name("dnslog.c"))],
        check=True,
    )
    (context / "Dockerfile").write_text(f"FROM {docker_image}\nCOPY dnslog /usr/local/bin/dnslog\nUSER 0:0\n")
    docker("build", "--quiet", "--tag", FIXTURE_IMAGE, str(context))
    network = "hf-egress-" + uuid.uuid4().hex[:10]
    docker("network", "create", "--driver", "bridge", "--label", LABEL_TEST, network)
    host = banner_server("0.0.0.0", b"HOST-OK\n")
    local = banner_server("127.0.0.1", b"LOCAL-OK\n")
    started: list[str] = []
    try:

        def run(*command: str) -> str:
            cid = docker("run", "--detach", "--network", network, "--label", LABEL_TEST, FIXTURE_IMAGE, *command)
            started.append(cid)
            return docker(
                "inspect", "--format", f'{{{{(index .NetworkSettings.Networks "{network}").IPAddress}}}}', cid
            )

        api = run("sh", "-c", _server_script("API-OK", "API-OTHER-PORT"))
        forbidden = run("sh", "-c", _server_script("FORBIDDEN-OK", "FORBIDDEN-OTHER-PORT"))
        dns = run("dnslog")
        subnet, gateway = docker(
            "network",
            "inspect",
            "--format",
            "{{(index .IPAM.Config 0).Subnet}} {{(index .IPAM.Config 0).Gateway}}",
            network,
        ).split()
        yield Internet(
            network=network,
            subnet=ipaddress.ip_network(subnet),
            gateway=gateway,
            api=api,
            forbidden=forbidden,
            dns=dns,
            dns_container=started[-1],
            host_port=host.server_address[1],
            local_port=local.server_address[1],
        )
    finally:
        host.shutdown()
        host.server_close()
        local.shutdown()
        local.server_close()
        if started:
            docker("rm", "--force", *started, check=False)
        docker("network", "rm", network, check=False)


def probe_script(net: Internet) -> str:
    """Shell probes; each prints ``### name`` and then whatever came back."""
    connect = "printf '{}' | nc -w 5 127.0.0.1 3128"
    get = r"GET / HTTP/1.0\r\n\r\n"
    probes = {
        "allowed": connect.format(rf"CONNECT api.test:{API_PORT} HTTP/1.1\r\nHost: api.test\r\n\r\n{get}"),
        "other_host": connect.format(rf"CONNECT forbidden.test:{API_PORT} HTTP/1.1\r\n\r\n{get}"),
        "other_port": connect.format(rf"CONNECT api.test:{OTHER_PORT} HTTP/1.1\r\n\r\n{get}"),
        "raw_ip": connect.format(rf"CONNECT {net.api}:{API_PORT} HTTP/1.1\r\n\r\n{get}"),
        "plain_http": connect.format(rf"GET http://api.test:{API_PORT}/ HTTP/1.1\r\nHost: api.test\r\n\r\n"),
        "direct_api": f"printf '{get}' | nc -w 3 {net.api} {API_PORT}",
        "direct_other_port": f"printf '{get}' | nc -w 3 {net.api} {OTHER_PORT}",
        "direct_forbidden": f"printf '{get}' | nc -w 3 {net.forbidden} {API_PORT}",
        "gateway": f"nc -w 3 {net.gateway} {net.host_port} </dev/null",
        "docker0": f"nc -w 3 172.17.0.1 {net.host_port} </dev/null",
        "loopback_host_port": f"nc -w 3 127.0.0.1 {net.host_port} </dev/null",
        "dns_logger": f"nslookup api.test {net.dns}",
        "dns_default": "nslookup leak.test",
        "interfaces": "ip -o addr",
    }
    return "\n".join(f"echo '### {name}'; {command} 2>&1; echo" for name, command in probes.items())


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


async def run_container(*args: str, limit: float = 90.0) -> str:
    """``docker run --rm`` and return what it printed."""
    proc = await asyncio.create_subprocess_exec(
        "docker", "run", "--rm", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), limit)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return out.decode(errors="replace")


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short per-test folder (a Unix socket path must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="hf-egress-", dir="/tmp"))
    yield path / "run"
    shutil.rmtree(path, ignore_errors=True)


class Run:
    """One run's proxy and sidecar, as the Docker provider will set them up."""

    def __init__(self, net: Internet, socket_dir: Path, allowlist: Allowlist) -> None:
        self.allowlist = allowlist
        self.run_id = "egress-test-" + uuid.uuid4().hex[:8]
        self.events: list[EgressEvent] = []
        self.proxy = EgressProxy(
            socket_dir / "proxy.sock",
            allowlist,
            resolver=net.resolver(),
            on_event=self.events.append,
            exempt_networks=(net.subnet,),
        )
        self.sidecar = ""

    async def __aenter__(self) -> Run:
        await self.proxy.start()
        self.sidecar = await sidecar.start_sidecar(
            "docker",
            run_id=self.run_id,
            socket_path=self.proxy.socket_path,
            allowlist=self.allowlist,
            image=EGRESS_IMAGE,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        await sidecar.remove_sidecar("docker", self.sidecar)
        await self.proxy.close()
        assert docker("ps", "--all", "--quiet", "--filter", f"label=haflow.run_id={self.run_id}") == ""

    async def agent(self, script: str, image: str) -> str:
        """Run ``script`` in an agent container behind this run's sidecar."""
        args = sidecar.agent_arguments(self.sidecar, self.allowlist)
        hardening = ["--cap-drop", "ALL", "--security-opt", "no-new-privileges", "--read-only", "--user", "65534:65534"]
        return await run_container(*hardening, *args, image, "sh", "-c", script)


@pytest.mark.docker
class TestSidecar:
    """The agent reaches exactly its allowed pair; the control on the plain bridge reaches everything."""

    async def test_agent_reaches_only_the_allowed_pair(
        self, internet: Internet, socket_dir: Path, docker_image: str
    ) -> None:
        """Through the sidecar only CONNECT to api.test:8443 works; every other route, and DNS, fails."""
        dns_before = internet.dns_queries()
        async with Run(internet, socket_dir, parse_allowlist([f"api.test:{API_PORT}"])) as run:
            results = parse_probes(await run.agent(probe_script(internet), docker_image))
            await asyncio.sleep(1)  # let a stray datagram arrive before counting (a false pass at worst, never a flake)
        assert "200 Connection Established" in results["allowed"]
        assert "API-OK" in results["allowed"]
        assert "403 Forbidden" in results["other_host"] and "FORBIDDEN-OK" not in results["other_host"]
        assert "403 Forbidden" in results["other_port"] and "API-OTHER-PORT" not in results["other_port"]
        assert "400 Bad Request" in results["raw_ip"] and "API-OK" not in results["raw_ip"]
        assert "405 Method Not Allowed" in results["plain_http"] and "API-OK" not in results["plain_http"]
        for name in ("direct_api", "direct_other_port", "direct_forbidden"):
            assert "OK" not in results[name], name
            assert "HTTP/" not in results[name], name
        for name in ("gateway", "docker0", "loopback_host_port"):
            assert "HOST-OK" not in results[name], name
        assert internet.dns_queries() == dns_before
        assert "Address" not in results["dns_default"].split("Server:")[-1]
        assert results["interfaces"].split() and " lo " in results["interfaces"]
        interfaces = {line.split()[1] for line in results["interfaces"].splitlines() if line.strip()}
        assert interfaces == {"lo"}, results["interfaces"]
        allowed = [e for e in run.events if e.allowed]
        assert [(e.target, e.address) for e in allowed] == [(f"api.test:{API_PORT}", internet.api)]
        refused = {(e.target, e.status) for e in run.events if not e.allowed}
        assert refused == {
            (f"forbidden.test:{API_PORT}", 403),
            (f"api.test:{OTHER_PORT}", 403),
            (f"{internet.api}:{API_PORT}", 400),
            (f"http://api.test:{API_PORT}/", 405),
        }
        assert run.proxy.stats.allowed == 1 and run.proxy.stats.refused == 4

    async def test_negative_control_on_the_bridge(self, internet: Internet, docker_image: str) -> None:
        """From a container on the plain bridge the same probes do reach the servers, the host and DNS."""
        dns_before = internet.dns_queries()
        out = await run_container(
            "--network", internet.network, "--user", "65534:65534", docker_image, "sh", "-c", probe_script(internet)
        )
        results = parse_probes(out)
        assert "API-OK" in results["direct_api"]
        assert "API-OTHER-PORT" in results["direct_other_port"]
        assert "FORBIDDEN-OK" in results["direct_forbidden"]
        assert "HOST-OK" in results["gateway"]
        await eventually(lambda: internet.dns_queries() > dns_before, interval=0.5, what="a query in the DNS log")

    async def test_local_port_reaches_the_host_loopback(
        self, internet: Internet, socket_dir: Path, docker_image: str
    ) -> None:
        """A listed local port is 127.0.0.1:<port> in the agent and reaches the host's loopback; others do not."""
        allow = parse_allowlist([], [internet.local_port])
        script = (
            f"echo '### local'; nc -w 3 127.0.0.1 {internet.local_port} </dev/null 2>&1\n"
            f"echo '### unlisted'; printf 'CONNECT localhost:{internet.host_port} HTTP/1.1\\r\\n\\r\\n'"
            " | nc -w 3 127.0.0.1 3128 2>&1\n"
            "echo '### env'; env | grep -i proxy | sort"
        )
        async with Run(internet, socket_dir, allow) as run:
            results = parse_probes(await run.agent(script, docker_image))
        assert "LOCAL-OK" in results["local"]
        assert "403 Forbidden" in results["unlisted"] and "HOST-OK" not in results["unlisted"]
        assert "NO_PROXY=localhost,127.0.0.1" in results["env"]
        assert "https_proxy=http://127.0.0.1:3128" in results["env"]

    async def test_closing_the_proxy_cuts_egress(self, internet: Internet, socket_dir: Path, docker_image: str) -> None:
        """Once the proxy is closed the sidecar relays nothing: no fallback route exists."""
        async with Run(internet, socket_dir, parse_allowlist([f"api.test:{API_PORT}"])) as run:
            await run.proxy.close()
            out = await run.agent(
                f"printf 'CONNECT api.test:{API_PORT} HTTP/1.1\\r\\n\\r\\n' | nc -w 3 127.0.0.1 3128; echo done",
                docker_image,
            )
        assert "200" not in out and "API-OK" not in out


@pytest.mark.docker
class TestSidecarFailures:
    """A sidecar that cannot start raises, leaving nothing behind."""

    async def test_no_proxy_socket(self, internet: Internet, socket_dir: Path) -> None:
        """Starting a sidecar without a listening proxy fails before any container exists."""
        with pytest.raises(EgressUnavailable, match="not listening"):
            await sidecar.start_sidecar(
                "docker", run_id="egress-test-nosock", socket_path=socket_dir / "proxy.sock", allowlist=Allowlist()
            )

    async def test_missing_image(self, internet: Internet, socket_dir: Path) -> None:
        """A sidecar whose image is missing fails with EgressUnavailable and leaves no container."""
        run_id = "egress-test-" + uuid.uuid4().hex[:8]
        async with EgressProxy(socket_dir / "proxy.sock", Allowlist()) as proxy:
            with pytest.raises(EgressUnavailable, match="could not start"):
                await sidecar.start_sidecar(
                    "docker",
                    run_id=run_id,
                    socket_path=proxy.socket_path,
                    allowlist=Allowlist(),
                    image="haflow-egress:missing-" + run_id,
                )
        assert docker("ps", "--all", "--quiet", "--filter", f"label=haflow.run_id={run_id}") == ""

    async def test_relay_that_cannot_listen(self, internet: Internet, socket_dir: Path) -> None:
        """A relay that exits at once (here: told to listen on one port twice) fails the start, with its words."""
        run_id = "egress-test-" + uuid.uuid4().hex[:8]
        allow = attrs.evolve(Allowlist(), local_ports=frozenset({PROXY_PORT}))  # bypasses parse_allowlist on purpose
        async with EgressProxy(socket_dir / "proxy.sock", allow) as proxy:
            with pytest.raises(EgressUnavailable, match=r"cannot listen on 127\.0\.0\.1:3128"):
                await sidecar.start_sidecar(
                    "docker", run_id=run_id, socket_path=proxy.socket_path, allowlist=allow, image=EGRESS_IMAGE
                )
        assert docker("ps", "--all", "--quiet", "--filter", f"label=haflow.run_id={run_id}") == ""

    async def test_remove_is_idempotent(self) -> None:
        """Removing a sidecar that does not exist is fine."""
        await sidecar.remove_sidecar("docker", "haflow-egress-never-started-" + uuid.uuid4().hex[:6])


@pytest.mark.docker
class TestImage:
    """The sidecar image holds one static relay and is rebuilt only when its source changes."""

    def test_image_is_scratch_with_the_relay(self, internet: Internet) -> None:
        """The image runs the relay as nobody and carries the source digest."""
        fmt = '{{.Config.User}} {{json .Config.Entrypoint}} {{index .Config.Labels "haflow.egress.source"}}'
        user, entrypoint, digest = docker("image", "inspect", "--format", fmt, EGRESS_IMAGE).split()
        assert (user, entrypoint, digest) == ("65534:65534", f'["{sidecar.RELAY_PATH}"]', sidecar.source_digest())

    async def test_ensure_keeps_a_current_image(self, internet: Internet) -> None:
        """ensure_image does not rebuild an image built from the same source."""
        before = docker("image", "inspect", "--format", "{{.Id}}", EGRESS_IMAGE)
        assert await sidecar.ensure_image("docker", EGRESS_IMAGE) == EGRESS_IMAGE
        assert docker("image", "inspect", "--format", "{{.Id}}", EGRESS_IMAGE) == before

    async def test_missing_compiler(self, tmp_path: Path) -> None:
        """Without a C compiler the build fails with advice."""
        with pytest.raises(EgressUnavailable, match="no C compiler"):
            await sidecar.build_image("docker", "haflow-egress:never", cc=str(tmp_path / "no-cc"))


class TestAgentArguments:
    """The agent's docker run arguments join the sidecar and point every client at the proxy."""

    def test_without_local_ports(self) -> None:
        """Every proxy variable, both spellings, points at the relay; nothing bypasses it."""
        args = sidecar.agent_arguments("abc123", parse_allowlist(["api.test:443"]))
        assert args[:2] == ["--network", "container:abc123"]
        env = dict(a.split("=", 1) for a in args[3::2])
        assert env == {
            name: "http://127.0.0.1:3128"
            for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy")
        }

    def test_with_local_ports(self) -> None:
        """With local ports, localhost goes direct, which is the relay's tunnel to the proxy."""
        env = sidecar.agent_environment(parse_allowlist([], [11434]))
        assert env["NO_PROXY"] == env["no_proxy"] == "localhost,127.0.0.1"

    @pytest.mark.parametrize("ref", ["--privileged", "", "a b", "x;y"])
    def test_refs_are_checked(self, ref: str) -> None:
        """A sidecar reference that could be read as a flag is refused."""
        with pytest.raises(EgressUnavailable, match="Invalid"):
            sidecar.agent_arguments(ref, Allowlist())

    @pytest.mark.parametrize("run_id", ["--rm", "", "a/b", "a b"])
    def test_run_ids_are_checked(self, run_id: str) -> None:
        """A run id that could not be a container name is refused."""
        with pytest.raises(EgressUnavailable, match="Invalid"):
            sidecar.sidecar_name(run_id)

    def test_sidecar_user(self) -> None:
        """The sidecar runs as the daemon's own uid:gid, or as nobody when the daemon is root."""
        expected = sidecar.UNPRIVILEGED_USER if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"
        assert sidecar.sidecar_user() == expected
