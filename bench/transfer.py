"""What carrying a step's areas costs on each sandbox provider, and what a whole mission's steps cost.

Part 1, per provider, the in and out cost of one writable area (a folder
of random files, 100 to a sub-folder) at ``/mission/artifacts``, for a
small area (200 files, 1 MiB) and a large one (``--files``/``--size``,
default 20,000 files, 97 MiB):

- local Docker (bind mount, nothing is copied): ``start`` and ``wait`` of
  ``true`` with the area minus the same without any area (differences of
  medians, so near zero and as noisy as a ``docker run``; a root daemon
  chowns the area to the agent's user in ``start``);
- remote Docker, a second ``dockerd`` this script starts (own data root,
  exec root and socket under /tmp, in its own network namespace, the image
  copied in with ``docker save | docker load``): the provider's volume fill
  (in: ``_fill``, inside ``start``) and copy-back (out: ``_copy_back``,
  inside ``wait``), timed where they run;
- kubernetes (HTTP transfer): the daemon side only, no cluster here:
  ``pack_areas`` into a byte sink and ``unpack_areas`` from a tar file
  in-process, then the same through a loopback aiohttp server (GET streams
  the packed areas, PUT receives a tar stream and unpacks it).

Each row also gives the whole start + wait + remove with the area and
without any.

Part 2, a whole mission: the daemon in-process (the real API over HTTP) runs
the standard-feature workflow's four stand-in agent steps, on the local
engine and on the second one through ``RemoteDockerProvider``; per step, as
in ``bench/step_overhead.py``: continue -> container running, container
exit -> state saved, continue -> state saved, a bare ``docker run --rm``
of ``true`` on the same engine, and the difference.

Prints figures, never asserts them. Everything it starts (the second
dockerd and its folders, containers, volumes, temporary folders) is removed
at the end, also on Ctrl-C.

usage: PYTHONPATH=. python3 bench/transfer.py [--quick] [--repeat N] [--files N] [--size MIB] [--image TAG]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import attrs
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from haflowd.config import Config
from haflowd.sandbox import Limits, Mount, SandboxSpec
from haflowd.sandbox.areas import pack_areas, plan_areas, unpack_areas
from haflowd.sandbox.docker.local import DockerProvider
from haflowd.sandbox.docker.remote import RemoteDockerProvider
from haflowd.sandbox.docker.standin_image import ensure_image
from haflowd.sandbox.protocol import LABEL_INSTANCE, instance_id
from haflowd.web.app import create_app

#: Provider instances this run started containers or volumes under (removed at the end).
INSTANCES: set[str] = set()
AGENT_UID = AGENT_GID = 65534
TARGET = "/mission/artifacts"


# -- the second engine ------------------------------------------------------


def docker_env(host: str | None) -> dict[str, str]:
    """Our environment pointed at ``host`` (None: the default engine)."""
    env = dict(os.environ)
    env.pop("DOCKER_CONTEXT", None)
    env.pop("DOCKER_HOST", None)
    if host is not None:
        env["DOCKER_HOST"] = host
    return env


@contextlib.contextmanager
def second_engine(image: str) -> Iterator[str]:
    """A second ``dockerd`` holding ``image``; yields its ``DOCKER_HOST``.

    A small copy of the test suite's ``tests/remote_engine.py`` (which needs
    pytest): own data root, exec root and socket under /tmp, no bridge, no
    iptables, in its own network namespace (a bridge-less dockerd removes
    the host's docker0 at start-up otherwise).
    """
    dockerd = shutil.which("dockerd")
    if dockerd is None:
        raise RuntimeError("dockerd is not installed; the remote figures need a second engine")
    # Short: containerd's socket lives under the exec root (sun_path is 108 bytes).
    base = Path(tempfile.mkdtemp(prefix="hfb-", dir="/tmp"))
    host = f"unix://{base / 'd.sock'}"
    unshare = shutil.which("unshare")
    isolate = [unshare, "--net", "--"] if unshare else []
    log = (base / "dockerd.log").open("wb")
    proc = subprocess.Popen(
        [
            *isolate,
            dockerd,
            "--data-root", str(base / "data"),
            "--exec-root", str(base / "x"),
            "--pidfile", str(base / "d.pid"),
            "-H", host,
            "--iptables=false",
            "--bridge=none",
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # Ctrl-C reaches us, and we stop it after its containers
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["docker", "version"], capture_output=True, env=docker_env(host)).returncode != 0:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (base / "dockerd.log").read_text(errors="replace")[-400:]
                raise RuntimeError(f"the second dockerd did not start: {tail}")
            time.sleep(0.1)
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=docker_env(None))
        assert save.stdout is not None
        loaded = subprocess.run(["docker", "load"], stdin=save.stdout, capture_output=True, env=docker_env(host))
        save.stdout.close()
        save.wait()
        if loaded.returncode != 0:
            raise RuntimeError(f"could not load {image} into the second dockerd: {loaded.stderr.decode()}")
        yield host
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        # Layers dockerd left mounted would make rmtree fail; it unmounts them on exit.
        shutil.rmtree(base, ignore_errors=True)


def remove_local_leftovers() -> None:
    """Remove every container and volume of this run's instances from the local engine."""
    for instance in sorted(INSTANCES):
        label = f"label={LABEL_INSTANCE}={instance}"
        for kind, listing in (("container", ["ps", "--all", "--quiet"]), ("volume", ["volume", "ls", "--quiet"])):
            found = subprocess.run(["docker", *listing, "--filter", label], capture_output=True, env=docker_env(None))
            names = found.stdout.decode().split()
            if names:
                rm = ["rm", "--force"] if kind == "container" else ["volume", "rm", "--force"]
                subprocess.run(["docker", *rm, *names], capture_output=True, env=docker_env(None))


# -- areas --------------------------------------------------------------------


@attrs.frozen
class Area:
    label: str
    folder: Path
    files: int
    size: int  # bytes

    def __str__(self) -> str:
        return f"{self.label} ({self.files} files, {self.size / 2**20:.1f} MiB)"


def make_area(folder: Path, label: str, files: int, size: int) -> Area:
    """``files`` files of random bytes totalling ``size``, 100 to a sub-folder."""
    each = max(1, size // files)
    for i in range(files):
        sub = folder / f"d{i // 100:03}"
        if i % 100 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05}.bin").write_bytes(os.urandom(each))
    return Area(label, folder, files, each * files)


# -- part 1: docker providers ---------------------------------------------------


@attrs.define
class TimedRemote(RemoteDockerProvider):
    """The remote provider, timing its volume fill and copy-back where they run."""

    last: dict[str, float] = attrs.field(factory=dict)

    async def _fill(self, spec: SandboxSpec, volumes: list[Any]) -> None:
        began = time.perf_counter()
        try:
            await super()._fill(spec, volumes)
        finally:
            self.last["in"] = time.perf_counter() - began

    async def _copy_back(self, sandbox_id: str) -> None:
        began = time.perf_counter()
        try:
            await super()._copy_back(sandbox_id)
        finally:
            self.last["out"] = time.perf_counter() - began


async def one_run(provider: DockerProvider, image: str, area: Area | None) -> dict[str, float]:
    """Seconds of start, wait and remove of ``true`` with ``area`` writable at /mission/artifacts."""
    mounts = () if area is None else (Mount(area.folder, TARGET, name="artifacts"),)
    spec = SandboxSpec(
        mission_id="m-bench000",
        run_id="r-" + uuid.uuid4().hex[:8],
        step_id="bench",
        image=image,
        command=("true",),
        mounts=mounts,
        limits=Limits(memory="64m", cpus=1.0, pids=32),
    )
    t0 = time.perf_counter()
    sandbox_id = await provider.start(spec)
    try:
        t1 = time.perf_counter()
        code = await provider.wait(sandbox_id)
        t2 = time.perf_counter()
    finally:
        await asyncio.shield(provider.remove(sandbox_id))
    t3 = time.perf_counter()
    if code != 0:
        raise RuntimeError(f"the bench container exited {code}")
    return {"start": t1 - t0, "wait": t2 - t1, "remove": t3 - t2, "total": t3 - t0}


def med(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


async def docker_rows(provider: DockerProvider, image: str, area: Area, repeat: int) -> dict[str, float]:
    """A run without areas, then one with ``area``, ``repeat`` times (both see the same load)."""
    base: list[dict[str, float]] = []
    with_area: list[dict[str, float]] = []
    for _ in range(repeat):
        base.append(await one_run(provider, image, None))
        with_area.append(await one_run(provider, image, area))
        if isinstance(provider, TimedRemote):
            with_area[-1].update(provider.last)
    row = {"total": med(with_area, "total"), "base": med(base, "total"), "n": repeat}
    if isinstance(provider, TimedRemote):
        row["in"], row["out"] = med(with_area, "in"), med(with_area, "out")
    else:
        row["in"] = med(with_area, "start") - med(base, "start")
        row["out"] = med(with_area, "wait") - med(base, "wait")
    return row


# -- part 1: kubernetes, daemon side ---------------------------------------------


class Sink(io.RawIOBase):
    """Counts and drops what is written."""

    written = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        n = len(b)
        self.written += n
        return n


class ToLoop(io.RawIOBase):
    """A file a worker thread writes and an event loop's queue reads (None: the end)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[bytes | None]) -> None:
        self.loop, self.queue = loop, queue

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        data = bytes(b)
        asyncio.run_coroutine_threadsafe(self.queue.put(data), self.loop).result()
        return len(data)


def area_server(plans: list[Any], spool: Path) -> web.Application:
    """What a Kubernetes provider's daemon side would serve its pods: areas out, areas back."""

    async def get_areas(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/x-tar"})
        await resp.prepare(request)
        queue: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
        loop = asyncio.get_running_loop()

        def pack() -> None:
            try:
                with io.BufferedWriter(ToLoop(loop, queue), buffer_size=256 * 1024) as out:
                    pack_areas(plans, out, AGENT_UID, AGENT_GID)
            finally:
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

        packer = asyncio.ensure_future(asyncio.to_thread(pack))
        while (chunk := await queue.get()) is not None:
            await resp.write(chunk)
        await packer
        await resp.write_eof()
        return resp

    async def put_areas(request: web.Request) -> web.Response:
        archive = spool / f"back-{uuid.uuid4().hex[:8]}.tar"
        try:
            with archive.open("wb") as out:
                async for chunk in request.content.iter_chunked(256 * 1024):
                    out.write(chunk)
            await asyncio.to_thread(unpack_areas, archive, plans)
        finally:
            archive.unlink(missing_ok=True)
        return web.Response(status=204)

    app = web.Application(client_max_size=0)
    app.router.add_get("/areas", get_areas)
    app.router.add_put("/areas", put_areas)
    return app


async def kubernetes_rows(area: Area, spool: Path, repeat: int) -> tuple[dict[str, float], dict[str, float]]:
    """The daemon side of carrying ``area`` to a pod and back: in-process, and over loopback HTTP."""
    plans = plan_areas([Mount(area.folder, TARGET, name="artifacts")])
    # What the pod hands back: the same area, packed once beforehand (not timed).
    back = spool / "pod-back.tar"
    with back.open("wb") as out:
        pack_areas(plans, out, AGENT_UID, AGENT_GID)
    local: dict[str, list[float]] = {"in": [], "out": []}
    for _ in range(repeat):
        t0 = time.perf_counter()
        await asyncio.to_thread(pack_areas, plans, Sink(), AGENT_UID, AGENT_GID)
        t1 = time.perf_counter()
        await asyncio.to_thread(unpack_areas, back, plans)
        t2 = time.perf_counter()
        local["in"].append(t1 - t0)
        local["out"].append(t2 - t1)

    runner = web.AppRunner(area_server(plans, spool))
    await runner.setup()
    http: dict[str, list[float]] = {"in": [], "out": []}
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/areas"
        async with aiohttp.ClientSession() as session:
            for _ in range(repeat):
                t0 = time.perf_counter()
                async with session.get(url) as resp:
                    resp.raise_for_status()
                    async for _chunk in resp.content.iter_chunked(256 * 1024):
                        pass
                t1 = time.perf_counter()
                with back.open("rb") as body:
                    async with session.put(url, data=body) as resp:
                        resp.raise_for_status()
                t2 = time.perf_counter()
                http["in"].append(t1 - t0)
                http["out"].append(t2 - t1)
    finally:
        await runner.cleanup()
        back.unlink(missing_ok=True)

    def row(times: dict[str, list[float]]) -> dict[str, float]:
        return {"in": statistics.median(times["in"]), "out": statistics.median(times["out"]), "n": repeat}

    return row(local), row(http)


# -- part 2: a whole mission --------------------------------------------------------


class Events:
    """``docker events`` of one instance on one engine: start and die times by run id."""

    def __init__(self, env: Mapping[str, str], instance: str) -> None:
        self.env, self.instance = env, instance
        self.times: dict[tuple[str, str], int] = {}
        self.changed = asyncio.Event()

    async def __aenter__(self) -> Events:
        self.proc = await asyncio.create_subprocess_exec(
            "docker", "events",
            "--filter", f"label={LABEL_INSTANCE}={self.instance}",
            "--filter", "type=container",
            "--format", "{{json .}}",
            stdout=asyncio.subprocess.PIPE,
            env=dict(self.env),
        )  # fmt: skip
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            event = json.loads(line)
            run_id = event["Actor"]["Attributes"].get("haflow.run_id", "")
            self.times[(run_id, event["Action"])] = int(event["timeNano"])
            self.changed.set()

    async def get(self, run_id: str, action: str) -> int:
        while (run_id, action) not in self.times:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), 30)
        return self.times[(run_id, action)]


async def call(client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
    async with client.request(method, path, **kwargs) as resp:
        body = await resp.json()
        if resp.status >= 400:
            raise RuntimeError(f"{method} {path}: {body['error']}")
        return body["data"]


def parse_time(value: str) -> int:
    """An API timestamp as Unix nanoseconds."""
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1e9)


async def bare_run(env: Mapping[str, str], image: str) -> float:
    """Milliseconds of one plain ``docker run --rm`` of ``true`` (no mounts) on the engine of ``env``."""
    began = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        "docker", "run", "--rm", "--network", "none", image, "true",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE, env=dict(env),
    )  # fmt: skip
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"bare docker run failed: {err.decode(errors='replace')}")
    return (time.perf_counter() - began) * 1000


