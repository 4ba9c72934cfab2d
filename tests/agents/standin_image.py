"""A test image with stand-ins for the agent CLIs, built from the suite's busybox image.

The stand-ins (``tests/agents/standins/``) are busybox ``sh`` scripts named
like the real CLIs; they accept exactly the argv our adapters build and
replay the recordings (``tests/agents/recordings/``) copied beside them.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).parent
STANDINS = HERE / "standins"
RECORDINGS = HERE / "recordings"
CLIS = ("claude", "codex", "gemini", "opencode", "aider")
#: Tagged apart from anything a user builds.
STANDIN_IMAGE = "haflow-agent-standins:test"

_DOCKERFILE = """\
FROM {base}
COPY haflow-standin.sh /usr/local/lib/haflow-standin.sh
COPY bin/ /usr/local/bin/
COPY recordings/ /usr/share/haflow-recordings/
"""


def build_standin_image(base: str, tag: str = STANDIN_IMAGE, *, docker: str = "docker") -> str:
    """Build ``tag`` FROM ``base`` (the busybox test image) and return it."""
    with tempfile.TemporaryDirectory(prefix="haflow-standins-") as tmp:
        context = Path(tmp)
        (context / "bin").mkdir()
        for cli in CLIS:
            target = context / "bin" / cli
            shutil.copyfile(STANDINS / cli, target)
            target.chmod(0o755)
        shutil.copyfile(STANDINS / "haflow-standin.sh", context / "haflow-standin.sh")
        (context / "haflow-standin.sh").chmod(0o644)
        shutil.copytree(RECORDINGS, context / "recordings")
        for path in (context / "recordings").iterdir():
            path.chmod(0o644)
        (context / "Dockerfile").write_text(_DOCKERFILE.format(base=base))
        subprocess.run([docker, "build", "--quiet", "--tag", tag, str(context)], check=True, capture_output=True)
    return tag


def run_in_image(
    image: str,
    command: Sequence[str],
    *,
    stdin: str | None,
    env: Mapping[str, str],
    artifacts: Path,
    workspace: Path | None = None,
    docker: str = "docker",
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run ``command`` as the sandbox would: non-root, no network, prompt on stdin.

    Standard error is merged into standard output, as the sandbox's log is.
    """
    argv = [docker, "run", "--rm", "--interactive", "--network", "none", "--user", "65534:65534"]
    argv += ["--read-only", "--tmpfs", "/tmp", "--volume", f"{artifacts}:/mission/artifacts"]
    if workspace is not None:
        argv += ["--volume", f"{workspace}:/workspace", "--workdir", "/workspace"]
    else:
        argv += ["--workdir", "/mission"]
    for key, value in env.items():
        argv += ["--env", f"{key}={value}"]
    argv += [image, *command]
    return subprocess.run(
        argv,
        input=stdin or "",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=timeout,
        check=False,
    )
