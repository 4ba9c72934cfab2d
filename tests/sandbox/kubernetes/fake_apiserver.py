"""A small in-memory Kubernetes API server for the Kubernetes provider's tests.

It serves only what :class:`~haflowd.sandbox.kubernetes.KubernetesProvider`
uses: Jobs (create, get, list, patch, delete), Secrets and NetworkPolicies
(create, delete), pods (list by label, patch) and a pod's log, followed or
not. Errors are real ``Status`` objects (404 NotFound, 409 AlreadyExists).

By default there is no kubelet: a resumed Job gets one pending pod, and tests
drive it (:meth:`FakeCluster.run`, :meth:`~FakeCluster.write`,
:meth:`~FakeCluster.exit`, :meth:`~FakeCluster.evict`, ...). Followed logs can
be dropped mid-stream (:meth:`~FakeCluster.drop_streams`) or rotated
(:meth:`~FakeCluster.rotate`).

With :attr:`FakeCluster.node` set (see :mod:`tests.sandbox.kubernetes.fake_kubelet`, a fake
kubelet running pods in local Docker containers), the node runs each pod
instead: it is told when a pod is made, deleted, or patched.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import uuid
from collections.abc import Iterator
from typing import Any

import attrs
from aiohttp import web
from aiohttp.typedefs import Handler

Obj = dict[str, Any]

_PODS_SUFFIX = itertools.count(10000)


def status(code: int, reason: str, message: str, **details: Any) -> web.Response:
    """A Kubernetes ``Status`` object as the API server sends it for an error."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }
    return web.json_response(body, status=code)


def _merge(target: Obj, patch: Obj) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        elif value is None:
            target.pop(key, None)
        else:
            target[key] = copy.deepcopy(value)


def _matches(obj: Obj, selector: str | None) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    for term in filter(None, (selector or "").split(",")):
        key, eq, value = term.partition("=")
        if not eq:
            if key not in labels:
                return False
        elif labels.get(key) != value:
            return False
    return True


@attrs.define
class LogStream:
    """A pod's ``agent`` log as the node keeps it: its bytes, and who follows them."""

    data: bytearray = attrs.field(factory=bytearray)
    changed: asyncio.Condition = attrs.field(factory=asyncio.Condition)
    #: Bumped by drop_streams(): every follower of an older generation ends.
    generation: int = 0
    #: When set, the next follow stream is cut after this many bytes.
    cut_after: int | None = None