async def mission_steps(root: Path, image: str, host: str | None) -> list[dict[str, float]]:
    """Each agent step of one standard-feature mission on the local engine (None) or ``host``."""
    home = Path(tempfile.mkdtemp(prefix="home-", dir=root))
    instance = instance_id(home)
    INSTANCES.add(instance)
    env = {"HAFLOW_AUTH": "none"}
    if host is None:
        sandbox: DockerProvider = DockerProvider(default_image=image, instance=instance)
    else:
        env |= {"HAFLOW_SANDBOX": "remote-docker", "HAFLOW_DOCKER_HOST": host}
        sandbox = RemoteDockerProvider(docker_host=host, default_image=image, instance=instance, writable_roots=(home,))
    config = Config.from_env(env, home=home, port=0, agent_image=image)
    app = create_app(config, sandbox=sandbox)
    results = []
    async with TestClient(TestServer(app)) as client, Events(docker_env(host), instance) as events:
        payload = {"title": "bench", "type": "feature", "rawInput": "x\n", "workflowId": "standard-feature"}
        mission_id = (await call(client, "POST", "/api/missions", json=payload))["mission_id"]
        while True:
            bare = await bare_run(docker_env(host), image)
            sent = time.time_ns()
            await call(client, "POST", f"/api/missions/{mission_id}/continue")
            while True:
                found = await call(client, "GET", f"/api/missions/{mission_id}")
                if found["status"] in ("waiting_human", "failed", "completed"):
                    break
                await asyncio.sleep(0.005)
            if found["status"] == "failed":
                raise RuntimeError(found["last_error"])
            if found["status"] == "completed":
                break
            run_id = found["runs"][-1]["run_id"]
            started = await events.get(run_id, "start")
            died = await events.get(run_id, "die")
            saved = parse_time(found["updated_at"])
            results.append(
                {
                    "continue_to_running": (started - sent) / 1e6,
                    "exit_to_saved": (saved - died) / 1e6,
                    "continue_to_saved": (saved - sent) / 1e6,
                    "bare": bare,
                    "overhead": (saved - sent) / 1e6 - bare,
                }
            )
            if len(found["runs"]) == 4:
                break
    return results


