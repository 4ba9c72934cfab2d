"""The transfer routes' own HTTP contract: a one-time ticket alone opens them, asked for the right way.

The areas' contents going in and out are tested with the Kubernetes provider
(tests/sandbox/kubernetes/test_transfers.py); here: who is let in, and what a
malformed request costs.
"""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from aiohttp import ClientResponse
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.sandbox.areas import plan_areas
from haflowd.sandbox.kubernetes.transfers import Direction
from haflowd.sandbox.protocol import Mount
from haflowd.web.app import create_app
from haflowd.web.keys import TRANSFERS
from haflowd.web.transfers_api import IN_PATH, NO_TICKET, OUT_PATH, TAR
from tests.conftest import AppClient
from tests.fakes import FakeSandbox

DAEMON_TOKEN = "daemon-token-0123456789"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, home: Path) -> AppClient:
    config = Config.from_env({}, home=home, port=0, token=DAEMON_TOKEN)
    return await aiohttp_client(create_app(config, sandbox=FakeSandbox()))


@pytest.fixture
def area(home: Path) -> Mount:
    folder = home / "missions" / "m-0123abcd" / "artifacts"
    folder.mkdir(parents=True)
    (folder / "plan.md").write_text("plan\n")
    return Mount(folder, "/mission/artifacts", name="artifacts")


def issue(client: AppClient, area: Mount, direction: Direction) -> str:
    return client.app[TRANSFERS].issue(
        run_id="r-0123abcd", plans=plan_areas([area]), direction=direction, uid=1000, gid=1000, ttl_seconds=600
    )


async def error_of(resp: ClientResponse) -> tuple[int, str]:
    body = await resp.json()
    assert body["success"] is False
    return resp.status, body["error"]


class TestWhoIsLetIn:
    @pytest.mark.parametrize(("method", "path"), [("GET", IN_PATH), ("PUT", OUT_PATH)])
    @pytest.mark.parametrize("headers", [{}, bearer("unknown-token"), {"Authorization": "Basic eDp5"}])
    async def test_no_valid_ticket_is_401(
        self, client: AppClient, method: str, path: str, headers: dict[str, str]
    ) -> None:
        """No token, an unknown one or another scheme all get the same 401."""
        resp = await client.request(method, path, headers={**headers, "Content-Type": TAR}, data=b"")
        assert await error_of(resp) == (401, NO_TICKET)

    async def test_daemon_token_does_not_open_a_transfer(self, client: AppClient) -> None:
        """The daemon's own token is not a ticket."""
        resp = await client.get(IN_PATH, headers=bearer(DAEMON_TOKEN))
        assert await error_of(resp) == (401, NO_TICKET)

    async def test_ticket_is_used_up(self, client: AppClient, area: Mount) -> None:
        """A ticket opens one download; the second try is 401."""
        token = issue(client, area, "in")
        resp = await client.get(IN_PATH, headers=bearer(token))
        assert resp.status == 200 and resp.content_type == TAR
        with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tar:
            assert any(name.endswith("plan.md") for name in tar.getnames())
        assert (await error_of(await client.get(IN_PATH, headers=bearer(token))))[0] == 401

    async def test_ticket_opens_only_its_direction(self, client: AppClient, area: Mount) -> None:
        """An upload ticket does not download."""
        token = issue(client, area, "out")
        assert (await error_of(await client.get(IN_PATH, headers=bearer(token))))[0] == 401

    async def test_foreign_origin_is_403_even_with_a_ticket(self, client: AppClient, area: Mount) -> None:
        """A browser page cannot use a ticket: the Origin rule holds for transfers too."""
        token = issue(client, area, "in")
        resp = await client.get(IN_PATH, headers={**bearer(token), "Origin": "https://evil.example"})
        assert (await error_of(resp))[0] == 403


class TestMalformed:
    async def test_upload_that_is_not_tar_is_415_and_keeps_the_ticket(self, client: AppClient, area: Mount) -> None:
        """A body of the wrong media type is refused before the ticket is claimed."""
        token = issue(client, area, "out")
        resp = await client.put(OUT_PATH, headers={**bearer(token), "Content-Type": "application/json"}, data=b"{}")
        assert (await error_of(resp))[0] == 415
        assert client.app[TRANSFERS].claim(token, "out") is not None

    async def test_no_head_on_downloads(self, client: AppClient) -> None:
        """HEAD is not offered on the download, so it cannot use a token up for nothing."""
        resp = await client.head(IN_PATH, headers=bearer(DAEMON_TOKEN))
        assert resp.status == 405
