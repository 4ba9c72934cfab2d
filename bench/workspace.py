"""How fast a mission workspace is made and reviewed, beside a bare ``git clone``.

Generates a repository (default 100,000 files, ~1 GB; ``--files`` and
``--total-mb`` change it) with ``git fast-import``, and a small one, then
for each prints:

- materialise: median of ``create_clone`` (clone + config + checkout of the
  mission branch) against a bare ``git clone <path>`` (hard-linked objects,
  checkout), and of ``git clone --shared`` (alternates) for reference;
- after changing ``--changed`` files (80 % edited, 10 % new, 10 % deleted):
  p50 of ``status`` and of the first page (``--page-kb``) of ``diff``.

usage: PYTHONPATH=. python bench/workspace.py [--files N] [--total-mb M] [--runs R] [--dir D]
(targets on a 2-core machine: workspace <= 1.5x the bare clone; status
p50 <= 100 ms; first diff page <= 200 ms)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

from haflowd.workspaces.clone import MissionClone, create_clone
from haflowd.workspaces.review import diff, status

BRANCH = "feature/bench-00000000"


def git_env() -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": "/nonexistent",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "LC_ALL": "C",
    }


def git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> None:
    subprocess.run(["git", *args], cwd=cwd, env=git_env(), check=True, input=input, stdout=subprocess.DEVNULL)


def file_blobs(files: int, total_bytes: int) -> Iterator[tuple[str, bytes]]:
    """(path, content) of ``files`` text files, ~``total_bytes`` in all, 100 per folder.

    Every file has its own random text, so the pack is not one long chain
    of deltas (which would make every blob read slow, unlike a real repository).
    """
    size = max(16, total_bytes // max(1, files))
    for i in range(files):
        header = f"file {i}\n".encode()
        body = os.urandom(max(0, size - len(header)) // 2 + 1).hex().encode()[: size - len(header)]
        lines = b"\n".join(body[j : j + 79] for j in range(0, len(body), 79))
        yield f"src/d{i // 100:04d}/f{i:06d}.txt", header + lines + b"\n"


def make_repository(path: Path, files: int, total_bytes: int) -> None:
    """A repository with one commit of ``files`` files (objects in one pack, no work tree)."""
    git("init", "-q", "-b", "main", str(path))
    proc = subprocess.Popen(
        ["git", "fast-import", "--quiet"], cwd=path, env=git_env(), stdin=subprocess.PIPE, stdout=subprocess.DEVNULL
    )
    assert proc.stdin is not None
    out = proc.stdin
    out.write(b"commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata 6\nbench\n")
    for name, content in file_blobs(files, total_bytes):
        out.write(f"M 100644 inline {name}\ndata {len(content)}\n".encode())
        out.write(content)
        out.write(b"\n")
    out.write(b"\n")
    out.close()
    if proc.wait() != 0:
        raise SystemExit("git fast-import failed")


def child_cpu() -> float:
    """CPU seconds (user + system) used so far by finished child processes (git)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_time(run: Callable[[], None], cleanup: Callable[[], None], runs: int) -> tuple[float, float]:
    """(median wall seconds, median git CPU seconds) of ``run``."""
    times, cpus = [], []
    for _ in range(runs):
        cleanup()
        start, cpu = time.perf_counter(), child_cpu()
        run()
        times.append(time.perf_counter() - start)
        cpus.append(child_cpu() - cpu)
    cleanup()
    return statistics.median(times), statistics.median(cpus)


async def p50(call: Callable[[], Awaitable[object]], runs: int) -> tuple[float, float]:
    """(median wall seconds, median git CPU seconds) of ``call``."""
    times, cpus = [], []
    for _ in range(runs):
        start, cpu = time.perf_counter(), child_cpu()
        await call()
        times.append(time.perf_counter() - start)
        cpus.append(child_cpu() - cpu)
    return statistics.median(times), statistics.median(cpus)