# -- the whole bench ----------------------------------------------------------------


def print_area_table(rows: list[tuple[str, Area, dict[str, float]]]) -> None:
    print("Part 1: one writable area at /mission/artifacts, medians in ms")
    print(f"{'provider':<40} {'area':<7} {'in':>8} {'out':>8} {'run+area':>9} {'run':>7} {'n':>3}")
    for name, area, row in rows:
        total = f"{row['total'] * 1000:9.0f}" if "total" in row else f"{'-':>9}"
        base = f"{row['base'] * 1000:7.0f}" if "base" in row else f"{'-':>7}"
        print(
            f"{name:<40} {area.label:<7} {row['in'] * 1000:8.0f} {row['out'] * 1000:8.0f} {total} {base} {row['n']:3d}"
        )
    print("  in/out, local: start/wait with the area minus without (a bind mount; no copy, as root a chown)")
    print("  in/out, remote: the provider's volume fill (docker cp in) and copy-back (docker cp out + unpack)")
    print("  in/out, kubernetes: pack_areas / unpack_areas; daemon side only, no cluster here")
    print("  run+area / run: start + wait + remove of `true` with the area / without any area")


def print_mission_table(rows: list[tuple[str, list[dict[str, float]]]], missions: int) -> None:
    print(f"\nPart 2: standard-feature mission, 4 stand-in agent steps x {missions}, per-step medians in ms")
    keys = ("continue_to_running", "exit_to_saved", "continue_to_saved", "bare", "overhead")
    heads = ("cont->run", "exit->saved", "cont->saved", "bare run", "overhead")
    print(f"{'engine':<28} " + " ".join(f"{h:>11}" for h in heads) + f" {'n':>3}")
    for name, steps in rows:
        figures = " ".join(f"{statistics.median(s[k] for s in steps):11.0f}" for k in keys)
        print(f"{name:<28} {figures} {len(steps):3d}")
    print("  bare run: `docker run --rm --network none IMAGE true` on the same engine; overhead: cont->saved - bare")


