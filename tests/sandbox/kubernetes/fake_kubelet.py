"""A FAKE kubelet for tests: runs the pods of
:class:`~tests.sandbox.kubernetes.fake_apiserver.FakeCluster` on local Docker.

This is not a kubelet. It is just enough of a node for the Kubernetes
provider to run real agent commands end to end without a cluster:

* **fetch** (the init container) is emulated in Python (or, with
  :attr:`FakeKubelet.transfer_containers`, run as a real container of the
  ``transfer_image`` running the manifest's ``FETCH_SCRIPT`` as the manifest says, on
  the host's network, the CA from :attr:`FakeKubelet.configmaps`), the way the pod
  would do it: the in-token is read from the run's Secret through the
  ``secretKeyRef`` of the container's env, the areas are ``GET`` from the
  container's ``HAFLOW_TRANSFER_URL`` over real HTTPS (the node trusts the
  ``ssl`` context it is given, standing in for the CA ConfigMap) and the tar
  stream is unpacked into a per-pod "node" folder, one subfolder per
  ``emptyDir`` volume, owned by the pod's user as an unprivileged ``tar``
  would leave it.
* **agent** runs its command exactly as the manifest says
  (``/bin/sh -c AGENT_SCRIPT haflow <argv>``: ``command[0]`` as the
  entrypoint, the rest as arguments) in a real ``docker run`` of the pod's
  image: every ``volumeMount`` is a bind mount of its volume's node folder
  (``subPath``: the file inside it; ``readOnly`` honoured), the user and
  groups of the security context, a read-only root, ``--network none``,
  all capabilities dropped, ``no-new-privileges``, the memory and CPU
  limits, and the env of the container spec (``secretKeyRef`` values
  resolved from the Secret, handed over in a 0600 env file, never on a
  command line). Its stdout and stderr are the pod's log.
* **collect** is emulated in Python (or run as a real container beside the
  agent, with :attr:`~FakeKubelet.transfer_containers`) once the agent exited and wrote
  ``/haflow/done/exit``: a tar of the collect container's positional
  arguments (the writable ``aN`` areas, as mounted under ``/haflow/out``)
  is ``PUT`` to its ``HAFLOW_TRANSFER_URL`` with the out-token from the
  Secret. Its exit code is 0, or 22 (``curl --fail``) for an HTTP error, 7
  when the daemon cannot be reached.
* Then the pod is ``Succeeded`` (every container exited 0) or ``Failed``,
  and the Job gets the ``Complete`` or ``Failed`` condition.
* A pod's ``activeDeadlineSeconds`` (the provider's stop) is measured from
  the pod's start: past it, the agent gets ``docker stop`` with the pod's
  ``terminationGracePeriodSeconds``, the pod fails with reason
  ``DeadlineExceeded``; collect still sends the files when the agent
  recorded its exit (its shell, PID 1, ignores SIGTERM as in a real pod).
  A Job's ``activeDeadlineSeconds`` fails the Job (``DeadlineExceeded``)
  and deletes its pod, as the Job controller does. A deleted pod's
  container is removed.

What it does not model: scheduling (a pod starts at once, or when the test
releases :attr:`FakeKubelet.hold`), image pulls (``ErrImagePull``; a
missing image is the ``docker run`` exit 125), the ``transfer_image`` unless
:attr:`~FakeKubelet.transfer_containers` is set (by default fetch and
collect are Python, not ``curl`` and ``tar``, and the Python collect is not
cut off at the grace period), the NetworkPolicy (the agent simply has no
network; fetch and collect reach the daemon directly, their containers on
the host's network), ``emptyDir`` size limits and ``medium: Memory``,
``fsGroup`` ownership changes, per-pod PID limits, the Secret's
``CreateContainerConfigError`` path (a missing Secret fails the container),
container restarts, log rotation, evictions, the Downward API, the
``DisruptionTarget`` condition, the Job controller's other conditions, and
``ttlSecondsAfterFinished``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import csv
import io
import math
import os
import shutil
import ssl
import stat
import tarfile
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs

from haflowd.sandbox.kubernetes.manifests import AGENT, COLLECT, FETCH, IN_DIR, OUT_DIR
from tests.sandbox.kubernetes.fake_apiserver import FakeCluster, LogStream, Obj

#: Labels the fake node puts on its containers (besides the pod's own labels).
NODE_LABEL = "haflow.test.fake-kubelet"
#: ``curl`` exit codes the emulated transfer containers report.
CURL_HTTP_ERROR = 22
CURL_CANNOT_CONNECT = 7
#: Exit code of a container killed after its grace period.
SIGKILLED = 137
#: What ``docker run`` exits with when it could not run the container at all.
DOCKER_RUN_FAILED = 125


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _csv(fields: list[str]) -> str:
    """One ``--mount`` value: comma-separated ``key=value`` fields, CSV-quoted as docker parses them."""
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(fields)
    return out.getvalue()


def _cpus(value: str) -> str:
    if value.endswith("m"):
        return f"{int(value[:-1]) / 1000:g}"
    return f"{float(value):g}"


_QUANTITY = {"Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "k": 1000, "M": 1000**2, "G": 1000**3}


def _memory(value: str) -> str:
    """A Kubernetes memory quantity (``128Mi``, ``134217728``) in bytes, for ``docker run --memory``."""
    for suffix, factor in _QUANTITY.items():
        if value.endswith(suffix):
            return str(int(value[: -len(suffix)]) * factor)
    return str(int(value))


def _container(pod: Obj, name: str, *, init: bool = False) -> Obj | None:
    key = "initContainers" if init else "containers"
    return next((c for c in pod["spec"].get(key) or () if c["name"] == name), None)


def _set_state(pod: Obj, name: str, state: Obj, *, init: bool = False) -> None:
    key = "initContainerStatuses" if init else "containerStatuses"
    for item in pod["status"].get(key) or ():
        if item["name"] == name:
            item["state"] = state


def _terminated(code: int, message: str = "") -> Obj:
    state: Obj = {"exitCode": code, "reason": "Completed" if code == 0 else "Error", "finishedAt": _now()}
    if message:
        state["message"] = message
    return {"terminated": state}


@attrs.define
class _PodRun:
    """What the node keeps of one pod it runs."""

    pod: Obj
    folder: Path
    #: Monotonic time the pod started (its activeDeadlineSeconds counts from here).
    started: float
    task: asyncio.Task[None] | None = None
    deadline_task: asyncio.Task[None] | None = None
    #: Set when the pod's deadline passed: the kubelet stops its containers.
    stopping: asyncio.Event = attrs.field(factory=asyncio.Event)
    #: The Docker container of each pod container run so far, and its ``docker run`` process.
    containers: dict[str, tuple[str, asyncio.subprocess.Process | None]] = attrs.field(factory=dict)


@attrs.define
class FakeKubelet:
    """A FAKE node: runs a :class:`FakeCluster`'s pods in local Docker (see the module's docstring).

    ``ssl`` is what the node trusts for the daemon's HTTPS certificate;
    ``root`` holds a folder per pod (its ``emptyDir`` volumes). Attach with
    :meth:`attach`; :meth:`close` removes every container and folder.
    """

    cluster: FakeCluster
    root: Path
    ssl: ssl.SSLContext | bool = True
    docker: str = attrs.field(factory=lambda: shutil.which("docker") or "docker")
    #: Every agent ``docker run`` argument list, for tests that check how pods were run.
    runs: list[list[str]] = attrs.field(factory=list)
    #: When set, new pods stay Pending (not scheduled, no start time) until it is set.
    hold: asyncio.Event | None = None
    #: Run fetch and collect as real containers of the pod's ``transfer_image`` (it must exist
    #: locally, e.g. :func:`build_transfer_image`), their scripts exactly as the manifest says,
    #: on the host's network (to reach the daemon's loopback address); else emulate them in Python.
    transfer_containers: bool = False
    #: The namespace's ConfigMaps (name -> key -> text) for ``configMap`` volumes (the CA bundle).
    configmaps: dict[str, dict[str, str]] = attrs.field(factory=dict)
    #: The output of the transfer containers, by pod and container name (for failing tests to show).
    transfer_logs: dict[tuple[str, str], bytearray] = attrs.field(factory=dict)
    _pods: dict[str, _PodRun] = attrs.field(factory=dict)
    _cleanups: set[asyncio.Task[None]] = attrs.field(factory=set)
    _job_timers: dict[str, asyncio.Task[None]] = attrs.field(factory=dict)

    def attach(self) -> FakeKubelet:
        self.cluster.node = self
        return self

    # -- what the fake API server tells the node ------------------------------

    def admit(self, pod: Obj) -> None:
        name = pod["metadata"]["name"]
        folder = self.root / name
        run = _PodRun(pod=pod, folder=folder, started=time.monotonic())
        run.task = asyncio.get_running_loop().create_task(self._schedule(run), name=f"fake-kubelet {name}")
        self._pods[name] = run
        job = pod["metadata"]["labels"]["job-name"]
        seconds = (self.cluster.jobs.get(job) or {}).get("spec", {}).get("activeDeadlineSeconds")
        if seconds is not None and job not in self._job_timers:
            self._job_timers[job] = asyncio.get_running_loop().create_task(self._job_deadline(job, float(seconds)))

    async def _schedule(self, run: _PodRun) -> None:
        """The pod waits, Pending without a start time, while :attr:`hold` is set and not released."""
        if self.hold is not None:
            await self.hold.wait()
        run.started = time.monotonic()
        run.pod["status"]["startTime"] = _now()
        run.deadline_task = asyncio.get_running_loop().create_task(self._deadline(run))
        await self._run(run)

    def patched(self, pod: Obj) -> None:
        run = self._pods.get(pod["metadata"]["name"])
        if run is not None and run.deadline_task is not None:
            run.deadline_task.cancel()
            run.deadline_task = asyncio.get_running_loop().create_task(self._deadline(run))

    def forget(self, pod_name: str) -> None:
        """The pod was deleted: its containers go, and its folder."""
        run = self._pods.pop(pod_name, None)
        if run is None:
            return
        task = asyncio.get_running_loop().create_task(self._kill(run))
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    async def settled(self) -> None:
        """Wait until the containers and folders of deleted pods are gone."""
        while self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    async def close(self) -> None:
        for name in list(self._pods):
            self.forget(name)
        for timer in self._job_timers.values():
            timer.cancel()
        await self.settled()
        if self.cluster.node is self:
            self.cluster.node = None

    # -- deadlines ----------------------------------------------------------------

    async def _deadline(self, run: _PodRun) -> None:
        seconds = run.pod["spec"].get("activeDeadlineSeconds")
        if seconds is None:
            return
        await asyncio.sleep(max(0.0, run.started + float(seconds) - time.monotonic()))
        if run.pod["status"].get("phase") in ("Succeeded", "Failed"):
            return
        run.stopping.set()
        await self._stop_containers(run, float(run.pod["spec"].get("terminationGracePeriodSeconds", 30)))

    async def _job_deadline(self, job: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        found = self.cluster.jobs.get(job)
        conditions = (found or {}).get("status", {}).get("conditions") or ()
        if found is not None and not any(c["type"] in ("Complete", "Failed") for c in conditions):
            self.cluster.deadline(job)

    async def _stop_containers(self, run: _PodRun, grace: float) -> None:
        """``docker stop`` every container of the pod while the pod runs (a container may not exist yet)."""
        while run.task is not None and not run.task.done():
            running = [name for name, process in run.containers.values() if process and process.returncode is None]
            for name in running:
                done = await asyncio.create_subprocess_exec(
                    self.docker, "stop", "--time", str(math.ceil(grace)), name,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await done.wait()
            await asyncio.sleep(0.1)

    async def _kill(self, run: _PodRun) -> None:
        if run.deadline_task is not None:
            run.deadline_task.cancel()
        if run.task is not None and not run.task.done():
            run.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await run.task
        await asyncio.to_thread(shutil.rmtree, run.folder, True)

    # -- the pod ------------------------------------------------------------------

    def _secret(self, ref: Mapping[str, Any]) -> str:
        secret = self.cluster.secrets.get(ref["name"])
        if secret is None or ref["key"] not in secret.get("data", {}):
            raise LookupError(f"secret {ref['name']!r} has no key {ref['key']!r}")
        return base64.b64decode(secret["data"][ref["key"]]).decode()

    def _env(self, container: Obj) -> dict[str, str]:
        env: dict[str, str] = {}
        for item in container.get("env") or ():
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                env[item["name"]] = self._secret(item["valueFrom"]["secretKeyRef"])
        return env

    def _volume(self, run: _PodRun, name: str) -> Path:
        return run.folder / "volumes" / name

    def _mounts(self, run: _PodRun, container: Obj) -> dict[str, Path]:
        """Where each mount path of ``container`` is on the node."""
        found = {}
        for mount in container.get("volumeMounts") or ():
            path = self._volume(run, mount["name"])
            if mount.get("subPath"):
                path = path / mount["subPath"]
            found[mount["mountPath"]] = path
        return found

    def _job(self, run: _PodRun) -> str:
        name: str = run.pod["metadata"]["labels"]["job-name"]
        return name

    def _end(self, run: _PodRun, ok: bool, reason: str = "BackoffLimitExceeded", message: str = "") -> None:
        if run.pod["metadata"]["name"] not in self._pods:
            return  # deleted meanwhile
        status = run.pod["status"]
        if run.stopping.is_set():
            ok = False
            status["reason"] = "DeadlineExceeded"
            status["message"] = "Pod was active on the node longer than the specified deadline"
        status["phase"] = "Succeeded" if ok else "Failed"
        job = self._job(run)
        self.cluster._finish(job, "Complete" if ok else "Failed", "" if ok else reason, message)
        self.cluster._changed(job)

    async def _run(self, run: _PodRun) -> None:
        pod = run.pod
        spec = pod["spec"]
        for volume in spec.get("volumes") or ():
            folder = self._volume(run, volume["name"])
            folder.mkdir(parents=True)
            if "emptyDir" in volume:
                folder.chmod(0o777)  # as the kubelet makes an emptyDir
            elif "configMap" in volume:
                data = self.configmaps[volume["configMap"]["name"]]
                for item in volume["configMap"].get("items") or [{"key": k, "path": k} for k in data]:
                    (folder / item["path"]).write_text(data[item["key"]])
                folder.chmod(0o755)
            else:
                raise AssertionError(f"the fake kubelet knows no volume like {volume}")
        for init in spec.get("initContainers") or ():
            assert init["name"] == FETCH, f"the fake kubelet knows no init container {init['name']!r}"
            _set_state(pod, FETCH, {"running": {"startedAt": _now()}}, init=True)
            if self.transfer_containers:
                code = await self._docker(run, init, network="host")
                message = self._tail(run, FETCH) if code else ""
            else:
                code, message = await self._fetch(run, init)
            _set_state(pod, FETCH, _terminated(code, message), init=True)
            if code != 0:
                for item in pod["status"]["containerStatuses"]:
                    item["state"] = {"waiting": {"reason": "PodInitializing"}}
                self._end(run, False)
                return
        if run.stopping.is_set():
            self._end(run, False)  # the deadline passed before the agent started
            return
        pod["status"]["phase"] = "Running"
        agent = _container(pod, AGENT)
        assert agent is not None
        collect = _container(pod, COLLECT)
        collecting: asyncio.Task[int] | None = None
        if collect is not None and self.transfer_containers:
            # As in a pod: collect runs beside the agent and waits for done/exit itself.
            _set_state(pod, COLLECT, {"running": {"startedAt": _now()}})
            collecting = asyncio.get_running_loop().create_task(self._docker(run, collect, network="host"))
        try:
            code = await self._agent(run, agent)
            _set_state(pod, AGENT, _terminated(code))
            self.cluster._changed(self._job(run))
            sent = 0
            if collecting is not None and code == DOCKER_RUN_FAILED and not _recorded(run):
                # Not a state of a real pod (its agent would wait in CreateContainerError): no hang in tests.
                collecting.cancel()
                sent = 1
                _set_state(pod, COLLECT, _terminated(sent, "the fake kubelet could not start the agent"))
            elif collecting is not None:
                sent = await asyncio.shield(collecting)
                _set_state(pod, COLLECT, _terminated(sent, self._tail(run, COLLECT) if sent else ""))
            elif collect is not None:
                _set_state(pod, COLLECT, {"running": {"startedAt": _now()}})
                sent, message = await self._collect(run, collect, code)
                _set_state(pod, COLLECT, _terminated(sent, message))
        finally:
            if collecting is not None and not collecting.done():
                collecting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await collecting
        self._end(run, code == 0 and sent == 0)

    def _tail(self, run: _PodRun, container: str) -> str:
        """The end of a transfer container's output: its terminated state's message, as a kubelet's log tail."""
        data = self.transfer_logs.get((run.pod["metadata"]["name"], container), bytearray())
        return bytes(data[-500:]).decode(errors="replace").strip()

    # -- fetch ----------------------------------------------------------------------

    async def _fetch(self, run: _PodRun, container: Obj) -> tuple[int, str]:
        """GET the areas with the in-token and untar them into the volumes mounted under /haflow/in."""
        try:
            env = self._env(container)
        except LookupError as e:
            return 1, str(e)
        headers = {"Authorization": f"Bearer {env['HAFLOW_TRANSFER_TOKEN']}"}
        archive = run.folder / "fetch.tar"
        try:
            async with aiohttp.ClientSession() as session:
                async with session.get(env["HAFLOW_TRANSFER_URL"], headers=headers, ssl=self.ssl) as resp:
                    if resp.status >= 400:
                        return CURL_HTTP_ERROR, f"The requested URL returned error: {resp.status}"
                    with archive.open("wb") as out:
                        async for chunk in resp.content.iter_chunked(256 * 1024):
                            out.write(chunk)
        except (aiohttp.ClientError, OSError) as e:
            return CURL_CANNOT_CONNECT, str(e)
        mounts = {
            path.removeprefix(IN_DIR + "/"): where
            for path, where in self._mounts(run, container).items()
            if path.startswith(IN_DIR + "/")
        }
        user, group = self._ids(run.pod, container)
        try:
            await asyncio.to_thread(_untar, archive, mounts, user, group)
        except (tarfile.TarError, OSError, ValueError) as e:
            return 2, f"tar: {e}"
        finally:
            archive.unlink(missing_ok=True)
        return 0, ""

    # -- agent ----------------------------------------------------------------------

    def _ids(self, pod: Obj, container: Obj) -> tuple[int, int]:
        context = {**(pod["spec"].get("securityContext") or {}), **(container.get("securityContext") or {})}
        return int(context["runAsUser"]), int(context["runAsGroup"])

    def _docker_args(self, run: _PodRun, container: Obj, env_file: Path, name: str, network: str) -> list[str]:
        pod = run.pod
        security = container.get("securityContext") or {}
        pod_security = pod["spec"].get("securityContext") or {}
        user, group = self._ids(pod, container)
        args = [
            "run", "--rm", "--name", name, "--label", f"{NODE_LABEL}=1",
            "--user", f"{user}:{group}", "--network", network, "--env-file", str(env_file),
        ]  # fmt: skip
        for key, value in pod["metadata"]["labels"].items():
            args += ["--label", f"{key}={value}"]
        if "fsGroup" in pod_security:
            args += ["--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        for capability in (security.get("capabilities") or {}).get("drop") or ():
            args += ["--cap-drop", capability]
        limits = (container.get("resources") or {}).get("limits") or {}
        if "memory" in limits:
            args += ["--memory", _memory(str(limits["memory"]))]
        if "cpu" in limits:
            args += ["--cpus", _cpus(str(limits["cpu"]))]
        if container.get("workingDir"):
            args += ["--workdir", container["workingDir"]]
        for mount in container.get("volumeMounts") or ():
            source = self._volume(run, mount["name"])
            if mount.get("subPath"):
                source = source / mount["subPath"]
            fields = ["type=bind", f"source={source}", f"target={mount['mountPath']}"]
            if mount.get("readOnly"):
                fields.append("readonly")
            args += ["--mount", _csv(fields)]
        command = list(container.get("command") or ())
        if command:
            args += ["--entrypoint", command[0]]
        args += [container["image"], *command[1:], *(container.get("args") or ())]
        return args

    async def _agent(self, run: _PodRun, container: Obj) -> int:
        """``docker run`` the agent container; its output is the pod's log; its exit code is returned."""
        _set_state(run.pod, AGENT, {"running": {"startedAt": _now()}})
        self.cluster._changed(self._job(run))
        return await self._docker(run, container, network="none", log=self.cluster.logs[self._job(run)])

    async def _docker(self, run: _PodRun, container: Obj, *, network: str, log: LogStream | None = None) -> int:
        """``docker run`` one container of the pod; its output goes to ``log`` (else to :attr:`transfer_logs`)."""
        pod = run.pod
        job = self._job(run)
        name = container["name"]
        out = (
            log.data if log is not None else self.transfer_logs.setdefault((pod["metadata"]["name"], name), bytearray())
        )
        try:
            env = self._env(container)
        except LookupError as e:
            out += f"fake kubelet: {e}\n".encode()
            return 1
        spanning = [key for key, value in env.items() if "\n" in value or "\r" in value]
        if spanning:
            out += f"fake kubelet: cannot pass {spanning} in an env file\n".encode()
            return 1
        env_file = run.folder / f"{name}.env"
        with env_file.open("x", encoding="utf-8") as written:
            os.chmod(env_file, 0o600)
            written.writelines(f"{key}={value}\n" for key, value in env.items())
        docker_name = f"fake-kubelet-{pod['metadata']['name']}-{name}"
        args = self._docker_args(run, container, env_file, docker_name, network)
        if name == AGENT:
            self.runs.append(args)
        run.containers[name] = (docker_name, None)
        process = await asyncio.create_subprocess_exec(
            self.docker, *args,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        run.containers[name] = (docker_name, process)
        assert process.stdout is not None
        try:
            while chunk := await process.stdout.read(64 * 1024):
                out += chunk
                if log is not None:
                    self.cluster._changed(job)
            return await process.wait()
        except asyncio.CancelledError:
            # The pod was deleted: its container goes (retried until docker run has ended).
            while process.returncode is None:
                remove = await asyncio.create_subprocess_exec(
                    self.docker, "rm", "--force", docker_name,
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
                )  # fmt: skip
                await remove.wait()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(process.wait(), 1.0)
            raise
        finally:
            env_file.unlink(missing_ok=True)

    # -- collect ----------------------------------------------------------------------

    async def _collect(self, run: _PodRun, container: Obj, agent_code: int) -> tuple[int, str]:
        """After ``done/exit`` was written: PUT a tar of the writable areas with the out-token."""
        mounts = self._mounts(run, container)
        if not _recorded(run):
            if agent_code == DOCKER_RUN_FAILED:
                # Not a state of a real pod (its agent would wait in CreateContainerError): no hang in tests.
                return 1, "the fake kubelet could not start the agent (docker run failed; see the log)"
            # The agent died before recording its exit: collect waits until the pod is killed.
            await run.stopping.wait()
            return SIGKILLED, "killed at the pod's deadline while waiting for the agent's exit"
        try:
            env = self._env(container)
        except LookupError as e:
            return 1, str(e)
        command = container["command"]
        members = command[4:]  # sh -c COLLECT_SCRIPT haflow-collect aN...
        # As the script checks: what the pod's user cannot read would be missing from its tar.
        unreadable = await asyncio.to_thread(_unreadable, [(m, mounts[f"{OUT_DIR}/{m}"]) for m in members])
        if unreadable is not None:
            return 3, f"haflow: the agent left {unreadable} unreadable: nothing is sent back"
        archive = run.folder / "collect.tar"
        await asyncio.to_thread(_tar, archive, [(m, mounts[f"{OUT_DIR}/{m}"]) for m in members])
        headers = {"Authorization": f"Bearer {env['HAFLOW_TRANSFER_TOKEN']}", "Content-Type": "application/x-tar"}
        try:
            async with aiohttp.ClientSession() as session:
                with archive.open("rb") as body:
                    async with session.put(env["HAFLOW_TRANSFER_URL"], data=body, headers=headers, ssl=self.ssl) as r:
                        await r.read()
                        if r.status >= 400:
                            return CURL_HTTP_ERROR, f"The requested URL returned error: {r.status}"
        except (aiohttp.ClientError, OSError) as e:
            return CURL_CANNOT_CONNECT, str(e)
        finally:
            archive.unlink(missing_ok=True)
        return 0, ""


def _recorded(run: _PodRun) -> bool:
    """Whether the agent's wrapper wrote its exit code to ``/haflow/done/exit``."""
    done = run.folder / "volumes" / "done" / "exit"
    return done.is_file() and bool(done.read_text().strip())


def _untar(archive: Path, mounts: Mapping[str, Path], uid: int, gid: int) -> None:
    """``tar -x -C /haflow/in`` as the pod's unprivileged user: entries land in the volume of their top folder."""
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            top = member.name.partition("/")[0]
            if top not in mounts:
                raise ValueError(f"{member.name}: cannot write outside the mounted areas (read-only root)")
            members.append(member)
        for top, where in mounts.items():
            # Each area's folder is its volume's folder: extract "aN/..." into the volume's parent under its name.
            wanted = [m for m in members if m.name == top or m.name.startswith(top + "/")]
            staging = where.parent
            if where.name != top:
                raise ValueError(f"the fake kubelet expects volume {where.name} mounted as {top}")
            # An unprivileged tar cannot change the volume's own folder (the kubelet's, 0777): it stays as it was.
            before = where.stat()
            tar.extractall(staging, members=wanted, filter="tar", numeric_owner=True)
            os.chown(where, before.st_uid, before.st_gid)
            os.chmod(where, before.st_mode & 0o7777)
            for folder, dirs, files in os.walk(where):
                for name in [*dirs, *files]:
                    os.chown(os.path.join(folder, name), uid, gid, follow_symlinks=False)


def _unreadable(members: list[tuple[str, Path]]) -> str | None:
    """The first folder its owner cannot list or file its owner cannot read (``aN/...``), if any."""
    for member, source in members:
        for folder, dirs, files in os.walk(source):
            for name, wanted in [(n, stat.S_IRUSR | stat.S_IXUSR) for n in ["", *dirs]] + [
                (n, stat.S_IRUSR) for n in files
            ]:
                path = os.path.join(folder, name)
                mode = os.lstat(path).st_mode
                if (stat.S_ISDIR(mode) or stat.S_ISREG(mode)) and mode & wanted != wanted:
                    return os.path.join(member, os.path.relpath(path, source)).removesuffix("/.")
    return None


def _tar(archive: Path, members: list[tuple[str, Path]]) -> None:
    """``tar -c -C /haflow/out aN...``: each area under its name, symlinks kept."""
    with tarfile.open(archive, "w", format=tarfile.PAX_FORMAT) as tar:
        for member, source in members:
            tar.add(source, arcname=member, recursive=True)


def node_folder() -> Path:
    """A fresh folder for a fake node's pods."""
    return Path(tempfile.mkdtemp(prefix="haflow-fake-node-"))
