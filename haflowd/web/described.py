"""What a route answers, written beside its handler and read by :mod:`haflowd.web.openapi`.

::

    @routes.post("/api/missions")
    @described(
        "Create a mission",
        request=CreateMissionRequest,
        response=MissionMeta,
        status=201,
        errors={400: "A missing or invalid field, named in `error`."},
    )
    async def create_mission(request: web.Request) -> web.Response: ...

The OpenAPI document lists the routes of the app's router; a route under
``/api`` whose handler carries no description is an error there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal, TypeVar

import attrs

F = TypeVar("F", bound=Callable[..., Any])

_ATTRIBUTE = "__haflow_described__"


@attrs.frozen
class Description:
    """One operation: its summary, what it takes and answers, how it fails.

    ``response`` is a type the converter unstructures (an attrs class,
    ``list[...]``, ``str``), ``None`` for ``data: null``, or the name of a
    schema the document writes by hand (answers not built from a model).
    """

    summary: str
    response: Any = None
    status: int = 200
    request: type | None = None
    errors: Mapping[int, str] = attrs.field(factory=dict)
    tag: str = "missions"
    #: ``False`` only for the OpenAPI document itself.
    enveloped: bool = True
    #: Optional query parameters: name -> (JSON schema, description).
    query: Mapping[str, tuple[dict[str, Any], str]] = attrs.field(factory=dict)
    #: The media type (or types) of an answer that is not JSON (``text/x-patch``).
    media: str | tuple[str, ...] | None = None
    #: Headers a success may carry: name -> (JSON schema, description).
    headers: Mapping[str, tuple[dict[str, Any], str]] = attrs.field(factory=dict)
    #: The media type of a request body that is not JSON (``application/x-tar``).
    body_media: str | None = None
    #: ``"daemon"``: the daemon's token or login cookie. ``"ticket"``: only a
    #: one-time transfer token, checked by the handler; the middlewares
    #: waive the daemon's token and the JSON-body rule for such a route.
    auth: Literal["daemon", "ticket"] = "daemon"


def described(
    summary: str,
    *,
    response: Any = None,
    status: int = 200,
    request: type | None = None,
    errors: Mapping[int, str] | None = None,
    tag: str = "missions",
    enveloped: bool = True,
    query: Mapping[str, tuple[dict[str, Any], str]] | None = None,
    media: str | tuple[str, ...] | None = None,
    body_media: str | None = None,
    auth: Literal["daemon", "ticket"] = "daemon",
    headers: Mapping[str, tuple[dict[str, Any], str]] | None = None,
) -> Callable[[F], F]:
    """Attach a :class:`Description` to a handler; the handler is returned unchanged."""
    description = Description(
        summary=summary,
        response=response,
        status=status,
        request=request,
        errors=dict(errors or {}),
        tag=tag,
        enveloped=enveloped,
        query=dict(query or {}),
        media=media,
        body_media=body_media,
        auth=auth,
        headers=dict(headers or {}),
    )

    def mark(handler: F) -> F:
        setattr(handler, _ATTRIBUTE, description)
        return handler

    return mark


def description_of(handler: object) -> Description | None:
    """The description attached to ``handler``, if any."""
    return getattr(handler, _ATTRIBUTE, None)


def ticket_route(handler: object) -> bool:
    """Whether ``handler`` (a matched route's) authenticates by a one-time transfer ticket alone."""
    description = description_of(handler)
    return description is not None and description.auth == "ticket"
