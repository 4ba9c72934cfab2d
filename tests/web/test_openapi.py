"""The OpenAPI document stays true: every route is described, and real answers validate against it."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pytest_aiohttp import AiohttpClient

from haflowd import __version__
from haflowd.catalog import DEFAULT_WORKFLOW
from haflowd.clock import TIMESTAMP_PATTERN, format_timestamp
from haflowd.config import Config
from haflowd.convert import RENAMES, STRICT_KEYS, dumps, structure_request
from haflowd.ids import MISSION_ID, RUN_ID, new_mission_id, new_run_id
from haflowd.models import (
    MAX_COMMAND_TIMEOUT_MS,
    RUNNING_STATUSES,
    Changes,
    Commit,
    CreateMissionRequest,
    Delivered,
    DeliverRequest,
    Delivery,
    Execution,
    ExecutionStarted,
    ExecutionStatus,
    GitDiff,
    GitFile,
    GitStatus,
    LinkProjectRequest,
    MissionDetail,
    MissionListItem,
    MissionMeta,
    MissionStatus,
    MissionType,
    Project,
    RequestChangesRequest,
    RunCommandRequest,
    SaveArtifactRequest,
    StepRun,
    StepType,
    Usage,
    Workflow,
    WorkflowStep,
    WorkspaceMode,
)
from haflowd.web.app import create_app
from haflowd.web.openapi import OPENAPI_PATH, api_routes, document
from tests.conftest import RAW_INPUT, AppClient, wait_status
from tests.fakes import Behaviour, FakeSandbox
from tests.test_convert import changes, deliveries, metas, mission_ids, runs, text, timestamps, usages

jsonschema = pytest.importorskip("jsonschema")
referencing = pytest.importorskip("referencing")
DRAFT202012 = pytest.importorskip("referencing.jsonschema").DRAFT202012

DOC_URI = "urn:haflow:openapi"
HTTP_METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}


@attrs.define
class Spec:
    """Looks up and checks the schema of one answer in the served document."""

    doc: dict[str, Any]
    checked: set[tuple[str, str, str]] = attrs.field(factory=set)
    _absolute: dict[str, Any] = attrs.field(init=False)
    _registry: Any = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        # Make "#/components/..." absolute so any sub-schema resolves through the registry.
        self._absolute = json.loads(json.dumps(self.doc).replace('"#/components/', f'"{DOC_URI}#/components/'))
        resource = referencing.Resource.from_contents(self._absolute, default_specification=DRAFT202012)
        self._registry = referencing.Registry().with_resource(DOC_URI, resource)

    def response(self, method: str, template: str, status: int) -> dict[str, Any]:
        responses = self._absolute["paths"][template][method.lower()]["responses"]
        response: dict[str, Any] = responses.get(str(status)) or responses["default"]
        while "$ref" in response:
            name = response["$ref"].rsplit("/", 1)[1]
            response = self._absolute["components"]["responses"][name]
        return response

    def check(self, method: str, template: str, status: int, content_type: str, body: Any) -> None:
        response = self.response(method, template, status)
        assert content_type in response["content"], (method, template, status)
        schema = response["content"][content_type]["schema"]
        validator = jsonschema.Draft202012Validator(
            schema, registry=self._registry, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
        )
        errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(body)]
        assert errors == [], (method, template, status, body)
        described = self._absolute["paths"][template][method.lower()]["responses"]
        kind = str(status) if str(status) in described else "default"
        self.checked.add((method, template, kind))

    def request_schema(self, name: str) -> Any:
        return jsonschema.Draft202012Validator(
            {"$ref": f"{DOC_URI}#/components/schemas/{name}"}, registry=self._registry
        )


@attrs.define
class Driver:
    """Calls the API by path template and checks every answer against the document."""

    client: AppClient
    spec: Spec

    async def call(self, method: str, template: str, *, expect: int, body: Any = None, **params: str) -> Any:
        path = template.format(**params)
        kwargs: dict[str, Any] = {}
        if body is not None:
            kwargs["json"] = body
        resp = await self.client.request(method, path, **kwargs)
        data = json.loads(await resp.read())
        assert resp.status == expect, (method, path, resp.status, data)
        self.spec.check(method, template, resp.status, resp.content_type, data)
        return data.get("data") if template != OPENAPI_PATH else data


@pytest.fixture
def app_routes(config: Config, fake: FakeSandbox) -> list[Any]:
    """The routes of a daemon's router (nothing started)."""
    return list(create_app(config, sandbox=fake).router.routes())


