"""Tests for haflowd/static: the web UI driven in Debian's Chromium against a real daemon.

Each test starts haflowd on a free port (temp HAFLOW_HOME) and a fresh
browser. The main flow uses real Docker agents when the engine and the agent
image can be built (required when ``HAFLOW_REQUIRE_DOCKER`` is set, never with
``HAFLOW_UI_SANDBOX=fake``), else the in-process fake; tests that steer agent
timing or output always use the fake. Without ``/usr/bin/chromium`` the tests
skip, unless ``HAFLOW_REQUIRE_BROWSER`` is set. Set ``HAFLOW_UI_SCREENSHOTS=docs`` to refresh the
screenshots in that folder.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import attrs
import pytest
from playwright.async_api import Browser, Dialog, Page, Response, Route, ViewportSize, expect
from pytest_aiohttp import AiohttpServer

from haflowd.config import Config
from haflowd.sandbox import SandboxProvider
from haflowd.sandbox.registry import provider_for
from haflowd.web.app import create_app
from tests.docker_support import engine_problem
from tests.e2e.test_code_missions import PLAN_DIFF, git, make_repo
from tests.fakes import Behaviour, FakeSandbox

pytestmark = pytest.mark.browser

DESKTOP: ViewportSize = {"width": 1280, "height": 860}
PHONE: ViewportSize = {"width": 390, "height": 844}
SCREENSHOTS = os.environ.get("HAFLOW_UI_SCREENSHOTS")
#: Agent runs in real Docker take seconds; expectations wait this long.
WAIT_MS = 60_000

RAW_INPUT = """Users want to **export missions as CSV** to report on them in a spreadsheet.

- one row per mission: id, title, type, status, last update
- works offline, no extra dependency
"""

XSS = """# Untrusted report

<script>window.__pwned = "script"; alert("script")</script>

<img src=x onerror="window.__pwned = 'img'; alert('img')">

[click me](javascript:window.__pwned='link';alert('link'))

