"""The login cookie in Chromium: a page on another loopback port cannot act as the logged-in user.

Cookies are not scoped by port and ``127.0.0.1:8899`` is the same site as
the daemon's ``127.0.0.1:<port>``, so SameSite=Strict does not stop the
browser from attaching the cookie to that page's requests. A hostile page
served on another loopback port tries what an agent's preview could: form
and ``fetch`` POSTs of ``continue``, ``deliver`` and ``mark-completed``, and
a credentialed read. The daemon must refuse each (403) and nothing may change
on disk; the daemon's own page keeps working with the same cookie.
Without ``/usr/bin/chromium`` the test skips, unless ``HAFLOW_REQUIRE_BROWSER`` is set.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import ClientSession, web
from playwright.async_api import Browser, expect
from pytest_aiohttp import AiohttpServer

from haflowd.config import Config
from haflowd.web.app import create_app
from haflowd.web.auth import COOKIE
from tests.e2e.test_code_missions import fingerprint, git, make_repo
from tests.fakes import Behaviour, FakeSandbox

pytestmark = pytest.mark.browser

TOKEN = "browser-t0ken-for-tests"
BEARER = {"Authorization": f"Bearer {TOKEN}"}

#: Run in the hostile page: what a page on another loopback port can send with the user's cookie.
ATTACKS = """async ([base, mission]) => {
    const results = {};
    const post = (path) => fetch(base + path, {method: "POST", mode: "no-cors", credentials: "include"})
        .then(() => "sent", (e) => "error: " + e);
    results.continue = await post(`/api/missions/${mission}/continue`);
    results.deliver = await post(`/api/missions/${mission}/deliver`);
    results.markCompleted = await post(`/api/missions/${mission}/mark-completed`);
    results.read = await fetch(base + "/api/missions", {credentials: "include"})
        .then((r) => r.text(), (e) => "error: " + e);
    results.readNoCors = await fetch(base + `/api/missions/${mission}`, {mode: "no-cors", credentials: "include"})
        .then((r) => r.type, (e) => "error: " + e);
    // Classic form POSTs (no body, and a urlencoded one), into an iframe.
    const frame = document.createElement("iframe");
    frame.name = "sink";
    document.body.append(frame);
    for (const [path, field] of [["deliver", false], ["continue", true]]) {
        const form = document.createElement("form");
        form.method = "POST";
        form.action = `${base}/api/missions/${mission}/${path}`;
        form.target = "sink";
        if (field) {
            const input = document.createElement("input");
            input.name = "branch";
            input.value = "evil";
            form.append(input);
        }
        document.body.append(form);
        const loaded = new Promise((resolve) => frame.addEventListener("load", resolve, {once: true}));
        form.submit();
        await loaded;
    }
    return results;
}"""


async def call(base: str, method: str, path: str, body: Any = None) -> dict[str, Any]:
    """The API with the bearer token, as a script would call it."""
    async with ClientSession() as session, session.request(method, base + path, json=body, headers=BEARER) as resp:
        envelope: dict[str, Any] = await resp.json()
        assert envelope["success"], envelope
        return envelope


async def at_code_review(base: str, repo: Path, fake: FakeSandbox) -> str:
    """A code mission waiting at its code review, with a commit to deliver."""
    project = (await call(base, "POST", "/api/projects", {"path": str(repo)}))["data"]
    payload = {"title": "Greet", "type": "feature", "rawInput": "Say hello.", "projectId": project["project_id"]}
    mission: str = (await call(base, "POST", "/api/missions", payload))["data"]["mission_id"]
    fake.behaviours["implementation"] = Behaviour(code_only=True)
    for expected in ("waiting_human", "waiting_human", "waiting_code_review"):
        await call(base, "POST", f"/api/missions/{mission}/continue")
        for _ in range(1500):
            status = (await call(base, "GET", f"/api/missions/{mission}"))["data"]["status"]
            if status not in ("running_code_agent", "ready"):
                break
            await asyncio.sleep(0.02)
        assert status == expected, status
    return mission


async def preview(_: web.Request) -> web.Response:
    """The hostile page: any page served on another loopback port (a dev server previewing an agent's code)."""
    return web.Response(text="<!doctype html><title>preview</title><p>hi", content_type="text/html")


@pytest.mark.timeout(120)
async def test_another_loopback_port_cannot_use_the_cookie(
    aiohttp_server: AiohttpServer, browser: Browser, config: Config, fake: FakeSandbox, tmp_path: Path
) -> None:
    """Logged in through the login URL, the user opens a page on another loopback port: every request it
    makes to the daemon with the cookie is refused (403), the mission and the repository stay as they were,
    and the daemon's own page still works with that cookie."""
    app = create_app(attrs.evolve(config, token=TOKEN), sandbox=fake)
    # What the daemon itself saw and answered: method, path, status, Origin, whether the cookie came along.
    answers: list[tuple[str, str, int, str | None, bool]] = []

    async def record(request: web.Request, response: web.StreamResponse) -> None:
        if request.path.startswith("/api/"):
            seen = (
                request.method,
                request.path,
                response.status,
                request.headers.get("Origin"),
                COOKIE in request.cookies,
            )
            answers.append(seen)

    app.on_response_prepare.append(record)
    daemon = await aiohttp_server(app)
    base = str(daemon.make_url("")).rstrip("/")
    hostile_app = web.Application()
    hostile_app.router.add_get("/", preview)
    hostile = await aiohttp_server(hostile_app)
    hostile_base = str(hostile.make_url("")).rstrip("/")
    assert hostile_base.startswith("http://127.0.0.1:") and hostile_base != base

    repo = make_repo(tmp_path / "repo")
    mission = await at_code_review(base, repo, fake)
    before_repo = fingerprint(repo)
    before_branches = git(repo, "branch", "--list")
    before = (await call(base, "GET", f"/api/missions/{mission}"))["data"]

    context = await browser.new_context()
    page = await context.new_page()
    await page.goto(f"{base}/?token={TOKEN}")
    assert page.url == base + "/"
    assert any(c["name"] == "haflow_token" for c in await context.cookies(base))

    await page.goto(hostile_base + "/")
    answers.clear()
    results = await page.evaluate(ATTACKS, [base, mission])
    await page.wait_for_timeout(200)

    # The browser did send them (with the cookie): the daemon refused every one.
    assert results["read"].startswith("error"), results  # and CORS hid the answer besides
    sent = {(method, path) for method, path, *_ in answers}
    for path in ("continue", "deliver", "mark-completed"):
        assert ("POST", f"/api/missions/{mission}/{path}") in sent, answers
    assert ("GET", "/api/missions") in sent and ("GET", f"/api/missions/{mission}") in sent, answers
    assert len(answers) == 7, answers
    # Each came with the login cookie and the hostile page's origin (no Origin on a no-cors GET), and got 403.
    assert all(cookie and origin in (hostile_base, None) for *_, origin, cookie in answers), answers
    assert [a for a in answers if a[2] != 403] == [], answers

    # Nothing changed: the mission, the user's repository, its branches.
    after = (await call(base, "GET", f"/api/missions/{mission}"))["data"]
    assert after["status"] == "waiting_code_review" and "delivered" not in after
    assert after["updated_at"] == before["updated_at"] and len(after["runs"]) == len(before["runs"])
    assert fingerprint(repo) == before_repo and git(repo, "branch", "--list") == before_branches

    # The daemon's own page, same browser, same cookie: the bundled UI lists the mission; reads and writes work.
    await page.goto(base + "/")
    await expect(page.get_by_text("Greet").first).to_be_visible()
    own = await page.evaluate(
        """async ([mission]) => {
            const list = await (await fetch("/api/missions")).json();
            const done = await (await fetch(`/api/missions/${mission}/mark-completed`, {method: "POST"})).json();
            return [list.success, done.success];
        }""",
        [mission],
    )
    assert own == [True, True]
    assert (await call(base, "GET", f"/api/missions/{mission}"))["data"]["status"] == "completed"
    await context.close()
