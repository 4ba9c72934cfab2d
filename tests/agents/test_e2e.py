"""Each agent CLI adapter end to end: the daemon's API, real Docker, the stand-in CLIs replaying recordings.

One agent file in ``HAFLOW_HOME/workflows/agents/`` overriding a v0 agent is
all it takes to switch a step to a CLI (the documented one-file switch);
these tests do exactly that with the stand-in image.
"""

from __future__ import annotations

import json
import secrets as random
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.convert import converter
from haflowd.models import Usage
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.protocol import SandboxSpec, instance_id
from haflowd.web.app import create_app
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, until, wait_status
from tests.docker_support import OWNED_INSTANCES, haflow_containers
from tests.e2e.test_code_missions import create, git, link, make_repo

pytestmark = pytest.mark.docker

RESULT = "Created hello.txt."


@attrs.frozen
class Cli:
    """What one adapter's stand-in replays, as the daemon must report it."""

    adapter: str
    #: The secret its agent file names.
    secret: str
    usage: Usage
    result: str
    #: Lines the readable log must hold (assistant text, tool calls).
    readable: tuple[str, ...]
    #: Failure recordings: case -> the CLI's words that must reach last_error.
    failures: Mapping[str, str]
    structured: bool = True


CLIS = [
    Cli(
        "claude-code",
        "ANTHROPIC_API_KEY",
        Usage(9400, 84, 6000, 0.013560000000000001, "claude-sonnet-4-5"),
        RESULT,
        ("[assistant] I'll create the file.", "[tool] Write /workspace/hello.txt", f"[assistant] {RESULT}"),
        {
            "401": "Failed to authenticate. API Error: 401 Incorrect API key provided: sk-fake.",
            "nokey": "Not logged in · Please run /login",
            "nonet": "API Error: Can't reach the API server — check your internet or DNS (EAI_AGAIN)",
        },
    ),
    Cli(
        "codex",
        "OPENAI_API_KEY",
        Usage(4800, 120, 2048),
        RESULT,
        ("[assistant] I'll create the file.", "[command] /bin/bash -lc", f"[assistant] {RESULT}"),
        {
            "401": "unexpected status 401 Unauthorized: Incorrect API key provided: sk-fake.",
            "down": "Reconnecting... waiting for network (Connection failed: error sending request)",
        },
    ),
    Cli(
        "gemini",
        "GEMINI_API_KEY",
        Usage(1900, 25, 800, None, "gemini-2.5-flash"),
        RESULT,
        ("[assistant] I will create the file.", "[tool] write_file /workspace/hello.txt", f"[assistant] {RESULT}"),
        {"nonet": "[API Error: exception TypeError: fetch failed sending request]"},
    ),
    Cli(
        "opencode",
        "ANTHROPIC_API_KEY",
        Usage(1624, 80, 0, 0.0),
        RESULT,
        ("[assistant] I'll create the file.", "[tool] write /workspace/hello.txt", f"[assistant] {RESULT}"),
        {"401": "APIError: Incorrect API key provided: sk-fake. (HTTP 401)"},
    ),
    Cli(
        "aider",
        "OPENAI_API_KEY",
        Usage(2300, 150, 0, None, "openai/fake-model"),
        "I'll create the file.\n\nhello.txt\n\n```diff\n@@ -0,0 +1 @@\n+hello from aider\n```",
        # aider prints plain text: its output is the log as it is.
        ("Aider v0.86.2", "I'll create the file.", "Tokens: 2.3k sent, 150 received."),
        {"nonet": "The API provider's servers are down or overloaded."},
        structured=False,
    ),
]
BY_ID = {cli.adapter: cli for cli in CLIS}
FAILURES = [(cli.adapter, case) for cli in CLIS for case in cli.failures]


@attrs.define
class CountingProvider(DockerProvider):
    """The real provider, remembering every sandbox it was asked to start."""

    started: list[SandboxSpec] = attrs.field(factory=list)

    async def start(self, spec: SandboxSpec) -> str:
        self.started.append(spec)
        return await super().start(spec)


@pytest.fixture
def provider(home: Path, docker_image: str) -> CountingProvider:
    OWNED_INSTANCES.add(instance_id(home))
    return CountingProvider(default_image=docker_image, instance=instance_id(home))


