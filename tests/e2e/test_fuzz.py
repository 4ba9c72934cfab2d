"""Schemathesis against a live daemon: no 5xx, every answer as documented, nothing written outside HAFLOW_HOME."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import AppClient, api, wait_status
from tests.daemon_support import Daemon
from tests.fakes import Behaviour, FakeSandbox

pytestmark = pytest.mark.fuzz

#: Examples per operation and phase; with 11 operations this is several hundred requests.
EXAMPLES = 50
TOKEN = "fuzz-token-0123456789"


def schemathesis() -> str:
    # Beside this interpreter first: pip puts console scripts there even when
    # that folder is not on PATH.
    beside = Path(sys.executable).parent
    found = shutil.which("schemathesis", path=str(beside)) or shutil.which("schemathesis") or shutil.which("st")
    if found is None:
        if os.environ.get("HAFLOW_REQUIRE_FUZZ") == "1":
            pytest.fail("schemathesis is required (pip install schemathesis)")
        pytest.skip("schemathesis is not installed")
    return found


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class TestFuzz:
    @pytest.mark.timeout(900)
    @pytest.mark.parametrize("token", [None, TOKEN], ids=["loopback", "with-token"])
    def test_schemathesis_finds_nothing(self, tmp_path: Path, token: str | None) -> None:
        """Hundreds of generated requests to every endpoint: no 5xx, all answers documented, no stray files."""
        st = schemathesis()
        cwd, user_home, tmpdir, st_dir = (tmp_path / name for name in ("cwd", "user", "tmp", "st"))
        for folder in (cwd, user_home, tmpdir, st_dir):
            folder.mkdir()
        env = {"HOME": str(user_home), "TMPDIR": str(tmpdir), "HAFLOW_LOG_FORMAT": "json"}
        if token:
            env["HAFLOW_TOKEN"] = token
        daemon = Daemon(home=tmp_path / "home", env=env, cwd=cwd, logs=tmp_path / "logs").start()
        try:
            command = [
                st,
                "run",
                f"{daemon.url}/api/openapi.json",
                # Linking needs an absolute path to a git work tree with a commit: no schema
                # says that, so generated paths are rightly refused (400); tests/e2e/test_code_missions.py
                # covers that endpoint's answers instead.
                "--exclude-name",
                "POST /api/projects",
                # The transfer routes take only a one-time ticket a provider issued inside the
                # daemon, which no generated request can hold (every one would be a 401);
                # tests/sandbox/kubernetes/test_transfers.py drives them with real tickets instead.
                "--exclude-name",
                "GET /api/transfers/in",
                "--exclude-name",
                "PUT /api/transfers/out",
                "--checks",
                "all",
                "--max-examples",
                str(EXAMPLES),
                "--seed",
                "20260123",
                "--workers",
                "1",
                "--request-timeout",
                "30",
            ]
            if token:
                command += ["--header", f"Authorization: Bearer {token}"]
            done = subprocess.run(
                command,
                cwd=st_dir,
                capture_output=True,
                text=True,
                timeout=840,
                env={**os.environ, "NO_COLOR": "1", "HOME": str(st_dir)},
            )
        finally:
            code = daemon.stop()
        assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
        assert code == 0, daemon.stderr[-4000:]

        statuses = [
            json.loads(line)["status"]
            for line in daemon.stderr.splitlines()
            if line.startswith("{") and json.loads(line)["event"] == "http.request"
        ]
        assert len(statuses) >= 300
        assert [s for s in statuses if s >= 500] == []
        if token:
            assert token not in daemon.stderr

        # The daemon wrote nowhere but HAFLOW_HOME, which holds only its own layout.
        assert tree(cwd) == [] and tree(user_home) == [] and tree(tmpdir) == []
        assert {p.name for p in daemon.home.iterdir()} <= {"missions", "projects", "token"}
        for mission in (daemon.home / "missions").iterdir():
            assert mission.name.startswith("m-"), mission
            assert {p.name for p in mission.iterdir()} <= {
                "mission.json",
                "artifacts",
                "runs",
                "logs",
                "prompts",
                ".staging",
            }


# -- bad values in every body field the document lists ------------------------------------------------

#: What a hostile or broken client sends: NUL bytes, a 2 MB string (under the 5 MiB body cap), absurd numbers.
BAD_VALUES: list[object] = ["a\0b", "/tmp/a\0b", "\0", "x" * 2_000_000, 2**63, -(2**63), 10**30, 1e308, -1, 0]
#: A valid value of each field a body requires, so that only the field under test is wrong.
VALID = {"title": "t", "type": "feature", "rawInput": "x", "command": "true", "feedback": "ok", "content": "x"}
#: Free text (Markdown for agents and people): bounded by the body cap and the mission's quota, NUL allowed.
FREE_TEXT = {"rawInput", "content", "feedback"}


def _json_body_routes() -> list[tuple[str, str]]:
    from haflowd.config import Config
    from haflowd.web.app import create_app
    from haflowd.web.openapi import document
    from tests.fakes import FakeSandbox

    config = Config.from_env({"HAFLOW_AUTH": "none"}, home=Path("/nonexistent/haflow-home"), port=0)
    doc = document(create_app(config, sandbox=FakeSandbox()).router.routes())
    return [
        (method.upper(), path)
        for path, operations in doc["paths"].items()
        for method, op in operations.items()
        if method in ("post", "put") and "application/json" in op.get("requestBody", {}).get("content", {})
    ]


class TestBadValuesInEveryField:
    @pytest.mark.parametrize(("method", "path"), _json_body_routes())
    async def test_bad_values_are_4xx_never_500(
        self, client: AppClient, fake: FakeSandbox, tmp_path: Path, method: str, path: str
    ) -> None:
        """Each body field of a JSON route, set to a NUL byte, a huge string or a huge number, answers in the
        envelope and never 5xx; a value the route's schema refuses (its bounds are documented) answers 400."""
        jsonschema = pytest.importorskip("jsonschema")

        from tests.e2e.test_code_missions import create, link, make_repo

        # A code mission at its code review, so that run-command, deliver and request-changes reach the engine.
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        mission = (await create(client, project["project_id"]))["mission_id"]
        fake.behaviours["implementation"] = Behaviour(code_only=True)
        for expected in ("waiting_human", "waiting_human", "waiting_code_review"):
            await api(client, "POST", f"/api/missions/{mission}/continue")
            assert (await wait_status(client, mission, expected, "failed"))["status"] == expected

        doc = json.loads(await (await client.get("/api/openapi.json")).read())
        schema = doc["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]
        validator = jsonschema.Draft202012Validator({**schema, "components": doc["components"]})
        body_schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
        url = path.replace("{mission_id}", mission).replace("{filename}", "notes.md")
        base = {name: VALID.get(name, str(repo)) for name in body_schema.get("required", [])}
        assert body_schema["properties"], path
        # The document bounds every field but free text: strings by length and NUL, integers by a maximum.
        for field, prop in body_schema["properties"].items():
            if "maxLength" not in prop and "maximum" not in prop and "$ref" not in prop and "allOf" not in prop:
                assert field in FREE_TEXT, f"{path} {field}: no bound in the document"
            if "maxLength" in prop:
                assert prop["pattern"].startswith("^[^\\u0000]"), f"{path} {field}: NUL bytes not refused"
        failures = []
        for field in body_schema["properties"]:
            for value in BAD_VALUES:
                body = {**base, field: value}
                # As a stream: aiohttp warns of a 2 MB body given as bytes.
                raw = io.BytesIO(json.dumps(body).encode())
                status, answer = await api(client, method, url, data=raw, headers={"Content-Type": "application/json"})
                shown = f"{field}={str(value)[:12]!r}"
                if validator.is_valid(body):
                    if status >= 500:
                        failures.append(f"{shown}: {status} {answer['error']}")
                elif status != 400:
                    failures.append(f"{shown}: {status} (the schema refuses it) {answer['error']}")
        assert failures == []
