"""The OpenAPI 3.1 description of ``/api``, served at ``GET /api/openapi.json``.

Generated, so that each fact has one home:

- component schemas from the attrs models (:mod:`haflowd.models`: fields,
  resolved type hints, defaults, ``attrs.field(metadata={"openapi": ...})``
  for what a type cannot say), shaped by the converter's wire rules
  (:mod:`haflowd.convert`: ``RENAMES``, ``STRICT_KEYS``, ``FLATTENED``,
  ``TIMESTAMP_PATTERN``; optional fields omitted);
- id and file name patterns from the regular expressions of :mod:`haflowd.ids`;
- the paths from the app's router, each operation from the
  :func:`~haflowd.web.described.described` mark beside its handler.

Only the answers no model builds (``Health``, ``RenderedArtifact``, the error
envelope) are written here by hand. The known workflow ids are filled in from
the daemon's catalog when the document is served, so ``workflowId`` lists
exactly what ``POST /api/missions`` accepts.

The document itself is the one ``/api`` answer that is not wrapped in the
envelope, so that standard tools (schemathesis, Swagger UI, generators)
can read it directly.
"""

from __future__ import annotations

import copy
import enum
import json
import re
import types
import typing
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

import attrs
from aiohttp import web
from aiohttp.web_urldispatcher import AbstractRoute

from .. import __version__
from ..catalog import DEFAULT_WORKFLOW
from ..clock import TIMESTAMP_PATTERN
from ..convert import FLATTENED, RENAMES, STRICT_KEYS
from ..ids import EXECUTION_ID, FILENAME, MAX_FILENAME_BYTES, MISSION_ID, PROJECT_ID, RUN_ID
from ..models import RUNNING_STATUSES, CreateMissionRequest, MissionStatus
from .described import Description, described, description_of
from .keys import DEFINITIONS, PROJECTS

routes = web.RouteTableDef()

OPENAPI_PATH = "/api/openapi.json"
JSON = "application/json"
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
NULL = {"type": "null"}

#: Named id schemas: a field whose metadata pattern is one of these regexes refers to it.
_ID_SCHEMAS: dict[re.Pattern[str], tuple[str, str]] = {
    MISSION_ID: ("MissionId", "m-0123abcd"),
    RUN_ID: ("RunId", "r-0123abcd"),
}
#: Extensions the web UI reads, per enum.
_ENUM_EXTENSIONS: dict[type, dict[str, Any]] = {
    MissionStatus: {"x-running": [s.value for s in MissionStatus if s in RUNNING_STATUSES]},
}
_SCALARS: dict[type, str] = {str: "string", int: "integer", float: "number", bool: "boolean"}


def anchored(pattern: re.Pattern[str]) -> str:
    """A ``fullmatch`` regex as a JSON Schema pattern (which searches)."""
    return f"^(?:{pattern.pattern})$" if "|" in pattern.pattern else f"^{pattern.pattern}$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"anyOf": [schema, NULL]}