![pixel](https://tracker.invalid/pixel.png)
"""
XSS_TITLE = "<img src=x onerror=\"window.__pwned='title'\">Title"

expect.set_options(timeout=WAIT_MS)


@attrs.define
class Session:
    """One browser page on one daemon, recording what the page did."""

    page: Page
    base: str
    #: (method, url) of every request the page made.
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    dialogs: list[str] = attrs.field(factory=list)
    errors: list[str] = attrs.field(factory=list)

    async def goto(self, fragment: str = "") -> None:
        await self.page.goto(f"{self.base}/{fragment}")

    async def api(self, method: str, path: str, body: Any = None) -> Any:
        """Call the API from inside the page, the way the UI does."""
        envelope = await self.page.evaluate(
            """async ([method, path, body]) => {
                const init = {method, headers: {}};
                if (body !== null) {
                    init.headers["Content-Type"] = "application/json";
                    init.body = JSON.stringify(body);
                }
                return (await fetch(path, init)).json();
            }""",
            [method, path, body],
        )
        assert envelope["success"], envelope
        return envelope["data"]

    async def shot(self, name: str) -> None:
        if SCREENSHOTS:
            Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
            await self.page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


@pytest.fixture
def agent_image(request: pytest.FixtureRequest) -> str | None:
    """The Docker agent image for real agent runs, or None for the fake sandbox."""
    if os.environ.get("HAFLOW_UI_SANDBOX") == "fake":
        return None
    if engine_problem() is not None and not os.environ.get("HAFLOW_REQUIRE_DOCKER"):
        return None
    return str(request.getfixturevalue("docker_image"))


@pytest.fixture
def config(config: Config, agent_image: str | None) -> Config:
    return attrs.evolve(config, agent_image=agent_image) if agent_image else config


@pytest.fixture
def sandbox(config: Config, fake: FakeSandbox, agent_image: str | None) -> SandboxProvider:
    return provider_for(config) if agent_image else fake


@pytest.fixture
async def daemon(aiohttp_server: AiohttpServer, config: Config, sandbox: SandboxProvider) -> str:
    server = await aiohttp_server(create_app(config, sandbox=sandbox))
    return str(server.make_url("")).rstrip("/")


async def open_session(browser: Browser, base: str, viewport: ViewportSize = DESKTOP) -> Session:
    context = await browser.new_context(viewport=viewport)
    context.set_default_timeout(WAIT_MS)  # clicks, fills and waits too, not only expect()
    page = await context.new_page()
    session = Session(page=page, base=base)
    page.on("request", lambda r: session.requests.append((r.method, r.url)))
    page.on("pageerror", lambda e: session.errors.append(str(e)))

    async def on_dialog(dialog: Dialog) -> None:
        session.dialogs.append(f"{dialog.type}: {dialog.message}")
        await dialog.dismiss()

    page.on("dialog", on_dialog)
    return session


@pytest.fixture
async def ui(browser: Browser, daemon: str) -> Session:
    return await open_session(browser, daemon)


async def create_mission(ui: Session, title: str, raw_input: str = RAW_INPUT, start: bool = True) -> str:
    meta = await ui.api("POST", "/api/missions", {"title": title, "type": "feature", "rawInput": raw_input})
    if start:
        await ui.api("POST", f"/api/missions/{meta['mission_id']}/continue")
    return str(meta["mission_id"])


async def artifact(ui: Session, mission_id: str, filename: str) -> str:
    detail = await ui.api("GET", f"/api/missions/{mission_id}")
    return str(detail["artifacts"][filename])


def gate_panel(page: Page) -> Any:
    return page.locator(".panel-gate")


async def wait_for_gate(page: Page, step_name: str) -> None:
    await expect(gate_panel(page).get_by_role("heading", name=step_name)).to_be_visible()


class TestMissionFlow:
    async def test_create_edit_approve_to_completed(self, ui: Session) -> None:
        """A mission goes from the form through every gate to completed, with edits reaching the next agent."""
        page = ui.page
        await ui.goto()
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        await ui.shot("ui-empty")

        await page.locator("#new-mission-link").click()
        await page.get_by_label("Title").fill("Export missions as CSV")
        await page.get_by_label("Type").select_option("enhance")
        await expect(page.get_by_label("Workflow")).to_have_value("standard-feature")
        await page.get_by_label("Raw input").fill(RAW_INPUT)
        await page.get_by_role("button", name="Create mission").click()

        # The cleanup agent runs; its run and log appear on the timeline.
        await wait_for_gate(page, "Review Structured")
        await expect(page).to_have_title("(1) haflow")
        cleanup = page.locator(".step").filter(has_text="Cleanup")
        await expect(cleanup.locator(".step-state")).to_have_text("Done")
        await expect(cleanup.locator(".run-exit")).to_have_text("exit 0")
        await cleanup.get_by_role("button", name="Show log").click()
        await expect(cleanup.locator(".run-log")).to_contain_text("wrote structured-text.md")
        await expect(gate_panel(page).locator(".rendered")).to_contain_text("export missions as CSV")
        mission_id = page.url.rsplit("/", 1)[-1]
        await ui.shot("ui-gate")

        # Edit, save, and see the saved version rendered by the daemon.
        await page.get_by_role("tab", name="Edit").click()
        await page.locator("#gate-editor").fill("# Structured brief\n\nEdited by the reviewer.\n")
        await expect(page.locator("#save-state")).to_have_text("Unsaved changes")
        await page.get_by_role("button", name="Save", exact=True).click()
        await expect(page.locator("#save-state")).to_contain_text("Saved at")
        assert await artifact(ui, mission_id, "structured-text.md") == "# Structured brief\n\nEdited by the reviewer.\n"
        await page.get_by_role("tab", name="Preview").click()
        await expect(page.locator("#gate-preview h1")).to_have_text("Structured brief")
        await page.get_by_role("button", name="Approve & continue").click()

        # The research agent read the edited brief.
        await wait_for_gate(page, "Review Research")
        await expect(gate_panel(page).locator(".rendered")).to_contain_text("Edited by the reviewer.")

        # Unsaved edits are saved before approving.
        await page.get_by_role("tab", name="Edit").click()
        await page.locator("#gate-editor").fill("# Research\n\nUse the csv module.\n")
        await page.get_by_role("button", name="Save, approve & continue").click()
        await wait_for_gate(page, "Review Plan")
        assert await artifact(ui, mission_id, "research-output.md") == "# Research\n\nUse the csv module.\n"
        await expect(gate_panel(page).locator(".rendered")).to_contain_text("Use the csv module.")
        await page.get_by_role("button", name="Approve & continue").click()

        await wait_for_gate(page, "Review Implementation")
        await expect(gate_panel(page).locator("#gate-preview pre")).to_be_visible()
        await page.get_by_role("button", name="Approve & continue").click()

        await expect(page.get_by_role("heading", name="Mission completed")).to_be_visible()
        await expect(page.locator(".mission-header .badge")).to_have_text("Completed")
        await expect(page.locator(".step-done")).to_have_count(8)
        await expect(page).to_have_title("haflow")
        await page.locator(".artifact-chip", has_text="implementation-result.json").click()
        await expect(page.locator("#artifact-body pre")).to_be_visible()
        await ui.shot("ui-completed")
        assert ui.errors == []
        assert ui.dialogs == []

    async def test_form_checks_mirror_the_server(self, ui: Session) -> None:
        """Empty title or raw input is refused in the page, before any request."""
        page = ui.page
        await ui.goto("#/new")
        await page.get_by_role("button", name="Create mission").click()
        await expect(page.get_by_text("Give the mission a title.")).to_be_visible()
        await page.get_by_label("Title").fill("   ")
        await page.get_by_label("Raw input").fill("something")
        await page.get_by_role("button", name="Create mission").click()
        await expect(page.get_by_label("Title")).to_have_attribute("aria-invalid", "true")
        await page.get_by_label("Title").fill("A title")
        await page.get_by_label("Raw input").fill(" \n ")
        await page.get_by_role("button", name="Create mission").click()
        await expect(page.get_by_text("Raw input cannot be empty")).to_be_visible()
        assert ("POST", f"{ui.base}/api/missions") not in ui.requests
        assert await ui.api("GET", "/api/missions") == []

    async def test_server_errors_are_shown(self, ui: Session) -> None:
        """An error answered by the daemon is displayed in the form, not swallowed."""
        page = ui.page
        await ui.goto("#/new")
        await expect(page.get_by_label("Workflow")).to_be_enabled()
        await page.evaluate(
            """() => {
                const select = document.getElementById("create-workflow");
                select.append(new Option("gone", "no-such-workflow"));
                select.value = "no-such-workflow";
            }"""
        )
        await page.get_by_label("Title").fill("Bad workflow")
        await page.get_by_label("Raw input").fill("text")
        await page.get_by_role("button", name="Create mission").click()
        await expect(page.locator("#create-error")).to_contain_text("unknown workflow")


class TestRunningMission:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_live_log_follows_and_cancel_then_retry(self, ui: Session, fake: FakeSandbox) -> None:
        """The live log follows new output unless scrolled up; Cancel fails the step and Retry reruns it."""
        page = ui.page
        release = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=release)
        await ui.goto()
        mission_id = await create_mission(ui, "Export missions as CSV")
        await ui.goto(f"#/m/{mission_id}")
        live = page.locator("#live-log")
        await expect(live).to_contain_text("starting step cleanup")
        await expect(page.locator(".mission-header .badge")).to_have_text("Running agent")

        (run,) = fake.live()
        for i in range(150):
            run.emit(f"[agent] step {i}: reading the codebase\n".encode())
        await expect(live).to_contain_text("step 149")
        at_bottom = "el => el.scrollTop + el.clientHeight >= el.scrollHeight - 30"
        await page.wait_for_function(f"({at_bottom})(document.getElementById('live-log'))")
        await ui.shot("ui-running")

        await live.evaluate("el => { el.scrollTop = 0; el.dispatchEvent(new Event('scroll')); }")
        await expect(page.locator("#follow-note")).to_have_text("Paused: scrolled up")
        run.emit(b"[agent] one more line\n")
        await expect(live).to_contain_text("one more line")
        assert await live.evaluate("el => el.scrollTop") == 0
        await page.get_by_role("button", name="Jump to latest").click()
        await expect(page.locator("#follow-note")).to_have_text("Following the log")

        await page.get_by_role("button", name="Cancel run").click()
        await page.locator("#confirm-dialog").get_by_role("button", name="Cancel run").click()
        failed = page.locator(".panel-failed")
        await expect(failed).to_contain_text("Cancelled by user")
        await expect(page.locator(".step-failed .step-name")).to_have_text("Cleanup")
        await expect(page.locator(".step-failed .run-exit")).to_have_text("exit 137")

        await failed.get_by_role("button", name="Retry step").click()
        await expect(live).to_contain_text("starting step cleanup")
        release.set()
        await wait_for_gate(page, "Review Structured")
        await expect(page.locator(".step").first.locator(".run")).to_have_count(2)
        assert ui.dialogs == []

    async def test_failure_is_shown_with_retry(self, ui: Session, fake: FakeSandbox) -> None:
        """A failed agent step shows its error plainly, and Retry runs it again."""
        page = ui.page
        fake.behaviours["cleanup"] = Behaviour(exit_code=3)
        await ui.goto()
        mission_id = await create_mission(ui, "Flaky agent")
        await ui.goto(f"#/m/{mission_id}")
        failed = page.locator(".panel-failed")
        await expect(failed.locator(".error-text")).to_contain_text("3")
        await expect(failed).to_contain_text("exited with code 3")
        await expect(page.locator(".mission-item .badge")).to_have_text("Failed")
        fake.behaviours["cleanup"] = Behaviour()
        await failed.get_by_role("button", name="Retry step").click()
        await wait_for_gate(page, "Review Structured")

    async def test_mark_completed_asks_first(self, ui: Session) -> None:
        """Mark completed asks for confirmation and does nothing when declined."""
        page = ui.page
        await ui.goto()
        mission_id = await create_mission(ui, "Done by hand")
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        dialog = page.locator("#confirm-dialog")
        await page.get_by_role("button", name="Mark completed").click()
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(dialog).to_be_hidden()
        await expect(page.locator(".mission-header .badge")).to_have_text("Needs review")
        await page.get_by_role("button", name="Mark completed").click()
        await dialog.get_by_role("button", name="Mark completed").click()
        await expect(page.get_by_role("heading", name="Mission completed")).to_be_visible()


class TestLiveLogByOffset:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_live_log_grows_by_offset(self, ui: Session, fake: FakeSandbox, config: Config) -> None:
        """The live log reads each byte once by offset, keeps the latest ~1 MiB, and matches the log file's end."""
        page = ui.page
        chunks: list[dict[str, Any]] = []

        async def on_response(response: Response) -> None:
            if "/runs/" in response.url and "/log" in response.url:
                query = parse_qs(urlsplit(response.url).query)
                chunks.append({"query": query, **(await response.json())})

        page.on("response", on_response)
        release = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=release)
        await ui.goto()
        mission_id = await create_mission(ui, "Chatty agent")
        await ui.goto(f"#/m/{mission_id}")
        live = page.locator("#live-log")
        await expect(live).to_contain_text("starting step cleanup")

        (run,) = fake.live()
        for i in range(20):
            run.emit(f"[agent] small line {i} é€😀\n".encode())
        await expect(live).to_contain_text("small line 19 é€😀")
        log_file = config.missions_dir / mission_id / "logs" / f"{run.spec.run_id}.log"
        assert await live.evaluate("el => el.textContent") == log_file.read_text()

        filler = "é€😀 reading the codebase " * 40
        for batch in range(5):  # ~320 KB a batch, each read within a poll or two
            for i in range(batch * 260, (batch + 1) * 260):
                run.emit(f"[agent] big line {i:04d} {filler}\n".encode())
            await expect(live).to_contain_text(f"big line {(batch + 1) * 260 - 1:04d}")
        run.emit(b"[agent] the end\n")
        await expect(live).to_contain_text("the end")
        whole = log_file.read_bytes()
        assert len(whole) > 1024 * 1024
        shown = await live.evaluate("el => el.textContent")
        assert whole.decode().endswith(shown)
        assert 900 * 1024 < len(shown) <= 1024 * 1024

        # Every answer is a chunk by offset: the file's bytes from there, whole characters.
        assert chunks and all(c["success"] and "offset" in c["query"] for c in chunks)
        for c in chunks:
            data = c["data"]
            assert data["offset"] == int(c["query"]["offset"][0])
            assert whole[data["offset"] : data["next_offset"]].decode() == data["text"]
        # After the first load, no byte is asked for twice: each poll moves only new bytes.
        ranges = sorted((c["data"]["offset"], c["data"]["next_offset"]) for c in chunks[1:])
        for (_, end), (start, _) in itertools.pairwise(ranges):
            assert end <= start
        release.set()
        await wait_for_gate(page, "Review Structured")
        assert ui.errors == []

    async def test_far_behind_jumps_to_the_tail(self, ui: Session, fake: FakeSandbox, config: Config) -> None:
        """Output far ahead of the page is not replayed: the live log jumps to the end, starting on a whole line."""
        page = ui.page
        release = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=release)
        await ui.goto()
        mission_id = await create_mission(ui, "Very chatty agent")
        await ui.goto(f"#/m/{mission_id}")
        live = page.locator("#live-log")
        await expect(live).to_contain_text("starting step cleanup")
        step = page.locator(".step").filter(has_text="Cleanup")
        await step.get_by_role("button", name="Show log").click()
        await expect(step.locator(".run-log")).to_contain_text("starting step cleanup")

        (run,) = fake.live()
        for i in range(2000):
            run.emit(f"[agent] burst line {i:04d} {'x' * 1000}\n".encode())
        run.emit(b"[agent] the end\n")
        await expect(live).to_contain_text("the end")
        await expect(step.locator(".run-log")).to_contain_text("the end")
        whole = (config.missions_dir / mission_id / "logs" / f"{run.spec.run_id}.log").read_text()
        shown = await live.evaluate("el => el.textContent")
        assert len(whole) > 1536 * 1024
        assert whole.endswith(shown) and shown.startswith("[agent] burst line ")
        assert len(shown) <= 256 * 1024
        release.set()
        await wait_for_gate(page, "Review Structured")
        assert ui.errors == []


