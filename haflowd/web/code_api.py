"""Routes of code missions (docs/contract/API-code.md): projects, review, commands, changes, delivery."""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote

from aiohttp import web

from ..convert import structure_request, wire
from ..errors import BadRequest, Conflict
from ..ids import is_run_id
from ..models import (
    Commit,
    Delivered,
    DeliverRequest,
    Execution,
    ExecutionStarted,
    GitDiff,
    GitStatus,
    LinkProjectRequest,
    MissionMeta,
    Project,
    RequestChangesRequest,
    RunCommandRequest,
)
from ..store import Store
from ..workspaces import review
from ..workspaces.clone import MissionClone
from ..workspaces.code import clone_of
from .api import read_json
from .described import described
from .envelope import envelope
from .keys import ENGINE, PROJECTS, STORE

log = logging.getLogger(__name__)
routes = web.RouteTableDef()

NO_PROJECT = {409: "The mission has no project (not a code mission)."}


# -- projects -------------------------------------------------------------------


@routes.post("/api/projects")
@described(
    "Link a git repository as a project (nothing is written into it)",
    request=LinkProjectRequest,
    response=Project,
    status=201,
    errors={
        400: "The path is not absolute, not a directory, not a git work tree with a commit, or inside HAFLOW_HOME.",
        409: "Already linked (the error names the project id).",
    },
    tag="projects",
)
async def link_project(request: web.Request) -> web.Response:
    req = structure_request(await read_json(request), LinkProjectRequest)
    project = await request.app[ENGINE].link_project(req)
    return envelope(wire(project), status=201)


@routes.get("/api/projects")
@described("Linked projects, oldest first", response=list[Project], tag="projects")
async def list_projects(request: web.Request) -> web.Response:
    return envelope([wire(p) for p in request.app[PROJECTS].all()])


@routes.get("/api/projects/{project_id}")
@described("One project", response=Project, errors={404: "Unknown project."}, tag="projects")
async def get_project(request: web.Request) -> web.Response:
    return envelope(wire(request.app[PROJECTS].get(request.match_info["project_id"])))


@routes.delete("/api/projects/{project_id}")
@described(
    "Unlink a project; its missions keep their clones and the repository is untouched",
    errors={404: "Unknown project."},
    tag="projects",
)
async def unlink_project(request: web.Request) -> web.Response:
    await request.app[ENGINE].unlink_project(request.match_info["project_id"])
    return envelope(None)


# -- reviewing the mission branch ---------------------------------------------------


def _code_mission(request: web.Request) -> tuple[Store, MissionMeta, MissionClone | None]:
    store = request.app[STORE]
    meta = store.get(request.match_info["mission_id"])
    if meta.project_id is None:
        raise Conflict("This mission has no project (it is not a code mission)")
    return store, meta, clone_of(store, meta)


@routes.get("/api/missions/{mission_id}/git-status")
@described(
    "Files the mission changed (branch and uncommitted work) against its base commit",
    response=GitStatus,
    errors={404: "Unknown mission.", **NO_PROJECT},
    tag="code",
)
async def git_status(request: web.Request) -> web.Response:
    _, _, clone = _code_mission(request)
    if clone is None:
        return envelope(wire(GitStatus(has_changes=False, files=(), summary="No changes")))
    return envelope(wire(await review.status(clone)))


async def _rev(store: Store, meta: MissionMeta, clone: MissionClone, value: str | None, *, parent: bool) -> str | None:
    """A commit sha, or a run id standing for its commit (``from``: the commit before it)."""
    if value is None or not is_run_id(value):
        return value
    run = store.get_run(meta.mission_id, value)
    if run.commit is None:
        raise BadRequest(f"Run {value} made no commit")
    if not parent:
        return run.commit
    found = await clone.git(["rev-parse", "--verify", "--end-of-options", f"{run.commit}^"])
    return found.text.strip()


@routes.get("/api/missions/{mission_id}/git-diff")
@described(
    "Unified diff against the base commit; ?from=&to= take shas or run ids (from=r&to=r: that step's diff)",
    response=GitDiff,
    errors={400: "An unknown revision.", 404: "Unknown mission.", **NO_PROJECT},
    tag="code",
    query={
        "from": ({"type": "string", "maxLength": 80}, "A commit sha, or a run id (the commit before that run's)."),
        "to": ({"type": "string", "maxLength": 80}, "A commit sha, or a run id (that run's commit)."),
    },
)
async def git_diff(request: web.Request) -> web.Response:
    store, meta, clone = _code_mission(request)
    if clone is None:
        return envelope(wire(GitDiff(diff="")))
    start = await _rev(store, meta, clone, request.query.get("from"), parent=True)
    end = await _rev(store, meta, clone, request.query.get("to"), parent=False)
    return envelope(wire(await review.diff(clone, from_=start, to=end)))


