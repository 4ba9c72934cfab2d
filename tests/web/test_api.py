"""The HTTP API, through real HTTP, checked against the contract's JSON field by field."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.web.api import LOG_PAGE_BYTES
from tests.conftest import RAW_INPUT, AppClient, api, create_mission, detail, until, wait_status
from tests.fakes import Behaviour, FakeSandbox

TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
META_KEYS = {
    "mission_id",
    "title",
    "type",
    "workflow_id",
    "current_step",
    "status",
    "created_at",
    "updated_at",
    "errors",
}
RUN_KEYS = {"step_id", "run_id", "started_at"}
STANDARD_STEPS = [
    {
        "step_id": "cleanup",
        "name": "Cleanup",
        "type": "agent",
        "agent": "cleanup-agent",
        "inputArtifact": "raw-input.md",
        "outputArtifact": "structured-text.md",
    },
    {
        "step_id": "review-structured",
        "name": "Review Structured",
        "type": "human-gate",
        "reviewArtifact": "structured-text.md",
    },
    {
        "step_id": "research",
        "name": "Research",
        "type": "agent",
        "agent": "research-agent",
        "inputArtifact": "structured-text.md",
        "outputArtifact": "research-output.md",
    },
    {
        "step_id": "review-research",
        "name": "Review Research",
        "type": "human-gate",
        "reviewArtifact": "research-output.md",
    },
    {
        "step_id": "planning",
        "name": "Planning",
        "type": "agent",
        "agent": "planning-agent",
        "inputArtifact": "research-output.md",
        "outputArtifact": "implementation-plan.md",
    },
    {"step_id": "review-plan", "name": "Review Plan", "type": "human-gate", "reviewArtifact": "implementation-plan.md"},
    {
        "step_id": "implementation",
        "name": "Implementation",
        "type": "agent",
        "agent": "impl-agent",
        "inputArtifact": "implementation-plan.md",
        "outputArtifact": "implementation-result.json",
    },
    {
        "step_id": "review-impl",
        "name": "Review Implementation",
        "type": "human-gate",
        "reviewArtifact": "implementation-result.json",
    },
]


def assert_meta(meta: dict[str, Any]) -> None:
    assert set(meta) - {"last_error"} == META_KEYS
    assert re.fullmatch(r"m-[0-9a-f]{8}", meta["mission_id"])
    assert TIMESTAMP.fullmatch(meta["created_at"]) and TIMESTAMP.fullmatch(meta["updated_at"])
    assert isinstance(meta["current_step"], int) and isinstance(meta["errors"], list)


def assert_run(run: dict[str, Any]) -> None:
    assert RUN_KEYS <= set(run) <= RUN_KEYS | {"finished_at", "exit_code", "container_id"}
    assert re.fullmatch(r"r-[0-9a-f]{8}", run["run_id"])
    assert TIMESTAMP.fullmatch(run["started_at"])
    if "finished_at" in run:
        assert TIMESTAMP.fullmatch(run["finished_at"])


class TestCreate:
    async def test_create_answers_201_with_meta(self, client: AppClient, home: Path) -> None:
        """POST /api/missions returns a ready MissionMeta at step 0 and writes raw-input.md."""
        status, body = await api(
            client, "POST", "/api/missions", json={"title": "Dark mode", "type": "feature", "rawInput": RAW_INPUT}
        )
        assert status == 201
        meta = body["data"]
        assert_meta(meta)
        assert "last_error" not in meta
        assert meta["title"] == "Dark mode"
        assert meta["type"] == "feature"
        assert meta["workflow_id"] == "standard-feature"
        assert meta["current_step"] == 0
        assert meta["status"] == "ready"
        assert meta["errors"] == []
        assert meta["created_at"] == meta["updated_at"]
        folder = home / "missions" / meta["mission_id"]
        assert (folder / "artifacts" / "raw-input.md").read_text() == RAW_INPUT
        assert (folder / "runs").is_dir() and (folder / "logs").is_dir()

    @pytest.mark.parametrize("mission_type", ["feature", "fix", "bugfix", "hotfix", "enhance"])
    async def test_every_mission_type_is_accepted(self, client: AppClient, mission_type: str) -> None:
        """Each of the contract's five mission types can be created."""
        meta = await create_mission(client, type=mission_type)
        assert meta["type"] == mission_type

    async def test_workflow_id_picks_the_workflow(self, client: AppClient) -> None:
        """workflowId chooses a workflow other than the default."""
        meta = await create_mission(client, workflowId="oneshot")
        assert meta["workflow_id"] == "oneshot"

    @pytest.mark.parametrize(
        ("payload", "field"),
        [
            ({"type": "feature", "rawInput": "x"}, "$.title"),
            ({"title": "", "type": "feature", "rawInput": "x"}, "title"),
            ({"title": "   ", "type": "feature", "rawInput": "x"}, "title"),
            ({"title": 7, "type": "feature", "rawInput": "x"}, "$.title"),
            ({"title": "t", "rawInput": "x"}, "$.type"),
            ({"title": "t", "type": "chore", "rawInput": "x"}, "$.type"),
            ({"title": "t", "type": "feature"}, "$.rawInput"),
            ({"title": "t", "type": "feature", "rawInput": ""}, "rawInput"),
            ({"title": "t", "type": "feature", "rawInput": ["x"]}, "$.rawInput"),
            ({"title": "t", "type": "feature", "rawInput": "x", "workflowId": "nope"}, "$.workflowId"),
            ({"title": "t", "type": "feature", "rawInput": "x", "workflowId": 5}, "$.workflowId"),
        ],
    )
    async def test_invalid_fields_are_named(
        self, client: AppClient, home: Path, payload: dict[str, Any], field: str
    ) -> None:
        """A bad create request answers 400 naming the field, and creates nothing."""
        status, body = await api(client, "POST", "/api/missions", json=payload)
        assert status == 400
        assert field in body["error"]
        assert list((home / "missions").iterdir()) == []

    @pytest.mark.parametrize("raw", [b"{", b"not json", b"[1,2]", b'"text"', b""])
    async def test_malformed_json_is_400(self, client: AppClient, raw: bytes) -> None:
        """A body that is not a JSON object answers 400 in the envelope."""
        status, body = await api(
            client, "POST", "/api/missions", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400
        assert "JSON" in body["error"]


class TestList:
    async def test_empty_list(self, client: AppClient) -> None:
        """With no missions the list is an empty array."""
        assert await api(client, "GET", "/api/missions") == (200, {"success": True, "data": [], "error": None})

    async def test_items_have_contract_fields_newest_first(self, client: AppClient) -> None:
        """List items carry exactly the contract's fields, sorted by updated_at newest first."""
        first = await create_mission(client, title="first")
        await asyncio.sleep(0.002)
        second = await create_mission(client, title="second")
        status, body = await api(client, "GET", "/api/missions")
        assert status == 200
        items = body["data"]
        assert [i["mission_id"] for i in items] == [second["mission_id"], first["mission_id"]]
        assert items[0] == {
            "mission_id": second["mission_id"],
            "title": "second",
            "type": "feature",
            "status": "ready",
            "current_step_name": "Cleanup",
            "updated_at": second["updated_at"],
        }

    async def test_large_lists_are_gzipped(self, client: AppClient, monkeypatch: pytest.MonkeyPatch) -> None:
        """A large list is sent gzip-compressed to clients that accept it, with the same JSON inside."""
        import gzip
        import json

        from haflowd.web import api as api_module

        await create_mission(client)
        plain = await client.get("/api/missions", headers={"Accept-Encoding": "identity"})
        monkeypatch.setattr(api_module, "GZIP_MIN_BYTES", 0)
        resp = await client.get("/api/missions", headers={"Accept-Encoding": "gzip"}, auto_decompress=False)
        assert resp.headers["Content-Encoding"] == "gzip"
        assert json.loads(gzip.decompress(await resp.read())) == json.loads(await plain.read())

    async def test_touching_a_mission_moves_it_first(self, client: AppClient) -> None:
        """Saving an artifact touches updated_at, which re-sorts the list."""
        first = await create_mission(client, title="first")
        await asyncio.sleep(0.002)
        await create_mission(client, title="second")
        await asyncio.sleep(0.002)
        await api(client, "PUT", f"/api/missions/{first['mission_id']}/artifacts/notes.md", json={"content": "x"})
        _, body = await api(client, "GET", "/api/missions")
        assert body["data"][0]["mission_id"] == first["mission_id"]

    async def test_corrupt_missions_are_skipped(
        self, aiohttp_client: AiohttpClient, config: Any, fake: FakeSandbox
    ) -> None:
        """Folders with a missing or corrupt mission.json are left out of the list, not a 500."""
        from haflowd.web.app import create_app

        good = config.missions_dir / "m-00000001"
        client = await aiohttp_client(create_app(config, sandbox=fake))
        meta = await create_mission(client)
        await client.close()
        (config.missions_dir / "m-0000000b").mkdir()
        (config.missions_dir / "m-0000000c").mkdir()
        (config.missions_dir / "m-0000000c" / "mission.json").write_text('{"mission_id": "m-0000000c", "ti')
        (config.missions_dir / "not-a-mission").mkdir()
        assert not good.exists()
        client = await aiohttp_client(create_app(config, sandbox=fake))
        status, body = await api(client, "GET", "/api/missions")
        assert status == 200
        assert [i["mission_id"] for i in body["data"]] == [meta["mission_id"]]
        status, _ = await api(client, "GET", "/api/missions/m-0000000c")
        assert status == 404


async def _started(client: AppClient, mission_id: str) -> bool:
    runs = (await detail(client, mission_id))["runs"]
    return bool(runs) and "container_id" in runs[0]


class TestDetail:
    async def test_detail_is_meta_plus_workflow_artifacts_runs(self, client: AppClient) -> None:
        """GET /api/missions/:id returns MissionDetail with the standard-feature workflow."""
        meta = await create_mission(client)
        data = await detail(client, meta["mission_id"])
        assert set(data) == META_KEYS | {"workflow", "artifacts", "runs"}
        assert {k: data[k] for k in META_KEYS} == meta
        assert data["workflow"] == {
            "workflow_id": "standard-feature",
            "name": "Standard Feature",
            "steps": STANDARD_STEPS,
        }
        assert data["artifacts"] == {"raw-input.md": RAW_INPUT}
        assert data["runs"] == []

    @pytest.mark.parametrize("mission_id", ["m-deadbeef", "m-DEADBEEF", "nope", "m-1234567"])
    async def test_unknown_mission_is_404(self, client: AppClient, mission_id: str) -> None:
        """Unknown or malformed mission ids answer 404 for every mission endpoint."""
        for method, path, kwargs in [
            ("GET", f"/api/missions/{mission_id}", {}),
            ("POST", f"/api/missions/{mission_id}/continue", {}),
            ("POST", f"/api/missions/{mission_id}/mark-completed", {}),
            ("POST", f"/api/missions/{mission_id}/cancel", {}),
            ("PUT", f"/api/missions/{mission_id}/artifacts/a.md", {"json": {"content": "x"}}),
        ]:
            status, body = await api(client, method, path, **kwargs)
            assert status == 404, (method, path)
            assert "not found" in body["error"].lower()

    async def test_log_tail_of_the_running_step(self, client: AppClient, fake: FakeSandbox) -> None:
        """While an agent runs, current_log_tail holds the end of its log; afterwards it is omitted."""
        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate)
        meta = await create_mission(client)
        mid = meta["mission_id"]
        await api(client, "POST", f"/api/missions/{mid}/continue")
        # continue answers once the run is recorded; the sandbox starts in the background.
        await until(lambda: _started(client, mid))
        data = await detail(client, mid)
        assert data["status"] == "running_code_agent"
        assert data["runs"][0].keys() == {"step_id", "run_id", "started_at", "container_id"}
        assert "starting step cleanup" in data.get("current_log_tail", "")
        gate.set()
        data = await wait_status(client, mid, "waiting_human")
        assert "current_log_tail" not in data
        assert_run(data["runs"][0])
        assert data["runs"][0]["exit_code"] == 0

    async def test_log_tail_is_the_last_characters(self, client: AppClient, fake: FakeSandbox) -> None:
        """current_log_tail is the last 2000 characters of a longer log."""
        gate = asyncio.Event()
        lines = tuple(f"line {i:05d} é\n".encode() for i in range(1000))
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=lines)
        meta = await create_mission(client)
        mid = meta["mission_id"]
        await api(client, "POST", f"/api/missions/{mid}/continue")
        gate.set()
        full = b"".join(lines).decode()
        # The fake writes the lines, then the output artifact, then exits.
        data = await wait_status(client, mid, "waiting_human")
        run_id = data["runs"][0]["run_id"]
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log")
        assert status == 200
        assert full in body["data"]


