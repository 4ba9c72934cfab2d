"""The OpenAPI 3.1 description of ``/api``, served at ``GET /api/openapi.json``.

Written by hand from the contract (docs/../contract, :mod:`haflowd.models`
and :mod:`haflowd.convert`); ``tests/test_openapi.py`` keeps it true: every
route of the app must be described here, and the responses of a driven
workflow must validate against it. The known workflow ids are filled in
from the daemon's catalog when the document is served, so ``workflowId``
lists exactly what ``POST /api/missions`` accepts.

The document itself is the one ``/api`` answer that is not wrapped in the
envelope, so that standard tools (schemathesis, Swagger UI, generators)
can read it directly.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from .. import __version__
from .keys import ENGINE
from ..catalog import DEFAULT_WORKFLOW
from ..models import RUNNING_STATUSES, MissionStatus, MissionType, StepType, WorkspaceMode

routes = web.RouteTableDef()

OPENAPI_PATH = "/api/openapi.json"
JSON = "application/json"
TIMESTAMP = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$",
    "description": "ISO 8601 UTC with milliseconds, e.g. 2026-01-23T10:00:00.000Z",
}
NON_BLANK = {"type": "string", "minLength": 1, "pattern": r"\S"}
FILENAME_PATTERN = r"^[A-Za-z0-9_\-][A-Za-z0-9._\-]*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _enum(values: Iterable[Any]) -> dict[str, Any]:
    return {"type": "string", "enum": [v.value for v in values]}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None, *, closed: bool = True) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
    }
    if closed:
        schema["additionalProperties"] = False
    return schema


def _schemas() -> dict[str, Any]:
    meta_required = {
        "mission_id": _ref("MissionId"),
        "title": {"type": "string"},
        "type": _ref("MissionType"),
        "workflow_id": {"type": "string"},
        "current_step": {"type": "integer", "minimum": 0},
        "status": _ref("MissionStatus"),
        "created_at": _ref("Timestamp"),
        "updated_at": _ref("Timestamp"),
        "errors": {"type": "array", "items": {"type": "string"}},
    }
    meta_optional = {"last_error": {"type": "string"}}
    return {
        "MissionId": {"type": "string", "pattern": r"^m-[0-9a-f]{8}$", "examples": ["m-0123abcd"]},
        "RunId": {"type": "string", "pattern": r"^r-[0-9a-f]{8}$", "examples": ["r-0123abcd"]},
        "Timestamp": TIMESTAMP,
        "MissionType": _enum(MissionType),
        "MissionStatus": {
            **_enum(MissionStatus),
            # The web UI reads which statuses mean "an agent is running" here.
            "x-running": [s.value for s in MissionStatus if s in RUNNING_STATUSES],
        },
        "StepType": _enum(StepType),
        "WorkflowStep": _object(
            {"step_id": {"type": "string"}, "name": {"type": "string"}, "type": _ref("StepType")},
            {
                "agent": {"type": "string"},
                "inputArtifact": {"type": "string"},
                "outputArtifact": {"type": "string"},
                "reviewArtifact": {"type": "string"},
                "workspaceMode": _enum(WorkspaceMode),
                "quickCommands": {"type": "array", "items": {"type": "string"}},
            },
        ),
        "Workflow": _object(
            {
                "workflow_id": {"type": "string"},
                "name": {"type": "string"},
                "steps": {"type": "array", "minItems": 1, "items": _ref("WorkflowStep")},
            }
        ),
        "MissionMeta": _object(meta_required, meta_optional),
        "StepRun": _object(
            {"step_id": {"type": "string"}, "run_id": _ref("RunId"), "started_at": _ref("Timestamp")},
            {
                "finished_at": _ref("Timestamp"),
                "exit_code": {"type": "integer"},
                "container_id": {"type": "string"},
            },
        ),
        "MissionListItem": _object(
            {
                "mission_id": _ref("MissionId"),
                "title": {"type": "string"},
                "type": _ref("MissionType"),
                "status": _ref("MissionStatus"),
                "current_step_name": {"type": "string"},
                "updated_at": _ref("Timestamp"),
            }
        ),
        "MissionDetail": _object(
            {
                **meta_required,
                "workflow": _ref("Workflow"),
                "artifacts": {"type": "object", "additionalProperties": {"type": "string"}},
                "runs": {"type": "array", "items": _ref("StepRun")},
            },
            {
                **meta_optional,
                "current_log_tail": {
                    "type": "string",
                    "description": "The last characters of the log of the run in progress.",
                },
            },
        ),
        "CreateMissionRequest": _object(
            {"title": NON_BLANK, "type": _ref("MissionType"), "rawInput": NON_BLANK},
            {
                "workflowId": {
                    "type": ["string", "null"],
                    "default": DEFAULT_WORKFLOW,
                    "description": f"Omitted or null: {DEFAULT_WORKFLOW}.",
                }
            },
            closed=False,
        ),
        "SaveArtifactRequest": _object({"content": {"type": "string"}}, closed=False),
        "RenderedArtifact": _object({"html": {"type": "string"}}),
        "LogChunk": _object(
            {
                "text": {"type": "string", "description": "The log from byte `offset`, whole characters only."},
                "offset": {"type": "integer", "minimum": 0},
                "next_offset": {"type": "integer", "minimum": 0, "description": "`offset` + bytes returned."},
                "size": {"type": "integer", "minimum": 0, "description": "The log's size in bytes now."},
            }
        ),
        "Health": _object(
            {
                "status": {"type": "string", "enum": ["ok", "degraded"]},
                "version": {"type": "string"},
                "uptime_seconds": {"type": "number", "minimum": 0},
                "docker": {"type": "boolean", "description": "The sandbox engine answers its check."},
                "missions_dir_writable": {"type": "boolean"},
                "missions": {
                    "type": "object",
                    "description": "How many missions are in each status.",
                    "additionalProperties": {"type": "integer", "minimum": 0},
                },
            }
        ),
        "Error": _object(
            {
                "success": {"const": False},
                "data": {"type": "null"},
                "error": {"type": "string", "minLength": 1},
            }
        ),
    }


def _success(data: dict[str, Any], description: str) -> dict[str, Any]:
    schema = _object({"success": {"const": True}, "data": data, "error": {"type": "null"}})
    return {"description": description, "content": {JSON: {"schema": schema}}}


ERRORS = {
    "400": "Malformed JSON, or a missing or invalid field (named in `error`).",
    "401": "A token is configured and the request lacks `Authorization: Bearer <token>`.",
    "403": "The Origin or Host header is not allowed.",
    "404": "Unknown mission, run, artifact or route.",
    "405": "Method not allowed on this path.",
    "409": "The mission cannot do this now.",
    "413": "Body over the size cap, or the mission's artifacts over their total cap.",
    "415": "A request body that is not application/json.",
}
NULL = {"type": "null"}


def _operation(
    summary: str,
    ok: dict[str, Any],
    *,
    status: str = "200",
    params: tuple[str, ...] = (),
    body: str | None = None,
    errors: tuple[str, ...] = ("403", "404"),
    tag: str = "missions",
) -> dict[str, Any]:
    responses: dict[str, Any] = {status: ok}
    for code in sorted({*errors, "401", "403"}):
        responses[code] = {"$ref": f"#/components/responses/E{code}"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    op: dict[str, Any] = {"summary": summary, "tags": [tag], "responses": responses}
    if params:
        op["parameters"] = [{"$ref": f"#/components/parameters/{p}"} for p in params]
    if body:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": _ref(body)}}}
    return op


OFFSET = {
    "name": "offset",
    "in": "query",
    "required": False,
    "schema": {"type": "integer", "minimum": 0},
    "description": "Answer a LogChunk: the log's bytes from this byte offset (a previous `next_offset`).",
}


def _with_query(op: dict[str, Any], *params: dict[str, Any]) -> dict[str, Any]:
    op["parameters"] = [*op.get("parameters", []), *params]
    return op


def _paths() -> dict[str, Any]:
    m = ("mission_id",)
    null_ok = _success(NULL, "Done; `data` is null.")
    return {
        "/api/missions": {
            "get": _operation(
                "List missions, newest first",
                _success({"type": "array", "items": _ref("MissionListItem")}, "Every mission."),
                errors=(),
            ),
            "post": _operation(
                "Create a mission (status ready, step 0); writes artifacts/raw-input.md",
                _success(_ref("MissionMeta"), "The new mission."),
                status="201",
                body="CreateMissionRequest",
                errors=("400", "413", "415"),
            ),
        },
        "/api/missions/{mission_id}": {
            "get": _operation(
                "A mission with its workflow, artifacts, runs and live log tail",
                _success(_ref("MissionDetail"), "The mission."),
                params=m,
            ),
        },
        "/api/missions/{mission_id}/artifacts/{filename}": {
            "put": _operation(
                "Save an artifact (the human's edit at a review gate)",
                null_ok,
                params=(*m, "filename"),
                body="SaveArtifactRequest",
                errors=("400", "404", "409", "413", "415"),
            ),
        },
        "/api/missions/{mission_id}/artifacts/{filename}/html": {
            "get": _operation(
                "An artifact rendered as safe HTML (Markdown without raw HTML, escaped JSON/text)",
                _success(_ref("RenderedArtifact"), "The HTML."),
                params=(*m, "filename"),
                errors=("400", "404"),
            ),
        },
        "/api/missions/{mission_id}/runs/{run_id}/log": {
            "get": _with_query(
                _operation(
                    "The log of one run: its last 256 Ki characters, or with `offset` at most 256 KiB from there",
                    _success(
                        {"oneOf": [{"type": "string"}, _ref("LogChunk")]},
                        "Without `offset` the log text; with it a LogChunk.",
                    ),
                    params=(*m, "run_id"),
                    errors=("400", "404"),
                ),
                OFFSET,
            ),
        },
        "/api/missions/{mission_id}/continue": {
            "post": _operation(
                "Approve the human gate, or start (retry) the agent step",
                null_ok,
                params=m,
                errors=("404", "409"),
            ),
        },
        "/api/missions/{mission_id}/cancel": {
            "post": _operation(
                "Stop the running agent step; the mission fails and continue retries it",
                null_ok,
                params=m,
                errors=("404", "409"),
            ),
        },
        "/api/missions/{mission_id}/mark-completed": {
            "post": _operation(
                "Force the mission to completed, stopping a running step first",
                null_ok,
                params=m,
                errors=("404", "409"),
            ),
        },
        "/api/workflows": {
            "get": _operation(
                "Every known workflow",
                _success({"type": "array", "items": _ref("Workflow")}, "The workflows."),
                errors=(),
                tag="workflows",
            ),
        },
        "/api/health": {
            "get": _operation(
                "Daemon health: version, uptime, sandbox engine, missions folder",
                _success(_ref("Health"), "Health."),
                errors=(),
                tag="daemon",
            ),
        },
        OPENAPI_PATH: {
            "get": _operation(
                "This document (not wrapped in the envelope)",
                {
                    "description": "The OpenAPI document.",
                    "content": {JSON: {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
                },
                errors=(),
                tag="daemon",
            ),
        },
    }


def _parameters() -> dict[str, Any]:
    def path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}

    return {
        "mission_id": path("mission_id", _ref("MissionId"), "Mission id: m- and 8 lowercase hex digits."),
        "run_id": path("run_id", _ref("RunId"), "Run id: r- and 8 lowercase hex digits."),
        "filename": path(
            "filename",
            {"type": "string", "pattern": FILENAME_PATTERN, "maxLength": 255},
            "A plain artifact file name: letters, digits, '.', '-', '_'; no leading dot, no '..'.",
        ),
    }


def _responses() -> dict[str, Any]:
    error = {"content": {JSON: {"schema": _ref("Error")}}}
    out: dict[str, Any] = {f"E{code}": {"description": text, **error} for code, text in ERRORS.items()}
    out["Error"] = {"description": "Any other failure, in the envelope.", **error}
    return out


_BASE: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "haflowd API",
        "version": __version__,
        "description": (
            "Every response (except this document) is the envelope "
            '`{"success": bool, "data": ..., "error": string|null}`. Optional fields are omitted, '
            "never null. When the daemon has a token (always when it listens beyond loopback), "
            "every request needs `Authorization: Bearer <token>`."
        ),
    },
    "servers": [{"url": "/"}],
    "tags": [{"name": "missions"}, {"name": "workflows"}, {"name": "daemon"}],
    "paths": _paths(),
    "components": {
        "schemas": _schemas(),
        "parameters": _parameters(),
        "responses": _responses(),
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
    },
    # Either no credentials (loopback without token) or the bearer token.
    "security": [{}, {"bearer": []}],
}


def document(workflow_ids: Iterable[str] = ()) -> dict[str, Any]:
    """The OpenAPI document; ``workflow_ids`` become the enum of ``workflowId``."""
    doc = copy.deepcopy(_BASE)
    ids = sorted(workflow_ids)
    if ids:
        doc["components"]["schemas"]["CreateMissionRequest"]["properties"]["workflowId"]["enum"] = [*ids, None]
    return doc


@routes.get(OPENAPI_PATH)
async def openapi_json(request: web.Request) -> web.Response:
    doc = document(request.app[ENGINE].catalog.workflows)
    return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type=JSON)