def change_files(clone: MissionClone, count: int) -> None:
    """Edit 80 %, add 10 % and delete 10 % of ``count`` files."""
    tracked = sorted((clone.work_tree / "src").rglob("*.txt"))
    step = max(1, len(tracked) // max(1, count))
    chosen = tracked[::step][:count]
    edits, deletes = chosen[: count * 8 // 10], chosen[count * 8 // 10 : count * 9 // 10]
    for path in edits:
        with path.open("a") as handle:
            handle.write("changed by the agent\n")
    for path in deletes:
        path.unlink()
    new = clone.work_tree / "new"
    new.mkdir()
    for i in range(count - len(edits) - len(deletes)):
        (new / f"n{i:05d}.txt").write_text(f"new file {i}\n" * 20)


def bench_repository(label: str, repo: Path, work: Path, runs: int, changed: int, page: int, samples: int) -> None:
    base = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, env=git_env(), check=True, capture_output=True, text=True
    ).stdout.strip()
    bare_dst, shared_dst, mission = work / "bare", work / "shared", work / "mission"

    def rm_all() -> None:
        for path in (bare_dst, shared_dst, mission):
            shutil.rmtree(path, ignore_errors=True)

    bare = median_time(lambda: git("clone", "-q", str(repo), str(bare_dst)), rm_all, runs)
    shared = median_time(lambda: git("clone", "-q", "--shared", str(repo), str(shared_dst)), rm_all, runs)

    def make() -> None:
        asyncio.run(create_clone(repo, base, mission / "repo.git", mission / "workspace", BRANCH))

    ours = median_time(make, rm_all, runs)
    clone = asyncio.run(create_clone(repo, base, mission / "repo.git", mission / "workspace", BRANCH))
    change_files(clone, changed)

    async def queries() -> tuple[tuple[float, float], tuple[float, float], int, bool]:
        st = await p50(lambda: status(clone), samples)
        df = await p50(lambda: diff(clone, max_bytes=page), samples)
        result = await status(clone)
        first = await diff(clone, max_bytes=page)
        return st, df, len(result.files), first.truncated

    st, df, listed, truncated = asyncio.run(queries())
    load = os.getloadavg()[0]
    print(f"[{label}]  (load average {load:.1f}: wall times include waiting for the CPU; git CPU does not)")
    print(f"  materialise (median of {runs}):                wall        git CPU")
    for name, (wall, cpu) in (
        ("git clone <path> (hard links)   ", bare),
        ("git clone --shared (alternates) ", shared),
        ("create_clone (mission workspace)", ours),
    ):
        print(f"    {name} {wall * 1000:9.0f} ms  {cpu * 1000:9.0f} ms")
    print(f"    create_clone / bare clone         {ours[0] / bare[0]:9.2f} x   {ours[1] / max(bare[1], 1e-9):9.2f} x")
    print(f"  after changing {changed} files (status lists {listed}), p50 of {samples}:")
    print(f"    status                            {st[0] * 1000:9.1f} ms  {st[1] * 1000:9.1f} ms")
    print(
        f"    diff, first {page // 1024} KiB page          {df[0] * 1000:9.1f} ms  {df[1] * 1000:9.1f} ms"
        f"   (truncated: {truncated})"
    )
    rm_all()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--total-mb", type=int, default=1000)
    parser.add_argument("--small-files", type=int, default=200)
    parser.add_argument("--changed", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3, help="materialisations per variant")
    parser.add_argument("--samples", type=int, default=21, help="status/diff calls per figure")
    parser.add_argument("--page-kb", type=int, default=256)
    parser.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp folder)")
    args = parser.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="haflow-bench-", dir=args.dir))
    try:
        print(
            f"git {subprocess.run(['git', '--version'], capture_output=True, text=True).stdout.split()[-1]}, "
            f"{os.cpu_count()} CPUs, working in {root}"
        )
        for label, files, total in (
            ("large", args.files, args.total_mb * 1024 * 1024),
            ("small", args.small_files, args.small_files * 4096),
        ):
            repo = root / f"{label}-user"
            start = time.perf_counter()
            make_repository(repo, files, total)
            took = time.perf_counter() - start
            print(f"\n{label}: {files} files, {total / 1024 / 1024:.0f} MiB of content (generated in {took:.1f} s)")
            changed = min(args.changed, max(1, files // 2))
            bench_repository(label, repo, root / f"{label}-work", args.runs, changed, args.page_kb * 1024, args.samples)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
