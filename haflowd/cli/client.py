"""The command-line client: ``haflowd status`` and ``haflowd missions ...`` over the HTTP API.

It talks to a daemon only through ``/api``, so it works as well against a
daemon on another machine (``--url``, with ``--token``) as against the
local one. Human-readable output by default, the API's ``data`` as JSON
with ``--json``. Exit codes: 0 done, 1 the API refused (its message is
printed), 2 bad usage, 3 the daemon could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import attrs

from ..config import LOOPBACK_HOSTS, home_from_env
from ..models import RUNNING_STATUSES, MissionType
from ..web.auth import TOKEN_FILE, read_token_file

DEFAULT_URL = "http://127.0.0.1:4000"
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3
#: Seconds between polls of ``missions logs -f``.
FOLLOW_INTERVAL = 1.0


class ClientError(Exception):
    """Something the user must be told; ``exit_code`` says what kind."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@attrs.frozen
class Client:
    """A thin, synchronous client of the haflowd API."""

    url: str = DEFAULT_URL
    token: str | None = attrs.field(default=None, repr=False)
    timeout: float = 30.0

    def call(self, method: str, path: str, body: object = None) -> Any:
        """Send one request and return the envelope's ``data``; raise :class:`ClientError`."""
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        target = self.url.rstrip("/") + path
        request = urllib.request.Request(target, data=data, method=method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as resp:  # noqa: S310
                raw = resp.read()
                status = resp.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ClientError(
                f"cannot reach the daemon at {self.url}: {reason}. Is it running? "
                "(haflowd serve, or systemctl --user start haflowd)",
                EXIT_UNREACHABLE,
            ) from None
        try:
            envelope = json.loads(raw)
        except ValueError:
            raise ClientError(f"{method} {path}: HTTP {status} without a JSON answer", EXIT_REFUSED) from None
        if status >= 400 or not isinstance(envelope, dict) or not envelope.get("success"):
            error = envelope.get("error") if isinstance(envelope, dict) else None
            raise ClientError(f"{error or 'request failed'} (HTTP {status})", EXIT_REFUSED)
        return envelope.get("data")


def resolve_token(url: str, explicit: str | None, env: Mapping[str, str]) -> str | None:
    """``--token``, else ``HAFLOW_TOKEN``, else the local daemon's token file.

    The token file is only sent to a loopback URL: it belongs to this
    machine's daemon, not to whatever ``--url`` points at.
    """
    if explicit:
        return explicit
    if env.get("HAFLOW_TOKEN"):
        return env["HAFLOW_TOKEN"]
    host = urllib.parse.urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS or host == "localhost":
        home = home_from_env(env)
        return read_token_file(home / TOKEN_FILE)
    return None


# -- formatting ---------------------------------------------------------------


def _ago(timestamp: str | None, now: datetime | None = None) -> str:
    if not timestamp:
        return "-"
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    seconds = int(((now or datetime.now(UTC)) - moment).total_seconds())
    return f"{_duration(max(seconds, 0))} ago"


def _duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60}m"
    if s >= 60:
        return f"{s // 60}m {s % 60}s"
    return f"{s}s"


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out)