#: ``await daemon()``: a client of the daemon, started once the test wrote its agent files.
StartDaemon = Callable[[], Awaitable[AppClient]]


@pytest.fixture
async def daemon(
    aiohttp_client: AiohttpClient, home: Path, docker_image: str, standin_image: str, provider: CountingProvider
) -> StartDaemon:
    """Start the daemon over real Docker once the test wrote its agent files."""

    async def make() -> AppClient:
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0, agent_image=docker_image)
        return await aiohttp_client(create_app(config, sandbox=provider))

    return make


def write_agent(home: Path, agent_id: str, cli: Cli, image: str, *, secret: str | None = None, **env: str) -> None:
    """The one-file switch: ``agent_id`` now runs ``cli`` (in the stand-in image)."""
    folder = home / "workflows" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    definition = {
        "agent_id": agent_id,
        "adapter": cli.adapter,
        "image": image,
        "secrets": [secret or cli.secret],
        "env": env,
        "memory": "128m",
        "pids_limit": 64,
        "timeout_seconds": 120,
    }
    (folder / f"{agent_id}.json").write_text(json.dumps(definition))


def mission_dir(home: Path, mission_id: str) -> Path:
    return home / "missions" / mission_id


async def run_step(client: AppClient, mission_id: str, *statuses: str) -> dict[str, Any]:
    status, body = await api(client, "POST", f"/api/missions/{mission_id}/continue")
    assert status == 200, body
    return await wait_status(client, mission_id, *statuses, timeout=90)


def usage_json(usage: Usage) -> dict[str, Any]:
    found: dict[str, Any] = converter.unstructure(usage)
    return found


async def no_containers_left() -> bool:
    return haflow_containers() == []


