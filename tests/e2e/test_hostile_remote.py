"""A hostile codegen agent on the providers that do not share the daemon's disk: it cannot hurt the host.

The remote Docker provider (a second dockerd, :mod:`tests.remote_engine`) and
the EXPERIMENTAL Kubernetes provider (the fake API server and the fake
Docker-backed kubelet of :mod:`tests.kube`) carry the work tree as tar
streams, so whatever the agent leaves there reaches the daemon's disk only
through :mod:`haflowd.sandbox.unpack`. The agent writes git hooks and config
(the git area is read-only), a filter driver, a nested repository whose
config would run a program, symlinks out of the tree, a FIFO, a file name
that is not UTF-8, and prints a step secret; the daemon's git then commits,
shows, diffs and delivers that tree. The local Docker provider has the same
test in :mod:`tests.e2e.test_code_missions` (``test_hostile_agent_gets_nothing_from_the_host``).

What the agent makes of a link out of the tree, a FIFO or a ``.git`` entry
never reaches the host: such links and special files are dropped on the way
back (logged), entries under the work tree's ``.git`` are ignored (that place
is the git area's). Hand-made archives with ``a0/.git/...`` entries, which an
agent's own ``tar`` cannot produce, are covered at the transfer endpoint by
``tests/sandbox/kubernetes/test_transfers.py::TestOut::test_git_entries_of_the_workspace_are_ignored``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, cast

import aiohttp
import attrs
import pytest
from pytest_aiohttp import AiohttpClient, AiohttpServer

from haflowd.sandbox.protocol import instance_id
from haflowd.secrets import write_value
from haflowd.web.app import create_app
from haflowd.web.tls import server_context
from tests.conftest import AppClient, api, until, wait_status
from tests.e2e.test_code_missions import create, fingerprint, git, link, make_repo
from tests.e2e.test_docker_hostile import REQUEST_SECONDS
from tests.e2e.test_remote_docker_e2e import nothing_left_on, remote_config  # noqa: F401 - a fixture
from tests.remote_engine import Engine

pytestmark = [pytest.mark.docker, pytest.mark.timeout(300)]

#: The step secret the agent prints; set as ``haflowd secrets set`` would, never in the daemon's environment.
SECRET_NAME = "HAFLOW_HOSTILE_KEY"
SECRET_VALUE = "sk-hostile-0123456789abcdefXYZ"
#: The content of a host file the agent links to.
HOST_SECRET = "TOP-SECRET-HOST-TOKEN"
#: A file name that is not UTF-8 (as bytes in the sandbox, octal for busybox printf).
BAD_NAME_SH = "bad-\\377-name"


@attrs.frozen
class Daemon:
    """One daemon on one provider, and how to tell that it left nothing anywhere."""

    client: AppClient
    nothing_left: Callable[[], Awaitable[bool]]


async def _remote_docker(
    home: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, engine: Engine, config: Any
) -> Daemon:
    client = await aiohttp_client(create_app(config))
    on_engine = nothing_left_on(engine, instance_id(home))

    async def nothing_left() -> bool:
        tickets = [p for p in (home / "transfers").glob("*") if p.is_file()]
        return await on_engine() and not tickets

    return Daemon(client, nothing_left)


async def _kubernetes(home: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer, rig: Any) -> Daemon:
    from tests.e2e.test_kubernetes_e2e import nothing_left as nothing_left_in
    from tests.sandbox.kubernetes.kube_support import trusting

    server = await aiohttp_server(create_app(rig.config), port=rig.port, ssl=server_context(rig.config))
    connector = aiohttp.TCPConnector(ssl=trusting(rig.config.tls_cert))
    client = cast(AppClient, await aiohttp_client(server, connector=connector))  # pytest-aiohttp types it loosely
    return Daemon(client, nothing_left_in(rig, home))


try:  # the Kubernetes rig is a fixture of the Kubernetes e2e tests; it needs the kubernetes extra
    from tests.e2e.test_kubernetes_e2e import rig  # noqa: F401 - a fixture
except pytest.skip.Exception:  # pragma: no cover - without kubernetes_asyncio
    pass


def hostile_script(marker: Path, host_secret: Path) -> str:
    """The codegen agent: every attack, then the stand-in codegen agent (``sh -c``; busybox)."""
    evil_config = f"[core]\\n\\tfsmonitor = touch {marker}\\n"
    nested = (
        f"[core]\\n\\tfsmonitor = touch {marker}\\n\\thooksPath = /tmp\\n"
        f'[filter \\"evil\\"]\\n\\tclean = touch {marker}\\n\\tsmudge = touch {marker}\\n'
        f'[diff \\"evil\\"]\\n\\ttextconv = touch {marker}\\n'
    )
    return (
        "cd /workspace; "
        f'echo "secret: ${SECRET_NAME}"; '
        # The git area is read-only: both writes must fail, and say so in the log.
        "{ echo '#!/bin/sh' > .git/hooks/pre-commit; } 2>/dev/null "
        "&& echo 'hooks: written' || echo 'hooks: refused'; "
        f"{{ printf '{evil_config}' >> .git/config; }} 2>/dev/null "
        "&& echo 'config: written' || echo 'config: refused'; "
        # Names that would land in .git if the daemon compared names loosely.
        "mkdir -p .GIT/hooks '.git./hooks' && echo '#!/bin/sh' > .GIT/hooks/pre-commit "
        f"&& printf '{evil_config}' > .GIT/config && echo '#!/bin/sh' > '.git./hooks/pre-commit'; "
        "ln -s .git dotgit-link; "
        "echo '* filter=evil diff=evil' > .gitattributes; "
        f'mkdir -p nested/.git && printf "{nested}" > nested/.git/config && echo inner > nested/file.txt; '
        f"ln -s /etc/passwd passwd-link && ln -s {host_secret} token-link "
        "&& ln -s ../../../../../etc/passwd climb-link "
        "&& echo 'links: made'; "
        "echo data > plain.txt; ln -s plain.txt inner-link; "
        "mkfifo fifo && echo 'fifo: made'; "
        f"echo odd > \"$(printf '{BAD_NAME_SH}')\" && echo 'odd name: made'; "
        'exec haflow-agent --codegen "$@"'
    )


def write_codegen_agent(home: Path, script: str) -> None:
    folder = home / "workflows" / "agents"
    folder.mkdir(parents=True, exist_ok=True)
    agent = {
        "agent_id": "codegen-agent",
        "command": ["sh", "-c", script, "sh", "{step_id}", "{agent_id}", "{input_artifact}", "{output_artifact}"],
        "memory": "128m",
        "secrets": [SECRET_NAME],
    }
    (folder / "codegen-agent.json").write_text(json.dumps(agent))


def git_dir_state(git_dir: Path) -> dict[str, str]:
    """What an agent must never change in the mission's git directory: its hooks, config and info."""
    state = {"config": (git_dir / "config").read_text()}
    for folder in ("hooks", "info"):
        base = git_dir / folder
        for path in sorted(base.rglob("*")) if base.exists() else []:
            state[str(path.relative_to(git_dir))] = (
                hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "/"
            )
    return state