class TestFacts:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_types_default_workflow_and_running_come_from_openapi(self, ui: Session, fake: FakeSandbox) -> None:
        """Mission types, the default workflow and the running statuses are read once from GET /api/openapi.json."""
        page = ui.page

        async def change_facts(route: Route) -> None:
            response = await route.fetch()
            doc = await response.json()
            schemas = doc["components"]["schemas"]
            schemas["MissionType"]["enum"] = ["fix", "feature"]
            schemas["CreateMissionRequest"]["properties"]["workflowId"]["default"] = "oneshot"
            schemas["MissionStatus"]["x-running"] = []
            await route.fulfill(response=response, json=doc)

        await page.route("**/api/openapi.json", change_facts)
        await ui.goto("#/new")
        await expect(page.get_by_label("Workflow")).to_be_enabled()
        await expect(page.get_by_label("Workflow")).to_have_value("oneshot")
        assert await page.get_by_label("Type").evaluate("s => [...s.options].map(o => o.value)") == ["fix", "feature"]

        release = asyncio.Event()
        fake.behaviours["cleanup"] = Behaviour(gate=release)
        await create_mission(ui, "Running, but not by these facts")
        await ui.goto("#/")
        await expect(page.get_by_text("1 mission, 0 running.")).to_be_visible()
        await expect(page.locator(".mission-item .badge-running_code_agent")).to_have_count(1)
        await expect(page.locator(".mission-item .badge .pulse")).to_have_count(0)
        assert [u for _, u in ui.requests if u.endswith("/api/openapi.json")] == [f"{ui.base}/api/openapi.json"]
        release.set()


