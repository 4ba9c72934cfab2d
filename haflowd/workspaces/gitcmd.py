"""The one way the daemon runs git on the host: hardened, bounded, no shell.

Every host git call in haflowd goes through :func:`run_git`. It

- builds the environment from scratch (no inherited ``GIT_*``, ``HOME``,
  ``SSH_*`` or pager variables), ignores system and global config
  (``GIT_CONFIG_NOSYSTEM=1``, ``GIT_CONFIG_GLOBAL=/dev/null``) and never
  prompts (``GIT_TERMINAL_PROMPT=0``, stdin is ``/dev/null``, new session so
  no controlling tty);
- overrides, on the command line (which beats repository config), every
  setting that makes git run a program: hooks, fsmonitor, external diff,
  pager, editor, credential helpers, automatic gc/maintenance, submodule
  recursion, signing; and switches protocols off except local files;
- reads at most ``max_output`` bytes of standard output, then kills the
  process group (``truncated`` says so), and kills it on timeout.

What it cannot override with a fixed list is a filter driver
(``filter.<any>.clean``) or diff driver defined in repository config: that
is why a mission's git directory lives outside anything an agent can write
and its config is written only by the daemon (see :mod:`.clone`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ..errors import HaflowError

#: Default bound on what is read from git's standard output.
MAX_OUTPUT = 64 * 1024 * 1024
#: At most this much of git's standard error is kept (for logs and errors).
MAX_STDERR = 16 * 1024
#: Default wall-clock bound of one git call, in seconds.
TIMEOUT = 120.0

_DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"

#: ``-c`` overrides passed to every git call. Command-line config wins over
#: repository config and is inherited by git's own child processes (except
#: the ``upload-pack`` of a local clone, see :func:`.clone.create_clone`).
#: ``diff.external=`` (empty) fails closed: a diff run without
#: ``--no-ext-diff`` stops with "cannot run", it never runs a program.
HARDENING: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    ("core.untrackedCache", "false"),
    ("core.attributesFile", "/dev/null"),
    ("core.excludesFile", "/dev/null"),
    ("core.symlinks", "true"),
    ("core.pager", "cat"),
    ("core.editor", "false"),
    ("sequence.editor", "false"),
    ("core.askPass", ""),
    ("core.sshCommand", "false"),
    ("core.gitProxy", ""),
    ("core.alternateRefsCommand", ""),
    ("core.quotePath", "false"),
    ("credential.helper", ""),
    ("diff.external", ""),
    ("diff.noprefix", "false"),
    ("diff.mnemonicPrefix", "false"),
    ("diff.relative", "false"),
    ("diff.ignoreSubmodules", "all"),
    ("status.submoduleSummary", "false"),
    ("submodule.recurse", "false"),
    ("fetch.recurseSubmodules", "false"),
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
    ("commit.gpgSign", "false"),
    ("tag.gpgSign", "false"),
    ("log.showSignature", "false"),
    ("color.ui", "false"),
    ("protocol.allow", "never"),
    ("protocol.file.allow", "always"),
    ("transfer.fsckObjects", "true"),
)


class GitError(HaflowError):
    """A git call failed, timed out or could not start.

    ``message`` names only the subcommand (users see it); ``detail`` keeps
    git's standard error for the log.
    """

    status = 500

    def __init__(self, message: str, *, detail: str = "", returncode: int | None = None) -> None:
        super().__init__(message)
        self.detail = detail
        self.returncode = returncode


@attrs.frozen
class Owner:
    """A uid/gid a git call runs as (the daemon drops to it when it is root)."""

    uid: int
    gid: int


@attrs.frozen
class GitResult:
    """What one git call produced."""

    returncode: int
    stdout: bytes
    stderr: str
    #: Standard output went past the bound and the process was killed.
    truncated: bool = False

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of every git call: built from nothing, never inherited."""
    env = {
        "PATH": os.environ.get("PATH") or _DEFAULT_PATH,
        "HOME": "/nonexistent",
        "XDG_CONFIG_HOME": "/nonexistent",
        "LC_ALL": "C",
        "LANG": "C",
        "TZ": "UTC",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_PROTOCOL_FROM_USER": "0",
        "GIT_ALLOW_PROTOCOL": "file",
        "GIT_NO_LAZY_FETCH": "1",
        "GIT_ADVICE": "0",
    }
    if extra:
        env.update(extra)
    return env


def git_argv(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    cwd: Path | None = None,
    safe_directories: Sequence[Path] = (),
    config: Sequence[tuple[str, str]] = (),
    literal_pathspecs: bool = True,
) -> list[str]:
    """The full argument list for ``git <args>`` with every hardening flag."""
    argv = ["git", "--no-pager", "--no-replace-objects"]
    if literal_pathspecs:
        argv.append("--literal-pathspecs")
    if cwd is not None:
        argv += ["-C", str(cwd)]
    if git_dir is not None:
        argv += ["--git-dir", str(git_dir)]
    if work_tree is not None:
        argv += ["--work-tree", str(work_tree)]
    for key, value in (*HARDENING, *config):
        argv += ["-c", f"{key}={value}"]
    for path in safe_directories:
        argv += ["-c", f"safe.directory={path}"]
    argv += list(args)
    return argv


