"""Host safety: nothing an agent writes, and no config of the machine, makes daemon git run code or leak files.

Each test builds hostile content, then runs every operation the daemon
offers (status, diff, per-file diff, commit, commits, patch, delivery,
snapshot). The ``marker`` fixture fails the test if any planted script ran.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from haflowd.workspaces.clone import MissionClone, commit_all, create_clone
from haflowd.workspaces.delivery import deliver
from haflowd.workspaces.projects import resolve_ref, validate_project_path
from haflowd.workspaces.review import commits, diff, patch, status
from haflowd.workspaces.snapshot import snapshot_worktree
from tests.workspaces.conftest import BRANCH, git, hostile_script, make_repo

TOKEN = "TOKEN-SECRET-CONTENT"
OUTSIDE = "OUTSIDE-SECRET-CONTENT"
PASSWD_LINE = "root:x:0:0"


def evil_config(script: Path) -> str:
    """Git config that would run ``script`` in every way git can run a program."""
    return (
        f'[core]\n\tfsmonitor = "{script}"\n\tpager = "{script}"\n\thooksPath = hooks\n\teditor = "{script}"\n'
        f'[diff]\n\texternal = "{script}"\n'
        f'[diff "x"]\n\ttextconv = "{script}"\n\tcommand = "{script}"\n'
        f'[filter "x"]\n\tclean = "{script}"\n\tsmudge = "{script}"\n\tprocess = "{script}"\n\trequired = true\n'
        f'[alias]\n\tst = "!{script}"\n'
    )


def plant_hooks(git_dir: Path, script: Path) -> None:
    hooks = git_dir / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    for name in (
        "pre-commit",
        "post-commit",
        "commit-msg",
        "post-checkout",
        "reference-transaction",
        "post-index-change",
        "fsmonitor-watchman",
        "pre-auto-gc",
        "post-rewrite",
    ):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\nexec {script}\n")
        hook.chmod(0o755)


def build_hostile_tree(clone: MissionClone, tmp_path: Path, marker: Path) -> None:
    """What a malicious agent could leave in /workspace."""
    w = clone.work_tree
    script = hostile_script(w, marker, "evil.sh")
    (w / ".gitattributes").write_text("* filter=x diff=x merge=x\n")
    (w / "evil.gitconfig").write_text(evil_config(script))
    (w / ".gitmodules").write_text(f'[submodule "vendor/lib"]\n\tpath = vendor/lib\n\turl = ext::{script}\n')
    # A .git in the tree (the container's mount point, or the agent's own).
    top = w / ".git"
    top.mkdir()
    (top / "config").write_text(evil_config(script))
    (top / "HEAD").write_text("ref: refs/heads/main\n")
    plant_hooks(top, script)
    # A nested repository with hostile config and hooks.
    nested = make_repo(w / "vendor" / "lib", {"lib.py": "x = 1\n"})
    with (nested / ".git" / "config").open("a") as handle:
        handle.write(evil_config(script))
    plant_hooks(nested / ".git", script)
    # Symlinks out of the tree.
    token = tmp_path / "token"
    token.write_text(TOKEN)
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    (outside / "secret.txt").write_text(OUTSIDE)
    os.symlink("/etc/passwd", w / "pw")
    os.symlink(token, w / "tok")
    os.symlink(outside, w / "outdir")
    (w / "README.md").write_text("edited by the agent\n")


def assert_no_leak(text: str) -> None:
    assert TOKEN not in text
    assert OUTSIDE not in text
    assert PASSWD_LINE not in text


async def exercise(clone: MissionClone, user_repo: Path, tmp_path: Path) -> dict[str, str]:
    """Run every daemon operation on the clone; return what each showed."""
    shown: dict[str, str] = {}
    shown["status"] = repr(await status(clone))
    shown["diff"] = (await diff(clone)).diff
    for path in ("tok", "pw", "outdir/secret.txt", "outdir", "vendor/lib/lib.py"):
        shown[f"diff:{path}"] = (await diff(clone, path=path)).diff
    result = await commit_all(
        clone, author_name="Agent", author_email="agent@haflow.local", message="hostile", run_id="r-0000abcd"
    )
    assert result is not None
    shown["commits"] = repr(await commits(clone))
    shown["patch"] = await patch(clone)
    shown["status-after"] = repr(await status(clone))
    shown["diff-after"] = (await diff(clone)).diff
    await deliver(clone, user_repo, BRANCH)
    copy = await snapshot_worktree(clone.work_tree, tmp_path / "snaps")
    for name in ("tok", "pw"):
        assert (copy / name).is_symlink() == (clone.work_tree / name).is_symlink()
    return shown


def tree_entries(git_dir: Path) -> dict[str, str]:
    out = git(f"--git-dir={git_dir}", "ls-tree", "-r", "-z", "HEAD")
    return {line.split("\t", 1)[1]: line.split()[0] for line in out.split("\0") if line}


class TestHostileWorkTree:
    """Agent-written files never make the daemon run code, follow a link out, or record a submodule."""

    async def test_every_operation_is_inert(
        self, clone: MissionClone, user_repo: Path, tmp_path: Path, marker: Path
    ) -> None:
        """Filters, hooks, fsmonitor, nested configs and links in the tree: no script runs, no secret shows."""
        build_hostile_tree(clone, tmp_path, marker)
        shown = await exercise(clone, user_repo, tmp_path)
        for text in shown.values():
            assert_no_leak(text)
        assert "+/etc/passwd\n" in shown["diff:pw"]
        assert f"+{tmp_path / 'token'}\n" in shown["diff:tok"]
        assert shown["diff:outdir/secret.txt"] == ""
        entries = tree_entries(clone.git_dir)
        assert entries["pw"] == entries["tok"] == entries["outdir"] == "120000"
        assert "outdir/secret.txt" not in entries
        assert "160000" not in entries.values()
        assert entries["vendor/lib/lib.py"] == "100644"
        assert not any(part == ".git" for path in entries for part in path.split("/"))
        assert git(f"--git-dir={clone.git_dir}", "cat-file", "blob", "HEAD:tok") == str(tmp_path / "token")

    async def test_content_is_committed_unfiltered(self, clone: MissionClone, tmp_path: Path, marker: Path) -> None:
        """With filter=x in .gitattributes, the committed blob is the file's exact bytes."""
        build_hostile_tree(clone, tmp_path, marker)
        await commit_all(clone, author_name="A", author_email="a@b", message="m", run_id="r-00000001")
        assert git(f"--git-dir={clone.git_dir}", "cat-file", "blob", "HEAD:README.md") == "edited by the agent\n"

    async def test_repository_config_drivers_are_not_used(
        self, clone: MissionClone, user_repo: Path, tmp_path: Path, marker: Path
    ) -> None:
        """Even drivers in the clone's own config (which no agent can write) are never run."""
        script = hostile_script(tmp_path, marker, "host-evil.sh")
        with (clone.git_dir / "config").open("a") as handle:
            handle.write(evil_config(script).replace("hooksPath = hooks", f"hooksPath = {clone.git_dir}/hooks"))
        plant_hooks(clone.git_dir, script)
        (clone.work_tree / ".gitattributes").write_text("* filter=x diff=x\n")
        (clone.work_tree / "README.md").write_text("changed\n")
        (clone.work_tree / "new.txt").write_text("new\n")
        shown = await exercise(clone, user_repo, tmp_path)
        assert "+changed\n" in shown["diff"]

    async def test_nested_fsmonitor_repo_committed_then_queried(
        self, clone: MissionClone, tmp_path: Path, marker: Path
    ) -> None:
        """A nested repository whose config names an fsmonitor script stays inert across commits and queries."""
        script = hostile_script(tmp_path, marker)
        nested = make_repo(clone.work_tree / "pkg", {"a.py": "a\n"})
        git("config", "core.fsmonitor", str(script), cwd=nested)
        await commit_all(clone, author_name="A", author_email="a@b", message="m", run_id="r-00000001")
        (nested / "a.py").write_text("b\n")
        assert "pkg/a.py" in repr(await status(clone))
        assert "+b\n" in (await diff(clone)).diff
        await commit_all(clone, author_name="A", author_email="a@b", message="m", run_id="r-00000002")
        assert "160000" not in tree_entries(clone.git_dir).values()


