"""The egress of the Docker provider's runs: one proxy and one forwarder sidecar per networked run.

A run whose agent lists ``egress`` pairs (or ``local_ports``) gets no network
of its own: it joins a sidecar that has only loopback, and the sidecar's
relay reaches the daemon's CONNECT proxy through a per-run Unix socket (see
:mod:`haflowd.egress`). If the proxy or the sidecar cannot start, the step
fails before the agent starts: there is no fallback to a bridge network.
After a daemon restart, :meth:`EgressRuns.resume` serves a still running
agent's socket again (its allowlist is kept in a label of the agent).
Sockets live in HAFLOW_HOME's private ``run`` folder
(:mod:`haflowd.egress.runtime`), which no other local user can prepare.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import attrs

from ...allowlist import Allowlist, parse_allowlist
from ...egress import runtime
from ...egress.proxy import EgressEvent, EgressProxy, Resolver, system_resolver
from ...egress.sidecar import (
    LABEL_ROLE,
    ROLE_EGRESS,
    agent_arguments,
    ensure_image,
    hand_over_socket,
    remove_sidecar,
    sidecar_name,
    start_sidecar,
)
from ..protocol import SandboxSpec

if TYPE_CHECKING:
    from ipaddress import IPv4Network, IPv6Network

__all__ = ["LABEL_EGRESS", "LABEL_ROLE", "ROLE_EGRESS", "EgressRuns"]

log = logging.getLogger(__name__)

#: Label of an agent container holding its allowlist, so a restart can serve it again.
LABEL_EGRESS = "haflow.egress"


def encode(allowlist: Allowlist) -> str:
    pairs = sorted(f"{e.host}:{e.port}" for e in allowlist.endpoints)
    ports = sorted(f"local:{p}" for p in allowlist.local_ports)
    return ",".join([*pairs, *ports])


def decode(label: str) -> Allowlist:
    items = [i for i in label.split(",") if i]
    return parse_allowlist(
        [i for i in items if not i.startswith("local:")],
        [int(i.removeprefix("local:")) for i in items if i.startswith("local:")],
    )


@attrs.define
class EgressRuns:
    """Proxies of live runs, by run id, for one Docker provider."""

    docker: str = "docker"
    instance: str | None = None
    #: HAFLOW_HOME, whose ``run`` folder holds the sockets (None: a private temporary folder of this process).
    home: Path | None = None
    #: The ``uid:gid`` the sidecar runs as (the agent's).
    user: str | None = None
    resolver: Resolver = system_resolver
    #: Networks a test's fake internet lives on (they pass the public-address check).
    exempt_networks: tuple[IPv4Network | IPv6Network, ...] = ()
    _proxies: dict[str, EgressProxy] = attrs.field(factory=dict, init=False)

    def root(self) -> Path:
        """The private folder this provider's run sockets live in (see :mod:`haflowd.egress.runtime`).

        Checked (and created) on every call: raises :class:`EgressUnavailable`
        naming the path and the fix when another user could have prepared it.
        """
        return runtime.runtime_root(self.home)

    def folder(self, run_id: str) -> Path:
        """Where ``run_id``'s socket folder is (whether or not it exists)."""
        return self.root() / run_id

    def _socket(self, run_id: str) -> Path:
        return runtime.run_folder(self.root(), run_id) / runtime.SOCKET_NAME

    async def open(self, spec: SandboxSpec) -> list[str]:
        """Start the run's proxy and sidecar; return the agent's extra ``docker run`` arguments."""
        allowlist = parse_allowlist(spec.egress, spec.local_ports)
        notes = spec.notes
        proxy = await self._serve(spec.run_id, allowlist, notes)
        try:
            image = await ensure_image(self.docker)
            labels = {"haflow.mission_id": spec.mission_id}
            if self.instance is not None:
                labels["haflow.instance"] = self.instance
            sidecar = await start_sidecar(
                self.docker,
                run_id=spec.run_id,
                socket_path=proxy.socket_path,
                allowlist=allowlist,
                image=image,
                labels=labels,
                user=self.user,
            )
        except BaseException:
            await self.close(spec.run_id)
            raise
        if notes is not None:
            notes(f"egress: only {encode(allowlist) or 'nothing'} reachable, through the daemon's proxy")
        return [*agent_arguments(sidecar, allowlist), "--label", f"{LABEL_EGRESS}={encode(allowlist)}"]

    async def _serve(self, run_id: str, allowlist: Allowlist, notes: Callable[[str], None] | None) -> EgressProxy:
        def on_event(event: EgressEvent) -> None:
            verdict = "allowed" if event.allowed else f"refused ({event.reason})"
            log.info("egress.connection", extra={"run_id": run_id, "target": event.target, "allowed": event.allowed})
            if notes is not None:
                with contextlib.suppress(OSError):
                    notes(f"egress {verdict}: {event.target}")

        old = self._proxies.pop(run_id, None)
        if old is not None:
            await old.close()
        proxy = EgressProxy(
            await asyncio.to_thread(self._socket, run_id),
            allowlist,
            resolver=self.resolver,
            on_event=on_event,
            exempt_networks=self.exempt_networks,
        )
        await proxy.start()
        self._proxies[run_id] = proxy
        return proxy

    async def resume(self, run_id: str, label: str) -> None:
        """Serve a re-attached run's socket again (the sidecar reconnects per connection)."""
        if run_id in self._proxies:
            return
        try:
            proxy = await self._serve(run_id, decode(label), None)
            # The surviving sidecar runs as another user when the daemon is root.
            hand_over_socket(proxy.socket_path, self.user)
        except Exception:
            log.exception("egress.resume_failed", extra={"run_id": run_id})

    def serving(self, run_id: str) -> bool:
        """Whether this process serves a proxy for ``run_id`` (its run is starting or live)."""
        return run_id in self._proxies

    async def close(self, run_id: str) -> None:
        """Remove the run's sidecar and stop its proxy; quiet if there is none."""
        with contextlib.suppress(Exception):
            await remove_sidecar(self.docker, sidecar_name(run_id))
        proxy = self._proxies.pop(run_id, None)
        if proxy is not None:
            await proxy.close()
            with contextlib.suppress(OSError):
                await asyncio.to_thread(runtime.remove_run_folder, proxy.socket_path.parent.parent, run_id)