@pytest.fixture
async def served(client: AppClient) -> dict[str, Any]:
    resp = await client.get(OPENAPI_PATH)
    assert resp.status == 200 and resp.content_type == "application/json"
    document: dict[str, Any] = json.loads(await resp.read())
    return document


class TestDocument:
    def test_is_valid_openapi_3_1(self, app_routes: list[Any]) -> None:
        """The document passes the OpenAPI 3.1 specification validator."""
        validator = pytest.importorskip("openapi_spec_validator")
        doc = document(app_routes, ["standard-feature", "oneshot"])
        validator.validate(doc)
        assert doc["openapi"] == "3.1.0" and doc["info"]["version"] == __version__

    async def test_served_document_lists_known_workflows(self, served: dict[str, Any]) -> None:
        """The served document's workflowId enum is the daemon's catalog."""
        create = served["components"]["schemas"]["CreateMissionRequest"]
        assert create["properties"]["workflowId"]["enum"] == ["code-feature", "oneshot", "standard-feature", None]

    async def test_facts_the_web_ui_reads(self, served: dict[str, Any]) -> None:
        """The UI's facts are there: statuses, the running ones, mission types and the default workflow."""
        schemas = served["components"]["schemas"]
        assert schemas["MissionStatus"]["enum"] == [s.value for s in MissionStatus]
        assert sorted(schemas["MissionStatus"]["x-running"]) == sorted(s.value for s in RUNNING_STATUSES)
        assert schemas["MissionType"]["enum"] == [t.value for t in MissionType]
        assert schemas["CreateMissionRequest"]["properties"]["workflowId"]["default"] == DEFAULT_WORKFLOW

    async def test_every_route_is_described(self, client: AppClient, served: dict[str, Any]) -> None:
        """Each /api route of the app's router has an operation in the document, and nothing more."""
        routes = set()
        for route in client.app.router.routes():
            path = route.resource.canonical if route.resource is not None else ""
            if not path.startswith("/api") or route.method not in HTTP_METHODS or "{tail" in path:
                continue
            routes.add((route.method.lower(), path))
        described = {(m, p) for p, ops in served["paths"].items() for m in ops}
        assert routes == described

    async def test_path_parameters_match(self, served: dict[str, Any]) -> None:
        """Every {parameter} of a path is declared for each of its operations."""
        for path, ops in served["paths"].items():
            names = set(re.findall(r"\{(\w+)\}", path))
            for op in ops.values():
                declared = {p["$ref"].rsplit("/", 1)[1] for p in op.get("parameters", []) if "$ref" in p}
                assert declared == names, path

    async def test_every_operation_has_envelope_errors(self, served: dict[str, Any]) -> None:
        """Every operation documents a default error answer in the envelope."""
        for ops in served["paths"].values():
            for op in ops.values():
                assert op["responses"]["default"] == {"$ref": "#/components/responses/Error"}

    def test_contract_examples_validate_as_requests(self, app_routes: list[Any]) -> None:
        """The contract's request bodies validate; blank and missing fields do not."""
        spec = Spec(document(app_routes, ["standard-feature"]))
        create = spec.request_schema("CreateMissionRequest")
        assert create.is_valid({"title": "Dark mode", "type": "feature", "rawInput": RAW_INPUT})
        assert create.is_valid({"title": "x", "type": "fix", "rawInput": "y", "workflowId": "standard-feature"})
        assert not create.is_valid({"title": "   ", "type": "feature", "rawInput": "y"})
        assert not create.is_valid({"title": "x", "type": "epic", "rawInput": "y"})
        assert not create.is_valid({"title": "x", "type": "fix", "rawInput": "y", "workflowId": "nope"})
        assert spec.request_schema("SaveArtifactRequest").is_valid({"content": ""})


