"""Structured logs: text and JSON lines with the events' fields, one line per request, no secrets."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from haflowd import daemon_log as logs
from haflowd.config import Config
from haflowd.web.app import create_app
from tests.conftest import create_mission, wait_status
from tests.fakes import FakeSandbox

TOKEN = "very-secret-token-value"


def record(event: str = "run.started", level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("haflowd.engine", level, __file__, 1, event, None, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Route every log record into a string in JSON, as ``--log-format json`` does."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    logs.configure("INFO", "json", secrets=[TOKEN], stream=out)
    yield out
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved[0]:
        root.addHandler(handler)
    root.setLevel(saved[1])


async def logged_client(aiohttp_client: Any, app: web.Application) -> TestClient:
    """A client of ``app`` served with the request logger ``haflowd serve`` uses."""
    server = TestServer(app)
    await server.start_server(access_log_class=logs.RequestLogger, access_log=logging.getLogger("haflowd.access"))
    client: TestClient = await aiohttp_client(server)
    return client


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


class TestTextFormat:
    def test_event_and_fields(self) -> None:
        """Text lines hold time, level, logger, event and key=value fields."""
        line = logs.TextFormatter().format(record(mission_id="m-0123abcd", run_id="r-0123abcd", exit_code=0))
        time, level, logger, event, *fields = line.split(" ")
        assert time.endswith("Z") and (level, logger, event) == ("INFO", "haflowd.engine", "run.started")
        assert fields == ["mission_id=m-0123abcd", "run_id=r-0123abcd", "exit_code=0"]

    def test_values_with_spaces_are_quoted(self) -> None:
        """A value with spaces or quotes stays one field."""
        line = logs.TextFormatter().format(record(error='it "broke" badly'))
        assert line.endswith('error="it \\"broke\\" badly"')

    def test_exception_follows_the_line(self) -> None:
        """A logged exception's traceback follows its line."""
        try:
            raise ValueError("boom")
        except ValueError:
            import sys

            rec = record("api.unexpected_error", logging.ERROR)
            rec.exc_info = sys.exc_info()
        text = logs.TextFormatter().format(rec)
        assert text.splitlines()[0].endswith("api.unexpected_error")
        assert "ValueError: boom" in text


class TestJsonFormat:
    def test_one_object_per_line(self) -> None:
        """JSON lines carry time, level, logger, event and every extra field."""
        data = json.loads(logs.JsonFormatter().format(record(mission_id="m-0123abcd", missions=3)))
        assert data == {
            "time": data["time"],
            "level": "INFO",
            "logger": "haflowd.engine",
            "event": "run.started",
            "mission_id": "m-0123abcd",
            "missions": 3,
        }

    @pytest.mark.parametrize("name", ["token", "authorization", "api_key", "env", "OPENAI_API_KEY", "password"])
    def test_secret_fields_are_redacted(self, name: str) -> None:
        """Fields whose names say they hold secrets are never written."""
        data = json.loads(logs.JsonFormatter().format(record(**{name: "hunter2"})))
        assert data[name] == logs.REDACTED

    def test_nested_secrets_are_redacted(self) -> None:
        """Secret keys inside mapping values are redacted too."""
        data = json.loads(logs.JsonFormatter().format(record(spec={"image": "x", "api_key": "hunter2"})))
        assert data["spec"] == {"image": "x", "api_key": logs.REDACTED}

    def test_known_secret_values_are_masked_anywhere(self) -> None:
        """The daemon's token is masked in the message and in any field."""
        formatter = logs.JsonFormatter([TOKEN])
        data = json.loads(formatter.format(record(f"bad {TOKEN}", error=f"header was Bearer {TOKEN}")))
        assert TOKEN not in json.dumps(data)
        assert data["error"] == f"header was Bearer {logs.REDACTED}"


class TestRequestLines:
    async def test_one_line_per_request_with_ids(
        self, aiohttp_client: Any, config: Config, fake: FakeSandbox, stream: io.StringIO
    ) -> None:
        """Each request logs method, path, status, duration and its mission and run ids."""
        client = await logged_client(aiohttp_client, create_app(config, sandbox=fake))
        mission_id = (await create_mission(client))["mission_id"]
        await client.post(f"/api/missions/{mission_id}/continue")
        found = await wait_status(client, mission_id, "waiting_human")
        run_id = found["runs"][0]["run_id"]
        await client.get(f"/api/missions/{mission_id}/runs/{run_id}/log?secret=1")
        requests = [line for line in lines(stream) if line["event"] == "http.request"]
        create = next(r for r in requests if r["method"] == "POST" and r["path"] == "/api/missions")
        assert create["status"] == 201 and isinstance(create["duration_ms"], float)
        log_line = requests[-1]
        assert log_line["path"] == f"/api/missions/{mission_id}/runs/{run_id}/log"
        assert (log_line["mission_id"], log_line["run_id"]) == (mission_id, run_id)
        events = [line["event"] for line in lines(stream)]
        for event in ("mission.created", "run.starting", "run.started", "run.finished", "mission.waiting_human"):
            assert event in events

    async def test_authorization_never_logged(
        self, aiohttp_client: Any, config: Config, fake: FakeSandbox, stream: io.StringIO
    ) -> None:
        """Neither a right nor a wrong token shows up in the log."""
        client = await logged_client(aiohttp_client, create_app(attrs.evolve(config, token=TOKEN), sandbox=fake))
        await client.get("/api/missions", headers={"Authorization": f"Bearer {TOKEN}"})
        await client.get("/api/missions", headers={"Authorization": "Bearer wrong-guess-123"})
        text = stream.getvalue()
        assert TOKEN not in text and "wrong-guess-123" not in text
        assert [line["status"] for line in lines(stream) if line["event"] == "http.request"] == [200, 401]

    async def test_health_polls_are_debug(
        self, aiohttp_client: Any, config: Config, fake: FakeSandbox, stream: io.StringIO
    ) -> None:
        """Health polls stay out of an INFO log."""
        client = await logged_client(aiohttp_client, create_app(config, sandbox=fake))
        await client.get("/api/health")
        assert not [line for line in lines(stream) if line.get("path") == "/api/health"]
