"""The hardened git runner: environment, flags, bounds and errors."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from haflowd.workspaces.gitcmd import GitError, Owner, git_argv, git_env, owner_for, run_git
from tests.waiting import eventually
from tests.workspaces.conftest import OTHER_UID, ROOT, make_repo


class TestGitEnv:
    """The environment is built from nothing."""

    def test_nothing_inherited(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """GIT_DIR, HOME, pager and config variables of the daemon's own environment never reach git."""
        for name in ("GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG_PARAMETERS", "GIT_EXTERNAL_DIFF", "GIT_SSH_COMMAND"):
            monkeypatch.setenv(name, "/evil")
        monkeypatch.setenv("HOME", "/evil-home")
        env = git_env()
        assert set(env) >= {"GIT_CONFIG_NOSYSTEM", "GIT_CONFIG_GLOBAL", "GIT_TERMINAL_PROMPT", "GIT_OPTIONAL_LOCKS"}
        assert (env["GIT_CONFIG_GLOBAL"], env["GIT_CONFIG_NOSYSTEM"], env["GIT_PAGER"]) == ("/dev/null", "1", "cat")
        assert "/evil" not in env.values() and "/evil-home" not in env.values()
        assert not {"GIT_DIR", "GIT_WORK_TREE", "GIT_CONFIG_PARAMETERS", "GIT_EXTERNAL_DIFF"} & set(env)


class TestGitArgv:
    """Every call carries the hardening flags before the subcommand."""

    def test_flags(self, tmp_path: Path) -> None:
        """No pager, literal pathspecs, hooks off, fsmonitor off, symlinks on, explicit git dir and work tree."""
        argv = git_argv(["status"], git_dir=tmp_path / "g", work_tree=tmp_path / "w")
        assert argv[:4] == ["git", "--no-pager", "--no-replace-objects", "--literal-pathspecs"]
        assert argv[-1] == "status"
        pairs = {argv[i + 1] for i, arg in enumerate(argv) if arg == "-c"}
        for setting in (
            "core.hooksPath=/dev/null",
            "core.fsmonitor=false",
            "core.untrackedCache=false",
            "diff.external=",
            "core.attributesFile=/dev/null",
            "core.symlinks=true",
            "protocol.allow=never",
        ):
            assert setting in pairs
        assert ["--git-dir", str(tmp_path / "g"), "--work-tree", str(tmp_path / "w")] == argv[4:8]


class TestRunGit:
    """run_git bounds output and time and reports failures as GitError."""

    async def test_output(self, user_repo: Path, base: str) -> None:
        """Standard output comes back whole below the bound."""
        result = await run_git(["rev-parse", "HEAD"], cwd=user_repo)
        assert (result.text.strip(), result.returncode, result.truncated) == (base, 0, False)

    async def test_bounded_output_kills_git(self, tmp_path: Path) -> None:
        """Past max_output git is killed and the result says truncated."""
        repo = make_repo(tmp_path / "r", {"big.txt": "x" * 1_000_000})
        result = await run_git(["cat-file", "blob", "HEAD:big.txt"], cwd=repo, max_output=1000)
        assert result.truncated and result.stdout == b"x" * 1000

    async def test_failure_is_git_error(self, tmp_path: Path) -> None:
        """A failing command raises GitError naming the subcommand, stderr kept as detail."""
        with pytest.raises(GitError, match="git rev-parse failed") as info:
            await run_git(["rev-parse", "--verify", "nope"], cwd=tmp_path)
        assert info.value.returncode == 128 and info.value.detail
        assert info.value.status == 500

    async def test_unchecked_failure(self, tmp_path: Path) -> None:
        """check=False returns the failure instead."""
        result = await run_git(["rev-parse", "--verify", "nope"], cwd=tmp_path, check=False)
        assert result.returncode != 0

    async def test_time_limit(self, tmp_path: Path) -> None:
        """A git call that runs too long is killed and raises GitError."""
        with pytest.raises(GitError, match="timed out"):
            await run_git(["slow"], cwd=tmp_path, config=[("alias.slow", "!sleep 30")], time_limit=0.5)

    async def test_cancel_kills_the_process_group(self, tmp_path: Path) -> None:
        """Cancelling the caller kills git and what git started; nothing finishes later."""
        started, late = tmp_path / "started", tmp_path / "still-running"
        alias = f"!touch {started}; sleep 2; touch {late}"
        task = asyncio.create_task(run_git(["slow"], cwd=tmp_path, config=[("alias.slow", alias)]))
        await eventually(started.exists, what="git's child to start")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(2.5)  # past the child's 2 s, counted from before the cancel
        assert not late.exists()

    async def test_input(self, tmp_path: Path) -> None:
        """Bytes given as input reach git's standard input."""
        result = await run_git(["hash-object", "--stdin"], cwd=tmp_path, input=b"hello\n")
        assert result.text.strip() == "ce013625030ba8dba906f756967f9e9ca394464a"

    async def test_no_editor(self, tmp_path: Path) -> None:
        """Git's editor is 'false', so nothing can wait for a person to type."""
        result = await run_git(["var", "GIT_EDITOR"], cwd=tmp_path, check=False)
        assert result.text.strip() == "false"


class TestOwnerFor:
    """owner_for names the uid to drop to, only for a root daemon and another user's repository."""

    def test_own_repository(self, user_repo: Path) -> None:
        """A repository of the daemon's own user needs no switch."""
        assert owner_for(user_repo) is None

    @pytest.mark.skipif(not ROOT, reason="needs root to own files as another user")
    def test_other_users_repository(self, user_repo: Path) -> None:
        """As root, a repository another uid owns is handled as that uid."""
        os.chown(user_repo, OTHER_UID, OTHER_UID)
        assert owner_for(user_repo) == Owner(OTHER_UID, OTHER_UID)


class TestMachineConfigIgnored:
    """The daemon's git sees only command-line and repository config, whatever its environment says."""

    async def test_no_global_or_system_scope(
        self, tmp_path: Path, user_repo: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A ~/.gitconfig, GIT_CONFIG_GLOBAL and GIT_CONFIG_COUNT are invisible to git config --list."""
        home = tmp_path / "home"
        home.mkdir()
        (home / ".gitconfig").write_text("[user]\n\tname = Hostile\n")
        monkeypatch.setenv("HOME", str(home))
        monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
        monkeypatch.setenv("GIT_CONFIG_COUNT", "1")
        monkeypatch.setenv("GIT_CONFIG_KEY_0", "user.email")
        monkeypatch.setenv("GIT_CONFIG_VALUE_0", "evil@example.com")
        listed = (await run_git(["config", "--list", "--show-scope"], cwd=user_repo)).text
        scopes = {line.split("\t", 1)[0] for line in listed.splitlines()}
        assert scopes == {"local", "command"}
        assert "Hostile" not in listed and "evil@example.com" not in listed