@pytest.fixture(params=[cli.adapter for cli in CLIS])
def cli(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Cli:
    found = BY_ID[request.param]
    monkeypatch.setenv(found.secret, "sk-test-" + random.token_hex(8))
    return found


class TestSuccess:
    @pytest.mark.timeout(180)
    async def test_recording_reaches_the_run(
        self, daemon: StartDaemon, home: Path, standin_image: str, cli: Cli
    ) -> None:
        """The run gets the recording's usage and result, a readable log, the raw events; the mission sums two runs."""
        write_agent(home, "cleanup-agent", cli, standin_image)
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        data = await run_step(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human", data.get("last_error")
        assert (
            data["artifacts"]["structured-text.md"]
            == f"# Written by the {cli.adapter.split('-')[0]} stand-in\n\n{RAW_INPUT}\n"
        )
        (run,) = data["runs"]
        assert run["exit_code"] == 0
        assert run["usage"] == usage_json(cli.usage)
        assert run["result"] == cli.result
        prompt = (mission_dir(home, mid) / "prompts" / f"{run['run_id']}.md").read_text()
        assert prompt.startswith('You are the cleanup step of the mission "Dark mode" (a feature).')

        log = (mission_dir(home, mid) / "logs" / f"{run['run_id']}.log").read_text()
        for line in cli.readable:
            assert line in log, (line, log)
        events = mission_dir(home, mid) / "logs" / f"{run['run_id']}.events.jsonl"
        if cli.structured:
            assert not any(line.startswith("{") for line in log.splitlines()), log
            raw = events.read_text().splitlines()
            decoded = [json.loads(line) for line in raw if line.startswith("{")]
            assert decoded and all("type" in event for event in decoded)
        else:
            assert not events.exists()
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run['run_id']}/log")
        assert status == 200 and cli.readable[-1] in json.dumps(body["data"], ensure_ascii=False)

        # A second run (changes requested) is added to the mission's usage.
        status, body = await api(client, "POST", f"/api/missions/{mid}/request-changes", json={"feedback": "Shorter."})
        assert status == 200, body
        data = await wait_status(client, mid, "waiting_human", "failed", timeout=90)
        assert data["status"] == "waiting_human", data.get("last_error")
        second = data["runs"][-1]
        prompt = (mission_dir(home, mid) / "prompts" / f"{second['run_id']}.md").read_text()
        assert "The reviewer asked for changes" in prompt and "<feedback>\nShorter.\n</feedback>" in prompt
        assert data["usage"] == usage_json(cli.usage + cli.usage)
        status, body = await api(client, "GET", "/api/missions")
        (item,) = body["data"]
        if cli.usage.cost_usd is None:
            assert "cost_usd" not in item
        else:
            assert item["cost_usd"] == pytest.approx(2 * cli.usage.cost_usd)
        await until(no_containers_left)


class TestFailures:
    @pytest.mark.timeout(120)
    @pytest.mark.parametrize(("adapter", "case"), FAILURES)
    async def test_failure_recording_fails_the_step(
        self,
        daemon: StartDaemon,
        home: Path,
        standin_image: str,
        monkeypatch: pytest.MonkeyPatch,
        adapter: str,
        case: str,
    ) -> None:
        """A recorded failure fails the step with the CLI's own words in last_error."""
        cli = BY_ID[adapter]
        # Not the recordings' "sk-fake": that would be redacted from their words.
        monkeypatch.setenv(cli.secret, "sk-test-" + random.token_hex(8))
        write_agent(home, "cleanup-agent", cli, standin_image, HAFLOW_STANDIN_CASE=case)
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        data = await run_step(client, mid, "failed", "waiting_human")
        assert data["status"] == "failed"
        assert data["last_error"].startswith("Step 'Cleanup' failed: ")
        assert cli.failures[case] in data["last_error"], data["last_error"]
        # aider creates the files it is given before it calls the model.
        assert data["artifacts"].get("structured-text.md", "") == ""
        await until(no_containers_left)


class TestCodegen:
    @pytest.mark.timeout(240)
    async def test_edit_becomes_a_commit(
        self, daemon: StartDaemon, home: Path, tmp_path: Path, standin_image: str, cli: Cli
    ) -> None:
        """On a linked repository the stand-in's edit in /workspace becomes the run's commit."""
        write_agent(home, "codegen-agent", cli, standin_image)
        client = await daemon()
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        mid = (await create(client, project["project_id"]))["mission_id"]
        assert (await run_step(client, mid, "waiting_human", "failed"))["status"] == "waiting_human"
        assert (await run_step(client, mid, "waiting_human", "failed"))["status"] == "waiting_human"
        data = await run_step(client, mid, "waiting_code_review", "failed")
        assert data["status"] == "waiting_code_review", data.get("last_error")
        run = data["runs"][-1]
        assert run["step_id"] == "implementation" and len(run["commit"]) == 40
        assert run["changes"] == {"files": 1, "insertions": 1, "deletions": 0}
        assert run["usage"] == usage_json(cli.usage) and run["result"] == cli.result
        prompt = (mission_dir(home, mid) / "prompts" / f"{run['run_id']}.md").read_text()
        assert "Workspace: /workspace" in prompt and "Output file:" not in prompt
        name = cli.adapter.split("-")[0]
        _, body = await api(client, "GET", f"/api/missions/{mid}/git-diff")
        assert f"+hello from {name}" in body["data"]["diff"]
        _, body = await api(client, "GET", f"/api/missions/{mid}/commits")
        assert [c["sha"] for c in body["data"]] == [run["commit"]]
        assert git(repo, "status", "--porcelain") == ""
        await until(no_containers_left)


class TestSecrets:
    @pytest.mark.timeout(60)
    async def test_missing_secret_fails_before_any_container(
        self, daemon: StartDaemon, home: Path, standin_image: str, provider: CountingProvider
    ) -> None:
        """A secret the daemon does not have fails the step naming it, and no container is created."""
        name = "HAFLOW_E2E_MISSING_" + random.token_hex(4).upper()
        write_agent(home, "cleanup-agent", BY_ID["claude-code"], standin_image, secret=name)
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        data = await run_step(client, mid, "failed", "waiting_human")
        assert data["status"] == "failed" and name in data["last_error"]
        assert data["last_error"].startswith("Step 'Cleanup' could not start: missing secret ")
        (run,) = data["runs"]
        assert "container_id" not in run
        assert provider.started == []
        log = (mission_dir(home, mid) / "logs" / f"{run['run_id']}.log").read_text()
        assert name in log

    @pytest.mark.timeout(120)
    @pytest.mark.parametrize("source", ["environment", "secrets.env"])
    async def test_secret_value_is_never_written_or_answered(
        self,
        daemon: StartDaemon,
        home: Path,
        standin_image: str,
        monkeypatch: pytest.MonkeyPatch,
        provider: CountingProvider,
        cli: Cli,
        source: str,
    ) -> None:
        """A random secret value the agent echoes is redacted: no file under HAFLOW_HOME, no API answer holds it."""
        value = "sk-e2e-" + random.token_hex(16)
        monkeypatch.delenv(cli.secret)
        if source == "environment":
            monkeypatch.setenv(cli.secret, value)
        else:
            home.mkdir(parents=True, exist_ok=True)
            (home / "secrets.env").write_text(f"{cli.secret}={value}\n")
            (home / "secrets.env").chmod(0o600)
        write_agent(home, "cleanup-agent", cli, standin_image, HAFLOW_STANDIN_ECHO=cli.secret)
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        data = await run_step(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human", data.get("last_error")
        (run,) = data["runs"]
        log = (mission_dir(home, mid) / "logs" / f"{run['run_id']}.log").read_text()
        # The stand-in did print it; the daemon wrote it down redacted.
        assert f"{cli.secret}=[redacted]" in log
        assert provider.started[0].secrets == {cli.secret: value}

        answers = [
            "/api/missions",
            f"/api/missions/{mid}",
            f"/api/missions/{mid}/runs/{run['run_id']}/log",
            f"/api/missions/{mid}/runs/{run['run_id']}/log?offset=0",
            "/api/workflows",
            "/api/health",
        ]
        answers += [f"/api/missions/{mid}/artifacts/{name}/html" for name in data["artifacts"]]
        for path in answers:
            resp = await client.get(path)
            assert resp.status == 200, path
            assert value not in await resp.text(), path
        await until(no_containers_left)
        for file in home.rglob("*"):  # not ``path``: that one is a str above
            if file.is_file() and file != home / "secrets.env":
                assert value.encode() not in file.read_bytes(), file


class TestPromptKinds:
    @pytest.mark.timeout(120)
    async def test_step_without_its_own_template(
        self, daemon: StartDaemon, home: Path, standin_image: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """oneshot's "draft" step (no draft.md) gets the generic document prompt naming its output, and succeeds."""
        cli = BY_ID["claude-code"]
        monkeypatch.setenv(cli.secret, "sk-test-" + random.token_hex(8))
        write_agent(home, "planning-agent", cli, standin_image)
        client = await daemon()
        mid = (await create_mission(client, workflowId="oneshot"))["mission_id"]
        data = await run_step(client, mid, "waiting_human", "failed")
        assert data["status"] == "waiting_human", data.get("last_error")
        prompt = (mission_dir(home, mid) / "prompts" / f"{data['runs'][0]['run_id']}.md").read_text()
        assert prompt.startswith('You are the Draft step of the mission "Dark mode" (a feature).')
        assert prompt.endswith("Output file: /mission/artifacts/implementation-plan.md\n")
        assert data["artifacts"]["implementation-plan.md"].startswith("# Written by the claude stand-in")

    @pytest.mark.timeout(180)
    async def test_document_implementation_step(
        self, daemon: StartDaemon, home: Path, standin_image: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """standard-feature's implementation step writes a document: it gets the document prompt, not codegen's."""
        cli = BY_ID["codex"]
        monkeypatch.setenv(cli.secret, "sk-test-" + random.token_hex(8))
        write_agent(home, "impl-agent", cli, standin_image)
        client = await daemon()
        mid = (await create_mission(client))["mission_id"]
        # Each continue approves a gate, which starts the next agent step.
        for _ in range(4):
            status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
            assert status == 200, body
            data = await wait_status(client, mid, "waiting_human", "failed", timeout=90)
            assert data["status"] == "waiting_human", data.get("last_error")
        assert data["status"] == "waiting_human" and data["current_step"] == 7, data.get("last_error")
        prompt = (mission_dir(home, mid) / "prompts" / f"{data['runs'][-1]['run_id']}.md").read_text()
        assert prompt.startswith('You are the Implementation step of the mission "Dark mode"')
        assert "Output file: /mission/artifacts/implementation-result.json" in prompt and "Workspace:" not in prompt
