"""The sandbox provider that runs agent steps with the Docker CLI.

Every call is ``docker <args>`` through :func:`asyncio.create_subprocess_exec`
with an argument list: no shell ever sees a value. Every child process is
reaped, and killed first if the caller is cancelled, so nothing leaks.

Containers are started detached and *not* with ``--rm``: after a daemon
restart the supervisor still needs their output and exit code. The supervisor
removes them once it has recorded the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import errno
import io
import logging
import math
import os
import re
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import attrs

from ...proc import Completed, reap, run_cli
from ..lines import split_lines
from ..protocol import (
    LABEL_INSTANCE,
    LABEL_MISSION,
    LABEL_RUN,
    LABEL_STEP,
    MAX_LINE_BYTES,
    Mount,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxUnavailable,
)
from .egress_runs import LABEL_EGRESS, LABEL_ROLE, ROLE_EGRESS, EgressRuns
from .exits import INSPECT_FORMAT, ExitWatch

logger = logging.getLogger(__name__)

#: The user agents run as when the daemon itself runs as root ("nobody").
UNPRIVILEGED_USER = "65534:65534"

_READ_SIZE = 64 * 1024
# Container ids, names and image references we hand to the CLI: never
# anything that could be read as a flag.
_SAFE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*\Z")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
#: Secret names that would change the Docker CLI process itself if they were
#: put in its environment (loader, shell, locale, Docker, interpreter hooks).
_HOST_ENV = re.compile(
    r"(DOCKER_.*|LD_.*|DYLD_.*|PATH|HOME|SHELL|ENV|BASH_ENV|BASH_FUNC_.*|IFS|PS4|TMPDIR|LANG|LC_.*|"
    r"PYTHON.*|PERL5?.*|RUBY.*|NODE_.*|GCONV_PATH|GIO_.*|GLIBC_.*|MALLOC_.*|HOSTALIASES|RES_OPTIONS|"
    r"LOCALDOMAIN|NLSPATH|SSL_.*|OPENSSL_.*|XDG_.*|http_proxy|https_proxy|HTTPS?_PROXY|ALL_PROXY|NO_PROXY)\Z",
    re.IGNORECASE,
)
_DEFAULT_DOCKER_CONFIG = os.path.expanduser("~/.docker")
_NO_SUCH = ("no such container", "no such object")


def default_user() -> str:
    """The ``uid:gid`` agents run as: the daemon's own, or nobody for root."""
    if not hasattr(os, "getuid") or os.getuid() == 0:
        return UNPRIVILEGED_USER
    return f"{os.getuid()}:{os.getgid()}"


def _mount_arg(mount: Mount) -> str:
    fields = ["type=bind", f"src={Path(mount.source).resolve()}", f"dst={mount.target}"]
    if mount.read_only:
        fields.append("readonly")
    # --mount is CSV: a path holding a comma or quote must be quoted.
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    """Hand a mount source to the agent's user, so a root daemon's files are writable.

    Iterative and relative to folder descriptors, never following links: an
    agent may leave thousands of nested folders, deeper than the recursion
    limit (``os.walk``) and than the longest path the kernel takes.
    """
    if not root.exists():
        return  # docker run will say so
    os.chown(root, uid, gid, follow_symlinks=False)
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(root, flags)
    # One entry per level above and at the current folder: its identity and
    # the sub-folders still to visit. Only the current folder is kept open.
    levels: list[tuple[tuple[int, int], list[str]]] = []
    try:
        while True:
            st = os.fstat(fd)
            subfolders: list[str] = []
            with os.scandir(fd) as entries:
                for entry in entries:
                    os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)
                    if entry.is_dir(follow_symlinks=False):
                        subfolders.append(entry.name)
            levels.append(((st.st_dev, st.st_ino), subfolders))
            while levels and not levels[-1][1]:
                levels.pop()
                if levels:
                    up = os.open("..", flags, dir_fd=fd)
                    os.close(fd)
                    fd = up
                    st = os.fstat(fd)
                    if (st.st_dev, st.st_ino) != levels[-1][0]:
                        raise OSError(errno.ESTALE, "the folder tree changed while it was being handed over")
            if not levels:
                return
            down = os.open(levels[-1][1].pop(), flags, dir_fd=fd)
            os.close(fd)
            fd = down
    finally:
        os.close(fd)