class TestUnsavedEdits:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_switching_missions_asks_before_discarding(self, ui: Session) -> None:
        """Leaving a gate with unsaved edits asks first; declining keeps the edits."""
        page = ui.page
        await ui.goto()
        other = await create_mission(ui, "Other mission")
        mission_id = await create_mission(ui, "Edited mission")
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        await page.get_by_role("tab", name="Edit").click()
        await page.locator("#gate-editor").fill("my precious edits")

        await page.locator(f'a[href="#/m/{other}"]').click()
        dialog = page.locator("#confirm-dialog")
        await expect(dialog).to_contain_text("Discard unsaved edits?")
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(page.locator("#gate-editor")).to_have_value("my precious edits")
        assert page.url.endswith(mission_id)

        await page.go_back()
        await expect(dialog).to_contain_text("Discard unsaved edits?")
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(page.locator("#gate-editor")).to_have_value("my precious edits")

        await page.locator(f'a[href="#/m/{other}"]').click()
        await dialog.get_by_role("button", name="Discard edits").click()
        await expect(page.locator(".mission-name")).to_have_text("Other mission")
        assert await artifact(ui, mission_id, "structured-text.md") != "my precious edits"

    async def test_closing_the_tab_warns(self, ui: Session) -> None:
        """Closing the page with unsaved edits triggers the browser's leave warning."""
        page = ui.page
        await ui.goto()
        mission_id = await create_mission(ui, "Edited mission")
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        await page.get_by_role("tab", name="Edit").click()
        await page.locator("#gate-editor").press_sequentially("x")
        async with page.expect_event("dialog") as info:
            await page.close(run_before_unload=True)
        assert (await info.value).type == "beforeunload"


