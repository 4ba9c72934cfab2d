"""The command-line client (``haflowd status``, ``haflowd missions ...``) against real daemons."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from haflowd import __version__
from haflowd.cli import client as client_module
from haflowd.cli.client import Client, ClientError, resolve_token
from haflowd.cli.main import main
from haflowd.models import RUNNING_STATUSES, MissionStatus
from tests.conftest import AppClient, create_mission, detail, until, wait_status
from tests.daemon_support import Daemon, child_env, free_port
from tests.fakes import Behaviour, FakeSandbox


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with Daemon(home=tmp_path_factory.mktemp("client") / "home") as running:
        yield running


@pytest.fixture(autouse=True)
def no_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The client must not pick up the developer's own daemon settings."""
    for name in ("HAFLOW_URL", "HAFLOW_TOKEN", "haflow_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HAFLOW_HOME", str(tmp_path / "client-home"))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys: pytest.CaptureFixture[str], daemon: Daemon, *extra: str) -> dict[str, Any]:
    code, out, err = run(
        capsys, "missions", "create", "--url", daemon.url, "--title", "Dark mode", "--json", "--input", "-", *extra
    )
    assert code == 0, err
    created: dict[str, Any] = json.loads(out)
    return created


@pytest.fixture
def stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("Add a dark mode toggle.\n"))


