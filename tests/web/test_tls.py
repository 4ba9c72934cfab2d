"""HTTPS: with HAFLOW_TLS_CERT and HAFLOW_TLS_KEY the daemon speaks TLS 1.2+, and pods fetch areas over it."""

from __future__ import annotations

import asyncio
import contextlib
import io
import ssl
import subprocess
import sys
import tarfile
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from haflowd.config import Config, ConfigError
from haflowd.errors import HaflowError
from haflowd.sandbox import Mount
from haflowd.sandbox.areas import plan_areas
from haflowd.web import serving
from haflowd.web.app import create_app
from haflowd.web.keys import TRANSFERS
from haflowd.web.tls import server_context
from tests.daemon_support import Daemon, child_env, free_port
from tests.fakes import FakeSandbox
from tests.tls_support import self_signed_cert
from tests.waiting import eventually


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM)."""
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def trusting(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


class TestConfig:
    def test_both_or_neither(self, tmp_path: Path) -> None:
        """A certificate without a key (or the reverse) is a ConfigError naming both settings."""
        for env in ({"HAFLOW_TLS_CERT": "/c.pem"}, {"HAFLOW_TLS_KEY": "/k.pem"}):
            with pytest.raises(ConfigError, match="HAFLOW_TLS_CERT and HAFLOW_TLS_KEY"):
                Config.from_env(env, home=tmp_path)
        both = Config.from_env({"HAFLOW_TLS_CERT": "/c.pem", "HAFLOW_TLS_KEY": "/k.pem"}, home=tmp_path)
        assert both.tls and both.tls_cert == Path("/c.pem") and both.tls_key == Path("/k.pem")
        neither = Config.from_env({}, home=tmp_path)
        assert not neither.tls and server_context(neither) is None

    def test_context_speaks_tls_1_2_or_later(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """The server's context refuses anything older than TLS 1.2."""
        config = Config.from_env({"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(cert[1])}, home=tmp_path)
        context = server_context(config)
        assert context is not None and context.minimum_version == ssl.TLSVersion.TLSv1_2

    def test_tls_does_not_replace_the_token(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """Listening beyond loopback for pods still needs the daemon's token, HTTPS or not."""
        env = {"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(cert[1])}
        exposed = Config.from_env(env, home=tmp_path, host="0.0.0.0")  # never bound here
        with pytest.raises(HaflowError, match="without a token"):
            create_app(exposed, sandbox=FakeSandbox())

    def test_unusable_files_are_named(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """A missing key file, or a key that is not one, fails with a message naming the file."""
        missing = Config.from_env(
            {"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(tmp_path / "nope.pem")}, home=tmp_path
        )
        with pytest.raises(HaflowError, match=r"nope\.pem does not exist"):
            server_context(missing)
        garbage = tmp_path / "garbage.pem"
        garbage.write_text("not a key\n")
        wrong = Config.from_env({"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(garbage)}, home=tmp_path)
        with pytest.raises(HaflowError, match=r"garbage\.pem"):
            server_context(wrong)


@contextlib.asynccontextmanager
async def served(config: Config) -> AsyncIterator[tuple[int, aiohttp.web.Application]]:
    app = create_app(config, sandbox=FakeSandbox())
    port = free_port()
    task = asyncio.create_task(serving.serve(app, "127.0.0.1", port, ssl_context=server_context(config)))

    async def listening() -> bool:
        with contextlib.suppress(OSError):
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return True
        return False

    try:
        await eventually(listening, what=f"the server to listen on port {port}")
        yield port, app
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class TestServing:
    async def test_pod_fetches_areas_over_https(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """A client trusting the certificate downloads a run's areas with its ticket; plain HTTP gets nowhere."""
        home = tmp_path / "home"
        env = {"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(cert[1])}
        config = Config.from_env(env, home=home, token="daemon-token-0123456789")
        work = home / "missions" / "m-0123abcd" / "work"
        work.mkdir(parents=True)
        (work / "a.txt").write_text("over TLS\n")
        async with served(config) as (port, app):
            plans = plan_areas([Mount(work, "/workspace")])
            token = app[TRANSFERS].issue(run_id="r-0123abcd", plans=plans, direction="in", uid=1, gid=1, ttl_seconds=60)
            async with aiohttp.ClientSession() as session:
                url = f"https://localhost:{port}/api/transfers/in"
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(url, headers=headers, ssl=trusting(cert[0])) as resp:
                    assert resp.status == 200
                    body = await resp.read()
                with pytest.raises(aiohttp.ClientError):
                    async with session.get(f"http://localhost:{port}/api/transfers/in", headers=headers) as resp:
                        await resp.read()
                with pytest.raises(aiohttp.ClientConnectorCertificateError):
                    async with session.get(url, headers=headers) as resp:  # the system's CAs: not trusted
                        await resp.read()
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            member = tar.extractfile("a0/a.txt")
            assert member is not None and member.read() == b"over TLS\n"

    def test_cli_serves_https(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """`haflowd serve` with both settings says https:// and answers over TLS."""
        env = {"HAFLOW_TLS_CERT": str(cert[0]), "HAFLOW_TLS_KEY": str(cert[1])}
        with Daemon(tmp_path / "home", env=env) as daemon:
            url = f"https://127.0.0.1:{daemon.port}/api/health"
            with urllib.request.urlopen(url, context=trusting(cert[0]), timeout=10) as resp:
                assert resp.status == 200
            assert f"listening on https://127.0.0.1:{daemon.port}" in daemon.stdout

    def test_cli_refuses_half_a_setting(self, tmp_path: Path, cert: tuple[Path, Path]) -> None:
        """A certificate without its key stops `haflowd serve` with a clear message, before listening."""
        done = subprocess.run(
            [sys.executable, "-m", "haflowd", "serve", "--port", "0", "--home", str(tmp_path / "home")],
            capture_output=True,
            text=True,
            env=child_env({"HAFLOW_TLS_CERT": str(cert[0])}),
            timeout=60,
        )
        assert done.returncode == 1
        assert "HAFLOW_TLS_CERT and HAFLOW_TLS_KEY" in done.stderr and "Traceback" not in done.stderr