class TestSafety:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    @pytest.fixture
    def sandbox(self, fake: FakeSandbox) -> SandboxProvider:
        fake.behaviours["cleanup"] = Behaviour(extra_lines=(b'<script>window.__pwned="log"</script>\n',))
        return fake

    async def test_untrusted_content_never_runs_script(self, ui: Session) -> None:
        """Script in an artifact, a title or a log is shown as text and never runs."""
        page = ui.page
        await ui.goto()
        mission_id = await create_mission(ui, XSS_TITLE, raw_input=XSS)
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        preview = page.locator("#gate-preview")
        await expect(preview).to_contain_text('<script>window.__pwned = "script"')
        await expect(preview).to_contain_text("<img src=x onerror=")
        await expect(preview).to_contain_text("[click me](javascript:")
        await expect(page.locator(".mission-name")).to_have_text(XSS_TITLE)
        await expect(page.locator(".mission-item .mission-title")).to_have_text(XSS_TITLE)

        await page.locator(".run").get_by_role("button", name="Show log").click()
        await expect(page.locator(".run-log")).to_contain_text('<script>window.__pwned="log"</script>')
        await page.locator(".artifact-chip", has_text="raw-input.md").click()
        await expect(page.locator("#artifact-body")).to_contain_text("Untrusted report")
        await page.get_by_role("button", name="Source").click()
        await expect(page.locator("#artifact-body")).to_contain_text("<script>")
        await page.get_by_role("tab", name="Edit").click()
        await expect(page.locator("#gate-editor")).to_have_value(f"# cleanup (by cleanup-agent)\n\n{XSS}")

        main = page.locator("#main")
        await expect(main.locator("script, iframe, object, embed")).to_have_count(0)
        await expect(main.locator("img")).to_have_count(0)
        await expect(page.locator("a[href^='javascript' i], a[href^='data' i]")).to_have_count(0)
        assert await page.evaluate("window.__pwned") is None
        assert ui.dialogs == []
        assert ui.errors == []
        assert not [u for _, u in ui.requests if "tracker.invalid" in u]

    async def test_no_request_leaves_the_daemon_origin(self, ui: Session) -> None:
        """Every request the page makes, on every screen, goes to the daemon's own origin."""
        page = ui.page
        await ui.goto()
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        await ui.goto("#/new")
        await expect(page.get_by_label("Workflow")).to_be_enabled()
        mission_id = await create_mission(ui, "Images", raw_input=XSS)
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        await expect(page.locator("#gate-preview .md-image")).to_have_text("[image: pixel]")
        await page.locator(".run").get_by_role("button", name="Show log").click()
        await expect(page.locator(".run-log")).to_contain_text("wrote")
        origin = ui.base + "/"
        assert ui.requests
        assert [u for _, u in ui.requests if not u.startswith(origin) and not u.startswith("data:")] == []


class TestAuth:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    @pytest.fixture
    def config(self, config: Config) -> Config:
        return attrs.evolve(config, token="s3cret")

    async def test_token_is_asked_once_and_remembered(self, ui: Session) -> None:
        """On 401 the page asks for the token, retries with it, and keeps it in localStorage."""
        page = ui.page
        await ui.goto()
        dialog = page.locator("#token-dialog")
        await dialog.get_by_label("Token").fill("wrong")
        await dialog.get_by_role("button", name="Unlock").click()
        await expect(dialog.get_by_text("That token was not accepted")).to_be_visible()
        await dialog.get_by_label("Token").fill("s3cret")
        await dialog.get_by_role("button", name="Unlock").click()
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        assert await page.evaluate("localStorage.getItem('haflow.token')") == "s3cret"
        await page.reload()
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        await expect(dialog).to_be_hidden()


