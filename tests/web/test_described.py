"""Route descriptions: attached beside the handler, read back by the OpenAPI document."""

from __future__ import annotations

from aiohttp import web

from haflowd.models import MissionMeta
from haflowd.web import transfers_api
from haflowd.web.described import Description, described, description_of, ticket_route
from tests.conftest import AppClient


async def handler(request: web.Request) -> web.Response:
    return web.Response()


class TestDescribed:
    def test_handler_is_returned_unchanged_with_its_description(self) -> None:
        """``described`` returns the same handler, carrying a Description of what was given."""

        async def h(request: web.Request) -> web.Response:
            return web.Response()

        marked = described("Get one", response=MissionMeta, errors={404: "Unknown."}, tag="x")(h)
        assert marked is h
        assert description_of(h) == Description(
            summary="Get one", response=MissionMeta, errors={404: "Unknown."}, tag="x"
        )

    def test_defaults(self) -> None:
        """Without options a route answers 200 in the envelope, behind the daemon's token."""

        async def h(request: web.Request) -> web.Response:
            return web.Response()

        found = description_of(described("Plain")(h))
        assert found is not None
        assert (found.status, found.enveloped, found.auth, found.errors, found.query) == (200, True, "daemon", {}, {})

    def test_undescribed_handler(self) -> None:
        """A handler never described has no description and is no ticket route."""
        assert description_of(handler) is None
        assert not ticket_route(handler)

    def test_ticket_routes(self) -> None:
        """The transfer routes authenticate by ticket; the missions' do not."""
        assert ticket_route(transfers_api.transfer_out)
        assert not ticket_route(described("x")(handler))


class TestOpenapiRelation:
    async def test_every_api_route_is_described_and_documented(self, client: AppClient) -> None:
        """Each ``/api`` route of the app has a description, and its summary is in the OpenAPI document."""
        doc = await (await client.get("/api/openapi.json")).json()
        documented = {
            op["summary"]
            for ops in doc["paths"].values()
            for op in ops.values()
            if isinstance(op, dict) and "summary" in op
        }
        for route in client.app.router.routes():
            resource = route.resource
            if route.method in ("HEAD", "OPTIONS", "*") or resource is None:
                continue
            if not resource.canonical.startswith("/api"):
                continue
            found = description_of(route.handler)
            assert found is not None, f"{route.method} {resource.canonical} has no description"
            assert found.summary in documented
