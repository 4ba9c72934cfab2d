"""One-time tickets that let a pod fetch a run's areas and hand the writable ones back.

A pod of a Kubernetes engine shares no disk with the daemon. Its init
container downloads the run's areas as one tar stream (``GET
/api/transfers/in``); after the agent exits, a collect container uploads the
writable areas (``PUT /api/transfers/out``). Each carries its own one-time
bearer token, issued here by the provider (:class:`TransferIssuer`).

A ticket is a small JSON file ``<sha256 of the token>.json`` in ``root``
(file 0600, folder 0700), written atomically. The token itself is never
stored: whoever reads the folder cannot use a ticket. Tickets are files, not
memory, because a collect container may upload while the daemon restarts.

Claiming renames the file away (``os.rename`` is atomic), so of two
concurrent claims exactly one wins, and a claimed ticket is gone for good:
an IN download that breaks off cannot be retried with the same token (the
pod fails, and the run is retried with fresh tickets).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import re
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from ...store import TMP_PREFIX, atomic_write
from ..areas import AreaPlan
from ..protocol import Mount, SandboxError

log = logging.getLogger(__name__)

Direction = Literal["in", "out"]
DIRECTIONS: tuple[Direction, ...] = ("in", "out")
#: What the file of a ticket is called after ``<sha256 hex>``; a claimed one gets ``.claimed-<random>``.
SUFFIX = ".json"
CLAIMED = ".claimed-"
#: The layout of a ticket file, written into it so a later daemon can tell.
FORMAT = 1
#: What :func:`secrets.token_urlsafe` makes; anything else is not a token of ours.
_TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,255}")
#: Bytes a tar stream may spend on one entry beyond its content: its header,
#: a PAX header with its record, and the padding to 512-byte blocks.
ENTRY_OVERHEAD = 4 * 512
#: The end-of-archive blocks and the padding of the last record.
ARCHIVE_OVERHEAD = 2 * 512 + 10240


@runtime_checkable
class TransferIssuer(Protocol):
    """What a provider without a shared disk needs: tickets for its pods' transfers."""

    def issue(
        self,
        *,
        run_id: str,
        plans: Sequence[AreaPlan],
        direction: Literal["in", "out"],
        uid: int,
        gid: int,
        ttl_seconds: float,
    ) -> str:
        """Store a ticket for the areas ``plans`` of ``run_id`` and return its fresh one-time token."""
        ...

    def revoke(self, run_id: str) -> None:
        """Remove every ticket of ``run_id`` (used or not)."""
        ...


@attrs.frozen
class Ticket:
    """What a claimed token allows: one transfer of the areas ``plans`` of ``run_id``."""

    run_id: str
    direction: Direction
    #: Wall-clock seconds since the epoch (a restart must not extend it).
    expires_at: float
    #: Owner of every entry of an IN stream (the agent's user in the pod).
    uid: int
    gid: int
    plans: tuple[AreaPlan, ...]

    @property
    def upload_cap(self) -> int:
        """The most bytes an OUT upload may take: every writable area's cap and its entries' overhead."""
        total = ARCHIVE_OVERHEAD
        for plan in self.plans:
            if plan.writable:
                entries = 2 if plan.is_file else plan.mount.max_files + 1
                total += plan.mount.max_bytes + entries * ENTRY_OVERHEAD
        return total


def token_digest(token: str) -> str:
    """The name a ticket is stored under: the SHA-256 of its token, in hex."""
    return hashlib.sha256(token.encode("ascii")).hexdigest()


def _inside(path: Path, roots: Sequence[Path]) -> bool:
    resolved = path.resolve()
    return any(resolved == root or resolved.is_relative_to(root) for root in (r.resolve() for r in roots))


def _plan_record(plan: AreaPlan) -> dict[str, Any]:
    mount = plan.mount
    return {
        "member": plan.member,
        "source": str(mount.source),
        "target": plan.target,
        "mount_target": mount.target,
        "file_name": plan.file_name,
        "keep": list(plan.keep),
        "read_only": mount.read_only,
        "name": mount.name,
        "max_bytes": mount.max_bytes,
        "max_files": mount.max_files,
    }