class TestLayout:
    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def populate(self, ui: Session, fake: FakeSandbox) -> tuple[str, asyncio.Event]:
        """Missions in every state; returns the one waiting at a gate and the running one's release."""
        done = await create_mission(ui, "Dark mode toggle in settings")
        await ui.api("POST", f"/api/missions/{done}/mark-completed")
        failing = await create_mission(ui, "Fix flaky export test", start=False)
        fake.for_mission[failing] = Behaviour(exit_code=2)
        await ui.api("POST", f"/api/missions/{failing}/continue")
        release = asyncio.Event()
        running = await create_mission(ui, "Rate-limit the public API", start=False)
        fake.for_mission[running] = Behaviour(gate=release)
        await ui.api("POST", f"/api/missions/{running}/continue")
        await create_mission(ui, "Hotfix: crash on empty title", start=False)
        gate = await create_mission(ui, "Export missions as CSV")
        return gate, release

    async def test_board_and_gate_at_desktop_width(self, ui: Session, fake: FakeSandbox) -> None:
        """At 1280 px the board shows every status distinctly, waiting missions first, and the title counts them."""
        page = ui.page
        await ui.goto()
        gate, release = await self.populate(ui, fake)
        await expect(page.locator(".group-waiting .mission-item")).to_have_count(1)
        await expect(page.locator(".mission-item")).to_have_count(5)
        await expect(page).to_have_title("(1) haflow")
        badges = page.locator(".mission-item .badge")
        for status in ("completed", "failed", "running_code_agent", "ready", "waiting_human"):
            await expect(page.locator(f".mission-item .badge-{status}")).to_have_count(1)
        await expect(badges).to_have_count(5)
        await expect(page.get_by_role("heading", name="1 mission waiting for you")).to_be_visible()
        await ui.shot("ui-missions")
        await ui.goto(f"#/m/{gate}")
        await wait_for_gate(page, "Review Structured")
        assert await page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
        release.set()

    async def test_phone_width_has_no_sideways_scroll(self, browser: Browser, daemon: str, fake: FakeSandbox) -> None:
        """At 390 px the list and the mission view fit the screen width."""
        ui = await open_session(browser, daemon, PHONE)
        page = ui.page
        await ui.goto()
        gate, release = await self.populate(ui, fake)
        await expect(page.locator(".mission-item")).to_have_count(5)
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await ui.shot("ui-phone-missions")
        await page.locator(f'a[href="#/m/{gate}"]').click()
        await wait_for_gate(page, "Review Structured")
        await expect(page.locator("#sidebar")).to_be_hidden()
        await expect(page.get_by_role("link", name="← All missions")).to_be_visible()
        assert await page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        await ui.shot("ui-phone-gate")
        release.set()

    async def test_buttons_are_keyboard_reachable_with_visible_focus(self, ui: Session) -> None:
        """Tabbing reaches the gate's buttons, and the focused one shows an outline."""
        page = ui.page
        await ui.goto()
        mission_id = await create_mission(ui, "Keyboard")
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        approve = page.get_by_role("button", name="Approve & continue")
        await page.get_by_role("button", name="Mark completed").focus()
        for _ in range(10):
            await page.keyboard.press("Tab")
            if await approve.evaluate("el => el === document.activeElement"):
                break
        await expect(approve).to_be_focused()
        outline = await approve.evaluate("el => getComputedStyle(el).outlineStyle")
        assert outline == "solid"
        await page.keyboard.press("Enter")
        await expect(page.locator(".step").nth(1).locator(".step-state")).to_have_text("Done")

    async def test_dark_scheme_follows_the_system(self, browser: Browser, daemon: str) -> None:
        """With a dark system setting the page uses the dark palette."""
        context = await browser.new_context(viewport=DESKTOP, color_scheme="dark")
        page = await context.new_page()
        await page.goto(f"{daemon}/")
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        background = await page.evaluate("getComputedStyle(document.body).backgroundColor")
        assert background == "rgb(14, 16, 20)"
        if SCREENSHOTS:
            await page.screenshot(path=str(Path(SCREENSHOTS) / "ui-empty-dark.png"))
        await context.close()


HOSTILE_FILE = '<img src=x onerror="window.__pwned=\'diff\';alert(1)">\n<script>window.__pwned="diff-script"</script>\n'


async def link_from_ui(page: Page, repo: Path, name: str, test_command: str = "") -> None:
    """Link a repository through the new-mission form's dialog; it ends up chosen."""
    await page.get_by_role("button", name="Link a repository…").click()
    dialog = page.locator("#project-dialog")
    await dialog.get_by_label("Path").fill(str(repo))
    await dialog.get_by_label("Name (optional)").fill(name)
    if test_command:
        await dialog.get_by_label("Test command (optional)").fill(test_command)
    await dialog.get_by_role("button", name="Link repository").click()
    await expect(dialog).to_be_hidden()
    await expect(page.get_by_label("Project")).to_have_value(re.compile(r"^p-[0-9a-f]{8}$"))


async def create_code_mission_from_ui(page: Page, title: str) -> str:
    await page.get_by_label("Title").fill(title)
    await page.get_by_label("Raw input").fill("Greet the users of the app.")
    await page.get_by_role("button", name="Create mission").click()
    await expect(page.locator("#code-branch")).to_contain_text("feature/")
    return page.url.rsplit("/", 1)[-1]