def _numeric_user(user: str) -> tuple[int, int] | None:
    uid, _, gid = user.partition(":")
    if not (uid.isdigit() and (gid or uid).isdigit()):
        return None
    return int(uid), int(gid or uid)


def _checked_ref(value: str, what: str) -> str:
    if not _SAFE_REF.match(value):
        raise SandboxError(f"Invalid {what}: {value!r}")
    return value


@attrs.define
class DockerProvider:
    """Runs sandboxes as hardened, labelled Docker containers.

    ``user`` overrides the ``uid:gid`` agents run as (default: the daemon's
    own, or 65534:65534 when the daemon is root, in which case writable mount
    sources are chowned to it). ``default_image`` is the agent image that
    :meth:`check` makes sure exists, building it when ``build_if_missing``.
    ``instance`` (see :func:`instance_id`) labels the containers this
    provider starts and limits :meth:`list` to them.
    """

    docker: str = "docker"
    default_image: str | None = None
    instance: str | None = None
    #: HAFLOW_HOME: egress sockets live in its private ``run`` folder (None: a private temporary folder).
    home: Path | None = None
    build_if_missing: bool = True
    user: str = attrs.field(factory=default_user)
    max_line_bytes: int = MAX_LINE_BYTES
    command_timeout: float = 30.0
    log_max_size: str = "64m"
    log_max_files: int = 4
    #: Short docker commands (run, inspect, stop, rm, ps) running at once; a
    #: burst of step starts queues instead of forking a CLI (~25 MiB) each.
    max_cli: int = 16
    _cli_slots: asyncio.Semaphore = attrs.field(init=False)
    _image_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)
    _egress: EgressRuns = attrs.field(init=False)
    _exits: ExitWatch = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._cli_slots = asyncio.Semaphore(self.max_cli)
        self._egress = EgressRuns(docker=self.docker, instance=self.instance, home=self.home, user=self.user)
        label = None if self.instance is None else f"{LABEL_INSTANCE}={self.instance}"
        self._exits = ExitWatch(binary=self._binary, inspect=self._inspect_state, label=label, env=self._cli_env)

    @property
    def exits(self) -> ExitWatch:
        """The one ``docker events`` stream all :meth:`wait` calls share."""
        return self._exits

    async def aclose(self) -> None:
        """Stop the shared ``docker events`` stream (containers and their egress proxies keep going).

        Idempotent; a later :meth:`wait` starts the stream anew.
        """
        await self._exits.aclose()

    async def _inspect_state(self, sandbox_id: str) -> Completed:
        return await self._cli("inspect", "--format", INSPECT_FORMAT, "--", sandbox_id)

    @property
    def egress(self) -> EgressRuns:
        """The egress proxies of this provider's runs (tests point its resolver at a fake internet)."""
        return self._egress

    # -- plumbing ---------------------------------------------------------

    def _cli_env(self) -> Mapping[str, str] | None:
        """The environment of long-lived CLI processes (``None``: the daemon's own)."""
        return None

    def _binary(self) -> str:
        found = shutil.which(self.docker)
        if found is None:
            raise SandboxUnavailable(
                f"The Docker CLI {self.docker!r} was not found. Install Docker "
                "(Debian: apt-get install docker.io) or point HAFLOW_DOCKER at it."
            )
        return found

    async def _cli(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        limit: float | None = -1.0,
    ) -> Completed:
        """Run ``docker *args``; ``limit`` seconds (default ``command_timeout``, None: no limit)."""
        if limit is not None and limit < 0:
            limit = self.command_timeout
        try:
            binary = self._binary()
            async with self._cli_slots:
                return await run_cli((binary, *args), env=env, limit=limit)
        except (FileNotFoundError, PermissionError) as e:
            raise SandboxUnavailable(
                f"The Docker CLI {self.docker!r} cannot be run ({e.strerror}). "
                "Install Docker or point HAFLOW_DOCKER at it."
            ) from None
        except TimeoutError:
            raise SandboxUnavailable(
                f"'docker {args[0]}' did not answer within {limit} s; is the Docker engine running and responsive?"
            ) from None

    # -- SandboxProvider ----------------------------------------------------

    async def check(self) -> None:
        """Raise :class:`SandboxUnavailable` with advice if runs cannot start.

        Checks the CLI, the engine, and (when ``default_image`` is set) that the
        default image exists, building it if it is missing.
        """
        result = await self._cli("version", "--format", "{{.Server.Version}}", limit=15.0)
        if result.returncode != 0:
            raise SandboxUnavailable(
                f"The Docker engine does not answer: {result.error}. Start it "
                "(systemctl start docker, or dockerd) and make sure this user "
                "may use it (the docker group)."
            )
        if self.default_image is not None:
            await self.ensure_image(self.default_image)

    async def ensure_image(self, image: str) -> None:
        """Make sure ``image`` exists locally (see :func:`haflowd.sandbox.docker.standin_image.ensure_image`)."""
        from .standin_image import ensure_image

        async with self._image_lock:
            await ensure_image(self.docker, image, build_if_missing=self.build_if_missing)

    def run_args(self, spec: SandboxSpec) -> list[str]:
        """The ``docker run`` arguments for ``spec``; env values are not among them."""
        _checked_ref(spec.run_id, "run id")
        _checked_ref(spec.image, "image")
        limits = spec.limits
        args = [
            "run",
            "--detach",
            "--pull",
            "never",
            "--name",
            f"haflow-{spec.run_id}",
            "--init",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--user",
            self.user,
            "--pids-limit",
            str(int(limits.pids)),
            "--memory",
            str(limits.memory),
            "--memory-swap",
            str(limits.memory),
            "--cpus",
            f"{float(limits.cpus):g}",
            "--read-only",
            "--tmpfs",
            # Owned by the agent's user: this engine ignores a tmpfs mode, so
            # mode=1777 alone leaves /tmp root's and unwritable.
            f"/tmp:rw,nosuid,nodev,size=256m,mode=1777{self._tmpfs_owner()}",  # noqa: S108 (inside the container)
            "--log-driver",
            "json-file",
            "--log-opt",
            f"max-size={self.log_max_size}",
            "--log-opt",
            f"max-file={self.log_max_files}",
            "--workdir",
            spec.workdir,
        ]
        if not spec.network and not (spec.egress or spec.local_ports):
            args += ["--network", "none"]
        for mount in spec.mounts:
            args += ["--mount", _mount_arg(mount)]
        for key, value in spec.labels.items():
            args += ["--label", f"{key}={value}"]
        if self.instance is not None:
            args += ["--label", f"{LABEL_INSTANCE}={self.instance}"]
        for name in spec.env:
            if not _ENV_NAME.match(name):
                raise SandboxError(f"Agent environment variable {name!r} is not a valid name")
        for name in spec.secrets:
            if not _ENV_NAME.match(name) or _HOST_ENV.match(name):
                raise SandboxError(f"Secret {name!r} may not be passed (it names a loader, shell or Docker variable)")
            # Name only: the CLI takes the value from its own environment.
            args += ["--env", name]
        if "HOME" not in spec.env:
            # A read-only root leaves no home: CLIs keep their state in /tmp.
            args += ["--env", "HOME=/tmp"]
        args += ["--", spec.image, *spec.command]
        return args

    def _tmpfs_owner(self) -> str:
        owner = _numeric_user(self.user)
        return f",uid={owner[0]},gid={owner[1]}" if owner is not None else ""

    async def start(self, spec: SandboxSpec) -> str:
        """Start the container detached and return its full id."""
        args = self.run_args(spec)
        env = None
        if spec.secrets:
            # Only the secrets' names are added, and none of them can steer the CLI.
            env = {**os.environ, **spec.secrets}
            env["DOCKER_CONFIG"] = os.environ.get("DOCKER_CONFIG") or _DEFAULT_DOCKER_CONFIG
        extra: list[str] = []
        if spec.egress or spec.local_ports:
            extra += await self._egress.open(spec)
        env_file: Path | None = None
        try:
            # From here on the sidecar and proxy run: every way out of start()
            # that leaves no agent container must remove them (and the env file).
            await self._hand_over_mounts(spec)
            env_file = _env_file(spec.env) if spec.env else None
        except BaseException:
            await asyncio.shield(self._egress.close(spec.run_id))
            raise
        if env_file is not None:
            extra += ["--env-file", str(env_file)]
        if extra:
            cut = args.index("--")
            args = [*args[:cut], *extra, *args[cut:]]
        try:
            result = await self._cli(*args, env=env, limit=120.0)
            if result.returncode != 0 and _missing_image(result):
                await self.ensure_image(spec.image)
                result = await self._cli(*args, env=env, limit=120.0)
        except BaseException:
            # The CLI was killed, maybe after creating the container.
            await asyncio.shield(self._remove_run(spec.run_id))
            await asyncio.shield(self._egress.close(spec.run_id))
            raise
        finally:
            if env_file is not None:
                _remove_env_file(env_file)
        if result.returncode != 0:
            if "already in use" not in result.error:
                # Created but not started (bad command, bad mount): clean up.
                await self._remove_run(spec.run_id)
                await self._egress.close(spec.run_id)
            raise SandboxError(f"Could not start the agent container: {result.error}")
        sandbox_id = result.stdout.decode().strip()
        logger.info(
            "sandbox.started",
            extra={"mission_id": spec.mission_id, "run_id": spec.run_id, "sandbox_id": sandbox_id},
        )
        return sandbox_id

    async def _hand_over_mounts(self, spec: SandboxSpec) -> None:
        """A root daemon chowns writable mount sources to the agent's user."""
        owner = _numeric_user(self.user)
        if owner is None or owner[0] == 0 or not hasattr(os, "getuid") or os.getuid() != 0:
            return
        for mount in spec.mounts:
            if not mount.read_only:
                try:
                    await asyncio.to_thread(_chown_tree, Path(mount.source), *owner)
                except OSError as e:
                    raise SandboxError(
                        f"Cannot give the agent user {self.user} the mounted folder: {e.strerror}"
                    ) from None

    async def _remove_run(self, run_id: str) -> None:
        """Best effort: remove whatever container a failed start left behind."""
        with contextlib.suppress(SandboxError):
            await self._cli("rm", "--force", f"haflow-{run_id}", limit=30.0)

    async def output(self, sandbox_id: str) -> AsyncIterator[bytes]:
        """Yield the container's merged output line by line from its beginning.

        A running container is followed (``docker logs --follow``). On Docker
        20.10 that loses output written to a json-file log that rotated while
        the follower lagged behind the container's exit, and can repeat a
        stretch around a rotation; the supervisor reconciles after the exit.
        Once :meth:`wait` learnt the exit, the stored output is read without
        ``--follow``: all rotated files, in order, each byte once.
        """
        _checked_ref(sandbox_id, "sandbox id")
        binary = self._binary()
        follow = ["--follow"] if self._exits.exit_code(sandbox_id) is None else []
        try:
            # One pipe for both streams: the CLI writes them in the order the
            # engine sends them, so the merge keeps the container's order.
            proc = await asyncio.create_subprocess_exec(
                binary,
                "logs",
                *follow,
                sandbox_id,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=self._cli_env(),
            )
        except OSError as e:
            raise SandboxUnavailable(f"The Docker CLI cannot be run ({e.strerror})") from None
        assert proc.stdout is not None
        try:
            buf = bytearray()
            while chunk := await proc.stdout.read(_READ_SIZE):
                buf += chunk
                for item in split_lines(buf, self.max_line_bytes, final=False):
                    yield item
            for item in split_lines(buf, self.max_line_bytes, final=True):
                yield item
            await proc.wait()
        finally:
            await reap(proc)

    async def wait(self, sandbox_id: str) -> int:
        """Wait for the container to exit and return its code.

        All waits share one ``docker events`` process (see
        :class:`~haflowd.sandbox.docker.exits.ExitWatch`), not one
        ``docker wait`` each.
        """
        _checked_ref(sandbox_id, "sandbox id")
        return await self._exits.wait(sandbox_id)

    async def stop(self, sandbox_id: str, *, grace_seconds: float = 3.0) -> None:
        """SIGTERM, then SIGKILL after ``grace_seconds``; quiet if already gone."""
        _checked_ref(sandbox_id, "sandbox id")
        grace = max(0, math.ceil(grace_seconds))
        result = await self._cli("stop", "--time", str(grace), sandbox_id, limit=grace + 30.0)
        if result.returncode != 0 and not _gone(result):
            raise SandboxError(f"Could not stop the agent container: {result.error}")

    async def remove(self, sandbox_id: str) -> None:
        """Remove the container and its anonymous volumes (and its egress); quiet if already gone."""
        _checked_ref(sandbox_id, "sandbox id")
        run_id = await self._run_label(sandbox_id)
        result = await self._cli("rm", "--force", "--volumes", sandbox_id)
        if result.returncode != 0 and not _gone(result):
            raise SandboxError(f"Could not remove the agent container: {result.error}")
        if run_id is not None:
            await self._egress.close(run_id)

    async def _run_label(self, sandbox_id: str) -> str | None:
        result = await self._cli("inspect", "--format", f'{{{{index .Config.Labels "{LABEL_RUN}"}}}}', "--", sandbox_id)
        text = result.stdout.decode(errors="replace").strip()
        return text if result.returncode == 0 and text and text != "<no value>" else None

    async def list(self) -> list[SandboxInfo]:
        """Every container of this instance, running or exited, labelled with a run id."""
        fmt = "\t".join(
            [
                "{{.ID}}",
                f'{{{{.Label "{LABEL_MISSION}"}}}}',
                f'{{{{.Label "{LABEL_RUN}"}}}}',
                f'{{{{.Label "{LABEL_STEP}"}}}}',
                "{{.State}}",
                f'{{{{.Label "{LABEL_ROLE}"}}}}',
                f'{{{{.Label "{LABEL_EGRESS}"}}}}',
            ]
        )
        filters = ["--filter", f"label={LABEL_RUN}"]
        if self.instance is not None:
            filters += ["--filter", f"label={LABEL_INSTANCE}={self.instance}"]
        result = await self._cli("ps", "--all", "--no-trunc", *filters, "--format", fmt)
        if result.returncode != 0:
            raise SandboxError(f"Could not list agent containers: {result.error}")
        found = []
        sidecars: set[str] = set()
        for line in result.stdout.decode(errors="replace").splitlines():
            fields = line.split("\t")
            if len(fields) != 7:
                continue
            sandbox_id, mission_id, run_id, step_id, state, role, egress = fields
            if role == ROLE_EGRESS:
                sidecars.add(run_id)
                continue  # a run's forwarder, not the run
            if egress and state == "running":
                await self._egress.resume(run_id, egress)
            found.append(
                SandboxInfo(
                    sandbox_id=sandbox_id,
                    mission_id=mission_id,
                    run_id=run_id,
                    step_id=step_id,
                    running=state in ("running", "restarting", "paused"),
                )
            )
        # A sidecar without its agent (the daemon died between starting the
        # two, or the agent was removed while it was down) is nobody's: the
        # supervisor never sees it, so it is removed here. One this process is
        # still starting has a live proxy and is left alone.
        agents = {info.run_id for info in found}
        for run_id in sorted(sidecars - agents):
            if not self._egress.serving(run_id):
                logger.info("egress.orphan_removed", extra={"run_id": run_id})
                await self._egress.close(run_id)
        return found


def _env_file(env: Mapping[str, str]) -> Path:
    """The agent's plain settings in a private file for ``--env-file`` (never the CLI's own environment)."""
    for name, value in env.items():
        if "\n" in value or "\r" in value or "\0" in value:
            raise SandboxError(f"Agent environment variable {name!r} holds a line break")
    folder = Path(tempfile.mkdtemp(prefix="haflow-env-"))
    path = folder / "env"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.writelines(f"{name}={value}\n" for name, value in env.items())
    return path


def _remove_env_file(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()
        path.parent.rmdir()


def _gone(result: Completed) -> bool:
    text = result.stderr.decode(errors="replace").lower()
    return any(s in text for s in _NO_SUCH)


def _missing_image(result: Completed) -> bool:
    text = result.stderr.decode(errors="replace").lower()
    return "no such image" in text or "unable to find image" in text