def _emit(args: argparse.Namespace, data: Any, human: Callable[[Any, TextIO], None]) -> int:
    if args.json:
        json.dump(data, sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        human(data, sys.stdout)
    return 0


# -- commands -------------------------------------------------------------------


def cmd_status(client: Client, args: argparse.Namespace) -> int:
    def human(health: dict[str, Any], out: TextIO) -> None:
        print(
            f"haflowd {health['version']} at {client.url}: {health['status']} "
            f"(up {_duration(health['uptime_seconds'])})",
            file=out,
        )
        print(f"docker engine: {'available' if health['docker'] else 'NOT available'}", file=out)
        print(f"missions folder: {'writable' if health['missions_dir_writable'] else 'NOT writable'}", file=out)
        counts = health.get("missions") or {}
        summary = ", ".join(f"{n} {status}" for status, n in counts.items()) or "none"
        print(f"missions: {summary}", file=out)

    return _emit(args, client.call("GET", "/api/health"), human)


def cmd_list(client: Client, args: argparse.Namespace) -> int:
    def human(items: list[dict[str, Any]], out: TextIO) -> None:
        if not items:
            print("no missions yet; create one with: haflowd missions create --title ... --input FILE", file=out)
            return
        rows = [["ID", "STATUS", "STEP", "UPDATED", "TITLE"]]
        rows += [
            [i["mission_id"], i["status"], i["current_step_name"], _ago(i["updated_at"]), i["title"]] for i in items
        ]
        _table(rows, out)

    return _emit(args, client.call("GET", "/api/missions"), human)


def _mission_path(mission_id: str, suffix: str = "") -> str:
    return f"/api/missions/{urllib.parse.quote(mission_id, safe='')}{suffix}"


def cmd_show(client: Client, args: argparse.Namespace) -> int:
    def human(m: dict[str, Any], out: TextIO) -> None:
        steps = m["workflow"]["steps"]
        index = m["current_step"]
        step = steps[index]["name"] if index < len(steps) else "Complete"
        print(f"{m['mission_id']}  {m['title']}", file=out)
        print(f"  type: {m['type']}   workflow: {m['workflow_id']}", file=out)
        print(f"  status: {m['status']}   step {min(index + 1, len(steps))}/{len(steps)}: {step}", file=out)
        print(f"  created {_ago(m['created_at'])}, updated {_ago(m['updated_at'])}", file=out)
        if m.get("branch"):
            print(f"  branch: {m['branch']} (from {m['base_commit'][:12]})", file=out)
        if m.get("delivered"):
            print(f"  delivered: {m['delivered']['branch']} at {m['delivered']['commit'][:12]}", file=out)
        if m.get("usage"):
            print(f"  usage: {_usage(m['usage'])}", file=out)
        if m.get("last_error"):
            print(f"  last error: {m['last_error']}", file=out)
        if m["artifacts"]:
            print("  artifacts:", file=out)
            for name, content in m["artifacts"].items():
                print(f"    {name} ({len(content.encode())} bytes)", file=out)
        if m["runs"]:
            print("  runs:", file=out)
            for run in m["runs"]:
                state = (
                    f"exit {run['exit_code']}"
                    if "exit_code" in run
                    else ("finished" if "finished_at" in run else "running")
                )
                extra = f"  {_usage(run['usage'])}" if run.get("usage") else ""
                if run.get("commit"):
                    c = run.get("changes") or {}
                    extra += f"  commit {run['commit'][:12]} ({c.get('files', 0)} files)"
                print(
                    f"    {run['run_id']}  {run['step_id']}  started {_ago(run['started_at'])}  {state}{extra}",
                    file=out,
                )
                if run.get("result"):
                    print(f"      result: {run['result'][:300]}", file=out)

    return _emit(args, client.call("GET", _mission_path(args.mission_id)), human)


def _usage(u: dict[str, Any]) -> str:
    text = f"{u.get('input_tokens', 0):,} in / {u.get('output_tokens', 0):,} out tokens"
    if u.get("cost_usd") is not None:
        text += f", ${u['cost_usd']:.4f}"
    return text


def cmd_projects(client: Client, args: argparse.Namespace) -> int:
    if args.projects_command == "link":
        body: dict[str, Any] = {"path": str(Path(args.path).expanduser().absolute())}
        for key, value in (("name", args.name), ("testCommand", args.test_command), ("image", args.image)):
            if value:
                body[key] = value
        project = client.call("POST", "/api/projects", body)
        return _emit(
            args, project, lambda p, out: print(f"linked {p['project_id']}: {p['name']} ({p['path']})", file=out)
        )
    if args.projects_command == "unlink":
        client.call("DELETE", f"/api/projects/{urllib.parse.quote(args.project_id, safe='')}")
        print(f"unlinked {args.project_id} (the repository and the missions' clones are untouched)")
        return 0

    def human(projects: list[dict[str, Any]], out: TextIO) -> None:
        if not projects:
            print("no projects linked (haflowd projects link PATH)", file=out)
            return
        _table([[p["project_id"], p["name"], p["path"]] for p in projects], out)

    return _emit(args, client.call("GET", "/api/projects"), human)


def cmd_diff(client: Client, args: argparse.Namespace) -> int:
    if args.stat:
        found = client.call("GET", _mission_path(args.mission_id, "/git-status"))

        def human(s: dict[str, Any], out: TextIO) -> None:
            for f in s["files"]:
                print(f"{f['status']}  {f['path']}", file=out)
            print(s["summary"], file=out)

        return _emit(args, found, human)
    found = client.call("GET", _mission_path(args.mission_id, "/git-diff"))

    def show(d: dict[str, Any], out: TextIO) -> None:
        out.write(d["diff"])
        if d.get("truncated"):
            print("\n[diff truncated: it is larger than the daemon sends at once]", file=out)

    return _emit(args, found, show)


def cmd_run(client: Client, args: argparse.Namespace) -> int:
    # One string for the sandbox's shell (the host never runs it).
    command = " ".join(args.command_words).strip()
    if not command:
        raise ClientError("give the command after --, e.g. haflowd missions run ID -- make test", 2)
    started = client.call("POST", _mission_path(args.mission_id, "/run-command"), {"command": command})
    exec_id = started["executionId"]
    while True:
        execution = client.call("GET", _mission_path(args.mission_id, f"/execution/{exec_id}"))
        if execution["status"] != "running":
            break
        time.sleep(FOLLOW_INTERVAL)
    if args.json:
        return _emit(args, execution, lambda *_: None)
    sys.stdout.write(execution["output"])
    print(f"== {exec_id}: {execution['status']} (exit {execution.get('exitCode', '-')}) ==", file=sys.stderr)
    return 0 if execution["status"] == "completed" else 1


def cmd_request_changes(client: Client, args: argparse.Namespace) -> int:
    try:
        feedback = sys.stdin.read() if args.feedback == "-" else Path(args.feedback).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClientError(f"cannot read {args.feedback}: {exc}", 2) from None
    client.call("POST", _mission_path(args.mission_id, "/request-changes"), {"feedback": feedback})
    print(f"{args.mission_id}: changes requested; the agent step before the gate runs again")
    return 0


def cmd_deliver(client: Client, args: argparse.Namespace) -> int:
    body = {"branch": args.branch} if args.branch else {}
    done = client.call("POST", _mission_path(args.mission_id, "/deliver"), body)
    return _emit(args, done, lambda d, out: print(f"delivered branch {d['branch']} at {d['commit'][:12]}", file=out))


def cmd_delete(client: Client, args: argparse.Namespace) -> int:
    client.call("DELETE", _mission_path(args.mission_id))
    print(f"deleted {args.mission_id}")
    return 0


def _read_input(args: argparse.Namespace) -> str:
    if args.input and args.input != "-":
        try:
            return Path(args.input).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ClientError(f"cannot read {args.input}: {exc}", 2) from None
    if args.input is None and sys.stdin.isatty():
        raise ClientError("give the mission's text with --input FILE, or pipe it in on stdin", 2)
    return sys.stdin.read()


def cmd_create(client: Client, args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"title": args.title, "type": args.type, "rawInput": _read_input(args)}
    if args.workflow:
        body["workflowId"] = args.workflow
    if args.project:
        body["projectId"] = args.project
    if args.base:
        body["baseRef"] = args.base
    meta = client.call("POST", "/api/missions", body)

    def human(m: dict[str, Any], out: TextIO) -> None:
        print(f"created {m['mission_id']} ({m['title']}), workflow {m['workflow_id']}, status {m['status']}", file=out)
        if m.get("branch"):
            print(f"branch {m['branch']} from {m['base_commit'][:12]}", file=out)
        print(f"start it with: haflowd missions continue {m['mission_id']}", file=out)

    return _emit(args, meta, human)


def _action(verb: str, done: str) -> Callable[[Client, argparse.Namespace], int]:
    def command(client: Client, args: argparse.Namespace) -> int:
        client.call("POST", _mission_path(args.mission_id, f"/{verb}"))
        mission = client.call("GET", _mission_path(args.mission_id))

        def human(m: dict[str, Any], out: TextIO) -> None:
            steps = m["workflow"]["steps"]
            step = steps[m["current_step"]]["name"] if m["current_step"] < len(steps) else "Complete"
            print(f"{m['mission_id']}: {done}; now {m['status']} at {step}", file=out)

        return _emit(args, mission, human)

    return command


def _runs(mission: dict[str, Any], run_id: str | None) -> list[dict[str, Any]]:
    runs: list[dict[str, Any]] = mission["runs"]
    if run_id is None:
        return runs
    found = [r for r in runs if r["run_id"] == run_id]
    if not found:
        raise ClientError(f"{mission['mission_id']} has no run {run_id}", EXIT_REFUSED)
    return found


def cmd_logs(client: Client, args: argparse.Namespace) -> int:
    out = sys.stdout
    mission = client.call("GET", _mission_path(args.mission_id))
    runs = _runs(mission, args.run)
    if not args.follow:
        if not runs:
            print(f"{args.mission_id} has no runs yet", file=sys.stderr)
            return 0
        out.write(client.call("GET", _mission_path(args.mission_id, f"/runs/{runs[-1]['run_id']}/log")))
        return 0
    # Like tail -f: start at the latest run, then every run that follows.
    done = {r["run_id"] for r in runs[:-1]}
    offsets: dict[str, int] = {}
    header: str | None = None
    last_pass = False
    while True:
        for run in runs:
            run_id = run["run_id"]
            if run_id in done:
                continue
            if header != run_id:
                print(f"== {run_id} ({run['step_id']}) ==", file=out)
                header = run_id
            # Page through by byte offset: each call moves only bytes not seen yet.
            while True:
                page = client.call(
                    "GET", _mission_path(args.mission_id, f"/runs/{run_id}/log?offset={offsets.get(run_id, 0)}")
                )
                out.write(page["text"])
                out.flush()
                offsets[run_id] = page["next_offset"]
                if page["next_offset"] >= page["size"] or page["next_offset"] == page["offset"]:
                    break
            if "finished_at" in run:
                done.add(run_id)
        if last_pass:
            print(f"== {args.mission_id} is {mission['status']} ==", file=out)
            return 0
        time.sleep(FOLLOW_INTERVAL)
        mission = client.call("GET", _mission_path(args.mission_id))
        runs = _runs(mission, args.run)
        # One more pass after the mission stops running picks up the rest.
        last_pass = mission["status"] not in RUNNING_STATUSES


# -- wiring ---------------------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help=f"daemon address (env HAFLOW_URL, default {DEFAULT_URL})")
    common.add_argument(
        "--token",
        help="API token (env HAFLOW_TOKEN; for a loopback URL also HAFLOW_HOME/token)",
    )
    common.add_argument("--json", action="store_true", help="print the API's data as JSON, for scripts")
    return common


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status`` and ``missions`` to the ``haflowd`` command."""
    common = _client_options()
    status = commands.add_parser(
        "status",
        parents=[common],
        help="is the daemon up? version, Docker engine, missions by status",
        description="Ask a running daemon how it is. Exit 3 if it cannot be reached.",
    )
    status.set_defaults(handler=_run(cmd_status))

    missions = commands.add_parser(
        "missions",
        help="list, show, create, continue, cancel missions and read their logs",
        description="Work with the missions of a running daemon over its API.",
    )
    actions = missions.add_subparsers(dest="missions_command", metavar="ACTION", required=True)
    actions.add_parser("list", parents=[common], help="every mission, newest first").set_defaults(
        handler=_run(cmd_list)
    )
    show = actions.add_parser("show", parents=[common], help="one mission in detail")
    show.add_argument("mission_id", metavar="ID")
    show.set_defaults(handler=_run(cmd_show))

    create = actions.add_parser(
        "create",
        parents=[common],
        help="create a mission from a text file or stdin",
        description="Create a mission. Its raw input comes from --input FILE, or stdin ('-' or piped).",
    )
    create.add_argument("--title", required=True)
    create.add_argument("--type", default="feature", choices=[t.value for t in MissionType], help="default feature")
    create.add_argument("--workflow", help="workflow id (default: the daemon's standard-feature)")
    create.add_argument("--input", metavar="FILE", help="file holding the raw input ('-' for stdin)")
    create.add_argument("--project", metavar="PROJECT_ID", help="a linked project: makes this a code mission")
    create.add_argument("--base", metavar="REF", help="what the mission branch starts from (default HEAD)")
    create.set_defaults(handler=_run(cmd_create))

    diff = actions.add_parser("diff", parents=[common], help="the code mission's diff against its base")
    diff.add_argument("mission_id", metavar="ID")
    diff.add_argument("--stat", action="store_true", help="changed files only")
    diff.set_defaults(handler=_run(cmd_diff))
    run = actions.add_parser(
        "run",
        parents=[common],
        help="run a command in a sandbox on a copy of the work tree (haflowd missions run ID -- make test)",
    )
    run.add_argument("mission_id", metavar="ID")
    run.add_argument("command_words", nargs="*", metavar="-- COMMAND")
    run.set_defaults(handler=_run(cmd_run))
    changes = actions.add_parser("request-changes", parents=[common], help="at a gate: send feedback, re-run the agent")
    changes.add_argument("mission_id", metavar="ID")
    changes.add_argument("--feedback", metavar="FILE", required=True, help="file with the feedback ('-' for stdin)")
    changes.set_defaults(handler=_run(cmd_request_changes))
    deliver = actions.add_parser("deliver", parents=[common], help="create the mission's branch in your repository")
    deliver.add_argument("mission_id", metavar="ID")
    deliver.add_argument("--branch", help="branch name (default: the mission's branch)")
    deliver.set_defaults(handler=_run(cmd_deliver))
    delete = actions.add_parser("delete", parents=[common], help="stop and remove a mission and its clone")
    delete.add_argument("mission_id", metavar="ID")
    delete.set_defaults(handler=_run(cmd_delete))

    projects = commands.add_parser("projects", help="link, list and unlink git repositories")
    project_actions = projects.add_subparsers(dest="projects_command", metavar="ACTION", required=True)
    link = project_actions.add_parser("link", parents=[common], help="link a repository (nothing is written into it)")
    link.add_argument("path", metavar="PATH")
    link.add_argument("--name")
    link.add_argument("--test-command", help="offered as a command at code review")
    link.add_argument("--image", help="image commands run in (default: the agent image)")
    link.set_defaults(handler=_run(cmd_projects))
    project_actions.add_parser("list", parents=[common], help="linked projects").set_defaults(
        handler=_run(cmd_projects)
    )
    unlink = project_actions.add_parser("unlink", parents=[common], help="forget a project")
    unlink.add_argument("project_id", metavar="PROJECT_ID")
    unlink.set_defaults(handler=_run(cmd_projects))

    for verb, done, text in (
        ("continue", "continued", "approve the human gate, or start or retry the agent step"),
        ("cancel", "cancelled", "stop the running agent step (continue retries it)"),
    ):
        action = actions.add_parser(verb, parents=[common], help=text)
        action.add_argument("mission_id", metavar="ID")
        action.set_defaults(handler=_run(_action(verb, done)))

    logs = actions.add_parser(
        "logs",
        parents=[common],
        help="print the log of the latest run; -f follows it live",
        description="Print the log of the mission's latest run. With -f, follow every run "
        "until the mission stops running.",
    )
    logs.add_argument("mission_id", metavar="ID")
    logs.add_argument("-f", "--follow", action="store_true", help="follow the live log")
    logs.add_argument("--run", metavar="RUN_ID", help="a specific run instead of the latest")
    logs.set_defaults(handler=_run(cmd_logs))


def _run(command: Callable[[Client, argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def handler(args: argparse.Namespace) -> int:
        env = os.environ
        url = args.url or env.get("HAFLOW_URL") or DEFAULT_URL
        client = Client(url=url, token=resolve_token(url, args.token, env))
        try:
            return command(client, args)
        except ClientError as exc:
            print(f"haflowd: {exc.message}", file=sys.stderr)
            return exc.exit_code
        except KeyboardInterrupt:
            return 130

    return handler