def _field(record: dict[str, Any], key: str, kind: type) -> Any:
    value = record[key]
    # bool is an int to Python, never to a ticket.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{key} is not a {kind.__name__}")
    return value


def _name(value: str) -> str:
    if not _NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(f"bad name {value!r}")
    return value


def _parse_plan(record: dict[str, Any]) -> AreaPlan:
    file_name = record["file_name"]
    if file_name is not None:
        file_name = _name(_field(record, "file_name", str))
    source = Path(_field(record, "source", str))
    if not source.is_absolute():
        raise ValueError("a relative source")
    mount = Mount(
        source=source,
        target=_field(record, "mount_target", str),
        read_only=_field(record, "read_only", bool),
        name=_field(record, "name", str),
        max_bytes=_field(record, "max_bytes", int),
        max_files=_field(record, "max_files", int),
    )
    keep = tuple(_name(_field({"keep": k}, "keep", str)) for k in _field(record, "keep", list))
    return AreaPlan(_name(_field(record, "member", str)), mount, _field(record, "target", str), file_name, keep)


def _parse(data: bytes, digest: str) -> Ticket:
    """A ticket from its file; raises ValueError (or KeyError, TypeError) for anything off."""
    record = json.loads(data)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError("not a ticket of this layout")
    # The file's name is the digest; its content must say the same (a file renamed by hand is no ticket).
    if not hmac.compare_digest(_field(record, "token_sha256", str).encode(), digest.encode()):
        raise ValueError("the ticket does not match its name")
    direction = _field(record, "direction", str)
    if direction not in DIRECTIONS:
        raise ValueError(f"bad direction {direction!r}")
    areas = _field(record, "areas", list)
    return Ticket(
        run_id=_field(record, "run_id", str),
        direction=direction,
        expires_at=float(_field(record, "expires_at", float)),
        uid=_field(record, "uid", int),
        gid=_field(record, "gid", int),
        plans=tuple(_parse_plan(_field({"area": a}, "area", dict)) for a in areas),
    )