@routes.get("/api/missions/{mission_id}/git-diff/{path:.+}")
@described(
    "The diff of one file (path URL-encoded, may hold '/')",
    response=GitDiff,
    errors={400: "The path leaves the work tree.", 404: "Unknown mission.", **NO_PROJECT},
    tag="code",
)
async def git_diff_file(request: web.Request) -> web.Response:
    _, _, clone = _code_mission(request)
    path = review.check_tree_path(unquote(request.match_info["path"]))
    if clone is None:
        return envelope(wire(GitDiff(diff="")))
    return envelope(wire(await review.diff(clone, path=path)))


@routes.get("/api/missions/{mission_id}/commits")
@described(
    "The mission branch's commits, oldest first",
    response=list[Commit],
    errors={404: "Unknown mission.", **NO_PROJECT},
    tag="code",
)
async def list_commits(request: web.Request) -> web.Response:
    _, _, clone = _code_mission(request)
    if clone is None:
        return envelope([])
    return envelope([wire(c) for c in await review.commits(clone)])


@routes.get("/api/missions/{mission_id}/patch")
@described(
    "The mission's commits as `git format-patch --stdout` (text/x-patch, not enveloped)",
    errors={404: "Unknown mission.", **NO_PROJECT},
    tag="code",
    enveloped=False,
    media="text/x-patch",
)
async def get_patch(request: web.Request) -> web.Response:
    _, meta, clone = _code_mission(request)
    text = "" if clone is None else await review.patch(clone)
    name = f"{meta.mission_id}.patch"
    return web.Response(
        text=text,
        content_type="text/x-patch",
        headers={"Content-Disposition": f'attachment; filename="{name}"', "X-Content-Type-Options": "nosniff"},
    )


# -- acting on a code mission ------------------------------------------------------------


@routes.post("/api/missions/{mission_id}/run-command")
@described(
    "Run a command in a sandbox on a copy of the work tree (no network; the tree and branch stay as they are)",
    request=RunCommandRequest,
    response=ExecutionStarted,
    errors={400: "Empty command.", 404: "Unknown mission.", 409: "No project, no work tree yet, or a command runs."},
    tag="code",
)
async def run_command(request: web.Request) -> web.Response:
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    req = structure_request(await read_json(request), RunCommandRequest)
    execution = await request.app[ENGINE].run_command(mission_id, req.command, req.timeout)
    return envelope(wire(ExecutionStarted(execution.id)))


@routes.get("/api/missions/{mission_id}/execution/{execution_id}")
@described(
    "A command's status and the end of its output",
    response=Execution,
    errors={404: "Unknown execution, or one of another mission."},
    tag="code",
)
async def get_execution(request: web.Request) -> web.Response:
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    engine = request.app[ENGINE]
    execution = await asyncio.to_thread(engine.executions.get, mission_id, request.match_info["execution_id"])
    return envelope(wire(execution))


@routes.post("/api/missions/{mission_id}/request-changes")
@described(
    "At a gate: save feedback as feedback-<n>.md and run the agent step before the gate again",
    request=RequestChangesRequest,
    errors={400: "Empty feedback.", 404: "Unknown mission.", 409: "Not at a gate."},
)
async def request_changes(request: web.Request) -> web.Response:
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    req = structure_request(await read_json(request), RequestChangesRequest)
    await request.app[ENGINE].request_changes(mission_id, req.feedback)
    return envelope(None)


@routes.post("/api/missions/{mission_id}/deliver")
@described(
    "Create the mission's branch in the user's repository (their checkout is not touched)",
    request=DeliverRequest,
    response=Delivered,
    errors={
        400: "Invalid branch name, or one that shadows another ref (refs/..., HEAD-like, @).",
        404: "Unknown mission.",
        409: "No project, nothing to deliver, the branch exists and is not an ancestor, the name is a tag or "
        "remote-tracking branch, or its ref folder in the repository is a symbolic link.",
    },
    tag="code",
)
async def deliver(request: web.Request) -> web.Response:
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    body = await request.read()
    req = structure_request(await read_json(request), DeliverRequest) if body else DeliverRequest()
    done = await request.app[ENGINE].deliver(mission_id, req.branch)
    return envelope(wire(Delivered(branch=done.branch, commit=done.commit)))


@routes.delete("/api/missions/{mission_id}")
@described("Stop what runs, remove the mission and its clone", errors={404: "Unknown mission."})
async def delete_mission(request: web.Request) -> web.Response:
    mission_id = request.match_info["mission_id"]
    request.app[STORE].get(mission_id)
    await request.app[ENGINE].delete_mission(mission_id)
    return envelope(None)
