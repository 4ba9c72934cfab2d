"""The default agent image, built locally so no registry is ever needed.

The image is ``FROM scratch`` with the host's statically linked busybox
(Debian: ``busybox-static``) and haflow's stand-in agent at
``/usr/local/bin/haflow-agent``. Only on a host without a static busybox does
the build fall back to a small public base image, which needs a registry.
"""

from __future__ import annotations

import logging
import os
import shutil
import struct
import tempfile
from importlib import resources
from pathlib import Path

from ...proc import run_cli
from ..protocol import SandboxUnavailable

logger = logging.getLogger(__name__)

#: Repository name of images :func:`build_image` can make; only these are
#: built when missing, any other image is pulled.
AGENT_REPOSITORY = "haflow-agent"
#: Where the stand-in agent lives inside the image.
AGENT_PATH = "/usr/local/bin/haflow-agent"
#: Base image of the fallback build (needs a registry).
FALLBACK_BASE = "busybox:stable"

_BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox", "/usr/local/bin/busybox")

_SCRATCH_DOCKERFILE = f"""\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/busybox", "mkdir", "-p", "/tmp", "/mission/artifacts", "/usr/bin"]
RUN ["/bin/busybox", "ln", "-s", "/bin/env", "/usr/bin/env"]
COPY haflow-agent {AGENT_PATH}
ENV PATH=/usr/local/bin:/usr/bin:/bin
WORKDIR /mission
USER 65534:65534
CMD ["haflow-agent", "--help"]
"""

_FALLBACK_DOCKERFILE = f"""\
FROM {FALLBACK_BASE}
COPY haflow-agent {AGENT_PATH}
WORKDIR /mission
USER 65534:65534
CMD ["haflow-agent", "--help"]
"""


def default_image() -> str:
    """``haflow-agent:<version>``: each release builds the agent it ships."""
    from ... import __version__

    return f"{AGENT_REPOSITORY}:{__version__}"


def agent_script() -> bytes:
    """The stand-in agent shipped as package data."""
    return resources.files("haflowd.agents.standin").joinpath("haflow-agent").read_bytes()


def is_buildable(image: str) -> bool:
    """Whether ``image`` names the agent image :func:`build_image` makes."""
    name = image.rsplit("/", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    return name == AGENT_REPOSITORY and "/" not in image


def is_static_elf(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is an ELF executable without a program interpreter.

    A dynamically linked busybox would not run in an image ``FROM scratch``.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if len(head) < 64 or head[:4] != b"\x7fELF":
                return False
            is64 = head[4] == 2
            order = "<" if head[5] == 1 else ">"
            if is64:
                (phoff,) = struct.unpack_from(order + "Q", head, 32)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 54)
            else:
                (phoff,) = struct.unpack_from(order + "I", head, 28)
                phentsize, phnum = struct.unpack_from(order + "HH", head, 42)
            f.seek(phoff)
            table = f.read(phentsize * phnum)
    except OSError:
        return False
    for i in range(phnum):
        (p_type,) = struct.unpack_from(order + "I", table, i * phentsize)
        if p_type == 3:  # PT_INTERP
            return False
    return True


def find_static_busybox() -> Path | None:
    """A statically linked busybox on this host, if there is one."""
    found = shutil.which("busybox")
    for candidate in (*([found] if found else []), *_BUSYBOX_CANDIDATES):
        if os.access(candidate, os.X_OK) and is_static_elf(candidate):
            return Path(candidate)
    return None


async def build_image(docker: str, tag: str, *, busybox: Path | None = None) -> str:
    """Build the stand-in agent image as ``tag`` and return ``tag``.

    Uses ``busybox`` (default: :func:`find_static_busybox`) in an image
    ``FROM scratch``, which pulls nothing; without one, builds on
    :data:`FALLBACK_BASE`, which needs a registry. Raises
    :class:`SandboxUnavailable` with advice when the build fails.
    """
    busybox = busybox or find_static_busybox()
    with tempfile.TemporaryDirectory(prefix="haflow-image-") as context:
        root = Path(context)
        script = root / "haflow-agent"
        script.write_bytes(agent_script())
        script.chmod(0o755)
        if busybox is not None:
            shutil.copyfile(busybox, root / "busybox")
            (root / "busybox").chmod(0o755)
            (root / "Dockerfile").write_text(_SCRATCH_DOCKERFILE)
        else:
            logger.warning("image.no_static_busybox", extra={"fallback": FALLBACK_BASE})
            (root / "Dockerfile").write_text(_FALLBACK_DOCKERFILE)
        title = "org.opencontainers.image.title=haflow-agent"
        argv = [docker, "build", "--quiet", "--tag", tag, "--label", title, context]
        try:
            result = await run_cli(argv, limit=600.0)
        except (FileNotFoundError, PermissionError) as e:
            raise SandboxUnavailable(
                f"Cannot build the agent image: the Docker CLI {docker!r} cannot be run ({e.strerror})."
            ) from None
        except TimeoutError:
            raise SandboxUnavailable(f"Building the agent image {tag} did not finish within 10 minutes.") from None
    if result.returncode != 0:
        advice = (
            "Install a statically linked busybox (Debian: apt-get install busybox-static) "
            "and run `haflowd image build`."
            if busybox is None
            else "Check that the Docker engine works, then run `haflowd image build`."
        )
        raise SandboxUnavailable(f"The agent image {tag} is missing and could not be built ({result.error}). {advice}")
    logger.info("image.built", extra={"image": tag, "base": "scratch" if busybox else FALLBACK_BASE})
    return tag


async def image_exists(docker: str, image: str) -> bool:
    """Whether the engine has ``image`` locally."""
    try:
        result = await run_cli([docker, "image", "inspect", "--format", "{{.Id}}", "--", image], limit=30.0)
    except (FileNotFoundError, PermissionError, TimeoutError):
        return False
    return result.returncode == 0


async def ensure_image(docker: str, image: str, *, build_if_missing: bool = True) -> None:
    """Make sure ``image`` exists locally, building or pulling it if it is missing.

    The stand-in agent image (:func:`is_buildable`) is built; any other image
    is pulled. Raises :class:`SandboxUnavailable` saying what to do otherwise.
    """
    if await image_exists(docker, image):
        return
    if is_buildable(image):
        if not build_if_missing:
            raise SandboxUnavailable(f"The agent image {image} is missing. Build it with `haflowd image build`.")
        logger.info("image.building", extra={"image": image})
        await build_image(docker, image)
        return
    try:
        result = await run_cli([docker, "pull", "--", image], limit=600.0)
    except (OSError, TimeoutError):
        result = None
    if result is None or result.returncode != 0:
        reason = f" ({result.error})" if result is not None else ""
        raise SandboxUnavailable(
            f"The agent image {image} is not available locally and could not be pulled"
            f"{reason}. Pull or build it (docker pull {image}), or choose another image "
            "with HAFLOW_AGENT_IMAGE."
        )