class TestCodeMissionsFake:
    """Code missions in the page with the fake sandbox: linking, the diff view, safety, deletion."""

    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_link_create_diff_and_delete(self, ui: Session, tmp_path: Path, home: Path) -> None:
        """A repository is linked from the form (a bad path answered inline), a code mission shows its branch,
        a 1,000-file diff lists fast with hunks built on expand, hostile diff text stays inert,
        and delete asks first."""
        page = ui.page
        repo = make_repo(tmp_path / "repo")
        await ui.goto("#/new")
        await expect(page.get_by_label("Workflow")).to_have_value("standard-feature")
        await page.get_by_role("button", name="Link a repository…").click()
        dialog = page.locator("#project-dialog")
        await dialog.get_by_label("Path").fill(str(tmp_path / "nowhere"))
        await dialog.get_by_role("button", name="Link repository").click()
        await expect(page.locator("#project-error")).to_be_visible()
        await dialog.get_by_role("button", name="Cancel").click()
        await expect(dialog).to_be_hidden()
        await link_from_ui(page, repo, "Demo app")
        await expect(page.get_by_label("Workflow")).to_have_value("code-feature")
        await expect(page.get_by_label("Base ref (optional)")).to_be_visible()
        mission_id = await create_code_mission_from_ui(page, "Greet users")
        meta = await ui.api("GET", f"/api/missions/{mission_id}")
        await expect(page.locator("#code-project")).to_contain_text("Demo app")
        await expect(page.locator("#code-base")).to_have_text(meta["base_commit"][:8])
        await wait_for_gate(page, "Review Structured")
        await expect(page.locator("#request-changes")).to_be_visible()

        # Uncommitted work in the mission's tree is part of its diff: 1,000 files and a hostile one.
        work = home / "missions" / mission_id / "workspace"
        (work / "many").mkdir()
        for i in range(1000):
            (work / "many" / f"f{i:04}.txt").write_text(f"line {i}\n")
        (work / "evil.html").write_text(HOSTILE_FILE)
        (work / "logo.bin").write_bytes(bytes(range(256)) * 4)
        (work / "link-to-readme").symlink_to("README.md")
        (work / "README.md").write_text("# Demo\nA small project.\n<script>window.__pwned='readme'</script>\n")
        await page.get_by_role("button", name="Show diff").click()
        files = page.locator("#diff-view .diff-file")
        await expect(files).to_have_count(1004)
        await expect(page.locator("#diff-view .diff-summary")).to_contain_text("1004 files changed")
        await expect(page.locator("#diff-view .diff-text")).to_have_count(0)
        evil = files.filter(has_text="evil.html")
        await expect(evil.locator(".diff-status")).to_have_text("A")
        await evil.locator("summary").click()
        await expect(evil.locator(".diff-text")).to_contain_text("<img src=x onerror=")
        await expect(evil.locator(".dl-add")).to_have_count(2)
        readme = files.filter(has_text="README.md")
        await expect(readme.locator(".diff-status")).to_have_text("M")
        await readme.locator("summary").click()
        await expect(readme.locator(".dl-hunk")).to_have_count(1)
        binary = files.filter(has_text="logo.bin")
        await expect(binary.locator(".chip")).to_have_text("binary")
        link = files.filter(has_text="link-to-readme")
        await expect(link.locator(".chip")).to_have_text("symlink")
        await link.locator("summary").click()
        await expect(link.locator(".dl-add")).to_have_text("+README.md\n")

        # Past the daemon's limit the diff is cut: marked, and an opened file reads its own diff.
        (work / "zz-big.txt").write_text("x" * 99 + "\n" * 1 + ("y" * 99 + "\n") * 25_000)
        await page.get_by_role("button", name="Refresh diff").click()
        await expect(page.locator("#diff-view .diff-truncated").first).to_be_visible()
        readme = page.locator("#diff-view .diff-file").filter(has_text="README.md")
        await readme.locator("summary").click()
        await expect(readme.locator(".dl-hunk")).to_have_count(1)
        assert ("GET", f"{ui.base}/api/missions/{mission_id}/git-diff/README.md") in ui.requests
        await expect(page.locator("#main img, #main script")).to_have_count(0)
        assert await page.evaluate("window.__pwned") is None
        assert ui.dialogs == []
        assert not [u for _, u in ui.requests if u.endswith("/x")]

        # Delete asks first; cancelling keeps the mission.
        await page.get_by_role("button", name="Delete").click()
        await page.locator("#confirm-cancel").click()
        assert (await ui.api("GET", f"/api/missions/{mission_id}"))["mission_id"] == mission_id
        await page.get_by_role("button", name="Delete").click()
        await page.locator("#confirm-ok").click()
        await expect(page.get_by_role("heading", name="Start your first mission")).to_be_visible()
        assert await ui.api("GET", "/api/missions") == []
        assert not (home / "missions" / mission_id).exists()
        assert ui.errors == []


class TestUsage:
    """Tokens and cost as the adapters report them (docs/contract/AGENTS.md), added to answers in flight."""

    @pytest.fixture
    def agent_image(self) -> None:
        return None

    async def test_run_and_mission_usage_and_list_cost(self, ui: Session) -> None:
        """Each run shows its tokens, cost and collapsible final message; the mission its total; the list its cost."""
        page = ui.page
        await ui.goto()
        mission_id = await create_mission(ui, "Costly")
        usage = {"input_tokens": 12500, "output_tokens": 340, "cost_usd": 0.0421, "model": "sonnet"}

        async def with_usage(route: Route) -> None:
            response = await route.fetch()
            body = await response.json()
            data = body["data"]
            if isinstance(data, list):
                for item in data:
                    item["cost_usd"] = 0.0421
            else:
                data["usage"] = usage
                for run in data.get("runs", []):
                    run["usage"] = usage
                    run["result"] = "All done. <script>window.__pwned='result'</script>"
            await route.fulfill(response=response, json=body)

        await page.route(f"**/api/missions/{mission_id}", with_usage)
        await page.route("**/api/missions", with_usage)
        await ui.goto(f"#/m/{mission_id}")
        await wait_for_gate(page, "Review Structured")
        await expect(page.locator("#mission-usage")).to_have_text("12.5k in · 340 out · $0.04 · sonnet")
        run = page.locator(".run").first
        await expect(run.locator(".run-usage")).to_have_text("12.5k in · 340 out · $0.04 · sonnet")
        await expect(run.locator(".run-result-text")).to_be_hidden()
        await run.locator(".run-result summary").click()
        await expect(run.locator(".run-result-text")).to_have_text("All done. <script>window.__pwned='result'</script>")
        await expect(page.locator(".mission-item .mission-cost")).to_have_text("$0.04")
        assert await page.evaluate("window.__pwned") is None


