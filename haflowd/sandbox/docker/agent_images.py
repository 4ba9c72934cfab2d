"""Images for the real agent CLIs, built on this host without any image registry.

``haflow-agent-<adapter>:<version>`` is made in two layers:

1. A Debian base, ``haflow-agent-base:<base version>``: ``mmdebstrap
   --variant=minbase`` writes a root file system as a tarball (Debian's
   package mirror is the only thing fetched) and ``docker import`` turns it
   into an image. It is built once and reused by every agent on that base.
2. The CLI, installed *on the host* into a folder (``npm install -g
   --prefix`` or ``pip install --target``) from the package registries, and
   copied into an image ``FROM`` the base through a generated build context.

Pinned versions live in ``workflows/images/agent-images.json``. Two bases exist
because the CLIs disagree: gemini-cli needs Node >= 20 (trixie; bookworm has
18) and aider-chat 0.86 needs Python < 3.13 (bookworm's 3.11; trixie has
3.13), and ``pip install --target`` on the host must match the image's
Python. Every command is an argument list; no shell is involved.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import attrs

from ...catalog import builtin_dir
from ...errors import SandboxUnavailable
from ...proc import reap

#: Repository of the shared Debian base images.
BASE_REPOSITORY = "haflow-agent-base"
#: The non-root user the agent CLIs run as (the sandbox may override the uid).
AGENT_USER = "agent"
AGENT_UID = 1000
#: Where a pip-installed CLI's packages go inside the image.
PIP_TARGET = "/opt/haflow-pip"
#: Under the shipped definitions; not at their top, where every file is a workflow.
RECIPES_FILE = "images/agent-images.json"

Progress = Callable[[str], None]


@attrs.frozen
class BaseRecipe:
    """A Debian root file system: suite and packages."""

    name: str
    version: str
    suite: str
    packages: tuple[str, ...]

    @property
    def tag(self) -> str:
        return f"{BASE_REPOSITORY}:{self.version}"


@attrs.frozen
class AgentRecipe:
    """One agent CLI: where it comes from and which base it runs on."""

    adapter: str
    base: BaseRecipe
    installer: str
    package: str
    version: str
    binary: str
    #: JSON files baked into the image, by path (e.g. the CLI's system settings).
    files: dict[str, object] = attrs.field(factory=dict)

    @property
    def tag(self) -> str:
        return f"haflow-agent-{self.adapter}:{self.version}"


def load_recipes(path: Path | None = None) -> dict[str, AgentRecipe]:
    """The pinned agent images, by adapter id, from :data:`RECIPES_FILE`."""
    data = json.loads((path or builtin_dir() / RECIPES_FILE).read_text(encoding="utf-8"))
    bases = {
        name: BaseRecipe(name=name, version=b["version"], suite=b["suite"], packages=tuple(b["packages"]))
        for name, b in data["bases"].items()
    }
    return {
        adapter: AgentRecipe(
            adapter=adapter,
            base=bases[a["base"]],
            installer=a["installer"],
            package=a["package"],
            version=a["version"],
            binary=a["binary"],
            files=dict(a.get("files", {})),
        )
        for adapter, a in data["agents"].items()
    }


async def _run(argv: Sequence[str], progress: Progress, *, label: str, cwd: Path | None = None) -> None:
    """Run one build command, forwarding its output lines to ``progress``."""
    progress(f"$ {' '.join(argv)}")
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        cwd=cwd,
    )
    assert proc.stdout is not None
    tail: list[str] = []
    try:
        async for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            if line:
                tail = [*tail[-9:], line]
                progress(f"  {line}")
        code = await proc.wait()
    except BaseException:
        await reap(proc)
        raise
    if code != 0:
        raise SandboxUnavailable(f"{label} failed (exit code {code}): {' | '.join(tail[-3:])}")


async def _image_exists(docker: str, tag: str) -> bool:
    proc = await asyncio.create_subprocess_exec(
        docker,
        "image",
        "inspect",
        "--format",
        "{{.Id}}",
        "--",
        tag,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    return await proc.wait() == 0


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*"))


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB ({n} bytes)"


async def build_base(docker: str, base: BaseRecipe, *, progress: Progress, rebuild: bool = False) -> str:
    """Make the Debian base image (cached by tag) and return its tag."""
    if not rebuild and await _image_exists(docker, base.tag):
        progress(f"base {base.tag} already built")
        return base.tag
    if shutil.which("mmdebstrap") is None:
        raise SandboxUnavailable("Building agent images needs mmdebstrap (Debian: apt-get install mmdebstrap).")
    with tempfile.TemporaryDirectory(prefix="haflow-base-") as tmp:
        rootfs = Path(tmp) / "rootfs.tar"
        progress(f"base {base.tag}: mmdebstrap {base.suite} with {', '.join(base.packages)}")
        await _run(
            [
                "mmdebstrap",
                "--variant=minbase",
                f"--include={','.join(base.packages)}",
                # Documentation is dead weight in an agent's sandbox.
                "--dpkgopt=path-exclude=/usr/share/man/*",
                "--dpkgopt=path-exclude=/usr/share/doc/*",
                "--dpkgopt=path-exclude=/usr/share/locale/*",
                "--dpkgopt=path-include=/usr/share/doc/*/copyright",
                base.suite,
                str(rootfs),
            ],
            progress,
            label="mmdebstrap",
        )
        progress(f"base {base.tag}: root file system is {_mib(rootfs.stat().st_size)}; importing")
        await _run(
            [
                docker,
                "import",
                "--change",
                "ENV PATH=/usr/local/bin:/usr/bin:/bin",
                "--change",
                "ENV LANG=C.UTF-8",
                "--change",
                'CMD ["bash"]',
                str(rootfs),
                base.tag,
            ],
            progress,
            label="docker import",
        )
    return base.tag


_LAUNCHER = f"""#!/usr/bin/python3
# haflow: runs a CLI installed with pip --target {PIP_TARGET}.
import runpy
import sys