@attrs.define
class _Generator:
    """Walks models into component schemas; a class is a request or an answer, never both."""

    schemas: dict[str, Any] = attrs.field(factory=dict)
    requests: set[type] = attrs.field(factory=set)
    _modes: dict[type, bool] = attrs.field(factory=dict)

    def type_schema(self, hint: Any, *, request: bool) -> dict[str, Any]:
        """The schema of one type hint, adding the components it refers to."""
        origin, args = typing.get_origin(hint), typing.get_args(hint)
        if hint is None or hint is type(None):
            return dict(NULL)
        if origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            if len(members) != 1:
                return {"anyOf": [self.type_schema(a, request=request) for a in args]}
            inner = self.type_schema(members[0], request=request)
            return _nullable(inner) if len(members) < len(args) else inner
        if origin in (tuple, list) and (origin is list or (len(args) == 2 and args[1] is Ellipsis)):
            return {"type": "array", "items": self.type_schema(args[0], request=request)}
        if origin in (Mapping, dict) and args and args[0] is str:
            return {"type": "object", "additionalProperties": self.type_schema(args[1], request=request)}
        if isinstance(hint, type):
            if issubclass(hint, enum.Enum):
                return self.component(hint, request=request)
            if hint in _SCALARS:
                return {"type": _SCALARS[hint]}
            if hint is datetime:
                self.schemas.setdefault("Timestamp", _timestamp())
                return _ref("Timestamp")
            if attrs.has(hint):
                return self.component(hint, request=request)
        raise TypeError(f"no schema for {hint!r}")

    def component(self, cls: type, *, request: bool) -> dict[str, str]:
        name = cls.__name__
        if issubclass(cls, enum.Enum):
            # Same in both directions.
            values = {"type": "string", "enum": [m.value for m in cls], **_ENUM_EXTENSIONS.get(cls, {})}
            self.schemas.setdefault(name, values)
            return _ref(name)
        if cls in self._modes:
            if self._modes[cls] != request:
                raise TypeError(f"{name} is both a request and an answer: give each its own class")
            return _ref(name)
        self._modes[cls] = request
        self.schemas[name] = {}  # reserve the name (and its place) before walking the fields
        self.schemas[name] = self.object_schema(cls, request=request)
        return _ref(name)

    def object_schema(self, cls: type, *, request: bool) -> dict[str, Any]:
        """The wire shape of an attrs class, as the converter writes (answers) or reads (requests) it."""
        hints = typing.get_type_hints(cls)
        renames = RENAMES.get(cls, {})
        required: list[str] = []
        properties: dict[str, Any] = {}
        flattened = FLATTENED.get(cls)
        for field in attrs.fields(cls):
            if field.name == flattened:
                inner = self.object_schema(hints[field.name], request=request)
                required += inner["required"]
                properties.update(inner["properties"])
                continue
            if field.metadata.get("wire") is False:
                continue  # bookkeeping kept on disk, never sent
            wire = renames.get(field.name, field.name)
            optional = field.default is not attrs.NOTHING
            hint = hints[field.name]
            if optional and not request and field.default is None:
                # Answers omit a field equal to its default: None is never written.
                hint = _without_none(hint)
            properties[wire] = self.field_schema(hint, field.metadata.get("openapi", {}), request=request)
            if not optional:
                required.append(wire)
        schema: dict[str, Any] = {"type": "object", "required": required, "properties": properties}
        # Answers carry exactly these fields; requests reject others only where the converter does.
        if not request or cls in STRICT_KEYS:
            schema["additionalProperties"] = False
        return schema

    def id_schema(self, pattern: re.Pattern[str]) -> dict[str, str]:
        """A reference to the named schema of an id regex of :mod:`haflowd.ids`."""
        name, example = _ID_SCHEMAS[pattern]
        self.schemas.setdefault(name, {"type": "string", "pattern": anchored(pattern), "examples": [example]})
        return _ref(name)

    def field_schema(self, hint: Any, facts: Mapping[str, Any], *, request: bool) -> dict[str, Any]:
        pattern = facts.get("pattern")
        if isinstance(pattern, re.Pattern) and pattern in _ID_SCHEMAS:
            named = self.id_schema(pattern)
            nullable = hint is not _without_none(hint)
            return _nullable(named) if nullable else named
        schema = self.type_schema(hint, request=request)
        extra = {k: anchored(v) if isinstance(v, re.Pattern) else v for k, v in facts.items()}
        if "$ref" in schema or "anyOf" in schema:
            return {"allOf": [schema], **extra} if extra else schema
        return {**schema, **extra}


def _without_none(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(members) == 1:
            return members[0]
    return hint


def _timestamp() -> dict[str, Any]:
    return {
        "type": "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "description": "ISO 8601 UTC with milliseconds, e.g. 2026-01-23T10:00:00.000Z",
    }


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(required),
        "properties": {**required, **(optional or {})},
        "additionalProperties": False,
    }


#: Answers no model builds, by name (``described(response="Health")``).
HAND_WRITTEN: dict[str, Any] = {
    "RenderedArtifact": _object({"html": {"type": "string"}}),
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
    "RunLog": {
        "oneOf": [
            {"type": "string", "description": "Without `offset`: the log's last 256 Ki characters."},
            _object(
                {
                    "text": {"type": "string"},
                    "offset": {"type": "integer", "minimum": 0},
                    "next_offset": {"type": "integer", "minimum": 0},
                    "size": {"type": "integer", "minimum": 0},
                }
            ),
        ]
    },
    "Error": _object(
        {
            "success": {"const": False},
            "data": {"type": "null"},
            "error": {"type": "string", "minLength": 1},
        }
    ),
}