class TestCodeReview:
    """The code-review walk with real agents (Docker): the stand-in applies the plan's diff."""

    @pytest.fixture
    def agent_image(self, request: pytest.FixtureRequest) -> str:
        if os.environ.get("HAFLOW_UI_SANDBOX") == "fake":
            pytest.skip("the code review needs real Docker agents")
        return str(request.getfixturevalue("docker_image"))

    @pytest.mark.timeout(400)
    async def test_review_command_request_changes_deliver(self, ui: Session, tmp_path: Path, home: Path) -> None:
        """Through the page: diff with hunks, a command's live output, request changes, deliver into the repository."""
        from haflowd.sandbox.protocol import instance_id
        from tests.docker_support import OWNED_INSTANCES

        OWNED_INSTANCES.add(instance_id(home))
        page = ui.page
        repo = make_repo(tmp_path / "repo")
        await ui.goto("#/new")
        await link_from_ui(page, repo, "Demo", test_command="cat README.md")
        mission_id = await create_code_mission_from_ui(page, "Greet users")
        await wait_for_gate(page, "Review Structured")
        await page.get_by_role("button", name="Approve & continue").click()
        await wait_for_gate(page, "Review Plan")
        await ui.api("PUT", f"/api/missions/{mission_id}/artifacts/implementation-plan.md", {"content": PLAN_DIFF})
        await expect(gate_panel(page).locator(".rendered")).to_contain_text("Add a greeting")
        await page.get_by_role("button", name="Approve & continue").click()
        await wait_for_gate(page, "Code Review")

        # The diff: file list first, hunks on expand; the commit and the run's own diff.
        files = page.locator("#diff-view .diff-file")
        await expect(files).to_have_count(2)
        await expect(files.nth(0)).to_contain_text("README.md")
        await expect(files.nth(1).locator(".diff-status")).to_have_text("A")
        await files.nth(0).locator("summary").click()
        await expect(files.nth(0).locator(".dl-add")).to_have_text("+Hello from the mission.\n")
        await expect(page.locator("#code-commits .commit")).to_have_count(1)
        await expect(page.locator("#code-commits .commit")).to_contain_text("+3")
        impl = page.locator(".step").filter(has=page.locator(".step-name", has_text=re.compile(r"^Implementation$")))
        await impl.get_by_role("button", name="Show changes").first.click()
        await expect(impl.locator(".run-diff .diff-file")).to_have_count(2)
        await files.nth(1).locator("summary").click()
        await expect(files.nth(1).locator(".dl-add")).to_have_count(2)
        await page.locator("#code-changes").scroll_into_view_if_needed()
        await ui.shot("ui-diff")

        # Commands: the test command and a free one, with live output and exit status.
        await page.locator(".command-button", has_text="cat README.md").click()
        await expect(page.locator("#command-status")).to_have_text("exit 0", timeout=WAIT_MS)
        await expect(page.locator("#command-output")).to_contain_text("Hello from the mission.")
        await page.locator("#code-title").scroll_into_view_if_needed()
        await ui.shot("ui-code-review")
        await page.get_by_role("textbox", name="Command", exact=True).fill("echo out; exit 3")
        await page.get_by_role("button", name="Run", exact=True).click()
        await expect(page.locator("#command-status")).to_have_text("exit 3", timeout=WAIT_MS)
        await expect(page.locator("#command-output")).to_contain_text("out")

        # Request changes: the implementation runs again, then back at the review.
        await page.locator("#request-changes summary").click()
        await page.get_by_label("Feedback for the agent").fill("Fine, keep it.")
        await page.get_by_role("button", name="Send feedback & re-run").click()
        await expect(impl.locator(".run")).to_have_count(2, timeout=WAIT_MS)
        await expect(impl.locator(".run-exit").nth(1)).to_have_text("exit 0")
        await wait_for_gate(page, "Code Review")
        detail = await ui.api("GET", f"/api/missions/{mission_id}")
        assert "feedback-1.md" in detail["artifacts"]

        # Deliver: the branch appears in the user's repository.
        await page.get_by_role("button", name="Deliver branch").click()
        await expect(page.locator("#deliver-result")).to_contain_text(detail["branch"])
        commit = git(repo, "rev-parse", f"refs/heads/{detail['branch']}").strip()
        commits = await ui.api("GET", f"/api/missions/{mission_id}/commits")
        assert commit == commits[-1]["sha"]
        await expect(page.locator("#patch-download")).to_be_visible()
        async with page.expect_download() as download:
            await page.locator("#patch-download").click()
        patch = Path(await (await download.value).path()).read_text()
        assert patch.startswith("From ")
        assert ui.errors == []
        assert ui.dialogs == []