async def _read_bounded(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read up to ``limit`` bytes; say whether there was more."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await stream.read(min(65536, limit - size + 1))
        if not chunk:
            return b"".join(chunks), False
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            data = b"".join(chunks)
            return data[:limit], True


async def _drain_stderr(stream: asyncio.StreamReader) -> bytes:
    """Keep the first :data:`MAX_STDERR` bytes and discard the rest, so git never blocks on a full pipe."""
    kept = bytearray()
    while chunk := await stream.read(65536):
        if len(kept) < MAX_STDERR:
            kept += chunk[: MAX_STDERR - len(kept)]
    return bytes(kept)


async def _drain(stream: asyncio.StreamReader | None) -> None:
    """Read a killed process's pipe to its end, so its transport closes (bounded: the writers are dead)."""
    if stream is None:
        return
    with contextlib.suppress(TimeoutError, OSError):
        async with asyncio.timeout(5):
            while await stream.read(65536):
                pass


async def _reap(proc: asyncio.subprocess.Process, *tasks: asyncio.Future[Any]) -> None:
    """Kill the process group, stop our readers, empty its pipes and wait: nothing is left running or open."""
    _kill(proc)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.gather(_drain(proc.stdout), _drain(proc.stderr))
    await proc.wait()


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


async def run_git(
    args: Sequence[str],
    *,
    git_dir: Path | None = None,
    work_tree: Path | None = None,
    cwd: Path | None = None,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    config: Sequence[tuple[str, str]] = (),
    safe_directories: Sequence[Path] = (),
    owner: Owner | None = None,
    literal_pathspecs: bool = True,
    max_output: int = MAX_OUTPUT,
    time_limit: float = TIMEOUT,
    check: bool = True,
) -> GitResult:
    """Run ``git <args>`` hardened; raise :class:`GitError` on failure when ``check``.

    ``env`` adds variables (``GIT_INDEX_FILE``, author identity) to the
    hardened environment. ``owner`` runs git as that user (only possible
    when the daemon is root). When standard output exceeds ``max_output``
    the process is killed and the result is ``truncated`` (never an error);
    after ``time_limit`` seconds it is killed and :class:`GitError` raised.
    """
    with contextlib.ExitStack() as stack:
        extra = dict(env or {})
        if safe_directories:
            extra["GIT_CONFIG_GLOBAL"] = str(stack.enter_context(_safe_directory_config(safe_directories)))
        argv = git_argv(
            args,
            git_dir=git_dir,
            work_tree=work_tree,
            cwd=cwd,
            safe_directories=safe_directories,
            config=config,
            literal_pathspecs=literal_pathspecs,
        )
        return await _run(argv, args[0] if args else "git", input, extra, owner, max_output, time_limit, check)


@contextlib.contextmanager
def _safe_directory_config(paths: Sequence[Path]) -> Iterator[Path]:
    """A throwaway global config trusting exactly ``paths``.

    Git does not pass ``-c`` settings to the ``upload-pack`` it runs in a
    local source repository, and ``safe.directory`` is read only from
    protected (system, global, command-line) config, so a repository of
    another user can only be allowed through the global file.
    """
    lines = ["[safe]"]
    for path in paths:
        text = str(path)
        if any(ch in text for ch in "\n\r\0"):
            raise GitError("git cannot trust a path with line breaks")
        quoted = text.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'\tdirectory = "{quoted}"')
    with tempfile.TemporaryDirectory(prefix="haflow-gitconfig-") as tmp:
        config = Path(tmp) / "config"
        config.write_text("\n".join(lines) + "\n")
        yield config


async def _run(
    argv: list[str],
    name: str,
    input: bytes | None,
    env: Mapping[str, str],
    owner: Owner | None,
    max_output: int,
    time_limit: float,
    check: bool,
) -> GitResult:
    kwargs: dict[str, object] = {}
    if owner is not None:
        kwargs.update(user=owner.uid, group=owner.gid, extra_groups=[])
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=git_env(env),
            start_new_session=True,
            close_fds=True,
            **kwargs,  # type: ignore[arg-type]
        )
    except OSError as exc:
        raise GitError(f"git {name} could not start", detail=str(exc)) from exc
    assert proc.stdout is not None and proc.stderr is not None

    async def feed() -> None:
        if input is None or proc.stdin is None:
            return
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(input)
            await proc.stdin.drain()
        proc.stdin.close()

    err_task = asyncio.ensure_future(_drain_stderr(proc.stderr))
    feed_task = asyncio.ensure_future(feed())
    try:
        async with asyncio.timeout(time_limit):
            out, truncated = await _read_bounded(proc.stdout, max_output)
            if truncated:
                _kill(proc)
                await _drain(proc.stdout)
            err = await err_task
            await feed_task
            await proc.wait()
    except TimeoutError:
        await _reap(proc, err_task, feed_task)
        raise GitError(f"git {name} timed out after {time_limit:g} s") from None
    except BaseException:
        await _reap(proc, err_task, feed_task)
        raise
    assert proc.returncode is not None
    result = GitResult(proc.returncode, out, err.decode("utf-8", "replace"), truncated)
    if check and result.returncode != 0 and not truncated:
        raise GitError(f"git {name} failed", detail=result.stderr.strip(), returncode=result.returncode)
    return result


def owner_for(path: Path) -> Owner | None:
    """The user git should run as on someone else's repository at ``path``.

    When the daemon is root and the repository belongs to another user, git
    runs as that user: the repository's own config then can do nothing its
    owner could not do anyway, and what git writes there (a delivered
    branch's objects and ref) belongs to its owner. Otherwise ``None``: run
    as the daemon (git then refuses a repository of another user, which is
    the safe answer).
    """
    if os.geteuid() != 0:
        return None
    st = path.stat()
    if st.st_uid == 0:
        return None
    return Owner(st.st_uid, st.st_gid)