sys.path.insert(0, "{PIP_TARGET}")
sys.argv[0] = "{{binary}}"
runpy.run_module("{{module}}", run_name="__main__")
"""


def _dockerfile(recipe: AgentRecipe, base_tag: str) -> str:
    lines = [
        f"FROM {base_tag}",
        f'RUN ["/usr/sbin/useradd", "--uid", "{AGENT_UID}", "--create-home", "--shell", "/bin/bash", "{AGENT_USER}"]',
    ]
    if recipe.installer == "npm":
        lines.append("COPY prefix/ /usr/local/")
    else:
        lines += [f"COPY target/ {PIP_TARGET}/", f"COPY launcher /usr/local/bin/{recipe.binary}"]
    if recipe.files:
        lines.append("COPY files/ /")
    lines += [
        f'RUN ["{recipe.binary}", "--version"]',
        f"USER {AGENT_UID}:{AGENT_UID}",
        "ENV HOME=/home/agent",
        "WORKDIR /workspace",
        f'CMD ["{recipe.binary}", "--help"]',
    ]
    return "\n".join(lines) + "\n"


async def _install_cli(recipe: AgentRecipe, context: Path, progress: Progress) -> None:
    if recipe.installer == "npm":
        prefix = context / "prefix"
        # The CLIs' install steps put their native binaries in place; npm 11
        # runs no package's scripts unless it is named here.
        await _run(
            [
                "npm",
                "install",
                "--global",
                "--prefix",
                str(prefix),
                "--no-audit",
                "--no-fund",
                "--foreground-scripts",
                f"--allow-scripts={recipe.package}",
                f"{recipe.package}@{recipe.version}",
            ],
            progress,
            label="npm install",
        )
        progress(f"{recipe.package}@{recipe.version}: {_mib(_size(prefix))} installed")
    elif recipe.installer == "pip":
        target = context / "target"
        await _run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--no-input",
                "--disable-pip-version-check",
                "--target",
                str(target),
                f"{recipe.package}=={recipe.version}",
            ],
            progress,
            label="pip install",
        )
        # pip's own launchers name the host's interpreter; ours replaces them.
        shutil.rmtree(target / "bin", ignore_errors=True)
        module = recipe.binary if recipe.binary != "aider" else "aider.main"
        launcher = context / "launcher"
        launcher.write_text(_LAUNCHER.format(binary=recipe.binary, module=module))
        launcher.chmod(0o755)
        progress(f"{recipe.package}=={recipe.version}: {_mib(_size(target))} installed")
    else:
        raise SandboxUnavailable(f"unknown installer {recipe.installer!r} for {recipe.adapter}")


async def build_agent_image(
    docker: str,
    adapter: str,
    *,
    progress: Progress = print,
    recipes: dict[str, AgentRecipe] | None = None,
) -> str:
    """Build ``haflow-agent-<adapter>:<pinned version>`` and return its tag.

    Builds (or reuses) the Debian base, installs the pinned CLI on the host
    and copies it in. ``progress`` receives one line per step and the build
    tools' output. Raises :class:`SandboxUnavailable` naming the step that
    failed.
    """
    recipes = recipes if recipes is not None else load_recipes()
    recipe = recipes.get(adapter)
    if recipe is None:
        raise SandboxUnavailable(f"no agent image recipe for {adapter!r}; known: {', '.join(sorted(recipes))}")
    loop = asyncio.get_running_loop()
    started = loop.time()
    progress(f"[1/3] base image {recipe.base.tag}")
    base_tag = await build_base(docker, recipe.base, progress=progress)
    progress(f"[2/3] installing {recipe.package} {recipe.version} on the host ({loop.time() - started:.0f} s)")
    with tempfile.TemporaryDirectory(prefix="haflow-agent-image-") as tmp:
        context = Path(tmp)
        await _install_cli(recipe, context, progress)
        for name, content in recipe.files.items():
            target = context / "files" / name.lstrip("/")
            if ".." in Path(name).parts:
                raise SandboxUnavailable(f"file {name!r} of {adapter} leaves the image root")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(content, indent=2) + "\n")
            target.chmod(0o644)
        dockerfile = _dockerfile(recipe, base_tag)
        (context / "Dockerfile").write_text(dockerfile)
        digest = hashlib.sha256(dockerfile.encode()).hexdigest()[:12]
        progress(f"[3/3] docker build {recipe.tag} ({loop.time() - started:.0f} s)")
        await _run(
            [
                docker,
                "build",
                "--tag",
                recipe.tag,
                "--label",
                f"org.opencontainers.image.title=haflow-agent-{adapter}",
                "--label",
                f"org.opencontainers.image.version={recipe.version}",
                "--label",
                f"io.haflow.dockerfile-sha256={digest}",
                str(context),
            ],
            progress,
            label="docker build",
        )
    progress(f"built {recipe.tag} in {loop.time() - started:.0f} s")
    return recipe.tag


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m haflowd.sandbox.docker.agent_images ADAPTER``: build one image (until the CLI wires it)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m haflowd.sandbox.docker.agent_images ADAPTER", file=sys.stderr)
        return 2
    try:
        asyncio.run(build_agent_image("docker", args[0], progress=lambda s: print(s, flush=True)))
    except SandboxUnavailable as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
