"""The one cattrs converter: how haflow's models look as JSON.

All wire rules live here and nowhere else: the contract's camelCase
renames, optional fields omitted rather than ``null``, millisecond UTC
timestamps with ``Z``, strict scalar types for what arrives, and unknown
keys rejected in data files.
"""

from __future__ import annotations

import enum
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, TypeVar

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.preconf.json import make_converter

from .clock import format_timestamp, parse_timestamp
from .errors import BadRequest
from .models import (
    AgentSpec,
    Changes,
    Commit,
    CreateMissionRequest,
    Delivered,
    DeliverRequest,
    Delivery,
    Execution,
    ExecutionStarted,
    GitDiff,
    GitFile,
    GitStatus,
    LinkProjectRequest,
    MissionDetail,
    MissionListItem,
    MissionMeta,
    Project,
    RequestChangesRequest,
    RunCommandRequest,
    SaveArtifactRequest,
    StepRun,
    Usage,
    Workflow,
    WorkflowStep,
)

T = TypeVar("T")

#: Contract names that are camelCase on the wire, per class (the API
#: description in :mod:`haflowd.web.openapi` reads this table too).
RENAMES: dict[type, dict[str, str]] = {
    WorkflowStep: {
        "input_artifact": "inputArtifact",
        "output_artifact": "outputArtifact",
        "review_artifact": "reviewArtifact",
        "workspace_mode": "workspaceMode",
        "quick_commands": "quickCommands",
    },
    CreateMissionRequest: {
        "raw_input": "rawInput",
        "workflow_id": "workflowId",
        "project_id": "projectId",
        "base_ref": "baseRef",
    },
    LinkProjectRequest: {"test_command": "testCommand"},
    GitStatus: {"has_changes": "hasChanges"},
    ExecutionStarted: {"execution_id": "executionId"},
    Execution: {"exit_code": "exitCode", "started_at": "startedAt", "finished_at": "finishedAt"},
    StepRun: {"sandbox_id": "container_id"},
}
#: Definitions written by people: a typo in a key must not pass silently.
STRICT_KEYS = (Workflow, WorkflowStep, AgentSpec)
#: Classes whose value is one attribute's object with the other fields added:
#: ``MissionDetail`` is ``MissionMeta`` plus workflow, artifacts, runs, log tail.
FLATTENED: dict[type, str] = {MissionDetail: "meta"}


def _strict(kind: type) -> Any:
    def structure(value: object, cl: type) -> object:
        # bool is an int in Python, but not on the wire.
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if kind is int and isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
                # JSON has one number type: 5.0 is the integer 5 (as JSON Schema says).
                return int(value)
            raise ValueError(f"expected {_JSON_NAMES[kind]}")
        if cl is not kind and issubclass(cl, enum.Enum):
            # str-based enums reach this hook too (single dispatch wins).
            try:
                return cl(value)
            except ValueError:
                allowed = ", ".join(str(m.value) for m in cl)
                raise ValueError(f"must be one of {allowed}") from None
        return value

    return structure


_JSON_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "a boolean"}


def _make() -> cattrs.Converter:
    conv = make_converter(forbid_extra_keys=False)
    conv.register_unstructure_hook(datetime, format_timestamp)
    conv.register_structure_hook(datetime, parse_timestamp)
    for kind in (str, int, float, bool):
        conv.register_structure_hook(kind, _strict(kind))

    def _str_mapping(value: object, _: type) -> dict[str, str]:
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise ValueError("expected an object of strings")
        return dict(value)

    conv.register_structure_hook_func(lambda t: t == Mapping[str, str], _str_mapping)

    for cls in (
        GitFile,
        GitStatus,
        GitDiff,
        Commit,
        ExecutionStarted,
        Delivered,
        Project,
        Execution,
        LinkProjectRequest,
        RunCommandRequest,
        RequestChangesRequest,
        DeliverRequest,
        Usage,
        Changes,
        Delivery,
        WorkflowStep,
        Workflow,
        AgentSpec,
        MissionMeta,
        StepRun,
        MissionListItem,
        CreateMissionRequest,
        SaveArtifactRequest,
    ):
        attrs.resolve_types(cls)
        renames: dict[str, Any] = {name: override(rename=wire) for name, wire in RENAMES.get(cls, {}).items()}
        conv.register_unstructure_hook(
            cls,
            make_dict_unstructure_fn(cls, conv, _cattrs_omit_if_default=True, **renames),
        )
        conv.register_structure_hook(
            cls,
            make_dict_structure_fn(
                cls,
                conv,
                _cattrs_forbid_extra_keys=cls in STRICT_KEYS,
                **renames,
            ),
        )

    def _detail(detail: MissionDetail) -> dict[str, Any]:
        out: dict[str, Any] = conv.unstructure(detail.meta)
        out["workflow"] = conv.unstructure(detail.workflow)
        out["artifacts"] = dict(detail.artifacts)
        out["runs"] = [_wire_run(conv.unstructure(r)) for r in detail.runs]
        if detail.current_log_tail is not None:
            out["current_log_tail"] = detail.current_log_tail
        return out

    conv.register_unstructure_hook(MissionDetail, _detail)
    return conv


converter = _make()


def _wire_run(data: dict[str, Any]) -> dict[str, Any]:
    # Bookkeeping for re-attaching and re-running: on disk, not on the wire.
    data.pop("output_offset", None)
    data.pop("feedback_artifact", None)
    return data


def wire(value: Any) -> Any:
    """``value`` as the API sends it: the disk form without the fields kept only on disk."""
    data = converter.unstructure(value)
    if attrs.has(type(value)):
        for field in attrs.fields(type(value)):
            if field.metadata.get("wire") is False:
                data.pop(RENAMES.get(type(value), {}).get(field.name, field.name), None)
    return data


def dumps(value: object) -> str:
    return json.dumps(converter.unstructure(value), ensure_ascii=False, separators=(",", ":"))


def structure_request(data: object, cls: type[T]) -> T:
    """Build a request value from decoded JSON or raise a 400 naming the field."""
    if not isinstance(data, dict):
        raise BadRequest("Request body must be a JSON object")
    try:
        return converter.structure(data, cls)
    except Exception as exc:  # cattrs wraps validator and type errors alike
        raise BadRequest(f"Invalid request: {describe(exc, cls)}") from None


def describe(exc: BaseException, cls: type) -> str:
    """One human line per problem, each naming the wire field (``$.rawInput``)."""
    if isinstance(exc, (cattrs.BaseValidationError, cattrs.ForbiddenExtraKeysError)):
        messages = cattrs.transform_error(exc, path="$", format_exception=_format)
        return "; ".join(_wire_names(m, cls) for m in messages)
    return str(exc)


def _format(exc: BaseException, type_: type | None) -> str:
    # Our validators raise ValueError with a message meant for people.
    if isinstance(exc, ValueError) and not isinstance(exc, cattrs.BaseValidationError):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


_PY_NAME = re.compile(r"\b[a-z]+(?:_[a-z]+)+\b")


def _wire_names(message: str, cls: type) -> str:
    # Errors name attributes by their Python name; users only know the wire
    # name.
    renames = RENAMES.get(cls, {})
    return _PY_NAME.sub(lambda m: renames.get(m.group(), m.group()), message)