async def bench(args: argparse.Namespace, root: Path, host: str) -> None:
    small = make_area(root / "small", "small", 200, 2**20)
    large = make_area(root / "large", "large", args.files, int(args.size * 2**20))
    print(f"areas: {small}, {large}; random bytes, 100 files a folder; engine 2: {host}")
    spool = root / "spool"
    spool.mkdir()

    instance = "bench-" + uuid.uuid4().hex[:8]
    INSTANCES.add(instance)
    local = DockerProvider(default_image=args.image, instance=instance)
    remote = TimedRemote(docker_host=host, default_image=args.image, instance=instance)
    rows: list[tuple[str, Area, dict[str, float]]] = []
    try:
        providers = (("local docker (bind mount, no copy)", local), ("remote docker (volume, docker cp)", remote))
        for name, provider in providers:
            for area in (small, large):
                rows.append((name, area, await docker_rows(provider, args.image, area, args.repeat)))
    finally:
        await local.aclose()
        await remote.aclose()
    for area in (small, large):
        inproc, http = await kubernetes_rows(area, spool, args.repeat)
        rows.append(("kubernetes (HTTP transfer), in-process", area, inproc))
        rows.append(("kubernetes (HTTP transfer), loopback", area, http))
    print_area_table(rows)

    steps: list[tuple[str, list[dict[str, float]]]] = [("local docker", []), ("remote docker (2nd dockerd)", [])]
    for _ in range(args.repeat):
        steps[0][1].extend(await mission_steps(root, args.image, None))
        steps[1][1].extend(await mission_steps(root, args.image, host))
    print_mission_table(steps, args.repeat)


def interrupted(*_: object) -> None:
    raise KeyboardInterrupt


async def bench_until_stopped(args: argparse.Namespace, root: Path, host: str) -> None:
    """:func:`bench`, cancelled (so that its own clean-up runs) by SIGTERM as asyncio.run does on Ctrl-C."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        await bench(args, root, host)
    finally:
        loop.remove_signal_handler(signal.SIGTERM)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=Config.from_env({}, home=Path(".")).agent_image)
    parser.add_argument("--files", type=int, default=20_000, help="files of the large area (default 20000)")
    parser.add_argument("--size", type=float, default=97.0, help="MiB of the large area (default 97)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a large area of 1000 files, 5 MiB")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.size = 1000, 5.0
    signal.signal(signal.SIGTERM, interrupted)
    asyncio.run(ensure_image("docker", args.image))
    root = Path(tempfile.mkdtemp(prefix="haflow-bench-transfer-"))
    try:
        with second_engine(args.image) as host:
            try:
                asyncio.run(bench_until_stopped(args, root, host))
            finally:
                remove_local_leftovers()
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