@attrs.define
class FakeCluster:
    """The API server's state and the switches tests drive."""

    jobs: dict[str, Obj] = attrs.field(factory=dict)
    secrets: dict[str, Obj] = attrs.field(factory=dict)
    policies: dict[str, Obj] = attrs.field(factory=dict)
    pods: dict[str, Obj] = attrs.field(factory=dict)
    logs: dict[str, LogStream] = attrs.field(factory=dict)
    #: Every request: (method, path).
    requests: list[tuple[str, str]] = attrs.field(factory=list)
    #: The Authorization header of every request.
    credentials: list[str | None] = attrs.field(factory=list)
    #: Log requests answered so far.
    log_opens: int = 0
    #: What a stop (pod deadline) does to the agent: its exit code, and whether collect finishes in time.
    stop_exit_code: int = 143
    stop_collect_code: int = 0
    #: When set, creating a Job stores it and then hangs until this is set (a lost answer).
    hang_creates: asyncio.Event | None = None
    #: Answer log requests with this status (e.g. 500), when set.
    log_error: int | None = None
    #: Answer every request with this status (e.g. 403), when set.
    refuse: int | None = None
    #: A fake node that runs the pods (``admit``, ``forget``, ``patched``); ``None``: tests drive them.
    node: Any = None

    # -- test switches ----------------------------------------------------

    def pod_of(self, job: str) -> Obj:
        found = [p for p in self.pods.values() if p["metadata"]["labels"].get("job-name") == job]
        assert len(found) == 1, f"{job} has {len(found)} pods"
        return found[0]

    def _statuses(self, pod: Obj) -> Iterator[Obj]:
        yield from pod["status"].get("containerStatuses", [])

    def _set(self, pod: Obj, container: str, state: Obj) -> None:
        for item in self._statuses(pod):
            if item["name"] == container:
                item["state"] = state

    def _changed(self, job: str) -> None:
        stream = self.logs.get(job)
        if stream is not None:

            async def notify() -> None:
                async with stream.changed:
                    stream.changed.notify_all()

            asyncio.get_running_loop().create_task(notify())

    def run(self, job: str) -> None:
        """The pod was scheduled, its files fetched, and the agent (and collect) containers run."""
        pod = self.pod_of(job)
        pod["status"]["phase"] = "Running"
        pod["status"]["startTime"] = "2026-01-01T00:00:00Z"
        for item in pod["status"].get("initContainerStatuses", []):
            item["state"] = {"terminated": {"exitCode": 0, "reason": "Completed"}}
        for item in self._statuses(pod):
            item["state"] = {"running": {"startedAt": "2026-01-01T00:00:01Z"}}

    def write(self, job: str, data: bytes) -> None:
        """The agent wrote ``data``."""
        self.logs[job].data += data
        self._changed(job)

    def exit(self, job: str, code: int, *, collect: int | None = 0) -> None:
        """The agent exited with ``code``; collect then exits with ``collect`` (``None``: still sending)."""
        pod = self.pod_of(job)
        self._set(pod, "agent", {"terminated": {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}})
        has_collect = any(c["name"] == "collect" for c in pod["spec"]["containers"])
        if has_collect and collect is None:
            self._changed(job)
            return
        if has_collect:
            assert collect is not None
            self._set(
                pod,
                "collect",
                {"terminated": {"exitCode": collect, "reason": "Completed" if collect == 0 else "Error"}},
            )
        ok = code == 0 and (collect in (0, None) or not has_collect)
        pod["status"]["phase"] = "Succeeded" if ok else "Failed"
        self._finish(job, "Complete" if ok else "Failed", "" if ok else "BackoffLimitExceeded")
        self._changed(job)

    def fail_fetch(self, job: str, code: int = 22) -> None:
        """The init container could not fetch the files."""
        pod = self.pod_of(job)
        pod["status"]["phase"] = "Failed"
        pod["status"]["initContainerStatuses"] = [
            {"name": "fetch", "state": {"terminated": {"exitCode": code, "reason": "Error"}}}
        ]
        self._finish(job, "Failed", "BackoffLimitExceeded")

    def evict(self, job: str) -> None:
        """The node evicted the pod: DisruptionTarget on the pod, the Job failed by its pod failure policy."""
        pod = self.pod_of(job)
        pod["status"]["phase"] = "Failed"
        pod["status"]["reason"] = "Evicted"
        pod["status"]["message"] = "The node was low on resource: memory."
        pod["status"].setdefault("conditions", []).append(
            {"type": "DisruptionTarget", "status": "True", "reason": "TerminationByKubelet", "message": "memory"}
        )
        for item in self._statuses(pod):
            item["state"] = {"terminated": {"exitCode": 137, "reason": "Error"}}
        self._finish(
            job,
            "Failed",
            "PodFailurePolicy",
            "Container agent for pod was terminated: DisruptionTarget condition matched rule 0",
        )
        self._changed(job)

    def deadline(self, job: str) -> None:
        """The Job's activeDeadlineSeconds passed: it failed, and its pod was deleted."""
        for name in [n for n, p in self.pods.items() if p["metadata"]["labels"].get("job-name") == job]:
            del self.pods[name]
            if self.node is not None:
                self.node.forget(name)
        self._finish(job, "Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        self._changed(job)

    def drop_streams(self, job: str) -> None:
        """Every follower of the log loses its connection now."""
        self.logs[job].generation += 1
        self._changed(job)

    def cut_next_stream(self, job: str, after: int) -> None:
        """The next followed stream breaks off after ``after`` bytes."""
        self.logs[job].cut_after = after

    def rotate(self, job: str) -> None:
        """The runtime rotated the log: what was written so far is gone from it."""
        self.logs[job].data = bytearray()
        self.drop_streams(job)

    def _finish(self, job: str, kind: str, reason: str, message: str = "") -> None:
        obj = self.jobs.get(job)
        if obj is None:
            return
        condition = {"type": kind, "status": "True", "reason": reason, "message": message}
        obj.setdefault("status", {}).setdefault("conditions", []).append(condition)

    def _stop_pod(self, pod: Obj) -> None:
        """What the kubelet does at a pod's active deadline: kill every container, fail the pod."""
        job = pod["metadata"]["labels"]["job-name"]
        pod["status"]["phase"] = "Failed"
        pod["status"]["reason"] = "DeadlineExceeded"
        pod["status"]["message"] = "Pod was active on the node longer than the specified deadline"
        self._set(pod, "agent", {"terminated": {"exitCode": self.stop_exit_code, "reason": "Error"}})
        self._set(pod, "collect", {"terminated": {"exitCode": self.stop_collect_code, "reason": "Error"}})
        self._finish(job, "Failed", "BackoffLimitExceeded")
        self._changed(job)

    def _make_pod(self, job: Obj) -> None:
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["template"])
        pod_name = f"{name}-{next(_PODS_SUFFIX)}"
        labels = {**template["metadata"]["labels"], "job-name": name}
        waiting = {"waiting": {"reason": "PodInitializing"}}
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": job["metadata"]["namespace"],
                "labels": labels,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": "2026-01-01T00:00:00Z",
            },
            "spec": template["spec"],
            "status": {
                "phase": "Pending",
                "containerStatuses": [{"name": c["name"], "state": waiting} for c in template["spec"]["containers"]],
                "initContainerStatuses": [
                    {"name": c["name"], "state": {"waiting": {"reason": "Pending"}}}
                    for c in template["spec"].get("initContainers", [])
                ],
            },
        }
        self.pods[pod_name] = pod
        self.logs[name] = LogStream()
        if self.node is not None:
            self.node.admit(pod)

    # -- the API ------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        jobs = "/apis/batch/v1/namespaces/{ns}/jobs"
        secrets = "/api/v1/namespaces/{ns}/secrets"
        policies = "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies"
        pods = "/api/v1/namespaces/{ns}/pods"
        app.router.add_post(jobs, self._create("jobs", "batch", self.jobs))
        app.router.add_get(jobs, self._list(self.jobs, "JobList"))
        app.router.add_get(jobs + "/{name}", self._get("jobs", "batch", self.jobs))
        app.router.add_patch(jobs + "/{name}", self._patch_job)
        app.router.add_delete(jobs + "/{name}", self._delete_job)
        app.router.add_post(secrets, self._create("secrets", "", self.secrets))
        app.router.add_delete(secrets + "/{name}", self._delete("secrets", "", self.secrets))
        app.router.add_post(policies, self._create("networkpolicies", "networking.k8s.io", self.policies))
        app.router.add_delete(policies + "/{name}", self._delete("networkpolicies", "networking.k8s.io", self.policies))
        app.router.add_get(pods, self._list(self.pods, "PodList"))
        app.router.add_patch(pods + "/{name}", self._patch_pod)
        app.router.add_get(pods + "/{name}/log", self._log)
        return app

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        self.credentials.append(request.headers.get("Authorization"))
        if self.refuse is not None:
            return status(self.refuse, "Forbidden", 'jobs.batch is forbidden: User "haflow" cannot list resource')
        return await handler(request)

    def _create(self, kind: str, group: str, store: dict[str, Obj]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            obj = await request.json()
            name = obj["metadata"]["name"]
            if name in store:
                where = f"{kind}.{group}" if group else kind
                return status(
                    409, "AlreadyExists", f'{where} "{name}" already exists', name=name, group=group, kind=kind
                )
            obj["metadata"]["namespace"] = request.match_info["ns"]
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["resourceVersion"] = "1"
            obj["metadata"]["creationTimestamp"] = "2026-01-01T00:00:00Z"
            store[name] = obj
            if kind == "jobs" and not obj["spec"].get("suspend"):
                self._make_pod(obj)
            if self.hang_creates is not None:
                await self.hang_creates.wait()
            return web.json_response(obj, status=201)

        return handler

    def _get(self, kind: str, group: str, store: dict[str, Obj]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name not in store:
                return status(404, "NotFound", f'{kind}.{group} "{name}" not found', name=name, group=group, kind=kind)
            return web.json_response(store[name])

        return handler

    def _list(self, store: dict[str, Obj], kind: str) -> Any:
        async def handler(request: web.Request) -> web.Response:
            wanted = request.query.get("labelSelector")
            items = [obj for obj in store.values() if _matches(obj, wanted)]
            if "limit" in request.query:
                items = items[: int(request.query["limit"])]
            return web.json_response({"kind": kind, "apiVersion": "v1", "metadata": {}, "items": items})

        return handler

    def _delete(self, kind: str, group: str, store: dict[str, Obj]) -> Any:
        async def handler(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if store.pop(name, None) is None:
                where = f"{kind}.{group}" if group else kind
                return status(404, "NotFound", f'{where} "{name}" not found', name=name, group=group, kind=kind)
            return web.json_response(
                {"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}}
            )

        return handler

    async def _delete_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if self.jobs.pop(name, None) is None:
            return status(404, "NotFound", f'jobs.batch "{name}" not found', name=name, group="batch", kind="jobs")
        assert request.query.get("propagationPolicy") == "Background", "pods must go with the Job"
        for pod_name in [n for n, p in self.pods.items() if p["metadata"]["labels"].get("job-name") == name]:
            del self.pods[pod_name]
            if self.node is not None:
                self.node.forget(pod_name)
        # Garbage collection: what the Job owns goes with it.
        for store in (self.secrets, self.policies):
            for key in [
                k
                for k, o in store.items()
                if any(r.get("name") == name for r in o["metadata"].get("ownerReferences", []))
            ]:
                del store[key]
        self._changed(name)
        return web.json_response({"kind": "Status", "apiVersion": "v1", "status": "Success", "details": {"name": name}})

    async def _patch_job(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        job = self.jobs.get(name)
        if job is None:
            return status(404, "NotFound", f'jobs.batch "{name}" not found', name=name, group="batch", kind="jobs")
        was_suspended = job["spec"].get("suspend")
        _merge(job, await request.json())
        if was_suspended and not job["spec"].get("suspend"):
            self._make_pod(job)
        if job["spec"].get("activeDeadlineSeconds") == 1:
            self.deadline(name)
        return web.json_response(job)

    async def _patch_pod(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        pod = self.pods.get(name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        _merge(pod, await request.json())
        if self.node is not None:
            self.node.patched(pod)
        elif pod["spec"].get("activeDeadlineSeconds") == 1:
            self._stop_pod(pod)
        return web.json_response(pod)

    async def _log(self, request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        pod = self.pods.get(name)
        if pod is None:
            return status(404, "NotFound", f'pods "{name}" not found', name=name, kind="pods")
        assert request.query.get("container") == "agent"
        if self.log_error is not None:
            return status(self.log_error, "InternalError", "the node's log cannot be read")
        job = pod["metadata"]["labels"]["job-name"]
        stream = self.logs[job]
        state = next(s["state"] for s in pod["status"]["containerStatuses"] if s["name"] == "agent")
        if "waiting" in state:
            return status(400, "BadRequest", f'container "agent" in pod "{name}" is waiting to start: PodInitializing')
        self.log_opens += 1
        follow = request.query.get("follow") == "true"
        response = web.StreamResponse()
        await response.prepare(request)
        generation = stream.generation
        cut, stream.cut_after = stream.cut_after, None
        sent = 0
        while True:
            data = stream.data
            end = len(data) if cut is None else min(len(data), cut)
            if sent < end:
                chunk = bytes(data[sent:end])
                await response.write(chunk)
                sent += len(chunk)
                continue
            if cut is not None and sent >= cut:
                assert request.transport is not None
                request.transport.close()  # broken mid-stream
                return response
            agent = next(s["state"] for s in pod["status"]["containerStatuses"] if s["name"] == "agent")
            if not follow or "terminated" in agent or name not in self.pods:
                break
            if stream.generation != generation:
                assert request.transport is not None
                request.transport.close()  # dropped
                return response
            async with stream.changed:
                try:
                    await asyncio.wait_for(stream.changed.wait(), 0.05)
                except TimeoutError:
                    pass
        await response.write_eof()
        return response