class TestAnswersValidate:
    async def test_driven_workflow(self, client: AppClient, fake: FakeSandbox, served: dict[str, Any]) -> None:
        """A whole standard-feature mission, with its errors, answers only what the document describes."""
        spec = Spec(served)
        api = Driver(client, spec)
        m = "/api/missions/{mission_id}"
        await api.call("GET", OPENAPI_PATH, expect=200)
        await api.call("GET", "/api/health", expect=200)
        await api.call("GET", "/api/workflows", expect=200)
        assert await api.call("GET", "/api/missions", expect=200) == []
        meta = await api.call(
            "POST", "/api/missions", expect=201, body={"title": "Dark mode", "type": "feature", "rawInput": RAW_INPUT}
        )
        mission_id = meta["mission_id"]
        ids = {"mission_id": mission_id}
        await api.call("GET", "/api/missions", expect=200)
        await api.call("GET", m, expect=200, **ids)

        gate = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=gate, extra_lines=(b"working\n",))
        await api.call("POST", m + "/continue", expect=200, **ids)
        running = await api.call("GET", m, expect=200, **ids)
        assert running["status"] == "running_code_agent"
        await api.call("POST", m + "/continue", expect=409, **ids)
        gate.set()
        await wait_status(client, mission_id, "waiting_human")
        found = await api.call("GET", m, expect=200, **ids)
        run_id = found["runs"][0]["run_id"]
        await api.call("GET", m + "/runs/{run_id}/log", expect=200, run_id=run_id, **ids)
        await api.call("GET", m + "/artifacts/{filename}/html", expect=200, filename="structured-text.md", **ids)
        await api.call(
            "PUT",
            m + "/artifacts/{filename}",
            expect=200,
            body={"content": "# edited"},
            filename="structured-text.md",
            **ids,
        )
        await api.call("POST", m + "/cancel", expect=409, **ids)
        for _ in range(3):
            await api.call("POST", m + "/continue", expect=200, **ids)
            await wait_status(client, mission_id, "waiting_human")
        await api.call("POST", m + "/continue", expect=200, **ids)
        done = await api.call("GET", m, expect=200, **ids)
        assert done["status"] == "completed" and done["current_step"] == 8
        await api.call("POST", m + "/continue", expect=409, **ids)
        await api.call("POST", m + "/mark-completed", expect=200, **ids)

        # Failures, each in the envelope and described.
        fake.behaviours["cleanup"] = Behaviour(exit_code=3)
        failing = await api.call(
            "POST", "/api/missions", expect=201, body={"title": "t", "type": "fix", "rawInput": "r"}
        )
        fid = {"mission_id": failing["mission_id"]}
        await api.call("POST", m + "/continue", expect=200, **fid)
        failed = await wait_status(client, failing["mission_id"], "failed")
        assert failed["last_error"]
        await api.call("GET", m, expect=200, **fid)
        await api.call("GET", m, expect=404, mission_id="m-00000000")
        await api.call("GET", m, expect=404, mission_id="nope")
        await api.call("POST", "/api/missions", expect=400, body={"title": "t"})
        await api.call("POST", "/api/missions", expect=400, body=["not", "an", "object"])
        await api.call("PUT", m + "/artifacts/{filename}", expect=400, body={"content": 1}, filename="a.md", **ids)
        await api.call("GET", m + "/artifacts/{filename}/html", expect=404, filename="missing.md", **ids)
        await api.call("GET", m + "/runs/{run_id}/log", expect=404, run_id="r-00000000", **ids)
        await api.call("POST", m + "/mark-completed", expect=404, mission_id="m-00000000")

        for kind in ("200", "201", "400", "404", "409"):
            assert any(k == kind for _, _, k in spec.checked), kind

    async def test_limit_and_auth_errors_validate(
        self, aiohttp_client: AiohttpClient, config: Config, fake: FakeSandbox, served: dict[str, Any]
    ) -> None:
        """413, 415, 401 and 403 answers match the document too."""
        spec = Spec(served)
        strict = attrs.evolve(config, token="tok", max_body_bytes=100)
        client = await aiohttp_client(create_app(strict, sandbox=fake))
        cases: list[tuple[str, str, dict[str, Any], int]] = [
            ("POST", "/api/missions", {"data": b"{}"}, 401),
            ("GET", "/api/missions", {"headers": {"Authorization": "Bearer tok", "Host": "evil.example"}}, 403),
            ("POST", "/api/missions", {"headers": {"Authorization": "Bearer tok"}, "json": {"r": "x" * 500}}, 413),
            (
                "POST",
                "/api/missions",
                {"headers": {"Authorization": "Bearer tok", "Content-Type": "text/plain"}, "data": b"hi"},
                415,
            ),
        ]
        for method, path, kwargs, expect in cases:
            resp = await client.request(method, path, **kwargs)
            assert resp.status == expect
            spec.check(method, path, resp.status, resp.content_type, json.loads(await resp.read()))

    def test_checker_catches_drift(self, app_routes: list[Any]) -> None:
        """An answer with an undocumented field or a null optional fails the check (the test has teeth)."""
        spec = Spec(document(app_routes, ["standard-feature"]))
        meta = {
            "mission_id": "m-0123abcd",
            "title": "t",
            "type": "feature",
            "workflow_id": "standard-feature",
            "current_step": 0,
            "status": "ready",
            "created_at": "2026-01-23T10:00:00.000Z",
            "updated_at": "2026-01-23T10:00:00.000Z",
            "errors": [],
        }
        spec.check("POST", "/api/missions", 201, "application/json", {"success": True, "data": meta, "error": None})
        for bad in ({**meta, "surprise": 1}, {**meta, "last_error": None}, {**meta, "created_at": "yesterday"}):
            envelope = {"success": True, "data": bad, "error": None}
            with pytest.raises(AssertionError):
                spec.check("POST", "/api/missions", 201, "application/json", envelope)