class TestStatus:
    def test_human_status(self, daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
        """status names the version, the Docker engine and the missions folder."""
        code, out, _ = run(capsys, "status", "--url", daemon.url)
        assert code == 0
        assert f"haflowd {__version__} at {daemon.url}: degraded" in out
        assert "docker engine: NOT available" in out
        assert "missions folder: writable" in out

    def test_json_status(self, daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
        """status --json prints the health data for scripts."""
        code, out, _ = run(capsys, "status", "--url", daemon.url, "--json")
        data = json.loads(out)
        assert code == 0
        assert data["version"] == __version__ and data["docker"] is False and data["missions_dir_writable"] is True

    def test_url_from_environment(
        self, daemon: Daemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """HAFLOW_URL is used when --url is not given."""
        monkeypatch.setenv("HAFLOW_URL", daemon.url)
        code, out, _ = run(capsys, "status")
        assert code == 0 and daemon.url in out

    def test_daemon_down_exits_3(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A daemon that does not answer gives exit code 3 and says so."""
        code, out, err = run(capsys, "status", "--url", f"http://127.0.0.1:{free_port()}")
        assert code == client_module.EXIT_UNREACHABLE
        assert out == ""
        assert "cannot reach the daemon" in err and "Is it running?" in err

    def test_console_script_process(self, daemon: Daemon) -> None:
        """python -m haflowd status works as a process of its own."""
        done = subprocess.run(
            [sys.executable, "-m", "haflowd", "status", "--url", daemon.url],
            capture_output=True,
            text=True,
            env=child_env(),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert "docker engine" in done.stdout


class TestMissions:
    def test_create_from_stdin_then_list_and_show(
        self, daemon: Daemon, capsys: pytest.CaptureFixture[str], stdin: None
    ) -> None:
        """A mission created from stdin appears in list and show."""
        code, out, _ = run(capsys, "missions", "create", "--url", daemon.url, "--title", "From stdin")
        assert code == 0
        assert out.startswith("created m-") and "status ready" in out
        mission_id = out.split()[1]
        code, out, _ = run(capsys, "missions", "list", "--url", daemon.url)
        assert code == 0
        assert out.splitlines()[0].split() == ["ID", "STATUS", "STEP", "UPDATED", "TITLE"]
        assert any(line.startswith(mission_id) and "Cleanup" in line for line in out.splitlines())
        code, out, _ = run(capsys, "missions", "show", mission_id, "--url", daemon.url)
        assert code == 0
        assert "From stdin" in out and "raw-input.md (24 bytes)" in out and "step 1/8: Cleanup" in out

    def test_create_from_file_as_json(self, daemon: Daemon, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        """--input FILE and --workflow reach the API; --json prints the new MissionMeta."""
        text = tmp_path / "input.md"
        text.write_text("Fix the login bug.")
        code, out, _ = run(
            capsys,
            "missions",
            "create",
            "--url",
            daemon.url,
            "--title",
            "Login",
            "--type",
            "bugfix",
            "--workflow",
            "oneshot",
            "--input",
            str(text),
            "--json",
        )
        meta = json.loads(out)
        assert code == 0
        assert (meta["type"], meta["workflow_id"], meta["status"], meta["current_step"]) == (
            "bugfix",
            "oneshot",
            "ready",
            0,
        )
        _, shown, _ = run(capsys, "missions", "show", meta["mission_id"], "--url", daemon.url, "--json")
        assert json.loads(shown)["artifacts"] == {"raw-input.md": "Fix the login bug."}

    def test_refusal_exits_1_with_the_api_message(
        self, daemon: Daemon, capsys: pytest.CaptureFixture[str], stdin: None
    ) -> None:
        """An unknown workflow is the API's 400, shown with its message and exit code 1."""
        code, out, err = run(capsys, "missions", "create", "--url", daemon.url, "--title", "x", "--workflow", "nope")
        assert code == client_module.EXIT_REFUSED
        assert out == ""
        assert "unknown workflow @ $.workflowId" in err and "(HTTP 400)" in err

    def test_unknown_mission(self, daemon: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
        """show of an unknown id says the mission was not found."""
        code, _, err = run(capsys, "missions", "show", "m-00000000", "--url", daemon.url)
        assert code == 1 and "Mission not found: m-00000000 (HTTP 404)" in err

    def test_missing_input_on_a_terminal(
        self, daemon: Daemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """create without --input on a terminal explains how to give the text."""
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
        code, _, err = run(capsys, "missions", "create", "--url", daemon.url, "--title", "x")
        assert code == 2 and "--input FILE" in err

    def test_continue_without_docker_fails_the_step(
        self, daemon: Daemon, capsys: pytest.CaptureFixture[str], stdin: None
    ) -> None:
        """continue starts the agent step; without Docker the mission fails and logs -f ends."""
        mission_id = create(capsys, daemon)["mission_id"]
        code, out, _ = run(capsys, "missions", "continue", mission_id, "--url", daemon.url)
        assert code == 0
        # continue answers once the run is recorded; the start fails in the background.
        assert re.fullmatch(rf"{mission_id}: continued; now (running_code_agent|failed) at Cleanup", out.strip())
        code, out, _ = run(capsys, "missions", "logs", mission_id, "--url", daemon.url, "-f")
        assert code == 0
        assert out.splitlines()[0].startswith("== r-") and out.splitlines()[-1] == f"== {mission_id} is failed =="
        code, out, _ = run(capsys, "missions", "show", mission_id, "--url", daemon.url)
        assert "last error: Step 'Cleanup' could not start" in out and "exit " not in out

    def test_cancel_when_nothing_runs(self, daemon: Daemon, capsys: pytest.CaptureFixture[str], stdin: None) -> None:
        """cancel of a mission that is not running is the API's 409."""
        mission_id = create(capsys, daemon)["mission_id"]
        code, _, err = run(capsys, "missions", "cancel", mission_id, "--url", daemon.url)
        assert code == 1 and "No agent step is running for this mission (HTTP 409)" in err

    def test_logs_without_runs(self, daemon: Daemon, capsys: pytest.CaptureFixture[str], stdin: None) -> None:
        """logs of a mission that never ran says so and succeeds."""
        mission_id = create(capsys, daemon)["mission_id"]
        code, out, err = run(capsys, "missions", "logs", mission_id, "--url", daemon.url)
        assert code == 0 and out == "" and "no runs yet" in err


class TestToken:
    # A classmethod: pytest 9 deprecates class-scoped fixtures on instances (each test gets a new one).
    @pytest.fixture(scope="class")
    @classmethod
    def guarded(cls, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
        home = tmp_path_factory.mktemp("guarded") / "home"
        with Daemon(home=home, env={"HAFLOW_TOKEN": "s3cret-token"}) as running:
            yield running

    def test_without_token_is_refused(self, guarded: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
        """A daemon with a token answers 401 to a client without it."""
        code, _, err = run(capsys, "status", "--url", guarded.url)
        assert code == 1 and "(HTTP 401)" in err and "Bearer" in err

    def test_token_flag_and_environment(
        self, guarded: Daemon, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """--token and HAFLOW_TOKEN both authenticate."""
        assert run(capsys, "status", "--url", guarded.url, "--token", "s3cret-token")[0] == 0
        monkeypatch.setenv("HAFLOW_TOKEN", "s3cret-token")
        assert run(capsys, "status", "--url", guarded.url)[0] == 0

    def test_token_never_printed(self, guarded: Daemon, capsys: pytest.CaptureFixture[str]) -> None:
        """Neither the client's output nor the daemon's log carries the token."""
        code, out, err = run(capsys, "missions", "list", "--url", guarded.url, "--token", "s3cret-token")
        assert code == 0
        assert "s3cret-token" not in out + err
        assert "s3cret-token" not in guarded.stderr + guarded.stdout


class TestResolveToken:
    def test_precedence(self, tmp_path: Path) -> None:
        """--token beats HAFLOW_TOKEN, which beats the local token file."""
        (tmp_path / "token").write_text("from-file\n")
        env = {"HAFLOW_HOME": str(tmp_path), "HAFLOW_TOKEN": "from-env"}
        assert resolve_token("http://127.0.0.1:4000", "flag", env) == "flag"
        assert resolve_token("http://127.0.0.1:4000", None, env) == "from-env"
        assert resolve_token("http://localhost:4000", None, {"HAFLOW_HOME": str(tmp_path)}) == "from-file"

    @pytest.mark.parametrize("url", ["http://10.0.0.5:4000", "https://haflow.example"])
    def test_token_file_stays_local(self, tmp_path: Path, url: str) -> None:
        """The local daemon's token file is never sent to another host."""
        (tmp_path / "token").write_text("from-file\n")
        assert resolve_token(url, None, {"HAFLOW_HOME": str(tmp_path)}) is None


class TestFollow:
    async def test_follows_a_live_run_to_the_gate(
        self,
        client: AppClient,
        fake: FakeSandbox,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        """logs -f prints lines as they arrive and stops once the mission waits for a human."""
        monkeypatch.setattr(client_module, "FOLLOW_INTERVAL", 0.02)
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=(b"thinking hard\n",))
        mission_id = (await create_mission(client))["mission_id"]
        await client.post(f"/api/missions/{mission_id}/continue")
        url = str(client.make_url("")).rstrip("/")
        follower = asyncio.create_task(asyncio.to_thread(main, ["missions", "logs", mission_id, "-f", "--url", url]))
        seen: list[str] = []

        async def first_line_shown() -> bool:
            seen.append(capsys.readouterr().out)
            return "starting step cleanup" in "".join(seen)

        await until(first_line_shown)
        gate.set()
        assert await follower == 0
        await wait_status(client, mission_id, "waiting_human")
        out = "".join(seen) + capsys.readouterr().out
        assert out.startswith("== r-")
        assert "[agent] cleanup-agent starting step cleanup" in out
        assert "thinking hard" in out and "[agent] wrote structured-text.md" in out
        assert out.rstrip().endswith(f"== {mission_id} is waiting_human ==")


class _Digest(io.TextIOBase):
    """A stdout that keeps only a hash and the size of what is written (a 1 GiB log stays out of memory)."""

    def __init__(self) -> None:
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, text: str) -> int:
        data = text.encode()
        self.hash.update(data)
        self.size += len(data)
        return len(text)


class TestFollowLargeLog:
    @pytest.mark.timeout(900)
    async def test_follows_past_one_gibibyte(
        self, client: AppClient, fake: FakeSandbox, home: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """logs -f prints a log of more than 1 GiB exactly, byte for byte, paging by offset."""
        monkeypatch.setattr(client_module, "FOLLOW_INTERVAL", 0.02)
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=(b"after the flood\n",))
        # 1 GiB + a bit, with multi-byte characters, so page cuts fall inside them.
        block = "".join(f"line {i:07d} éü€ {'x' * 40}\n" for i in range(16_000)).encode()
        printed = FakeSandbox.output

        async def flood(self: FakeSandbox, sandbox_id: str) -> AsyncIterator[bytes]:
            """The agent prints the flood after its first line (and the stored output holds it too)."""
            first = True
            async for item in printed(self, sandbox_id):
                yield item
                if first:
                    first = False
                    for _ in range((1 << 30) // len(block) + 1):
                        yield block

        monkeypatch.setattr(FakeSandbox, "output", flood)
        mission_id = (await create_mission(client))["mission_id"]
        await client.post(f"/api/missions/{mission_id}/continue")
        run_id = (await detail(client, mission_id))["runs"][0]["run_id"]
        log_path = home / "missions" / mission_id / "logs" / f"{run_id}.log"
        await until(lambda: _has_text(log_path, b"starting step"))
        sink = _Digest()
        monkeypatch.setattr(sys, "stdout", sink)
        url = str(client.make_url("")).rstrip("/")
        follower = asyncio.create_task(asyncio.to_thread(main, ["missions", "logs", mission_id, "-f", "--url", url]))
        await until(lambda: _true(sink.size > 1 << 30), timeout=300)
        gate.set()
        assert await follower == 0
        monkeypatch.undo()
        expected = hashlib.sha256()
        expected.update(f"== {run_id} (cleanup) ==\n".encode())
        with log_path.open("rb") as f:
            while chunk := f.read(1 << 24):
                expected.update(chunk)
        expected.update(f"== {mission_id} is waiting_human ==\n".encode())
        assert log_path.stat().st_size > 1 << 30
        assert sink.hash.hexdigest() == expected.hexdigest()
        log_path.unlink()


async def _has_text(path: Path, text: bytes) -> bool:
    return path.exists() and text in path.read_bytes()


async def _true(value: bool) -> bool:
    return value


class TestClientObject:
    def test_non_json_answer(self, daemon: Daemon) -> None:
        """A non-JSON answer (not a haflowd API) is a clear refusal, not a crash."""
        with pytest.raises(ClientError) as info:
            Client(url=daemon.url).call("GET", "/")
        assert info.value.exit_code == client_module.EXIT_REFUSED and "without a JSON answer" in info.value.message


class TestRunningStatuses:
    @pytest.mark.parametrize("status", [s.value for s in MissionStatus])
    def test_json_statuses_are_looked_up_in_the_models_set(self, status: str) -> None:
        """`logs -f` asks models.RUNNING_STATUSES, which finds a plain status string from JSON like its enum member."""
        assert (status in RUNNING_STATUSES) == (MissionStatus(status) in RUNNING_STATUSES)
        assert not hasattr(client_module, "RUNNING")