class TestLogByOffset:
    async def finished_run(self, client: AppClient, fake: FakeSandbox, lines: tuple[bytes, ...]) -> tuple[str, str]:
        fake.behaviours["cleanup"] = Behaviour(extra_lines=lines)
        meta = await create_mission(client)
        mid = meta["mission_id"]
        await api(client, "POST", f"/api/missions/{mid}/continue")
        data = await wait_status(client, mid, "waiting_human")
        return mid, data["runs"][0]["run_id"]

    async def test_chunks_join_to_the_whole_log(self, client: AppClient, fake: FakeSandbox, home: Path) -> None:
        """Following next_offset from 0 reads the whole log in chunks of at most 256 KiB, cut between characters."""
        lines = tuple(f"line {i:06d} é€😀\n".encode() for i in range(120_000))
        mid, run_id = await self.finished_run(client, fake, lines)
        whole = (home / "missions" / mid / "logs" / f"{run_id}.log").read_bytes()
        assert len(whole) > 2 * 256 * 1024
        offset, texts = 0, []
        while True:
            status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log?offset={offset}")
            assert status == 200
            chunk = body["data"]
            assert chunk.keys() == {"text", "offset", "next_offset", "size"}
            assert chunk["offset"] == offset and chunk["size"] == len(whole)
            moved = len(chunk["text"].encode())
            assert moved <= LOG_PAGE_BYTES and chunk["next_offset"] == offset + moved
            if not moved:
                break
            texts.append(chunk["text"])
            offset = chunk["next_offset"]
        assert len(texts) >= 3
        assert "".join(texts) == whole.decode()
        assert "\ufffd" not in "".join(texts)

    async def test_without_offset_answers_the_tail_string(self, client: AppClient, fake: FakeSandbox) -> None:
        """Without offset the answer is still the plain log text."""
        mid, run_id = await self.finished_run(client, fake, (b"hello\n",))
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log")
        assert status == 200 and isinstance(body["data"], str) and "hello\n" in body["data"]

    async def test_offset_at_or_past_the_end_is_empty(self, client: AppClient, fake: FakeSandbox) -> None:
        """An offset at or past the end answers no text and the current size."""
        mid, run_id = await self.finished_run(client, fake, ())
        _, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log?offset=0")
        size = body["data"]["size"]
        for offset in (size, size + 10):
            status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log?offset={offset}")
            assert status == 200
            assert body["data"] == {"text": "", "offset": offset, "next_offset": offset, "size": size}

    @pytest.mark.parametrize("offset", ["-1", "abc", "1.5", "", "٣"])
    async def test_bad_offset_is_400(self, client: AppClient, fake: FakeSandbox, offset: str) -> None:
        """An offset that is not a whole number of bytes answers 400 naming it."""
        mid, run_id = await self.finished_run(client, fake, ())
        status, body = await api(client, "GET", f"/api/missions/{mid}/runs/{run_id}/log", params={"offset": offset})
        assert status == 400 and "offset" in body["error"]