@pytest.fixture(params=["remote-docker", "kubernetes"])
def backend(
    request: pytest.FixtureRequest, docker_image: str, home: Path, tmp_path: Path
) -> tuple[str, tuple[Any, ...]]:
    """Each provider's rig, the codegen agent the hostile one (written before the daemon starts)."""
    assert SECRET_NAME not in os.environ
    write_value(home, SECRET_NAME, SECRET_VALUE)
    host_secret = tmp_path / "daemon-token"
    host_secret.write_text(HOST_SECRET + "\n")
    write_codegen_agent(home, hostile_script(tmp_path / "pwned", host_secret))
    if request.param == "remote-docker":
        return request.param, (request.getfixturevalue("remote_engine"), request.getfixturevalue("remote_config"))
    pytest.importorskip("kubernetes_asyncio")
    return request.param, (request.getfixturevalue("rig"),)


@pytest.fixture
async def daemon(
    backend: tuple[str, tuple[Any, ...]], home: Path, aiohttp_client: AiohttpClient, aiohttp_server: AiohttpServer
) -> Daemon:
    kind, parts = backend
    make = _remote_docker if kind == "remote-docker" else _kubernetes
    return await make(home, aiohttp_client, aiohttp_server, *parts)


class TestHostileCodegen:
    async def test_hostile_agent_gets_nothing_from_the_host(self, daemon: Daemon, home: Path, tmp_path: Path) -> None:
        """Hooks, config, filters, a nested repo, links out, a FIFO, an odd name and a printed secret: the host runs
        nothing, reads nothing, leaks nothing, blocks on nothing, and nothing is left behind."""
        client = daemon.client
        marker = tmp_path / "pwned"
        answers: list[str] = []

        async def call(method: str, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
            """One API call, bounded in time (a FIFO must never block an answer), its answer kept."""
            async with asyncio.timeout(REQUEST_SECONDS):
                status, body = await api(client, method, path, **kwargs)
            answers.append(json.dumps(body, ensure_ascii=False))
            return status, body

        async def step(*statuses: str) -> dict[str, Any]:
            status, body = await call("POST", f"/api/missions/{mid}/continue")
            assert status == 200, body
            found = await wait_status(client, mid, *statuses, "failed", timeout=120)
            assert found["status"] != "failed", found.get("last_error")
            return found

        repo = make_repo(tmp_path / "repo")
        before = fingerprint(repo)
        project = await link(client, repo)
        meta = await create(client, project["project_id"])
        mid = meta["mission_id"]
        await step("waiting_human")  # cleanup
        await step("waiting_human")  # planning
        git_dir = home / "missions" / mid / "repo.git"
        git_before = git_dir_state(git_dir)
        data = await step("waiting_code_review")  # implementation: the hostile agent
        run = data["runs"][-1]
        assert run["step_id"] == "implementation" and len(run["commit"]) == 40

        # The git area was read-only in the sandbox, and the daemon's copy is as it was.
        log = (home / "missions" / mid / "logs" / f"{run['run_id']}.log").read_bytes()
        assert b"hooks: refused" in log and b"config: refused" in log
        # Each attack really happened in the sandbox.
        assert b"links: made" in log and b"fifo: made" in log and b"odd name: made" in log
        assert git_dir_state(git_dir) == git_before
        assert not (git_dir / "hooks" / "pre-commit").exists()
        work = home / "missions" / mid / "workspace"
        assert (work / ".git").is_dir() and not (work / ".git").is_symlink() and list((work / ".git").iterdir()) == []

        # The secret was printed and redacted; the log answer says so too.
        assert SECRET_VALUE.encode() not in log and b"secret: [redacted]" in log
        status, body = await call("GET", f"/api/missions/{mid}/runs/{run['run_id']}/log")
        assert status == 200 and "secret: [redacted]" in json.dumps(body)

        status, body = await call("GET", f"/api/missions/{mid}/git-status")
        assert status == 200, body
        paths = {f["path"] for f in body["data"]["files"]}
        # What the agent made in the tree comes back (the odd byte shown as U+FFFD) ...
        assert {".gitattributes", "plain.txt", "inner-link", "dotgit-link", "nested/file.txt"} <= paths
        assert "bad-\ufffd-name" in paths
        # ... the look-alikes of .git come back as the plain folders they are (git itself ignores .GIT) ...
        assert (work / ".GIT" / "hooks" / "pre-commit").is_file() and (
            work / ".git." / "hooks" / "pre-commit"
        ).is_file()
        # ... but not links out of the tree nor the FIFO (dropped on the way back), nor a nested .git.
        assert not paths & {"passwd-link", "token-link", "climb-link", "fifo"}
        assert not any(p.startswith("nested/.git") for p in paths)
        for name in ("passwd-link", "token-link", "climb-link", "fifo"):
            assert not os.path.lexists(work / name), name

        status, body = await call("GET", f"/api/missions/{mid}/git-diff")
        assert status == 200, body
        diff = body["data"]["diff"]
        assert "+plain.txt" in diff and "+.git" in diff  # link targets as text
        assert "+* filter=evil diff=evil" in diff
        assert "root:x:0:0" not in diff and HOST_SECRET not in diff
        status, body = await call("GET", f"/api/missions/{mid}/git-diff/inner-link")
        assert status == 200 and "+plain.txt" in body["data"]["diff"]
        # A command runs on a copy of this tree (in a sandbox of the same provider) and finishes.
        status, body = await call(
            "POST", f"/api/missions/{mid}/run-command", json={"command": f'cat .gitattributes; echo "[${SECRET_NAME}]"'}
        )
        assert status == 200, body
        exec_id = body["data"]["executionId"]

        async def finished() -> bool:
            _, found = await call("GET", f"/api/missions/{mid}/execution/{exec_id}")
            return bool(found["data"]["status"] != "running")

        await until(finished, timeout=60)
        _, found = await call("GET", f"/api/missions/{mid}/execution/{exec_id}")
        assert found["data"]["exitCode"] == 0, found
        assert "* filter=evil diff=evil" in found["data"]["output"] and "[]" in found["data"]["output"]

        status, body = await call("GET", f"/api/missions/{mid}/commits")
        assert [c["sha"] for c in body["data"]] == [run["commit"]]
        async with asyncio.timeout(REQUEST_SECONDS):
            resp = await client.get(f"/api/missions/{mid}/patch")
            patch = await resp.text()
        answers.append(patch)
        assert resp.status == 200 and "filter=evil" in patch

        status, body = await call("POST", f"/api/missions/{mid}/deliver", json={})
        assert status == 200, body
        assert git(repo, "show", f"{meta['branch']}:plain.txt") == "data\n"
        listed = subprocess.run(
            ["git", "-C", str(repo), "ls-tree", "-r", "-z", "--name-only", meta["branch"]],
            capture_output=True,
            check=True,
        ).stdout.split(b"\0")
        delivered = {name for name in listed if name}
        assert {b".gitattributes", b"inner-link", b"dotgit-link", b"nested/file.txt", b"bad-\xff-name"} <= delivered
        assert not [n for n in delivered if n.lower().startswith((b".git/", b".git./")) or b"/.git/" in n]
        assert not delivered & {b"passwd-link", b"token-link", b"climb-link", b"fifo"}
        assert fingerprint(repo) == before
        assert git_dir_state(git_dir) == git_before
        await step("completed")
        status, body = await call("GET", f"/api/missions/{mid}")
        assert status == 200

        # The host's git ran nothing, nothing read a host file or the secret into an answer, nothing is left.
        assert not marker.exists()
        assert not [p for p in tmp_path.rglob("pwned")]
        for answer in answers:
            assert SECRET_VALUE not in answer and HOST_SECRET not in answer and "root:x:0:0" not in answer
        await until(daemon.nothing_left, timeout=60)