# -- the document is generated from the models, the converter and the handlers --

filenames = st.from_regex(r"[A-Za-z0-9_\-][A-Za-z0-9._\-]{0,20}", fullmatch=True).filter(lambda n: ".." not in n)
non_blank = text.filter(str.strip)
#: What a request's one-line fields accept: no NUL byte (the models refuse it, the schemas say so).
line = st.text(alphabet=st.characters(blacklist_characters="\0"), min_size=1, max_size=40)
non_blank_line = line.filter(str.strip)
gates = st.builds(
    WorkflowStep,
    step_id=non_blank,
    name=non_blank,
    type=st.just(StepType.HUMAN_GATE),
    review_artifact=st.none() | filenames,
    workspace_mode=st.none() | st.sampled_from(WorkspaceMode),
    quick_commands=st.none() | st.lists(text, max_size=2).map(tuple),
)
agent_steps = st.builds(
    WorkflowStep,
    step_id=non_blank,
    name=non_blank,
    type=st.just(StepType.AGENT),
    agent=non_blank,
    input_artifact=st.none() | filenames,
    output_artifact=filenames,
)
workflows = st.builds(
    Workflow,
    workflow_id=non_blank,
    name=non_blank,
    steps=st.lists(gates | agent_steps, min_size=1, max_size=4, unique_by=lambda s: s.step_id).map(tuple),
)
#: One strategy per model the document describes; a new model needs one here.
shas = st.from_regex(r"[0-9a-f]{40}", fullmatch=True)
git_files = st.builds(GitFile, path=text, status=st.sampled_from(["A", "M", "D", "R", "T"]))
INSTANCES: dict[type, Any] = {
    Project: st.builds(
        Project,
        project_id=st.from_regex(r"p-[0-9a-f]{8}", fullmatch=True),
        name=text,
        path=text,
        created_at=timestamps,
        default_branch=st.none() | text,
        test_command=st.none() | text,
        image=st.none() | text,
    ),
    Execution: st.builds(
        Execution,
        id=st.from_regex(r"exec-[0-9a-f]{8}", fullmatch=True),
        command=text,
        status=st.sampled_from(ExecutionStatus),
        output=st.text(max_size=40),
        started_at=timestamps,
        exit_code=st.none() | st.integers(0, 255),
        finished_at=st.none() | timestamps,
    ),
    GitFile: git_files,
    GitStatus: st.builds(
        GitStatus, has_changes=st.booleans(), files=st.lists(git_files, max_size=3).map(tuple), summary=text
    ),
    GitDiff: st.builds(GitDiff, diff=st.text(max_size=40), truncated=st.booleans()),
    Commit: st.builds(
        Commit,
        sha=shas,
        message=text,
        author=text,
        created_at=timestamps,
        files=st.integers(0, 100),
        insertions=st.integers(0, 100),
        deletions=st.integers(0, 100),
        run_id=st.none() | st.from_regex(r"r-[0-9a-f]{8}", fullmatch=True),
        step_id=st.none() | text,
    ),
    ExecutionStarted: st.builds(ExecutionStarted, execution_id=st.from_regex(r"exec-[0-9a-f]{8}", fullmatch=True)),
    Delivered: st.builds(Delivered, branch=text, commit=shas),
    LinkProjectRequest: st.builds(
        LinkProjectRequest,
        path=non_blank_line,
        name=st.none() | line,
        test_command=st.none() | line,
        image=st.none() | line,
    ),
    RunCommandRequest: st.builds(
        RunCommandRequest, command=non_blank_line, timeout=st.none() | st.integers(1, MAX_COMMAND_TIMEOUT_MS)
    ),
    RequestChangesRequest: st.builds(RequestChangesRequest, feedback=non_blank),
    DeliverRequest: st.builds(DeliverRequest, branch=st.none() | line),
    Usage: usages,
    Changes: changes,
    Delivery: deliveries,
    MissionMeta: metas,
    StepRun: runs,
    MissionListItem: st.builds(
        MissionListItem,
        mission_id=mission_ids,
        title=text,
        type=st.sampled_from(MissionType),
        status=st.sampled_from(MissionStatus),
        current_step_name=text,
        updated_at=timestamps,
        cost_usd=st.none() | st.floats(0, 1000, allow_nan=False),
    ),
    MissionDetail: st.builds(
        MissionDetail,
        meta=metas,
        workflow=workflows,
        artifacts=st.dictionaries(filenames, st.text(max_size=20), max_size=3),
        runs=st.lists(runs, max_size=3).map(tuple),
        current_log_tail=st.none() | st.text(max_size=40),
    ),
    Workflow: workflows,
    WorkflowStep: gates | agent_steps,
    CreateMissionRequest: st.builds(
        CreateMissionRequest,
        title=non_blank_line,
        type=st.sampled_from(MissionType),
        raw_input=non_blank,
        workflow_id=st.none() | st.just("standard-feature"),
    ),
    SaveArtifactRequest: st.builds(SaveArtifactRequest, content=st.text(max_size=40)),
}
REQUESTS = {
    CreateMissionRequest,
    SaveArtifactRequest,
    LinkProjectRequest,
    RunCommandRequest,
    RequestChangesRequest,
    DeliverRequest,
}


