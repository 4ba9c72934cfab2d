"""The forwarder sidecar: the only network namespace a networked agent gets.

The Docker provider calls these, in order, for a step whose agent lists egress:

1. :func:`ensure_image` once (builds ``haflow-egress:<version>`` when missing),
2. :class:`~.proxy.EgressProxy` ``.start()`` on the run's socket,
3. :func:`start_sidecar`, which returns once the relay listens,
4. ``docker run`` of the agent with :func:`agent_arguments` (and no other
   ``--network``, ``--hostname``, ``--dns``, ``--publish`` or ``--add-host``:
   they conflict with ``--network container:``),
5. :func:`remove_sidecar`, then the proxy's ``close()``.

The sidecar runs ``--network none``; the agent joins it with
``--network container:<sidecar>``, so the pair has only ``lo``. The image is
``FROM scratch`` with one static program, :file:`relay.c`, compiled with the
host's C compiler when the image is built (busybox ``nc`` cannot connect to a
Unix socket, and neither tinyproxy nor squid listens on one). The relay passes
``127.0.0.1:3128`` through to the daemon's proxy and tunnels each listed local
port, so ``127.0.0.1:<port>`` inside reaches the same port on the daemon's host.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Mapping
from importlib import resources
from pathlib import Path

from ..allowlist import PROXY_PORT, Allowlist
from ..proc import run_cli
from .errors import EgressUnavailable

logger = logging.getLogger(__name__)

#: Repository of the sidecar image.
EGRESS_REPOSITORY = "haflow-egress"
#: The relay inside the image.
RELAY_PATH = "/haflow-egress-relay"
#: Where the run's socket folder is mounted in the sidecar.
SOCKET_MOUNT = "/egress"
#: The proxy URL agents are given; the relay listens there in the shared namespace.
PROXY_URL = f"http://127.0.0.1:{PROXY_PORT}"
#: Label telling a sidecar from an agent container of the same run.
LABEL_ROLE = "haflow.role"
ROLE_EGRESS = "egress"
#: Label carrying the digest of the relay source an image was built from.
LABEL_SOURCE = "haflow.egress.source"
#: The run label the provider's other containers carry too.
LABEL_RUN = "haflow.run_id"
#: The user the sidecar runs as when the daemon is root ("nobody").
UNPRIVILEGED_USER = "65534:65534"

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\Z")
_SAFE_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:/@+-]*\Z")
_NO_SUCH = ("no such container", "no such object")

_DOCKERFILE = f"""\
FROM scratch
COPY haflow-egress-relay {RELAY_PATH}
USER {UNPRIVILEGED_USER}
ENTRYPOINT ["{RELAY_PATH}"]
"""


def default_image() -> str:
    """``haflow-egress:<version>``: each release builds the relay it ships."""
    from .. import __version__

    return f"{EGRESS_REPOSITORY}:{__version__}"


def relay_source() -> bytes:
    """The relay's C source, shipped as package data."""
    return resources.files(__package__).joinpath("relay.c").read_bytes()


def source_digest() -> str:
    """A digest of the relay source, so an image built from older source is rebuilt."""
    return hashlib.sha256(relay_source()).hexdigest()[:16]


def sidecar_user() -> str:
    """The ``uid:gid`` the sidecar runs as: the daemon's own (it owns the socket), or nobody for root."""
    if os.getuid() == 0:
        return UNPRIVILEGED_USER
    return f"{os.getuid()}:{os.getgid()}"


def sidecar_name(run_id: str) -> str:
    """The container name of a run's sidecar."""
    return f"haflow-egress-{_checked(run_id, _RUN_ID, 'run id')}"