class TestHostileMachineConfig:
    """The daemon's own HOME, XDG and GIT_* environment cannot steer its git."""

    async def test_global_config_and_environment_are_ignored(
        self, tmp_path: Path, user_repo: Path, base: str, marker: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """~/.gitconfig, XDG config and attributes, GIT_CONFIG_* and pager variables: none is used."""
        script = hostile_script(tmp_path, marker)
        home = tmp_path / "evil-home"
        (home / ".config" / "git").mkdir(parents=True)
        hooks = home / "hooks"
        plant_hooks(home, script)
        config = evil_config(script).replace("hooksPath = hooks", f"hooksPath = {hooks}")
        config += f"[core]\n\texcludesFile = {home / 'ignore'}\n[user]\n\tname = Hostile\n\temail = evil@example.com\n"
        (home / ".gitconfig").write_text(config)
        (home / "ignore").write_text("*.txt\n")
        (home / ".config" / "git" / "config").write_text(config)
        (home / ".config" / "git" / "attributes").write_text("* filter=x diff=x\n")
        (home / ".config" / "git" / "ignore").write_text("*.txt\n")
        for name, value in {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
            "GIT_CONFIG_SYSTEM": str(home / ".gitconfig"),
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": "core.fsmonitor",
            "GIT_CONFIG_VALUE_0": str(script),
            "GIT_CONFIG_PARAMETERS": f"'core.pager'='{script}'",
            "GIT_EXTERNAL_DIFF": str(script),
            "GIT_PAGER": str(script),
            "PAGER": str(script),
            "GIT_EDITOR": str(script),
            "GIT_SSH_COMMAND": str(script),
            "GIT_ASKPASS": str(script),
            "GIT_DIR": str(tmp_path / "nowhere"),
            "GIT_INDEX_FILE": str(tmp_path / "nowhere-index"),
        }.items():
            monkeypatch.setenv(name, value)

        resolved, _ = await validate_project_path(user_repo, tmp_path / "haflow-home")
        sha = await resolve_ref(resolved, "HEAD")
        assert sha == base
        mission = tmp_path / "missions" / "m-00000001"
        clone = await create_clone(resolved, sha, mission / "repo.git", mission / "workspace", BRANCH)
        (clone.work_tree / "notes.txt").write_text("kept despite the global excludes file\n")
        (clone.work_tree / "README.md").write_text("changed\n")
        shown = await exercise(clone, user_repo, tmp_path)
        assert "notes.txt" in shown["status"]
        assert "Hostile" not in shown["commits"] and "Agent <agent@haflow.local>" in shown["commits"]
        assert "notes.txt" in tree_entries(clone.git_dir)
        assert not (tmp_path / "nowhere").exists() and not (tmp_path / "nowhere-index").exists()
