"""The CLI client for code missions and secrets, against a real daemon (fake sandbox)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import pytest

from haflowd.cli.main import main
from tests.conftest import AppClient
from tests.e2e.test_code_missions import fingerprint, make_repo


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


class TestProjectsAndCodeMissions:
    async def test_link_create_diff_delete(
        self, client: AppClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """projects link/list, missions create --project, diff --stat, delete and projects unlink work end to end."""
        url = str(client.make_url("")).rstrip("/")
        repo = make_repo(tmp_path / "repo")
        before = fingerprint(repo)

        def cli(*argv: str) -> tuple[int, str, str]:
            return run(capsys, *argv, "--url", url)

        code, out, err = await asyncio.to_thread(cli, "projects", "link", str(repo), "--name", "Demo", "--json")
        assert code == 0, err
        project = json.loads(out)
        code, out, _ = await asyncio.to_thread(cli, "projects", "list")
        assert project["project_id"] in out and str(repo) in out
        (tmp_path / "idea.md").write_text("Greet people.")
        code, out, err = await asyncio.to_thread(
            cli,
            "missions",
            "create",
            "--title",
            "Greet",
            "--project",
            project["project_id"],
            "--input",
            str(tmp_path / "idea.md"),
            "--json",
        )
        assert code == 0, err
        meta = json.loads(out)
        assert meta["workflow_id"] == "code-feature" and meta["branch"].startswith("feature/greet-")
        code, out, _ = await asyncio.to_thread(cli, "missions", "diff", meta["mission_id"], "--stat")
        assert code == 0 and "No changes" in out
        code, out, _ = await asyncio.to_thread(cli, "missions", "show", meta["mission_id"])
        assert f"branch: {meta['branch']}" in out
        code, out, err = await asyncio.to_thread(
            run, capsys, "missions", "run", meta["mission_id"], "--url", url, "--", "ls"
        )
        assert code == 1 and "no work tree yet" in err, err
        code, out, _ = await asyncio.to_thread(cli, "missions", "delete", meta["mission_id"])
        assert code == 0 and "deleted" in out
        code, out, _ = await asyncio.to_thread(cli, "projects", "unlink", project["project_id"])
        assert code == 0
        assert fingerprint(repo) == before


class TestSecrets:
    def test_set_and_list(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """secrets set reads the value from stdin into a 0600 file; list shows names, never values."""
        monkeypatch.setattr("sys.stdin", io.StringIO("sk-very-secret\n"))
        code, out, _ = run(capsys, "secrets", "set", "ANTHROPIC_API_KEY", "--home", str(tmp_path))
        assert code == 0 and "sk-very-secret" not in out
        path = tmp_path / "secrets.env"
        assert path.read_text() == "ANTHROPIC_API_KEY=sk-very-secret\n"
        assert path.stat().st_mode & 0o777 == 0o600
        code, out, _ = run(capsys, "secrets", "list", "--home", str(tmp_path))
        assert out == "ANTHROPIC_API_KEY\n"

    def test_bad_name(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A name that is not an environment variable name is refused."""
        monkeypatch.setattr("sys.stdin", io.StringIO("x\n"))
        code, _, err = run(capsys, "secrets", "set", "A=B", "--home", str(tmp_path))
        assert code == 1 and "not a valid" in err.lower()