#: Failures every ``/api`` operation can answer (the middlewares in front of all handlers).
COMMON_ERRORS = {
    401: "A token is configured and the request lacks `Authorization: Bearer <token>`.",
    403: "The Origin or Host header is not allowed, or the login cookie came from a page not served by the daemon.",
}


def _success(data: dict[str, Any], description: str) -> dict[str, Any]:
    schema = _object({"success": {"const": True}, "data": data, "error": {"type": "null"}})
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref("Error")}}}


def _operation(path: str, d: Description, gen: _Generator) -> dict[str, Any]:
    if d.status == 204:
        ok: dict[str, Any] = {"description": "Done; no content."}
    elif d.media is not None:
        medias = (d.media,) if isinstance(d.media, str) else d.media
        as_text = isinstance(d.media, str) and d.media.startswith("text/")
        ok = {
            "description": "The answer, as text." if as_text else "The file, as it is.",
            "content": {m: {"schema": {"type": "string"}} for m in medias},
        }
    elif not d.enveloped:
        ok = {
            "description": "The answer (not wrapped in the envelope).",
            "content": {JSON: {"schema": {"type": "object", "required": ["openapi", "paths"]}}},
        }
    elif isinstance(d.response, str):
        if d.response not in HAND_WRITTEN:
            raise ValueError(f"{path}: no hand-written schema {d.response!r}")
        gen.schemas.setdefault(d.response, copy.deepcopy(HAND_WRITTEN[d.response]))
        ok = _success(_ref(d.response), "Success.")
    elif d.response is None:
        ok = _success(dict(NULL), "Done; `data` is null.")
    else:
        ok = _success(gen.type_schema(d.response, request=False), "Success.")
    if d.headers:
        ok["headers"] = {name: {"schema": schema, "description": text} for name, (schema, text) in d.headers.items()}
    responses: dict[str, Any] = {str(d.status): ok}
    for code in sorted({*d.errors, *COMMON_ERRORS}):
        if code in d.errors:
            responses[str(code)] = _error(d.errors[code])
        else:
            responses[str(code)] = {"$ref": f"#/components/responses/E{code}"}
    responses["default"] = {"$ref": "#/components/responses/Error"}
    op: dict[str, Any] = {"summary": d.summary, "tags": [d.tag], "responses": responses}
    names = re.findall(r"\{(\w+)\}", path)
    parameters: list[dict[str, Any]] = [{"$ref": f"#/components/parameters/{n}"} for n in names]
    for name, (schema, text) in d.query.items():
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema, "description": text})
    if parameters:
        op["parameters"] = parameters
    if d.request is not None:
        op["requestBody"] = {"required": True, "content": {JSON: {"schema": gen.type_schema(d.request, request=True)}}}
    elif d.body_media is not None:
        op["requestBody"] = {
            "required": True,
            "content": {d.body_media: {"schema": {"type": "string", "contentMediaType": d.body_media}}},
        }
    if d.auth == "ticket":
        # Neither the daemon's token nor "no credentials": only the one-time ticket.
        op["security"] = [{"transferTicket": []}]
    return op