def agent_environment(allowlist: Allowlist) -> dict[str, str]:
    """Proxy variables for the agent, in both spellings clients read.

    Everything goes through the proxy, local ports too: the agent has only
    loopback. For a listed local port the relay itself asks the proxy, so
    ``localhost`` and ``127.0.0.1`` go in ``NO_PROXY``: the agent then connects
    to ``127.0.0.1:<port>`` directly, which *is* the relay's tunnel (a client
    would otherwise send plain HTTP to the proxy, which refuses it).
    """
    env = {name: PROXY_URL for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY")}
    if allowlist.local_ports:
        env["NO_PROXY"] = "localhost,127.0.0.1"
    env.update({name.lower(): value for name, value in env.items()})
    return env


def agent_arguments(sidecar: str, allowlist: Allowlist) -> list[str]:
    """The ``docker run`` arguments that put the agent behind ``sidecar``.

    Replaces the provider's ``--network none``; the agent keeps every other
    restriction it has.
    """
    args = ["--network", f"container:{_checked(sidecar, _SAFE_REF, 'sidecar')}"]
    for name, value in agent_environment(allowlist).items():
        args += ["--env", f"{name}={value}"]
    return args


async def _cli(docker: str, *args: str, limit: float) -> tuple[int, str, str]:
    try:
        done = await run_cli([docker, *args], limit=limit)
    except (FileNotFoundError, PermissionError) as e:
        raise EgressUnavailable(f"The Docker CLI {docker!r} cannot be run ({e.strerror}).") from None
    except TimeoutError:
        raise EgressUnavailable(f"docker {args[0]} did not finish within {limit:g} seconds.") from None
    return done.returncode, done.stdout.decode(errors="replace"), done.error


async def build_image(docker: str, tag: str, *, cc: str = "cc") -> str:
    """Compile the relay statically with ``cc`` and build the sidecar image ``tag``.

    Needs a C compiler and static libc on the daemon's host (Debian: ``gcc``
    and ``libc6-dev``); nothing is downloaded. Raises :class:`EgressUnavailable`.
    """
    compiler = shutil.which(cc)
    if compiler is None:
        raise EgressUnavailable(
            f"Cannot build the egress image {tag}: no C compiler {cc!r} (Debian: apt-get install gcc libc6-dev)."
        )
    with tempfile.TemporaryDirectory(prefix="haflow-egress-") as context:
        root = Path(context)
        (root / "relay.c").write_bytes(relay_source())
        binary = root / "haflow-egress-relay"
        argv = [compiler, "-static", "-O2", "-s", "-o", str(binary), str(root / "relay.c")]
        try:
            compiled = await run_cli(argv, limit=120.0)
        except (OSError, TimeoutError) as e:
            raise EgressUnavailable(f"Cannot compile the egress relay: {e}") from None
        if compiled.returncode != 0:
            raise EgressUnavailable(
                f"Cannot compile the egress relay statically ({compiled.error}); "
                "a static libc is needed (Debian: libc6-dev)."
            )
        (root / "Dockerfile").write_text(_DOCKERFILE)
        labels = [
            "--label",
            f"{LABEL_SOURCE}={source_digest()}",
            "--label",
            "org.opencontainers.image.title=haflow-egress",
        ]
        code, _, error = await _cli(docker, "build", "--quiet", "--tag", tag, *labels, context, limit=300.0)
    if code != 0:
        raise EgressUnavailable(f"The egress image {tag} could not be built ({error}).")
    logger.info("egress.image_built", extra={"image": tag})
    return tag


async def ensure_image(docker: str, image: str | None = None, *, cc: str = "cc") -> str:
    """Return the sidecar image, building it if missing or built from other relay source."""
    image = _checked(image or default_image(), _SAFE_REF, "image")
    fmt = f'{{{{index .Config.Labels "{LABEL_SOURCE}"}}}}'
    code, out, _ = await _cli(docker, "image", "inspect", "--format", fmt, "--", image, limit=30.0)
    if code == 0 and out.strip() == source_digest():
        return image
    logger.info("egress.image_building", extra={"image": image})
    return await build_image(docker, image, cc=cc)


async def start_sidecar(
    docker: str,
    *,
    run_id: str,
    socket_path: Path,
    allowlist: Allowlist,
    image: str | None = None,
    labels: Mapping[str, str] | None = None,
    user: str | None = None,
    ready_timeout: float = 15.0,
) -> str:
    """Start the run's sidecar and return its container id once the relay listens.

    ``socket_path`` is the proxy's socket, already listening; its folder is
    mounted read-only. When the daemon is root the folder and socket are
    handed to the sidecar's user (the agent never touches them: it reaches
    the relay over the shared loopback). Raises :class:`EgressUnavailable`,
    after removing what it started, if the sidecar does not come up.
    """
    socket_path = Path(socket_path)
    if not socket_path.is_socket():
        raise EgressUnavailable(f"The egress proxy is not listening on {socket_path}.")
    if not stat.S_ISDIR(os.lstat(socket_path.parent).st_mode):
        raise EgressUnavailable(f"The egress socket's folder is not a folder (a symlink?): {socket_path.parent}")
    user = user or sidecar_user()
    hand_over_socket(socket_path, user)
    name = sidecar_name(run_id)
    image = _checked(image or default_image(), _SAFE_REF, "image")
    # The folder as checked, never re-resolved: a symlink in its place was refused above.
    if not socket_path.is_absolute():
        raise EgressUnavailable(f"The egress socket path must be absolute: {socket_path}")
    mount = f"type=bind,src={socket_path.parent},dst={SOCKET_MOUNT},readonly"
    if "," in mount.split("src=", 1)[1].split(",dst=", 1)[0] or '"' in mount:
        raise EgressUnavailable(f"The egress socket folder must not contain a comma or quote: {socket_path.parent}")
    args = [
        "run",
        "--detach",
        "--pull",
        "never",
        "--name",
        name,
        "--network",
        "none",
        "--cap-drop",
        "ALL",
        "--security-opt",
        "no-new-privileges",
        "--read-only",
        "--user",
        user,
        "--pids-limit",
        "128",
        "--memory",
        "64m",
        "--memory-swap",
        "64m",
        "--cpus",
        "1",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "--mount",
        mount,
        "--label",
        f"{LABEL_RUN}={run_id}",
        "--label",
        f"{LABEL_ROLE}={ROLE_EGRESS}",
    ]
    for key, value in (labels or {}).items():
        args += ["--label", f"{key}={value}"]
    ports = [str(PROXY_PORT), *(str(p) for p in sorted(allowlist.local_ports))]
    args += ["--", image, f"{SOCKET_MOUNT}/{socket_path.name}", *ports]
    code, out, error = await _cli(docker, *args, limit=60.0)
    if code != 0:
        if "already in use" not in error:  # never another run's (or a re-attached run's) sidecar
            await remove_sidecar(docker, name)
        raise EgressUnavailable(f"The egress sidecar for run {run_id} could not start ({error}).")
    container = out.strip()
    try:
        await _wait_ready(docker, container, ready_timeout)
    except BaseException:
        await remove_sidecar(docker, container)
        raise
    logger.info("egress.sidecar_started", extra={"run_id": run_id, "container": container[:12]})
    return container


def hand_over_socket(socket_path: Path, user: str | None = None) -> None:
    """A root daemon gives the socket and its folder to the sidecar's user, so the relay may connect.

    Needed again whenever the proxy listens anew on the path (a restarted
    daemon resuming a run): a new socket is the daemon's, mode 0600.

    The folder is opened without following a symlink and changed through
    its descriptor, the socket only if it is one: a folder or socket swapped
    for a symlink is refused, never followed. Raises :class:`EgressUnavailable`.
    """
    user = user or sidecar_user()
    if os.getuid() != 0 or not re.fullmatch(r"\d+:\d+", user):
        return
    uid, gid = (int(x) for x in user.split(":"))
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        folder = os.open(socket_path.parent, flags)
    except OSError as e:
        raise EgressUnavailable(
            f"The egress socket's folder {socket_path.parent} is not a folder ({e.strerror})."
        ) from None
    try:
        if not stat.S_ISSOCK(os.stat(socket_path.name, dir_fd=folder, follow_symlinks=False).st_mode):
            raise EgressUnavailable(f"Not a socket, refusing to hand it over: {socket_path}")
        os.fchown(folder, uid, gid)
        os.chown(socket_path.name, uid, gid, dir_fd=folder, follow_symlinks=False)
    except OSError as e:
        raise EgressUnavailable(f"The egress socket {socket_path} cannot be handed over ({e.strerror}).") from None
    finally:
        os.close(folder)


async def _wait_ready(docker: str, container: str, limit: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        code, out, error = await _cli(docker, "logs", container, limit=30.0)
        if code == 0 and "ready" in out.split():
            return
        _, state, _ = await _cli(docker, "inspect", "--format", "{{.State.Status}}", "--", container, limit=30.0)
        if state.strip() not in ("created", "running"):
            _, logs_out, logs_err = await _cli(docker, "logs", container, limit=30.0)
            said = " ".join((logs_out + logs_err).split())[:300] or error
            raise EgressUnavailable(f"The egress sidecar stopped before it was ready: {said}")
        if loop.time() >= deadline:
            raise EgressUnavailable(f"The egress sidecar was not ready within {limit:g} seconds.")
        await asyncio.sleep(0.05)


async def remove_sidecar(docker: str, sidecar: str) -> None:
    """Remove a sidecar (id or name) by force; a missing one is fine. Idempotent."""
    code, _, error = await _cli(docker, "rm", "--force", "--", _checked(sidecar, _SAFE_REF, "sidecar"), limit=60.0)
    if code != 0 and not any(s in error.lower() for s in _NO_SUCH):
        raise EgressUnavailable(f"The egress sidecar {sidecar} could not be removed ({error}).")


def _checked(value: str, pattern: re.Pattern[str], what: str) -> str:
    if not pattern.match(value):
        raise EgressUnavailable(f"Invalid {what}: {value!r}")
    return value