@functools.cache
def generated() -> dict[str, Any]:
    """The document of a daemon that was built but never started."""
    app = create_app(
        Config.from_env({"HAFLOW_AUTH": "none"}, home=Path("/nonexistent/haflow-home"), port=0), sandbox=FakeSandbox()
    )
    return document(app.router.routes(), ["oneshot", "standard-feature"])


@functools.cache
def generated_spec() -> Spec:
    return Spec(generated())


def validate(name: str, data: Any) -> list[str]:
    """The problems of ``data`` as an instance of the component schema ``name``."""
    validator = generated_spec().request_schema(name)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(data)]


class TestGenerated:
    @pytest.mark.parametrize("cls", list(INSTANCES), ids=lambda c: c.__name__)
    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_models_validate_against_their_schema(self, cls: type, data: st.DataObject) -> None:
        """Whatever the converter writes for a model validates against that model's generated schema."""
        value = data.draw(INSTANCES[cls])
        wire = json.loads(dumps(value))
        assert validate(cls.__name__, wire) == []

    def test_every_model_schema_has_instances(self) -> None:
        """Each schema generated from an attrs model is exercised by the round trip above."""
        from haflowd import models

        generated_models = {
            name for name in generated()["components"]["schemas"] if attrs.has(getattr(models, name, None) or int)
        }
        assert generated_models == {cls.__name__ for cls in INSTANCES}

    @pytest.mark.parametrize(
        ("name", "data"),
        [
            ("MissionMeta", {"mission_id": "m-0123abcd"}),
            ("StepRun", {"step_id": "s", "run_id": "r-0123ABCD", "started_at": "2026-01-23T10:00:00.000Z"}),
            ("StepRun", {"step_id": "s", "run_id": "r-0123abcd", "started_at": "2026-01-23T10:00:00Z"}),
            (
                "StepRun",
                {"step_id": "s", "run_id": "r-0123abcd", "started_at": "2026-01-23T10:00:00.000Z", "exit_code": None},
            ),
            ("Workflow", {"workflow_id": "w", "name": "W", "steps": []}),
            ("WorkflowStep", {"step_id": "s", "name": "S", "type": "agent", "input_artifact": "a.md"}),
            ("WorkflowStep", {"step_id": "s", "name": "S", "type": "human-gate", "reviewArtifact": "../x"}),
            ("CreateMissionRequest", {"title": "t", "type": "fix", "rawInput": " \n"}),
        ],
    )
    def test_schemas_reject_what_models_reject(self, name: str, data: Any) -> None:
        """Missing fields, bad ids, other timestamp forms, nulls in answers, snake_case renames and blank text fail."""
        assert validate(name, data) != []

    def test_requests_are_open_only_where_the_converter_is(self) -> None:
        """Answers are closed; a request is closed exactly when the converter rejects unknown keys."""
        schemas = generated()["components"]["schemas"]
        for cls in INSTANCES:
            closed = schemas[cls.__name__].get("additionalProperties") is False
            assert closed == (cls not in REQUESTS or cls in STRICT_KEYS), cls
        # The open request really does accept an unknown key.
        body = {"title": "t", "type": "fix", "rawInput": "r", "later": 1}
        assert structure_request(body, CreateMissionRequest).raw_input == "r"
        assert validate("CreateMissionRequest", body) == []

    def test_null_workflow_id_is_accepted_by_both(self) -> None:
        """A request's optional field may be null, as the converter reads it; the default is the catalog's."""
        body = {"title": "t", "type": "fix", "rawInput": "r", "workflowId": None}
        assert structure_request(body, CreateMissionRequest).workflow_id is None
        assert validate("CreateMissionRequest", body) == []
        prop = generated()["components"]["schemas"]["CreateMissionRequest"]["properties"]["workflowId"]
        assert prop["default"] == DEFAULT_WORKFLOW
        assert prop["enum"] == ["oneshot", "standard-feature", None]

    def test_every_rename_is_in_the_document(self) -> None:
        """Each camelCase name of the converter's rename table is a property, its Python name is not."""
        schemas = generated()["components"]["schemas"]
        for cls, renames in RENAMES.items():
            properties = schemas[cls.__name__]["properties"]
            for python, wire in renames.items():
                assert wire in properties and python not in properties, (cls, wire)

    def test_a_new_rename_shows_up(self, app_routes: list[Any], monkeypatch: pytest.MonkeyPatch) -> None:
        """Changing the converter's rename table changes the document: there is no second copy."""
        monkeypatch.setitem(RENAMES, MissionMeta, {"updated_at": "updatedAt"})
        schemas = document(app_routes)["components"]["schemas"]
        assert "updatedAt" in schemas["MissionMeta"]["properties"]
        assert "updatedAt" in schemas["MissionMeta"]["required"]
        assert "updated_at" not in schemas["MissionMeta"]["properties"]
        assert "updatedAt" in schemas["MissionDetail"]["properties"]  # flattened from MissionMeta

    def test_ids_and_timestamps_come_from_their_modules(self) -> None:
        """Id schemas anchor the regexes of haflowd.ids; Timestamp is the formatter's pattern."""
        schemas = generated()["components"]["schemas"]
        assert schemas["MissionId"]["pattern"] == f"^{MISSION_ID.pattern}$"
        assert schemas["RunId"]["pattern"] == f"^{RUN_ID.pattern}$"
        assert schemas["Timestamp"]["pattern"] == TIMESTAMP_PATTERN
        assert re.fullmatch(TIMESTAMP_PATTERN[1:-1], format_timestamp(datetime(2026, 1, 23, 10, tzinfo=UTC)))
        assert validate("MissionId", new_mission_id()) == [] and validate("RunId", new_run_id()) == []

    def test_running_statuses_are_marked(self) -> None:
        """MissionStatus carries x-running, the statuses in which a step is running, for the UI."""
        status = generated()["components"]["schemas"]["MissionStatus"]
        assert set(status["x-running"]) == {s.value for s in RUNNING_STATUSES}
        assert set(status["x-running"]) <= set(status["enum"])

    def test_undescribed_route_is_an_error(self, config: Config, fake: FakeSandbox) -> None:
        """An /api route whose handler has no @described cannot be documented: the document fails naming it."""
        app = create_app(config, sandbox=fake)

        async def secret(request: web.Request) -> web.Response:
            raise AssertionError("never called")

        app.router.add_get("/api/secret", secret)
        with pytest.raises(ValueError, match="GET /api/secret"):
            document(app.router.routes())

    def test_operations_come_from_the_handlers(self) -> None:
        """Summary, status, request body and documented errors are those of the handler's mark."""
        doc = generated()
        for method, path, mark in api_routes(
            create_app(
                Config.from_env({"HAFLOW_AUTH": "none"}, home=Path("/nonexistent/h"), port=0), sandbox=FakeSandbox()
            ).router.routes()
        ):
            op = doc["paths"][path][method]
            assert op["summary"] == mark.summary
            assert str(mark.status) in op["responses"]
            assert {str(c) for c in mark.errors} <= set(op["responses"])
            assert ("requestBody" in op) == (mark.request is not None or mark.body_media is not None)