def _parameters(gen: _Generator) -> dict[str, Any]:
    def path(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": schema, "description": description}

    return {
        "mission_id": path("mission_id", gen.id_schema(MISSION_ID), "Mission id: m- and 8 lowercase hex digits."),
        "run_id": path("run_id", gen.id_schema(RUN_ID), "Run id: r- and 8 lowercase hex digits."),
        "project_id": path(
            "project_id", {"type": "string", "pattern": anchored(PROJECT_ID)}, "Project id: p- and 8 hex digits."
        ),
        "execution_id": path(
            "execution_id",
            {"type": "string", "pattern": anchored(EXECUTION_ID)},
            "Execution id: exec- and 8 hex digits.",
        ),
        "path": path("path", {"type": "string", "minLength": 1}, "A file of the work tree, URL-encoded."),
        "filename": path(
            "filename",
            {"type": "string", "pattern": anchored(FILENAME), "maxLength": MAX_FILENAME_BYTES},
            "A plain artifact file name: letters, digits, '.', '-', '_'; no leading dot, no '..'.",
        ),
    }


def _responses() -> dict[str, Any]:
    out: dict[str, Any] = {f"E{code}": _error(text) for code, text in COMMON_ERRORS.items()}
    out["Error"] = _error("Any other failure, in the envelope.")
    return out


_INFO = {
    "title": "haflowd API",
    "version": __version__,
    "description": (
        "Every response (except this document) is the envelope "
        '`{"success": bool, "data": ..., "error": string|null}`. Optional fields are omitted, '
        "never null. When the daemon has a token (always when it listens beyond loopback), "
        "every request needs `Authorization: Bearer <token>`."
    ),
}


def api_routes(app_routes: Iterable[AbstractRoute]) -> list[tuple[str, str, Description]]:
    """``(method, path, description)`` of each documented route; raises for an undescribed one.

    Routes of other methods (HEAD, OPTIONS, the ``*`` catch-all) are not operations.
    """
    found = []
    for route in app_routes:
        resource = route.resource
        path = resource.canonical if resource is not None else ""
        if not path.startswith("/api") or route.method not in HTTP_METHODS:
            continue
        description = description_of(route.handler)
        if description is None:
            raise ValueError(f"{route.method} {path} has no description: mark its handler with @described(...)")
        found.append((route.method.lower(), path, description))
    return found


def _build(operations: Iterable[tuple[str, str, Description]]) -> dict[str, Any]:
    gen = _Generator()
    paths: dict[str, Any] = {}
    for method, path, description in operations:
        paths.setdefault(path, {})[method] = _operation(path, description, gen)
    parameters = _parameters(gen)
    gen.schemas.setdefault("Error", copy.deepcopy(HAND_WRITTEN["Error"]))  # of every error answer
    tags = list(dict.fromkeys(op["tags"][0] for ops in paths.values() for op in ops.values()))
    return {
        "openapi": "3.1.0",
        "info": copy.deepcopy(_INFO),
        "servers": [{"url": "/"}],
        "tags": [{"name": t} for t in tags],
        "paths": paths,
        "components": {
            "schemas": gen.schemas,
            "parameters": parameters,
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "transferTicket": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A one-time token a sandbox provider issued for one transfer of a run's areas.",
                },
            },
        },
        # Either no credentials (loopback without token) or the bearer token.
        "security": [{}, {"bearer": []}],
    }


def document(
    app_routes: Iterable[AbstractRoute], workflow_ids: Iterable[str] = (), project_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """The OpenAPI document of the ``/api`` routes among ``app_routes``.

    ``workflow_ids`` (the catalog's) become the enum of ``workflowId``;
    ``project_ids`` (the linked ones), when given, the enum of ``projectId``.
    """
    doc = _build(api_routes(app_routes))
    _add_catalog(doc["components"]["schemas"], sorted(workflow_ids))
    if project_ids is not None:
        _add_projects(doc["components"]["schemas"], sorted(project_ids))
    return doc


def _add_projects(schemas: dict[str, Any], ids: list[str]) -> None:
    # projectId names a linked project; baseRef only means something with one.
    create = schemas.get(CreateMissionRequest.__name__)
    if create is None:
        return
    renames = RENAMES.get(CreateMissionRequest, {})
    project, base = renames.get("project_id", "project_id"), renames.get("base_ref", "base_ref")
    create["properties"][project]["enum"] = [*ids, None]
    create["if"] = {"properties": {project: {"type": "null"}}}
    create["then"] = {"properties": {base: {"type": "null"}}}


def _add_catalog(schemas: dict[str, Any], ids: list[str]) -> None:
    # workflowId names a workflow of the catalog: its default, and the known ones.
    create = schemas.get(CreateMissionRequest.__name__)
    if create is None:
        return
    wire = RENAMES.get(CreateMissionRequest, {}).get("workflow_id", "workflow_id")
    prop = create["properties"][wire]
    prop["default"] = DEFAULT_WORKFLOW
    prop["description"] = f"Omitted or null: {DEFAULT_WORKFLOW}."
    if ids:
        prop["enum"] = [*ids, None]


@routes.get(OPENAPI_PATH)
@described("This document (not wrapped in the envelope)", tag="daemon", enveloped=False)
async def openapi_json(request: web.Request) -> web.Response:
    projects = [p.project_id for p in request.app[PROJECTS].all()]
    doc = document(request.app.router.routes(), request.app[DEFINITIONS].catalog.workflows, projects)
    return web.Response(text=json.dumps(doc, ensure_ascii=False), content_type=JSON)
