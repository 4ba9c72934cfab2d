"""What a run on a remote engine costs beside a local one: volumes and tar streams.

Starts ``sh -c 'touch /mission/artifacts/x'`` with a writable mount of
``--files`` files totalling ``--megabytes`` MB, waits (which, remotely,
copies the mount back) and removes it, ``--repeat`` times per provider.
Prints medians of start, wait and remove, for the local provider (bind
mount) and the remote one (``--docker-host``, e.g. a second dockerd's
``unix:///tmp/hfd-x/d.sock`` holding the image).

usage: PYTHONPATH=. python bench/remote_transfer.py --docker-host URL [--image TAG]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from haflowd.sandbox import Limits, Mount, SandboxSpec
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider


async def measure(provider: DockerProvider, folder: Path, image: str, repeat: int) -> dict[str, float]:
    phases: dict[str, list[float]] = {"start": [], "wait": [], "remove": []}
    for _ in range(repeat):
        spec = SandboxSpec(
            mission_id="m-bench000",
            run_id="r-" + uuid.uuid4().hex[:8],
            step_id="bench",
            image=image,
            command=("sh", "-c", "touch /mission/artifacts/x"),
            mounts=(Mount(folder, "/mission/artifacts"),),
            limits=Limits(memory="64m", cpus=1.0, pids=32),
        )
        t0 = time.perf_counter()
        sandbox_id = await provider.start(spec)
        t1 = time.perf_counter()
        assert await provider.wait(sandbox_id) == 0
        t2 = time.perf_counter()
        await provider.remove(sandbox_id)
        t3 = time.perf_counter()
        for name, value in zip(phases, (t1 - t0, t2 - t1, t3 - t2), strict=True):
            phases[name].append(value)
    return {name: statistics.median(values) for name, values in phases.items()}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docker-host", required=True)
    parser.add_argument("--image", default="haflow-agent:test")
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--megabytes", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "artifacts"
        folder.mkdir()
        size = int(args.megabytes * 1024 * 1024 / args.files)
        for i in range(args.files):
            (folder / f"f{i:04}.bin").write_bytes(os.urandom(size))
        print(f"{args.files} files, {args.megabytes} MB, median of {args.repeat} runs (seconds):")
        print(f"{'provider':<8} {'start':>7} {'wait':>7} {'remove':>7} {'total':>7}")
        for name, provider in (
            ("local", DockerProvider(instance="bench")),
            ("remote", RemoteDockerProvider(docker_host=args.docker_host, instance="bench")),
        ):
            m = await measure(provider, folder, args.image, args.repeat)
            print(f"{name:<8} {m['start']:7.3f} {m['wait']:7.3f} {m['remove']:7.3f} {sum(m.values()):7.3f}")


if __name__ == "__main__":
    asyncio.run(main())
