"""Code missions (docs/contract/API-code.md) end to end.

Projects, a clone per mission, commits, review, commands, delivery.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.protocol import instance_id
from haflowd.web.app import create_app
from tests.conftest import AppClient, api, detail, until, wait_status
from tests.docker_support import OWNED_INSTANCES, haflow_containers
from tests.fakes import FakeSandbox

GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_AUTHOR_NAME": "Dev",
    "GIT_AUTHOR_EMAIL": "dev@example.com",
    "GIT_COMMITTER_NAME": "Dev",
    "GIT_COMMITTER_EMAIL": "dev@example.com",
}

PLAN_DIFF = """# Plan

Add a greeting to the README and a new module.

```diff
--- a/README.md
+++ b/README.md
@@ -1,2 +1,3 @@
 # Demo
 A small project.
+Hello from the mission.
--- /dev/null
+++ b/src/greet.py
@@ -0,0 +1,2 @@
+def greet(name):
+    return f"Hello, {name}!"
```
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, env={**os.environ, **GIT_ENV}
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def make_repo(path: Path) -> Path:
    """A user's repository with two commits, on branch main, with a clean checkout."""
    path.mkdir(parents=True)
    git(path, "init", "-q", "-b", "main")
    (path / "README.md").write_text("# Demo\nA small project.\n")
    (path / ".gitignore").write_text("*.log\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "initial")
    (path / "src").mkdir()
    (path / "src" / "app.py").write_text("print('app')\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "app")
    return path


def fingerprint(repo: Path) -> dict[str, str]:
    """What must not change in the user's repository: HEAD, current branch, index, config, work tree status."""
    dot = repo / ".git"
    return {
        "HEAD": (dot / "HEAD").read_text(),
        "head_sha": git(repo, "rev-parse", "HEAD"),
        "index": hashlib.sha256((dot / "index").read_bytes()).hexdigest(),
        "config": (dot / "config").read_text(),
        "status": git(repo, "status", "--porcelain", "--untracked-files=all"),
        "hooks": " ".join(sorted(p.name for p in (dot / "hooks").iterdir())) if (dot / "hooks").exists() else "",
    }


async def link(client: AppClient, repo: Path, **fields: Any) -> dict[str, Any]:
    status, body = await api(client, "POST", "/api/projects", json={"path": str(repo), **fields})
    assert status == 201, body
    data: dict[str, Any] = body["data"]
    return data


async def create(client: AppClient, project_id: str, **fields: Any) -> dict[str, Any]:
    payload = {"title": "Greet users!", "type": "feature", "rawInput": "Say hello.", "projectId": project_id, **fields}
    status, body = await api(client, "POST", "/api/missions", json=payload)
    assert status == 201, body
    data: dict[str, Any] = body["data"]
    return data


class TestProjects:
    async def test_link_list_get_unlink(self, client: AppClient, tmp_path: Path) -> None:
        """A repository is linked (nothing written into it), listed, read and unlinked."""
        repo = make_repo(tmp_path / "repo")
        before = fingerprint(repo)
        project = await link(client, repo, name="Demo", testCommand="make test")
        assert project["project_id"].startswith("p-") and project["path"] == str(repo)
        assert (project["name"], project["default_branch"], project["test_command"]) == ("Demo", "main", "make test")
        assert "image" not in project
        status, body = await api(client, "GET", "/api/projects")
        assert (status, body["data"]) == (200, [project])
        status, body = await api(client, "GET", f"/api/projects/{project['project_id']}")
        assert (status, body["data"]) == (200, project)
        assert fingerprint(repo) == before
        status, body = await api(client, "DELETE", f"/api/projects/{project['project_id']}")
        assert (status, body["data"]) == (200, None)
        assert (await api(client, "GET", f"/api/projects/{project['project_id']}"))[0] == 404
        assert repo.is_dir() and fingerprint(repo) == before

    async def test_link_twice_names_the_project(self, client: AppClient, tmp_path: Path) -> None:
        """Linking the same repository twice is a 409 naming the project."""
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        status, body = await api(client, "POST", "/api/projects", json={"path": str(repo)})
        assert status == 409 and project["project_id"] in body["error"]

    @pytest.mark.parametrize(
        ("path", "problem"),
        [
            ("relative/path", "absolute"),
            ("/nonexistent/haflow-repo", "does not exist"),
            ("__empty__", "git"),
            ("__home__", "HAFLOW_HOME"),
        ],
    )
    async def test_bad_paths(self, client: AppClient, tmp_path: Path, home: Path, path: str, problem: str) -> None:
        """A path that is not absolute, missing, not a git work tree or inside HAFLOW_HOME is a 400 saying so."""
        if path == "__empty__":
            (tmp_path / "empty").mkdir()
            path = str(tmp_path / "empty")
        elif path == "__home__":
            path = str(make_repo(home / "inside"))
        status, body = await api(client, "POST", "/api/projects", json={"path": path})
        assert status == 400 and problem in body["error"]


class TestCodeMissionCreation:
    async def test_mission_on_a_project(self, client: AppClient, tmp_path: Path) -> None:
        """A mission on a project gets the code workflow, a branch and its base commit; nothing is cloned yet."""
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        meta = await create(client, project["project_id"])
        suffix = meta["mission_id"].removeprefix("m-")
        assert meta["branch"] == f"feature/greet-users-{suffix}"
        assert meta["base_commit"] == git(repo, "rev-parse", "HEAD").strip()
        assert meta["project_id"] == project["project_id"] and meta["workflow_id"] == "code-feature"
        status, body = await api(client, "GET", f"/api/missions/{meta['mission_id']}/git-status")
        assert (status, body["data"]) == (200, {"hasChanges": False, "files": [], "summary": "No changes"})
        status, body = await api(client, "GET", f"/api/missions/{meta['mission_id']}/commits")
        assert (status, body["data"]) == (200, [])

    async def test_base_ref(self, client: AppClient, tmp_path: Path) -> None:
        """baseRef picks the start; one that does not resolve is a 400, like an unknown project."""
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        meta = await create(client, project["project_id"], baseRef="HEAD~1")
        assert meta["base_commit"] == git(repo, "rev-parse", "HEAD~1").strip()
        payload = {"title": "t", "type": "fix", "rawInput": "x", "projectId": project["project_id"], "baseRef": "nope"}
        status, body = await api(client, "POST", "/api/missions", json=payload)
        assert status == 400 and "baseRef" in body["error"]
        payload["projectId"], payload["baseRef"] = "p-00000000", "HEAD"
        status, body = await api(client, "POST", "/api/missions", json=payload)
        assert status == 400 and "projectId" in body["error"]

    async def test_code_endpoints_need_a_project(self, client: AppClient) -> None:
        """Code endpoints of a mission without a project answer 409."""
        status, body = await api(client, "POST", "/api/missions", json={"title": "t", "type": "fix", "rawInput": "x"})
        mid = body["data"]["mission_id"]
        for method, path, payload in [
            ("GET", "git-status", None),
            ("GET", "git-diff", None),
            ("GET", "commits", None),
            ("POST", "run-command", {"command": "ls"}),
            ("POST", "deliver", {}),
        ]:
            status, body = await api(client, method, f"/api/missions/{mid}/{path}", json=payload)
            assert status == 409, (path, body)

    async def test_request_changes_only_at_a_gate(self, client: AppClient) -> None:
        """request-changes is a 409 away from a gate and a 400 without feedback."""
        status, body = await api(client, "POST", "/api/missions", json={"title": "t", "type": "fix", "rawInput": "x"})
        mid = body["data"]["mission_id"]
        status, body = await api(client, "POST", f"/api/missions/{mid}/request-changes", json={"feedback": "more"})
        assert status == 409
        status, body = await api(client, "POST", f"/api/missions/{mid}/request-changes", json={"feedback": " "})
        assert status == 400

    async def test_request_changes_reruns_the_agent_with_feedback(self, client: AppClient, fake: FakeSandbox) -> None:
        """At a gate the feedback is saved as feedback-1.md and the agent step before the gate runs again with it."""
        status, body = await api(client, "POST", "/api/missions", json={"title": "t", "type": "fix", "rawInput": "x"})
        mid = body["data"]["mission_id"]
        await api(client, "POST", f"/api/missions/{mid}/continue")
        await wait_status(client, mid, "waiting_human")
        status, body = await api(client, "POST", f"/api/missions/{mid}/request-changes", json={"feedback": "Shorter."})
        assert (status, body["data"]) == (200, None)
        data = await wait_status(client, mid, "waiting_human")
        assert data["current_step"] == 1 and data["artifacts"]["feedback-1.md"] == "Shorter."
        assert [r["step_id"] for r in data["runs"]] == ["cleanup", "cleanup"]
        second = fake.started[1]
        assert second.env.get("HAFLOW_FEEDBACK_ARTIFACT") == "feedback-1.md"

    async def test_codegen_without_a_report_gets_one(
        self, client: AppClient, fake: FakeSandbox, tmp_path: Path
    ) -> None:
        """A codegen agent that commits code but writes no report (as real CLIs do) leaves the review a summary."""
        from tests.fakes import Behaviour

        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        mid = (await create(client, project["project_id"]))["mission_id"]
        fake.behaviours["implementation"] = Behaviour(code_only=True)
        for expected in ("waiting_human", "waiting_human", "waiting_code_review"):
            await api(client, "POST", f"/api/missions/{mid}/continue")
            data = await wait_status(client, mid, expected, "failed")
            assert data["status"] == expected, data.get("last_error")
        run = data["runs"][-1]
        report = data["artifacts"]["implementation-result.md"]
        assert report.startswith("# Implementation\n\nThe agent left no message.")
        assert f"Commit `{run['commit'][:12]}`: 1 files changed, +1 -0." in report

    async def test_delete_mission(self, client: AppClient, home: Path) -> None:
        """DELETE removes the mission's folder; the mission is gone from the list."""
        status, body = await api(client, "POST", "/api/missions", json={"title": "t", "type": "fix", "rawInput": "x"})
        mid = body["data"]["mission_id"]
        status, body = await api(client, "DELETE", f"/api/missions/{mid}")
        assert (status, body["data"]) == (200, None)
        assert not (home / "missions" / mid).exists()
        assert (await api(client, "GET", f"/api/missions/{mid}"))[0] == 404
        assert (await api(client, "DELETE", f"/api/missions/{mid}"))[0] == 404


# -- real git and real Docker ---------------------------------------------------------------


@pytest.fixture
async def docker_client(aiohttp_client: AiohttpClient, config: Config, docker_image: str, home: Path) -> AppClient:
    OWNED_INSTANCES.add(instance_id(home))
    provider = DockerProvider(default_image=docker_image, instance=instance_id(home))
    return await aiohttp_client(create_app(attrs.evolve(config, agent_image=docker_image), sandbox=provider))


async def step(client: AppClient, mid: str, *statuses: str) -> dict[str, Any]:
    status, body = await api(client, "POST", f"/api/missions/{mid}/continue")
    assert status == 200, body
    data = await wait_status(client, mid, *statuses, "failed", timeout=120)
    assert data["status"] != "failed", data.get("last_error")
    return data


@pytest.mark.docker
class TestCodeFeatureOnDocker:
    @pytest.mark.timeout(300)
    async def test_whole_workflow_to_delivery(self, docker_client: AppClient, tmp_path: Path, home: Path) -> None:
        """Plan with a diff -> commit -> review, command, request changes -> delivered branch;
        the user's checkout stays as it was."""
        client = docker_client
        repo = make_repo(tmp_path / "repo")
        before = fingerprint(repo)
        project = await link(client, repo)
        meta = await create(client, project["project_id"])
        mid = meta["mission_id"]
        await step(client, mid, "waiting_human")  # cleanup
        data = await step(client, mid, "waiting_human")  # planning
        assert data["current_step"] == 3
        status, _ = await api(
            client, "PUT", f"/api/missions/{mid}/artifacts/implementation-plan.md", json={"content": PLAN_DIFF}
        )
        assert status == 200
        data = await step(client, mid, "waiting_code_review")  # implementation
        impl = data["runs"][-1]
        assert impl["step_id"] == "implementation" and len(impl["commit"]) == 40
        assert impl["changes"] == {"files": 2, "insertions": 3, "deletions": 0}
        log = (home / "missions" / mid / "logs" / f"{impl['run_id']}.log").read_text()
        assert "[haflow] materialising the workspace" not in log or "workspace ready" in log

        status, body = await api(client, "GET", f"/api/missions/{mid}/git-status")
        assert body["data"]["hasChanges"] is True
        assert body["data"]["files"] == [{"path": "README.md", "status": "M"}, {"path": "src/greet.py", "status": "A"}]
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-diff")
        assert "+Hello from the mission." in body["data"]["diff"] and "+def greet(name):" in body["data"]["diff"]
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-diff/src%2Fgreet.py")
        assert "README" not in body["data"]["diff"] and "greet" in body["data"]["diff"]
        status, body = await api(
            client, "GET", f"/api/missions/{mid}/git-diff?from={impl['run_id']}&to={impl['run_id']}"
        )
        assert "+Hello from the mission." in body["data"]["diff"]
        status, body = await api(client, "GET", f"/api/missions/{mid}/commits")
        (commit,) = body["data"]
        assert commit["sha"] == impl["commit"] and commit["run_id"] == impl["run_id"]
        assert commit["author"].startswith("codegen-agent")

        # A command runs in a sandbox on a copy: it sees the change and cannot alter the work tree.
        status, body = await api(
            client, "POST", f"/api/missions/{mid}/run-command", json={"command": "cat README.md; echo x > README.md"}
        )
        assert status == 200, body
        exec_id = body["data"]["executionId"]

        async def finished() -> bool:
            _, found = await api(client, "GET", f"/api/missions/{mid}/execution/{exec_id}")
            return bool(found["data"]["status"] != "running")

        await until(finished, timeout=60)
        _, found = await api(client, "GET", f"/api/missions/{mid}/execution/{exec_id}")
        execution = found["data"]
        assert execution["status"] == "completed" and execution["exitCode"] == 0
        assert "Hello from the mission." in execution["output"]
        assert (home / "missions" / mid / "workspace" / "README.md").read_text().endswith("Hello from the mission.\n")
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-status")
        assert [f["path"] for f in body["data"]["files"]] == ["README.md", "src/greet.py"]

        # Request changes at the code review: the implementation runs again, then back to the review.
        status, body = await api(client, "POST", f"/api/missions/{mid}/request-changes", json={"feedback": "Fine."})
        assert status == 200, body
        data = await wait_status(client, mid, "waiting_code_review", "failed", timeout=120)
        assert data["status"] == "waiting_code_review" and "feedback-1.md" in data["artifacts"]
        assert "Reviewer feedback" in data["artifacts"]["implementation-result.md"]

        resp = await client.get(f"/api/missions/{mid}/patch")
        patch = await resp.text()
        assert resp.status == 200 and resp.content_type == "text/x-patch"
        assert patch.startswith("From ") and "Subject: [PATCH] Implementation: Greet users!" in patch

        status, body = await api(client, "POST", f"/api/missions/{mid}/deliver", json={})
        assert status == 200, body
        assert body["data"] == {"branch": meta["branch"], "commit": impl["commit"]}
        assert git(repo, "rev-parse", f"refs/heads/{meta['branch']}").strip() == impl["commit"]
        assert git(repo, "show", f"{meta['branch']}:src/greet.py").startswith("def greet")
        assert fingerprint(repo) == before
        data = await detail(client, mid)
        assert data["delivered"]["branch"] == meta["branch"]
        data = await step(client, mid, "completed")
        await until(lambda: _none_left())

    @pytest.mark.timeout(300)
    async def test_hostile_agent_gets_nothing_from_the_host(
        self, docker_client: AppClient, tmp_path: Path, home: Path
    ) -> None:
        """An agent writing git hooks/config, a filter driver and symlinks out of the tree runs no code
        and reads no host file."""
        client = docker_client
        marker = tmp_path / "pwned"
        secret = tmp_path / "daemon-token"
        secret.write_text("TOP-SECRET-TOKEN\n")
        (home / "workflows" / "agents").mkdir(parents=True)
        hostile = (
            f"cd /workspace; "
            f"echo '#!/bin/sh' > .git/hooks/pre-commit 2>/dev/null; echo 'hooks: refused' ; "
            f"printf '[core]\\n\\tfsmonitor = touch {marker}\\n' >> .git/config 2>/dev/null || echo 'config: refused'; "
            f"echo '* filter=evil diff=evil' > .gitattributes; "
            f"mkdir -p .GIT/hooks && echo '#!/bin/sh' > .GIT/hooks/pre-commit; "  # a path git will not index
            f"mkdir -p nested/.git && printf '[core]\\n\\tfsmonitor = touch {marker}\\n' > nested/.git/config; "
            f"ln -s /etc/passwd passwd-link; ln -s {secret} token-link; "
            f"echo data > plain.txt; "
            f'exec haflow-agent --codegen "$@"'
        )
        import json

        (home / "workflows" / "agents" / "codegen-agent.json").write_text(
            json.dumps(
                {
                    "agent_id": "codegen-agent",
                    "command": [
                        "sh",
                        "-c",
                        hostile,
                        "sh",
                        "{step_id}",
                        "{agent_id}",
                        "{input_artifact}",
                        "{output_artifact}",
                    ],
                    "memory": "128m",
                }
            )
        )
        client = await _fresh(docker_client, home)
        repo = make_repo(tmp_path / "repo")
        project = await link(client, repo)
        mid = (await create(client, project["project_id"]))["mission_id"]
        await step(client, mid, "waiting_human")
        await step(client, mid, "waiting_human")
        data = await step(client, mid, "waiting_code_review")
        run = data["runs"][-1]
        log = (home / "missions" / mid / "logs" / f"{run['run_id']}.log").read_text()
        assert "config: refused" in log
        assert not (home / "missions" / mid / "repo.git" / "hooks" / "pre-commit").exists()
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-diff")
        assert status == 200, body
        diff = body["data"]["diff"]
        assert "+/etc/passwd" in diff and f"+{secret}" in diff
        assert "root:x:0:0" not in diff and "TOP-SECRET-TOKEN" not in diff
        status, body = await api(client, "GET", f"/api/missions/{mid}/git-status")
        paths = {f["path"] for f in body["data"]["files"]}
        assert {"passwd-link", "token-link", "plain.txt", ".gitattributes"} <= paths
        status, _ = await api(client, "POST", f"/api/missions/{mid}/deliver", json={})
        assert status == 200
        assert not marker.exists()
        await until(lambda: _none_left())


async def _none_left() -> bool:
    return haflow_containers() == []


async def _fresh(client: AppClient, home: Path) -> AppClient:
    """The same daemon settings, built again after the test wrote agent files."""
    from haflowd.web.reload import reload_definitions

    assert reload_definitions(client.app)
    return client


@pytest.mark.docker
class TestCodegenRestart:
    @pytest.mark.timeout(300)
    async def test_kill_9_during_codegen(self, home: Path, docker_image: str, tmp_path: Path) -> None:
        """A daemon killed while a codegen step runs re-attaches after a restart;
        the change still becomes the run's commit."""
        import json as jsonlib
        import signal

        from tests.e2e.test_docker_e2e import Daemon

        OWNED_INSTANCES.add(instance_id(home))
        (home / "workflows" / "agents").mkdir(parents=True)
        slow = 'until [ -f /mission/artifacts/go ]; do sleep 0.05; done; exec haflow-agent --codegen "$@"'
        (home / "workflows" / "agents" / "codegen-agent.json").write_text(
            jsonlib.dumps(
                {
                    "agent_id": "codegen-agent",
                    "command": [
                        "sh",
                        "-c",
                        slow,
                        "sh",
                        "{step_id}",
                        "{agent_id}",
                        "{input_artifact}",
                        "{output_artifact}",
                    ],
                    "memory": "128m",
                }
            )
        )
        repo = make_repo(tmp_path / "repo")
        daemon = Daemon(home, docker_image, tmp_path / "daemon.log")
        try:
            await daemon.start()
            project = await daemon.call("POST", "/api/projects", json={"path": str(repo)})
            payload = {"title": "Greet", "type": "feature", "rawInput": "x", "projectId": project["project_id"]}
            mid = (await daemon.call("POST", "/api/missions", json=payload))["mission_id"]
            for expected in ("waiting_human", "waiting_human"):
                await daemon.call("POST", f"/api/missions/{mid}/continue")
                await daemon.until_status(mid, expected, "failed")
            await daemon.call(
                "PUT", f"/api/missions/{mid}/artifacts/implementation-plan.md", json={"content": PLAN_DIFF}
            )
            await daemon.call("POST", f"/api/missions/{mid}/continue")

            async def running() -> bool:
                found = await daemon.call("GET", f"/api/missions/{mid}")
                return (
                    bool(found["runs"])
                    and "container_id" in found["runs"][-1]
                    and found["runs"][-1]["step_id"] == "implementation"
                )

            await until(running, timeout=60)
            assert await daemon.kill(signal.SIGKILL) == -signal.SIGKILL
            (home / "missions" / mid / "artifacts" / "go").write_text("")
            await daemon.start()
            found = await daemon.until_status(mid, "waiting_code_review", "failed")
            assert found["status"] == "waiting_code_review", found.get("last_error")
            run = found["runs"][-1]
            assert len(run["commit"]) == 40 and run["changes"]["files"] == 2
            commits = await daemon.call("GET", f"/api/missions/{mid}/commits")
            assert [c["run_id"] for c in commits] == [run["run_id"]]
            await until(_none_left)
        finally:
            daemon.close()