class TestArtifacts:
    async def test_put_writes_and_touches(self, client: AppClient, home: Path) -> None:
        """PUT saves the artifact, answers data null and moves updated_at forward."""
        meta = await create_mission(client)
        mid = meta["mission_id"]
        await asyncio.sleep(0.002)
        status, body = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/structured-text.md", json={"content": "# Edited\n"}
        )
        assert (status, body["data"]) == (200, None)
        assert (home / "missions" / mid / "artifacts" / "structured-text.md").read_text() == "# Edited\n"
        data = await detail(client, mid)
        assert data["artifacts"]["structured-text.md"] == "# Edited\n"
        assert data["updated_at"] > meta["updated_at"]

    async def test_put_replaces_existing_content(self, client: AppClient) -> None:
        """A second PUT replaces the content entirely."""
        mid = (await create_mission(client))["mission_id"]
        await api(client, "PUT", f"/api/missions/{mid}/artifacts/raw-input.md", json={"content": "short"})
        assert (await detail(client, mid))["artifacts"]["raw-input.md"] == "short"

    @pytest.mark.parametrize(
        "body",
        [{}, {"content": 5}, {"content": None}, {"contents": "x"}, [1]],
    )
    async def test_bad_body_is_400(self, client: AppClient, body: Any) -> None:
        """A PUT body without a string content answers 400."""
        mid = (await create_mission(client))["mission_id"]
        status, answer = await api(client, "PUT", f"/api/missions/{mid}/artifacts/a.md", json=body)
        assert status == 400
        assert "content" in answer["error"] or "object" in answer["error"]

    @pytest.mark.parametrize(
        "name",
        [
            "..",
            "...",
            "..%2F..%2Fescape.md",
            "%2E%2E",
            "a%2Fb.md",
            "%2Fetc%2Fpasswd",
            "a%5Cb.md",
            "..%5Cescape.md",
            "a%00b.md",
            ".hidden",
            "a..b",
            "sp%20ace.md",
            "x" * 256,
            "%C3%A9.md",
            "a%3Ab",
        ],
    )
    async def test_traversal_and_bad_names_are_rejected(self, client: AppClient, home: Path, name: str) -> None:
        """Names that are not plain safe file names answer 400 (or 404) and write nothing anywhere."""
        mid = (await create_mission(client))["mission_id"]
        before = sorted(p.relative_to(home) for p in home.rglob("*"))
        resp = await client.put(f"/api/missions/{mid}/artifacts/{name}", json={"content": "pwned"})
        assert resp.status in (400, 404)
        body = await resp.json()
        assert body["success"] is False
        after = sorted(p.relative_to(home) for p in home.rglob("*"))
        assert after[: len(before)] == before and len(after) == len(before)
        assert not any("pwned" in p.read_text() for p in home.rglob("*") if p.is_file())

    async def test_absolute_path_via_double_slash_is_not_written(self, client: AppClient, tmp_path: Path) -> None:
        """A path that tries to smuggle an absolute target is refused and writes nothing."""
        mid = (await create_mission(client))["mission_id"]
        target = tmp_path / "outside.md"
        resp = await client.put(f"/api/missions/{mid}/artifacts/{target}", json={"content": "pwned"})
        assert resp.status in (400, 404)
        assert not target.exists()

    async def test_max_length_name_is_accepted(self, client: AppClient) -> None:
        """A 255-byte name is within the limit."""
        mid = (await create_mission(client))["mission_id"]
        name = "a" * 252 + ".md"
        status, _ = await api(client, "PUT", f"/api/missions/{mid}/artifacts/{name}", json={"content": "ok"})
        assert status == 200

    async def test_rendered_artifact(self, client: AppClient) -> None:
        """The html endpoint renders an artifact through the safe renderer."""
        mid = (await create_mission(client))["mission_id"]
        status, body = await api(client, "GET", f"/api/missions/{mid}/artifacts/raw-input.md/html")
        assert status == 200
        assert "dark mode toggle" in body["data"]["html"]
        status, _ = await api(client, "GET", f"/api/missions/{mid}/artifacts/missing.md/html")
        assert status == 404