@attrs.define
class TransferTickets:
    """The tickets of transfers in flight, one file each under ``root`` (``HAFLOW_HOME/transfers``).

    ``writable_roots`` are the folders an OUT ticket may write into (the
    daemon's home); by default ``root``'s parent. A ticket naming a writable
    area elsewhere is refused when issued and ignored when claimed: the
    ticket folder is trusted no more than it must be.
    """

    root: Path
    writable_roots: tuple[Path, ...] | None = None
    #: Wall clock, for expiry (replaceable in tests).
    clock: Callable[[], float] = time.time

    @property
    def _roots(self) -> tuple[Path, ...]:
        return self.writable_roots if self.writable_roots is not None else (self.root.parent,)

    def _path(self, digest: str) -> Path:
        return self.root / f"{digest}{SUFFIX}"

    def _outside_roots(self, plans: Sequence[AreaPlan]) -> AreaPlan | None:
        return next((p for p in plans if p.writable and not _inside(Path(p.mount.source), self._roots)), None)

    # -- TransferIssuer ----------------------------------------------------

    def issue(
        self,
        *,
        run_id: str,
        plans: Sequence[AreaPlan],
        direction: Literal["in", "out"],
        uid: int,
        gid: int,
        ttl_seconds: float,
    ) -> str:
        """Store a ticket and return its token (``secrets.token_urlsafe(32)``), which is stored nowhere."""
        if direction not in DIRECTIONS:
            raise SandboxError(f"A transfer goes 'in' or 'out', not {direction!r}")
        if not run_id or len(run_id) > 200 or not run_id.isprintable():
            raise SandboxError(f"Cannot issue a transfer ticket for run {run_id!r}")
        if min(uid, gid) < 0 or not (math.isfinite(ttl_seconds) and ttl_seconds > 0):
            raise SandboxError("A transfer ticket needs a user, a group and a lifetime above zero")
        if direction == "out" and (outside := self._outside_roots(plans)) is not None:
            raise SandboxError(
                f"Refusing a ticket that writes back to {outside.mount.source}: it is outside the daemon's folders"
            )
        token = secrets.token_urlsafe(32)
        digest = token_digest(token)
        record = {
            "format": FORMAT,
            "token_sha256": digest,
            "run_id": run_id,
            "direction": direction,
            "expires_at": self.clock() + float(ttl_seconds),
            "uid": uid,
            "gid": gid,
            "areas": [_plan_record(p) for p in plans],
        }
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        atomic_write(self._path(digest), json.dumps(record, ensure_ascii=False).encode(), mode=0o600)
        log.info("transfer.issued", extra={"run_id": run_id, "direction": direction})
        return token

    def revoke(self, run_id: str) -> None:
        for path, ticket in self._tickets():
            if ticket is not None and ticket.run_id == run_id:
                path.unlink(missing_ok=True)

    # -- the web side -------------------------------------------------------

    def claim(self, token: str, direction: Direction) -> Ticket | None:
        """Use up the ticket of ``token`` for ``direction``; ``None`` if there is none to use.

        Unknown, malformed, expired, already claimed and revoked tokens all
        answer ``None`` alike. A token of the other direction answers
        ``None`` too but stays usable for its own (a wrong address is not an
        attempt to reuse it). Of two concurrent claims exactly one wins.
        """
        if direction not in DIRECTIONS or not _TOKEN.fullmatch(token):
            return None
        digest = token_digest(token)
        path = self._path(digest)
        ticket = self._read(path, digest)
        if ticket is None or ticket.direction != direction:
            return None
        if ticket.expires_at <= self.clock():
            path.unlink(missing_ok=True)
            return None
        claimed = self.root / f"{digest}{CLAIMED}{secrets.token_hex(4)}"
        try:
            os.rename(path, claimed)
        except FileNotFoundError:
            return None  # another claim (or a revoke) got there first
        claimed.unlink(missing_ok=True)
        log.info("transfer.claimed", extra={"run_id": ticket.run_id, "direction": direction})
        return ticket

    def sweep(self) -> int:
        """Remove expired tickets and what a crash left (claimed and temp files); return how many."""
        removed = 0
        now = self.clock()
        for path, ticket in self._tickets(leftovers=True):
            if ticket is None or ticket.expires_at <= now:
                path.unlink(missing_ok=True)
                removed += 1
        if removed:
            log.info("transfer.swept", extra={"removed": removed})
        return removed

    # -- files --------------------------------------------------------------

    def _tickets(self, *, leftovers: bool = False) -> Iterator[tuple[Path, Ticket | None]]:
        """Each ticket file with its ticket (``None``: unreadable); with ``leftovers``, other files too."""
        try:
            entries = sorted(self.root.iterdir())
        except FileNotFoundError:
            return
        for path in entries:
            digest, dot, rest = path.name.partition(".")
            if f"{dot}{rest}" == SUFFIX and re.fullmatch(r"[0-9a-f]{64}", digest):
                ticket = self._read(path, digest)
                if ticket is not None or leftovers:
                    yield path, ticket
            elif leftovers and (CLAIMED in path.name or path.name.startswith(TMP_PREFIX)):
                yield path, None

    def _read(self, path: Path, digest: str) -> Ticket | None:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            ticket = _parse(data, digest)
        except (ValueError, KeyError, TypeError) as e:
            log.warning("transfer.broken_ticket", extra={"file": path.name, "error": str(e)})
            return None
        if ticket.direction == "out" and (outside := self._outside_roots(ticket.plans)) is not None:
            log.warning("transfer.ticket_outside_roots", extra={"file": path.name, "source": str(outside.mount.source)})
            return None
        return ticket


def tickets_in(home: Path) -> TransferTickets:
    """The daemon's one-time transfer tickets under ``home`` (on disk, so every instance sees the same)."""
    return TransferTickets(home / "transfers", writable_roots=(home,))
