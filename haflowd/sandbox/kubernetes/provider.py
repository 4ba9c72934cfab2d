"""The sandbox provider that runs agent steps as Kubernetes Jobs (EXPERIMENTAL).

EXPERIMENTAL: tested against a fake API server only (``tests/kube``), with
hand-driven pods or with a fake, Docker-backed kubelet that runs the agent
container in local Docker and emulates fetch and collect over the daemon's
real transfer endpoints; never against a real cluster. What each run is made of (a suspended Job, its Secret
and NetworkPolicy, then the Job resumed) and how files travel through the
daemon's transfer endpoints is described in :mod:`haflowd.sandbox.kubernetes.manifests`.

The sandbox id is the Job's name, ``haflow-<run_id>``; everything is found
again by name and labels, so a restarted daemon re-attaches.

* :meth:`KubernetesProvider.output` follows the ``agent`` container's log
  (``follow=true``) as raw bytes. A dropped stream (an API server timeout, a
  network error, a log rotation) is reopened, and the bytes already received
  are skipped: the log is read again from its start. Limitation: after the
  runtime rotated the log, its older part is gone, so skipping by count loses
  as many new bytes as the rotation dropped; once the container has exited,
  a new call reads the complete stored log (as far as it was not rotated
  away), each byte once.
* :meth:`KubernetesProvider.wait` polls the Job and its pod every
  ``poll_seconds`` (a watch would save requests, but a poll survives API
  server restarts and needs no resource version bookkeeping). It returns the
  ``agent`` container's own exit code once that container terminated and,
  when writable areas exist, the ``collect`` container sent them back.
* :meth:`KubernetesProvider.stop` lowers the *pod's* ``activeDeadlineSeconds``
  to 1: the kubelet sends SIGTERM, then SIGKILL after the pod's
  ``terminationGracePeriodSeconds`` (fixed at creation; the ``grace_seconds``
  argument cannot change it), and the pod object with its log stays for
  :meth:`output`. Deleting the pod or the Job would take the log with it.
  The wrapper passes SIGTERM to the agent and records its exit, so
  ``collect`` still sends the files back if it can within the grace period;
  if it cannot, :meth:`~KubernetesProvider.wait` still returns the agent's
  code (the run was stopped anyway) and logs ``sandbox.files_lost_on_stop``.
* A Job failed at its own ``activeDeadlineSeconds`` (the backstop while the
  daemon is away; the Job controller deletes the pod) waits as :data:`KILLED`;
  an evicted or otherwise disrupted pod raises :class:`SandboxError` naming
  the disruption; so does a failed ``fetch`` or ``collect`` container.

The tokens come from a :class:`TransferIssuer`. A run's out-token is used
long after :meth:`~KubernetesProvider.start`: the issuer must keep its
tickets across a daemon restart, or the files of runs that end while the
daemon was away do not come back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import attrs

from ..areas import AreaPlan, plan_areas
from ..lines import split_lines
from ..protocol import (
    LABEL_INSTANCE,
    LABEL_MISSION,
    LABEL_RUN,
    LABEL_STEP,
    MAX_LINE_BYTES,
    SandboxError,
    SandboxInfo,
    SandboxSpec,
    SandboxUnavailable,
)
from .manifests import (
    AGENT,
    COLLECT,
    FETCH,
    TOKEN_IN_KEY,
    TOKEN_OUT_KEY,
    KubeSettings,
    job_manifest,
    job_name,
    network_policy_manifest,
    owner_reference,
    secret_manifest,
    selector,
)
from .transfers import TransferIssuer

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

logger = logging.getLogger(__name__)

#: The exit code :meth:`KubernetesProvider.wait` reports for a run killed at
#: its deadline before its exit was recorded (as Docker reports a SIGKILL).
KILLED = 137
#: Waiting reasons of the agent container that no retry will cure.
_HOPELESS = frozenset({"InvalidImageName", "ErrImageNeverPull"})
#: Reasons of a terminated container whose command never ran (no shell in the image, a bad mount).
_NEVER_STARTED = frozenset({"StartError", "ContainerCannotRun"})
_SANDBOX_ID = re.compile(r"haflow-[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
#: Consecutive failed log reads of an exited container before output() gives up.
_LOG_TRIES = 5
_RBAC = (
    "jobs (create, get, list, patch, delete), pods (get, list, patch), pods/log (get), "
    "secrets (create, delete) and networkpolicies (create, delete)"
)

ApiClientFactory = Callable[[], Awaitable["ApiClient"]]


class KubeApiError(SandboxError):
    """The API server answered with an error status."""

    def __init__(self, message: str, *, status: int, reason: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


def kubeconfig_client(path: str | None = None, context: str | None = None) -> ApiClientFactory:
    """An :data:`ApiClientFactory` from a kubeconfig (``path``, ``context``), or in-cluster when inside a pod.

    Without ``path`` and ``context``, a daemon running in a pod uses its
    service account; elsewhere ``$KUBECONFIG`` or ``~/.kube/config``.
    """

    async def make() -> ApiClient:
        from kubernetes_asyncio.client import ApiClient, Configuration
        from kubernetes_asyncio.config import ConfigException, load_incluster_config, load_kube_config

        configuration = Configuration()
        try:
            if path is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                load_incluster_config(client_configuration=configuration)
            else:
                await load_kube_config(config_file=path, context=context, client_configuration=configuration)
        except (ConfigException, OSError, ValueError) as e:
            raise SandboxUnavailable(
                f"Cannot load the Kubernetes configuration ({e}). Set HAFLOW_KUBECONFIG and HAFLOW_KUBE_CONTEXT, "
                "or run the daemon in a pod with a service account."
            ) from None
        return ApiClient(configuration)

    return make


def _condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or ():
        if condition.get("type") == kind and condition.get("status") == "True":
            return dict(condition)
    return None


def _finished(job: dict[str, Any]) -> bool:
    return _condition(job, "Complete") is not None or _condition(job, "Failed") is not None


def _container_state(pod: dict[str, Any], name: str, *, init: bool = False) -> dict[str, Any]:
    key = "initContainerStatuses" if init else "containerStatuses"
    for status in (pod.get("status") or {}).get(key) or ():
        if status.get("name") == name:
            return dict(status.get("state") or {})
    return {}


def _has_container(pod: dict[str, Any], name: str) -> bool:
    return any(c.get("name") == name for c in (pod.get("spec") or {}).get("containers") or ())


def _why(state: dict[str, Any]) -> str:
    parts = [str(state[key]) for key in ("reason", "message") if state.get(key)]
    return ": ".join(parts) or "no reason given"


@attrs.define
class KubernetesProvider:
    """Runs sandboxes as Kubernetes Jobs (EXPERIMENTAL; see the module's docstring).

    ``api_client`` makes the configured ``kubernetes_asyncio`` client (see
    :func:`kubeconfig_client`; tests point one at a fake API server);
    ``issuer`` hands out the transfer tokens the daemon's
    ``/api/transfers/{in,out}`` endpoints accept.
    """

    settings: KubeSettings
    issuer: TransferIssuer
    api_client: ApiClientFactory
    max_line_bytes: int = MAX_LINE_BYTES
    #: Seconds between two looks at a run's Job and pod.
    poll_seconds: float = 2.0
    #: Seconds one API request may take (log streams excepted).
    request_timeout: float = 30.0
    #: Seconds a followed log may stay silent before it is reopened (a dead connection would hang).
    log_idle_seconds: float = 300.0
    _client: ApiClient | None = attrs.field(default=None, init=False)
    _client_lock: asyncio.Lock = attrs.field(factory=asyncio.Lock, init=False)

    # -- plumbing ---------------------------------------------------------

    async def _api(self) -> ApiClient:
        async with self._client_lock:
            if self._client is None:
                self._client = await self.api_client()
            return self._client

    async def aclose(self) -> None:
        """Close the API client's connections (runs keep going); a second call does nothing."""
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    @property
    def _ns(self) -> str:
        return self.settings.namespace

    async def _batch(self) -> Any:
        from kubernetes_asyncio.client import BatchV1Api

        return BatchV1Api(await self._api())

    async def _core(self) -> Any:
        from kubernetes_asyncio.client import CoreV1Api

        return CoreV1Api(await self._api())

    async def _networking(self) -> Any:
        from kubernetes_asyncio.client import NetworkingV1Api

        return NetworkingV1Api(await self._api())

    async def _open(self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Send one request; the raw ``aiohttp`` response, or :class:`KubeApiError` / :class:`SandboxUnavailable`."""
        kwargs.setdefault("_request_timeout", self.request_timeout)
        try:
            response = await call(*args, _preload_content=False, **kwargs)
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            host = self._client.configuration.host if self._client is not None else "?"
            raise SandboxUnavailable(
                f"The Kubernetes API server at {host} cannot be reached while {what} ({e or type(e).__name__}). "
                "Check HAFLOW_KUBECONFIG, HAFLOW_KUBE_CONTEXT and the network."
            ) from None
        if not 200 <= response.status < 300:
            async with response:
                body = await response.read()
            message, reason = "", str(response.reason or "")
            with contextlib.suppress(ValueError, AttributeError):
                status = json.loads(body)
                message, reason = str(status.get("message") or ""), str(status.get("reason") or reason)
            if response.status in (401, 403):
                raise SandboxUnavailable(
                    f"The Kubernetes API server refused {what} ({response.status} {reason}: {message}). "
                    f"The daemon's account needs, in namespace {self._ns}: {_RBAC}."
                )
            raise KubeApiError(
                f"The Kubernetes API server refused {what}: {message or reason} ({response.status})",
                status=response.status,
                reason=reason,
            )
        return response

    async def _json(self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> dict[str, Any]:
        response = await self._open(what, call, *args, **kwargs)
        try:
            async with response:
                body = await response.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            raise SandboxUnavailable(f"The Kubernetes API server's answer broke off while {what} ({e})") from None
        try:
            found = json.loads(body)
        except ValueError:
            raise SandboxError(f"The Kubernetes API server's answer is not JSON while {what}") from None
        if not isinstance(found, dict):
            raise SandboxError(f"Unexpected answer from the Kubernetes API server while {what}")
        return found

    async def _delete(self, what: str, call: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> None:
        """Delete quietly: an object already gone is fine."""
        try:
            await self._json(what, call, *args, **kwargs)
        except KubeApiError as e:
            if e.status != 404:
                raise

    async def _job(self, name: str) -> dict[str, Any] | None:
        try:
            batch = await self._batch()
            return await self._json(f"reading the Job {name}", batch.read_namespaced_job, name, self._ns)
        except KubeApiError as e:
            if e.status == 404:
                return None
            raise

    def _selector(self, run_id: str) -> str:
        return ",".join(f"{key}={value}" for key, value in selector(run_id, self.settings).items())

    async def _pod(self, name: str) -> dict[str, Any] | None:
        """The run's newest pod (a Job that is never retried has at most one)."""
        found = await self._json(
            f"listing the pods of {name}",
            (await self._core()).list_namespaced_pod,
            self._ns,
            label_selector=self._selector(_run_id(name)),
        )
        pods = [p for p in found.get("items") or () if isinstance(p, dict)]
        if not pods:
            return None
        return max(pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or ""))

    async def _state(self, name: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        return await self._job(name), await self._pod(name)

    # -- SandboxProvider ----------------------------------------------------

    async def check(self) -> None:
        """Raise :class:`SandboxUnavailable` with advice if the API server cannot be used."""
        try:
            await self._json(
                "listing Jobs (the start-up check)",
                (await self._batch()).list_namespaced_job,
                self._ns,
                limit=1,
                _request_timeout=15.0,
            )
        except KubeApiError as e:
            raise SandboxUnavailable(f"{e.message}. Is namespace {self._ns} right?") from None

    async def start(self, spec: SandboxSpec) -> str:
        """Create the run's Job (suspended), its Secret and NetworkPolicy, then resume the Job.

        Idempotent: a run whose Job already runs is not started again; one a
        crashed start left suspended is completed, with fresh tokens.
        """
        plans = plan_areas(spec.mounts)
        job = job_manifest(spec, self.settings, plans)
        network_policy_manifest(spec, self.settings, plans)  # refuses what cannot be allowed before creating
        name = job_name(spec.run_id)
        resumed = False
        try:
            created = await self._json(
                f"creating the Job {name}", (await self._batch()).create_namespaced_job, self._ns, job
            )
        except KubeApiError as e:
            if e.status != 409:
                raise SandboxError(f"Could not start the agent's Job: {e.message}") from None
            existing = await self._job(name)
            labels = ((existing or {}).get("metadata") or {}).get("labels") or {}
            if existing is None or labels.get(LABEL_MISSION) != spec.mission_id:
                raise SandboxError(f"Could not start the agent's Job: {name} is in use by another run") from None
            if not (existing.get("spec") or {}).get("suspend"):
                logger.info("sandbox.already_started", extra={"run_id": spec.run_id, "sandbox_id": name})
                return name
            created, resumed = existing, True
        except BaseException:
            # Cut off (cancelled, connection lost) after the request went out: the Job may exist.
            await asyncio.shield(self._discard(name))
            raise
        try:
            await self._complete(spec, plans, created, resumed=resumed)
        except BaseException:
            await asyncio.shield(self._discard(name))
            raise
        logger.info("sandbox.started", extra={"mission_id": spec.mission_id, "run_id": spec.run_id, "sandbox_id": name})
        return name

    async def _complete(self, spec: SandboxSpec, plans: list[AreaPlan], job: dict[str, Any], *, resumed: bool) -> None:
        name = job_name(spec.run_id)
        owner = owner_reference(job)
        core = await self._core()
        if resumed:
            # The tokens in a Secret an unfinished start left are no longer honoured: replace them.
            await asyncio.to_thread(self.issuer.revoke, spec.run_id)
            await self._delete(f"deleting the stale Secret {name}", core.delete_namespaced_secret, name, self._ns)
        # Tickets are files written with fsync: off the event loop.
        tokens = await asyncio.to_thread(self._issue, spec, plans)
        secret = secret_manifest(spec, self.settings, tokens=tokens, owner=owner)
        await self._json(f"creating the Secret {name}", core.create_namespaced_secret, self._ns, secret)
        policy = network_policy_manifest(spec, self.settings, plans, owner=owner)
        try:
            await self._json(
                f"creating the NetworkPolicy {name}",
                (await self._networking()).create_namespaced_network_policy,
                self._ns,
                policy,
            )
        except KubeApiError as e:
            if e.status != 409 or not resumed:
                raise
        await self._json(
            f"resuming the Job {name}",
            (await self._batch()).patch_namespaced_job,
            name,
            self._ns,
            {"spec": {"suspend": False}},
        )

    def _issue(self, spec: SandboxSpec, plans: list[AreaPlan]) -> dict[str, str]:
        settings = self.settings

        def issue(direction: Literal["in", "out"], ttl_seconds: float) -> str:
            return self.issuer.issue(
                run_id=spec.run_id,
                plans=plans,
                direction=direction,
                uid=settings.run_as_user,
                gid=settings.run_as_group,
                ttl_seconds=ttl_seconds,
            )

        tokens: dict[str, str] = {}
        if plans:
            # Used when the pod starts: after scheduling and pulling images.
            tokens[TOKEN_IN_KEY] = issue("in", float(settings.pending_seconds))
        if any(plan.writable for plan in plans):
            # Used after the run: the Job's deadline is the latest it can come.
            tokens[TOKEN_OUT_KEY] = issue(
                "out", float(settings.pending_seconds) + math.ceil(float(spec.limits.timeout_seconds)) + 600.0
            )
        return tokens

    async def _discard(self, name: str) -> None:
        """Best effort: remove whatever a failed start created."""
        with contextlib.suppress(SandboxError):
            await self.remove(name)

    async def output(self, sandbox_id: str) -> AsyncIterator[bytes]:
        """Yield the agent container's output line by line from its beginning (see the module's docstring)."""
        name = _checked(sandbox_id)
        buf = bytearray()
        received = 0
        failures = 0
        while True:
            if failures:
                if failures >= _LOG_TRIES:
                    raise SandboxError(f"Could not read the agent's log after {failures} tries")
                await asyncio.sleep(self.poll_seconds)
            try:
                job, pod = await self._state(name)
            except SandboxError as e:
                failures += 1
                logger.info("sandbox.log_state_failed", extra={"sandbox_id": name, "error": e.message})
                continue
            agent = _container_state(pod, AGENT) if pod is not None else {}
            if "running" not in agent and "terminated" not in agent:
                phase = ((pod or {}).get("status") or {}).get("phase")
                if (job is None and pod is None) or (pod is None and job is not None and _finished(job)):
                    break  # gone, or ended without a pod: nothing (more) to read
                if phase in ("Succeeded", "Failed"):
                    break  # ended before the agent started (its files could not be fetched)
                await asyncio.sleep(self.poll_seconds)
                continue
            assert pod is not None
            exited = "terminated" in agent
            try:
                async with contextlib.aclosing(self._log(str(pod["metadata"]["name"]))) as chunks:
                    async for chunk in chunks:
                        # Every connection reads the log from its start: skip what was received before.
                        if chunk.position + len(chunk.data) <= received:
                            continue
                        fresh = chunk.data[received - chunk.position :]
                        received += len(fresh)
                        failures = 0
                        buf += fresh
                        for item in split_lines(buf, self.max_line_bytes, final=False):
                            yield item
            except TimeoutError:
                # Silent for log_idle_seconds: maybe a dead connection, maybe a quiet agent. Reopen.
                continue
            except (SandboxError, aiohttp.ClientError, OSError) as e:
                # Dropped: reopen and skip what arrived. While the agent runs, following is
                # best effort and never gives up; an exited agent's log must be readable.
                logger.info("sandbox.log_reconnect", extra={"sandbox_id": name, "error": str(e) or type(e).__name__})
                if exited:
                    failures += 1
                else:
                    await asyncio.sleep(self.poll_seconds)
                continue
            if exited:
                break
            # Ended while the agent ran (dropped, rotated, or it exited meanwhile): look again.
        for item in split_lines(buf, self.max_line_bytes, final=True):
            yield item

    async def _log(self, pod_name: str) -> AsyncGenerator[_Chunk, None]:
        """The ``agent`` container's log from its start, as chunks with their offset in this stream."""
        response = await self._open(
            f"reading the log of {pod_name}",
            (await self._core()).read_namespaced_pod_log,
            pod_name,
            self._ns,
            container=AGENT,
            follow=True,
            _request_timeout=aiohttp.ClientTimeout(
                total=None, sock_connect=self.request_timeout, sock_read=self.log_idle_seconds
            ),
        )
        position = 0
        async with response:
            async for data in response.content.iter_any():
                yield _Chunk(position, data)
                position += len(data)

    async def wait(self, sandbox_id: str) -> int:
        """Wait until the agent exited and its files came back; return the agent container's exit code."""
        name = _checked(sandbox_id)
        while True:
            job, pod = await self._state(name)
            code = _judge(name, job, pod)
            if code is not None:
                return code
            await asyncio.sleep(self.poll_seconds)

    async def stop(self, sandbox_id: str, *, grace_seconds: float = 3.0) -> None:
        """SIGTERM the pod's containers, SIGKILL after the pod's grace period; quiet if already ended."""
        name = _checked(sandbox_id)
        job, pod = await self._state(name)
        phase = ((pod or {}).get("status") or {}).get("phase")
        if pod is not None and (pod.get("status") or {}).get("startTime") and phase not in ("Succeeded", "Failed"):
            pod_name = str(pod["metadata"]["name"])
            try:
                await self._json(
                    f"stopping the pod {pod_name}",
                    (await self._core()).patch_namespaced_pod,
                    pod_name,
                    self._ns,
                    {"spec": {"activeDeadlineSeconds": 1}},
                )
            except KubeApiError as e:
                if e.status not in (404, 422):
                    raise SandboxError(f"Could not stop the agent's pod: {e.message}") from None
            return
        if job is None or _finished(job):
            return
        if (job.get("spec") or {}).get("suspend"):
            await self.remove(name)  # never resumed: nothing ran
            return
        # No pod started yet: the Job's own deadline fails it, and wait() reports the kill.
        try:
            await self._json(
                f"stopping the Job {name}",
                (await self._batch()).patch_namespaced_job,
                name,
                self._ns,
                {"spec": {"activeDeadlineSeconds": 1}},
            )
        except KubeApiError as e:
            if e.status != 404:
                raise SandboxError(f"Could not stop the agent's Job: {e.message}") from None

    async def remove(self, sandbox_id: str) -> None:
        """Delete the Job (and with it its pod), its Secret and NetworkPolicy; revoke its tokens. Quiet if gone."""
        name = _checked(sandbox_id)
        await asyncio.to_thread(self.issuer.revoke, _run_id(name))
        await self._delete(
            f"deleting the Job {name}",
            (await self._batch()).delete_namespaced_job,
            name,
            self._ns,
            propagation_policy="Background",
        )
        await self._delete(f"deleting the Secret {name}", (await self._core()).delete_namespaced_secret, name, self._ns)
        await self._delete(
            f"deleting the NetworkPolicy {name}",
            (await self._networking()).delete_namespaced_network_policy,
            name,
            self._ns,
        )

    async def list(self) -> list[SandboxInfo]:
        """Every Job of this installation carrying a run id; running until it completed or failed."""
        wanted = LABEL_RUN
        if self.settings.instance is not None:
            wanted += f",{LABEL_INSTANCE}={self.settings.instance}"
        found = await self._json(
            "listing the agents' Jobs", (await self._batch()).list_namespaced_job, self._ns, label_selector=wanted
        )
        infos = []
        for job in found.get("items") or ():
            metadata = job.get("metadata") or {}
            labels = metadata.get("labels") or {}
            name = str(metadata.get("name") or "")
            if not _SANDBOX_ID.match(name) or not labels.get(LABEL_RUN):
                continue
            infos.append(
                SandboxInfo(
                    sandbox_id=name,
                    mission_id=str(labels.get(LABEL_MISSION, "")),
                    run_id=str(labels[LABEL_RUN]),
                    step_id=str(labels.get(LABEL_STEP, "")),
                    running=not _finished(job),
                )
            )
        return infos


@attrs.frozen
class _Chunk:
    """Bytes of a log stream and where they start in it."""

    position: int
    data: bytes


def _checked(sandbox_id: str) -> str:
    if not _SANDBOX_ID.match(sandbox_id):
        raise SandboxError(f"Invalid sandbox id: {sandbox_id!r}")
    return sandbox_id


def _run_id(name: str) -> str:
    return name.removeprefix("haflow-")


def _judge(name: str, job: dict[str, Any] | None, pod: dict[str, Any] | None) -> int | None:
    """The run's exit code once it is known, ``None`` while it runs; :class:`SandboxError` for a lost run."""
    if job is None and pod is None:
        raise SandboxError(f"Lost track of the agent's Job {name}: it no longer exists")
    failed = _condition(job, "Failed") if job is not None else None
    deadline = failed is not None and failed.get("reason") == "DeadlineExceeded"
    if failed is not None and failed.get("reason") == "PodFailurePolicy":
        raise SandboxError(f"The agent's pod was evicted or disrupted, so the run did not finish ({_why(failed)})")
    if pod is not None:
        status = pod.get("status") or {}
        stopped = deadline or status.get("reason") == "DeadlineExceeded"
        disruption = _condition(pod, "DisruptionTarget")
        if not stopped and (disruption is not None or status.get("reason") == "Evicted"):
            why = _why(disruption or status)
            raise SandboxError(f"The agent's pod was evicted or disrupted, so the run did not finish ({why})")
        agent = _container_state(pod, AGENT).get("terminated")
        if agent is not None:
            code = int(agent.get("exitCode", KILLED))
            if not _has_container(pod, COLLECT):
                return code
            collect = _container_state(pod, COLLECT)
            sent = collect.get("terminated")
            if sent is None:
                if status.get("phase") in ("Succeeded", "Failed"):
                    sent = {"exitCode": -1, "reason": "never ran"}
                elif agent.get("reason") in _NEVER_STARTED:
                    # The wrapper never ran, so collect would wait for its exit file until the deadline.
                    raise SandboxError(f"The agent's container could not start ({_why(agent)})")
                else:
                    return None  # still sending the files back
            if int(sent.get("exitCode", -1)) != 0:
                if stopped:
                    # A stopped run's files come back only if collect made it within the grace period.
                    logger.warning("sandbox.files_lost_on_stop", extra={"sandbox_id": name})
                    return code
                raise SandboxError(
                    f"The agent's files did not come back: its collect container exited with "
                    f"{sent.get('exitCode')} ({_why(sent)})"
                )
            return code
        fetch = _container_state(pod, FETCH, init=True).get("terminated")
        if fetch is not None and int(fetch.get("exitCode", 0)) != 0:
            raise SandboxError(
                f"The agent's files could not be brought into its pod: the fetch container exited with "
                f"{fetch.get('exitCode')} ({_why(fetch)})"
            )
        waiting = _container_state(pod, AGENT).get("waiting") or {}
        if waiting.get("reason") in _HOPELESS:
            raise SandboxError(f"The agent's container cannot start ({_why(waiting)})")
        if stopped and status.get("phase") in ("Failed", "Succeeded"):
            return KILLED
        if status.get("phase") == "Failed":
            raise SandboxError(f"The agent's pod failed before the agent ran ({_why(status)})")
    if deadline:
        logger.info("sandbox.deadline_exceeded", extra={"sandbox_id": name})
        return KILLED
    if failed is not None:
        raise SandboxError(f"The agent's Job failed ({_why(failed)})")
    if job is not None and pod is None and _condition(job, "Complete") is not None:
        raise SandboxError(f"The agent's Job {name} finished, but its pod is gone: its exit code is lost")
    return None