class TestWorkflows:
    async def test_lists_builtin_workflows(self, client: AppClient) -> None:
        """GET /api/workflows lists standard-feature exactly as the contract's table, and oneshot."""
        status, body = await api(client, "GET", "/api/workflows")
        assert status == 200
        by_id = {w["workflow_id"]: w for w in body["data"]}
        assert by_id["standard-feature"] == {
            "workflow_id": "standard-feature",
            "name": "Standard Feature",
            "steps": STANDARD_STEPS,
        }
        oneshot = by_id["oneshot"]
        assert [s["type"] for s in oneshot["steps"]] == ["agent", "human-gate"]


class TestErrors:
    @pytest.mark.parametrize(
        ("method", "path"),
        [("GET", "/api/nope"), ("GET", "/api"), ("POST", "/api/missions/m-12345678/explode"), ("GET", "/api/x/y/z")],
    )
    async def test_unknown_api_routes_are_404_envelopes(self, client: AppClient, method: str, path: str) -> None:
        """Unknown /api routes answer 404 in the envelope."""
        status, _ = await api(client, method, path)
        assert status == 404

    @pytest.mark.parametrize(
        ("method", "path", "allow"),
        [
            ("DELETE", "/api/missions", "GET,HEAD,POST"),
            ("TRACE", "/api/workflows", "GET,HEAD"),
            ("GET", "/api/missions/m-12345678/continue", "POST"),
        ],
    )
    async def test_wrong_method_is_405_with_allow(self, client: AppClient, method: str, path: str, allow: str) -> None:
        """A known path asked with another method answers 405 in the envelope, naming the allowed ones."""
        resp = await client.request(method, path)
        assert resp.status == 405
        assert set(resp.headers["Allow"].split(",")) == set(allow.split(","))
        assert (await resp.json())["success"] is False

    async def test_unexpected_errors_are_500_without_details(
        self, client: AppClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """An unexpected exception answers a short 500 envelope; details stay in the log."""
        from haflowd.store import Store

        def boom(self: Store, mission_id: str) -> None:
            raise RuntimeError("secret internal detail")

        monkeypatch.setattr(Store, "artifacts", boom)
        mid = (await create_mission(client))["mission_id"]
        status, body = await api(client, "GET", f"/api/missions/{mid}")
        assert status == 500
        assert "secret" not in body["error"]

    async def test_body_too_large_is_413(self, aiohttp_client: AiohttpClient, config: Any, fake: FakeSandbox) -> None:
        """A body above the configured cap answers 413 in the envelope."""
        import attrs

        from haflowd.web.app import create_app

        client = await aiohttp_client(create_app(attrs.evolve(config, max_body_bytes=1024), sandbox=fake))
        mid = (await create_mission(client))["mission_id"]
        status, _ = await api(client, "PUT", f"/api/missions/{mid}/artifacts/a.md", json={"content": "x" * 4096})
        assert status == 413


class TestBrowserGuard:
    @pytest.mark.parametrize(
        "origin",
        ["http://127.0.0.1:5173", "http://localhost:3000", "http://[::1]:8080", "https://localhost"],
    )
    async def test_loopback_origins_get_cors(self, client: AppClient, origin: str) -> None:
        """Loopback origins on any port may read and write, with CORS headers."""
        resp = await client.get("/api/missions", headers={"Origin": origin})
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == origin
        resp = await client.post(
            "/api/missions",
            json={"title": "t", "type": "fix", "rawInput": "x"},
            headers={"Origin": origin},
        )
        assert resp.status == 201

    async def test_preflight_from_loopback_is_answered(self, client: AppClient) -> None:
        """A CORS preflight for a JSON PUT from a local UI is allowed."""
        mid = (await create_mission(client))["mission_id"]
        resp = await client.options(
            f"/api/missions/{mid}/artifacts/a.md",
            headers={
                "Origin": "http://127.0.0.1:5173",
                "Access-Control-Request-Method": "PUT",
                "Access-Control-Request-Headers": "content-type",
            },
        )
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "http://127.0.0.1:5173"

    @pytest.mark.parametrize(
        "origin", ["https://evil.example", "http://127.0.0.1.evil.example", "null", "http://localhost.evil:80"]
    )
    async def test_foreign_origins_are_refused(self, client: AppClient, home: Path, origin: str) -> None:
        """Requests from other origins get 403 and no CORS grant; writes change nothing."""
        resp = await client.post(
            "/api/missions",
            json={"title": "t", "type": "fix", "rawInput": "x"},
            headers={"Origin": origin},
        )
        assert resp.status == 403
        assert (await resp.json())["success"] is False
        assert list((home / "missions").iterdir()) == []
        resp = await client.get("/api/missions", headers={"Origin": origin})
        assert resp.status == 403

    async def test_foreign_origin_cannot_continue(self, client: AppClient, fake: FakeSandbox) -> None:
        """A bodyless cross-site POST (a form or fetch from any page) cannot start a step."""
        mid = (await create_mission(client))["mission_id"]
        resp = await client.post(f"/api/missions/{mid}/continue", headers={"Origin": "https://evil.example"})
        assert resp.status == 403
        assert fake.started == []

    @pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
    async def test_bodies_must_be_json(self, client: AppClient, home: Path, content_type: str) -> None:
        """A write whose body is not application/json answers 415 and writes nothing."""
        resp = await client.post(
            "/api/missions",
            data=b'{"title":"t","type":"fix","rawInput":"x"}',
            headers={"Content-Type": content_type},
        )
        assert resp.status == 415
        assert list((home / "missions").iterdir()) == []

    async def test_bodyless_post_needs_no_content_type(self, client: AppClient) -> None:
        """continue without a body or content type works, as curl and the original UI send it."""
        mid = (await create_mission(client))["mission_id"]
        resp = await client.post(f"/api/missions/{mid}/continue", skip_auto_headers={"Content-Type"})
        assert resp.status == 200


class TestUi:
    async def test_root_serves_the_ui(self, client: AppClient) -> None:
        """GET / serves the web UI's HTML page."""
        resp = await client.get("/")
        assert resp.status == 200
        assert resp.content_type == "text/html"
        assert "haflow" in (await resp.text()).lower()

    async def test_static_files_are_revalidated(self, client: AppClient) -> None:
        """The UI's script is served with no-cache, so an upgrade reaches browsers."""
        resp = await client.get("/static/js/main.js")
        assert resp.status == 200
        assert resp.headers["Cache-Control"] == "no-cache"
        again = await client.get("/static/js/main.js", headers={"If-Modified-Since": resp.headers["Last-Modified"]})
        assert again.status == 304

    def test_every_static_file_is_packaged(self) -> None:
        """setup.cfg's package data globs reach every file of the UI, the modules in js/ too."""
        import configparser
        import glob

        root = Path(__file__).parents[2]
        static = root / "haflowd/web/static"
        cfg = configparser.ConfigParser()
        cfg.read(root / "setup.cfg")
        patterns = [p.strip() for p in cfg["options.package_data"]["haflowd.web.static"].split(",")]
        shipped = {f for p in patterns for f in glob.glob(p, root_dir=static) if (static / f).is_file()}
        present = {str(f.relative_to(static)) for f in static.rglob("*") if f.is_file()}
        assert "js/main.js" in present
        assert shipped == present

    async def test_modules_are_served_as_javascript(self, client: AppClient) -> None:
        """index.html loads one entry module; every module it reaches is served with a JavaScript type."""
        html = await (await client.get("/")).text()
        entries = re.findall(r'<script type="module" src="/static/(js/[a-z]+\.js)"></script>', html)
        assert entries == ["js/main.js"]
        assert "<script>" not in html and "<script " not in html.replace('<script type="module" src', "")
        seen: set[str] = set()
        todo = list(entries)
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            resp = await client.get(f"/static/{name}")
            assert resp.status == 200, name
            assert resp.content_type in {"text/javascript", "application/javascript"}, name
            source = await resp.text()
            todo += [f"js/{m}" for m in re.findall(r'^import [^;]*? from "\./([a-z]+\.js)";', source, re.M | re.S)]
        assert seen == {f"js/{p.name}" for p in (Path(__file__).parents[2] / "haflowd/web/static/js").glob("*.js")}


class TestRawArtifact:
    @pytest.mark.parametrize(
        ("name", "media"),
        [
            ("notes.md", "text/markdown"),
            ("result.json", "application/json"),
            ("out.txt", "text/plain"),
            ("blob.bin", "application/octet-stream"),
        ],
    )
    async def test_whole_file_with_its_type(self, client: AppClient, home: Path, name: str, media: str) -> None:
        """The raw endpoint answers the whole file, typed by extension, never sniffed, non-text as a download."""
        mid = (await create_mission(client))["mission_id"]
        content = bytes(range(256)) * 4096 + b"end"  # 1 MiB and a bit: more than one chunk
        (home / "missions" / mid / "artifacts" / name).write_bytes(content)
        resp = await client.get(f"/api/missions/{mid}/artifacts/{name}")
        assert resp.status == 200
        assert await resp.read() == content
        assert resp.content_type == media
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        if media == "application/octet-stream":
            assert resp.headers["Content-Disposition"] == f'attachment; filename="{name}"'
        else:
            assert "Content-Disposition" not in resp.headers

    async def test_text_is_utf8(self, client: AppClient) -> None:
        """A Markdown artifact is served as UTF-8 text."""
        mid = (await create_mission(client))["mission_id"]
        resp = await client.get(f"/api/missions/{mid}/artifacts/raw-input.md")
        assert resp.headers["Content-Type"] == "text/markdown; charset=utf-8"
        assert await resp.text() == RAW_INPUT

    @pytest.mark.parametrize("kind", ["missing", "symlink", "fifo", "folder"])
    async def test_only_regular_files(self, client: AppClient, home: Path, tmp_path: Path, kind: str) -> None:
        """A symlink, FIFO, folder or missing name answers 404, and a FIFO does not block."""
        import os

        mid = (await create_mission(client))["mission_id"]
        target = home / "missions" / mid / "artifacts" / "out.md"
        secret = tmp_path / "secret.txt"
        secret.write_text("top secret")
        if kind == "symlink":
            target.symlink_to(secret)
        elif kind == "fifo":
            os.mkfifo(target)
        elif kind == "folder":
            target.mkdir()
        async with asyncio.timeout(10):
            status, body = await api(client, "GET", f"/api/missions/{mid}/artifacts/out.md")
        assert status == 404
        assert body["error"] == "Artifact not found: out.md"

    async def test_bad_name_and_unknown_mission(self, client: AppClient) -> None:
        """A bad file name answers 400 and an unknown mission 404."""
        mid = (await create_mission(client))["mission_id"]
        status, _ = await api(client, "GET", f"/api/missions/{mid}/artifacts/.hidden")
        assert status == 400
        status, _ = await api(client, "GET", "/api/missions/m-00000000/artifacts/raw-input.md")
        assert status == 404

    async def test_head_reads_no_body(self, client: AppClient) -> None:
        """HEAD answers the headers of the raw artifact without its body."""
        mid = (await create_mission(client))["mission_id"]
        resp = await client.head(f"/api/missions/{mid}/artifacts/raw-input.md")
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/markdown; charset=utf-8"
        assert await resp.read() == b""


class TestOddInputs:
    @pytest.mark.parametrize(
        ("raw", "says"),
        [
            (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
            (b'{"title": "t", "type": "feature", "rawInput": "x", "n": ' + b"9" * 100_000 + b"}", "too long"),
            (b'{"title": "t", "type": "feature", "rawInput": "a\\ud800b"}', "lone surrogate) @ $.rawInput"),
            (b'{"title": "t", "type": "feature", "rawInput": "x", "\\udfff": 1}', "lone surrogate"),
        ],
    )
    async def test_odd_json_is_400(self, client: AppClient, home: Path, raw: bytes, says: str) -> None:
        """Very deep JSON, a 100,000-digit number and a lone surrogate answer 400 saying what is wrong."""
        status, body = await api(
            client, "POST", "/api/missions", data=raw, headers={"Content-Type": "application/json"}
        )
        assert status == 400, body
        assert says in body["error"]
        assert list((home / "missions").iterdir()) == []

    async def test_lone_surrogate_in_an_artifact_is_400(self, client: AppClient) -> None:
        """Saving an artifact whose content holds a lone surrogate answers 400, not 500."""
        mid = (await create_mission(client))["mission_id"]
        status, body = await api(
            client,
            "PUT",
            f"/api/missions/{mid}/artifacts/a.md",
            data=b'{"content": "\\ud83d"}',
            headers={"Content-Type": "application/json"},
        )
        assert status == 400 and "$.content" in body["error"]


class TestStorageErrors:
    @pytest.mark.parametrize(
        ("code", "status", "says"),
        [("ENOSPC", 507, "disk full"), ("EDQUOT", 507, "disk full"), ("EROFS", 503, "read-only")],
    )
    async def test_writes_fail_clearly_reads_go_on(
        self, client: AppClient, monkeypatch: pytest.MonkeyPatch, code: str, status: int, says: str
    ) -> None:
        """On a full or read-only disk writes answer 507 or 503 saying so, and everything can still be read."""
        import errno
        import os

        mid = (await create_mission(client))["mission_id"]

        def refuse(*args: Any, **kwargs: Any) -> None:
            number = getattr(errno, code)
            raise OSError(number, os.strerror(number))

        monkeypatch.setattr(os, "replace", refuse)
        monkeypatch.setattr(os, "rename", refuse)
        for method, path, body in [
            ("POST", "/api/missions", {"title": "t", "type": "feature", "rawInput": "x"}),
            ("PUT", f"/api/missions/{mid}/artifacts/a.md", {"content": "x"}),
            ("POST", f"/api/missions/{mid}/continue", None),
        ]:
            got, answer = await api(client, method, path, json=body)
            assert got == status, (path, answer)
            assert says in answer["error"]
        assert (await detail(client, mid))["status"] == "ready"
        status_list, listed = await api(client, "GET", "/api/missions")
        assert status_list == 200 and [m["mission_id"] for m in listed["data"]] == [mid]
        resp = await client.get(f"/api/missions/{mid}/artifacts/raw-input.md")
        assert resp.status == 200 and await resp.text() == RAW_INPUT


class TestPaging:
    """GET /api/missions?limit=&cursor=: pages newest first; without them the v0 answer, unchanged."""

    async def _missions(self, client: AppClient, count: int) -> list[str]:
        ids = []
        for n in range(count):
            ids.append((await create_mission(client, title=f"m{n}"))["mission_id"])
            await asyncio.sleep(0.002)
        return ids[::-1]  # newest first

    async def test_pages_join_to_the_whole_list(self, client: AppClient) -> None:
        """limit=2 over 5 missions: three pages, newest first, each naming the next in X-Next-Cursor and Link."""
        newest_first = await self._missions(client, 5)
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
            resp = await client.get(f"/api/missions?{query}")
            assert resp.status == 200
            items = (await resp.json())["data"]
            seen += [i["mission_id"] for i in items]
            pages += 1
            cursor = resp.headers.get("X-Next-Cursor")
            if cursor is None:
                assert "Link" not in resp.headers
                break
            assert resp.headers["Link"] == f'</api/missions?limit=2&cursor={cursor}>; rel="next"'
            assert len(items) == 2
        assert pages == 3 and seen == newest_first

    async def test_cursor_alone_pages_by_100(self, client: AppClient) -> None:
        """A cursor without limit gives the default page size; a first page with room for all has no next cursor."""
        newest_first = await self._missions(client, 3)
        resp = await client.get("/api/missions?limit=1")
        cursor = resp.headers["X-Next-Cursor"]
        resp = await client.get(f"/api/missions?cursor={cursor}")
        assert [i["mission_id"] for i in (await resp.json())["data"]] == newest_first[1:]
        assert "X-Next-Cursor" not in resp.headers
        resp = await client.get("/api/missions?limit=1000")
        assert "X-Next-Cursor" not in resp.headers and len((await resp.json())["data"]) == 3

    async def test_no_parameter_is_the_v0_answer(self, client: AppClient) -> None:
        """Without limit or cursor: the whole list, the same bytes as before paging existed, no paging headers."""
        import json

        await self._missions(client, 3)
        resp = await client.get("/api/missions")
        body = await resp.read()
        data = json.loads(body)["data"]
        expected = b'{"success":true,"data":' + json.dumps(data, separators=(",", ":")).encode() + b',"error":null}'
        assert body == expected and len(data) == 3
        assert "X-Next-Cursor" not in resp.headers and "Link" not in resp.headers

    @pytest.mark.parametrize(
        "query",
        [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=abc",
            "limit=99999999999999999999999",
            "limit=",
            "limit=1%00",
            "limit=0001",
            "cursor=",
            "cursor=nope!",
            "cursor=" + "A" * 300,
            "cursor=bm90IGEgY3Vyc29y",  # "not a cursor"
            "cursor=%00",
            "cursor=20260123T100000000Z_m-0123ABCD",
        ],
    )
    async def test_bad_values_are_400(self, client: AppClient, query: str) -> None:
        """A limit outside 1..1000 or a cursor this daemon did not give is a 400 in the envelope."""
        status, body = await api(client, "GET", f"/api/missions?{query}")
        assert status == 400, body
        assert "limit" in body["error"] or "cursor" in body["error"]

    async def test_cors_front_ends_can_read_the_cursor(self, client: AppClient) -> None:
        """A front end on another loopback origin may read X-Next-Cursor (exposed by CORS)."""
        await self._missions(client, 2)
        resp = await client.get("/api/missions?limit=1", headers={"Origin": "http://localhost:5173"})
        assert "X-Next-Cursor" in resp.headers
        assert "X-Next-Cursor" in resp.headers["Access-Control-Expose-Headers"]


class TestCountLimits:
    """HAFLOW_MAX_MISSIONS and HAFLOW_MAX_CODE_WORKSPACES: 409 naming the setting, nothing written."""

    async def test_missions_past_the_limit_are_409(
        self, aiohttp_client: AiohttpClient, config: Any, fake: FakeSandbox
    ) -> None:
        """With max_missions=2 the third create is a 409 that names HAFLOW_MAX_MISSIONS, and no folder appears."""
        import attrs

        from haflowd.web.app import create_app

        client = await aiohttp_client(create_app(attrs.evolve(config, max_missions=2), sandbox=fake))
        await create_mission(client)
        await create_mission(client)
        payload = {"title": "t", "type": "feature", "rawInput": RAW_INPUT}
        results = await asyncio.gather(*(api(client, "POST", "/api/missions", json=payload) for _ in range(5)))
        assert {status for status, _ in results} == {409}
        assert all("HAFLOW_MAX_MISSIONS" in body["error"] for _, body in results)
        assert len(list(config.missions_dir.iterdir())) == 2
        _, body = await api(client, "GET", "/api/missions")
        assert len(body["data"]) == 2

    async def test_code_missions_past_the_limit_are_409(
        self, aiohttp_client: AiohttpClient, config: Any, fake: FakeSandbox, tmp_path: Path
    ) -> None:
        """With max_code_workspaces=1 a second code mission is a 409 naming the setting; other missions still work."""
        import attrs

        from haflowd.web.app import create_app
        from tests.e2e.test_code_missions import make_repo

        client = await aiohttp_client(create_app(attrs.evolve(config, max_code_workspaces=1), sandbox=fake))
        repo = make_repo(tmp_path / "repo")
        _, body = await api(client, "POST", "/api/projects", json={"path": str(repo)})
        project = body["data"]["project_id"]
        await create_mission(client, projectId=project)
        status, body = await api(
            client, "POST", "/api/missions", json={"title": "t", "type": "fix", "rawInput": "x", "projectId": project}
        )
        assert status == 409 and "HAFLOW_MAX_CODE_WORKSPACES" in body["error"]
        assert len(list(config.missions_dir.iterdir())) == 1
        await create_mission(client)
