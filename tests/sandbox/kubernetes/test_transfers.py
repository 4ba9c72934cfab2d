"""Pods fetch a run's areas and hand them back over HTTP, each way with a one-time ticket and nothing else."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import stat
import tarfile
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import IO, Any

import pytest
from aiohttp import ClientPayloadError
from pytest_aiohttp import AiohttpClient

from haflowd.config import Config
from haflowd.sandbox import Mount, SandboxError
from haflowd.sandbox.areas import AreaPlan, plan_areas
from haflowd.sandbox.kubernetes.transfers import Direction, Ticket, TransferIssuer, TransferTickets
from haflowd.web import transfers_api
from haflowd.web.app import create_app
from haflowd.web.keys import TRANSFERS
from tests.conftest import AppClient
from tests.fakes import FakeSandbox
from tests.test_blocking import content_io_forbidden  # noqa: F401 - a fixture

DAEMON_TOKEN = "daemon-token-0123456789"
IN, OUT = transfers_api.IN_PATH, transfers_api.OUT_PATH
TAR = {"Content-Type": "application/x-tar"}
RUN = "r-0123abcd"
UID, GID = 1234, 2345


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def config(home: Path) -> Config:
    # The daemon has its own token, which must not open a transfer.
    return Config.from_env({}, home=home, port=0, token=DAEMON_TOKEN)


@pytest.fixture
def mounts(home: Path) -> list[Mount]:
    mission = home / "missions" / "m-0123abcd"
    work = mission / "work"
    (work / ".git").mkdir(parents=True)
    (work / "src.py").write_text("print(1)\n")
    (work / "pkg").mkdir()
    (work / "pkg" / "mod.py").write_text("x = 1\n")
    git = mission / "git"
    git.mkdir()
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    prompt = mission / "prompt.md"
    prompt.write_text("do it\n")
    return [
        Mount(work, "/workspace", name="workspace", max_bytes=10_000, max_files=20),
        Mount(git, "/workspace/.git", read_only=True, name="git-dir"),
        Mount(prompt, "/mission/prompt.md", read_only=True, name="prompt"),
    ]


@pytest.fixture
def plans(mounts: list[Mount]) -> list[AreaPlan]:
    return plan_areas(mounts)


@pytest.fixture
async def client(aiohttp_client: AiohttpClient, config: Config) -> AppClient:
    return await aiohttp_client(create_app(config, sandbox=FakeSandbox()))


def tickets_of(client: AppClient) -> TransferTickets:
    return client.app[TRANSFERS]


def issue(client: AppClient, plans: list[AreaPlan], direction: Direction, run_id: str = RUN, ttl: float = 600) -> str:
    return tickets_of(client).issue(
        run_id=run_id,
        plans=plans,
        direction=direction,
        uid=UID,
        gid=GID,
        ttl_seconds=ttl,
    )


def tar_of(*entries: tuple[str, bytes | str | None]) -> bytes:
    """A tar stream: (name, bytes) a file, (name, None) a folder, (name, "->target") a symlink,
    (name, "=>target") a hard link, (name, "|") a named pipe."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in entries:
            info = tarfile.TarInfo(name)
            if content is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif content == "|":
                info.type = tarfile.FIFOTYPE
                tar.addfile(info)
            elif isinstance(content, str):
                kind = tarfile.LNKTYPE if content.startswith("=>") else tarfile.SYMTYPE
                info.type, info.linkname = kind, content[2:]
                tar.addfile(info)
            else:
                info.size, info.mode = len(content), 0o644
                tar.addfile(info, io.BytesIO(content))
    return out.getvalue()


def back(*workspace: tuple[str, bytes | str | None]) -> bytes:
    """What a collect container sends: the workspace (a0) with ``workspace`` entries."""
    return tar_of(("a0", None), *workspace)


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): (p.read_text() if p.is_file() and not p.is_symlink() else "")
        for p in sorted(folder.rglob("*"))
    }


async def envelope_error(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = json.loads(await resp.read())
    assert body["success"] is False and body["data"] is None
    return str(body["error"])


class TestIn:
    async def test_download_holds_every_area_owned_by_the_agent(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """The init container gets one tar stream: aN/ per area, each entry owned by the ticket's uid:gid."""
        resp = await client.get(IN, headers=bearer(issue(client, plans, "in")))
        assert resp.status == 200 and resp.content_type == "application/x-tar"
        with tarfile.open(fileobj=io.BytesIO(await resp.read())) as tar:
            members = {m.name: m for m in tar.getmembers()}
            assert tar.extractfile(members["a0/src.py"]).read() == b"print(1)\n"  # type: ignore[union-attr]
        assert {"a0/src.py", "a0/pkg/mod.py", "a1/HEAD", "a2/prompt.md"} <= set(members)
        assert {(m.uid, m.gid) for m in members.values()} == {(UID, GID)}

    async def test_download_broken_off_is_not_a_whole_stream(
        self, client: AppClient, plans: list[AreaPlan], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A packer failing midway breaks the connection: the pod cannot mistake half a stream for all of it."""

        def failing(plans: Any, out: IO[bytes], uid: int, gid: int) -> None:
            out.write(b"x" * 300_000)
            raise OSError("disk gone")

        monkeypatch.setattr(transfers_api, "pack_areas", failing)
        resp = await client.get(IN, headers=bearer(issue(client, plans, "in")))
        assert resp.status == 200
        with pytest.raises(ClientPayloadError):
            await resp.read()

    async def test_slow_pods_do_not_hold_the_daemons_threads(
        self, client: AppClient, plans: list[AreaPlan], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """More stalled downloads than the default executor has workers: the daemon's other file I/O still runs."""
        release = threading.Event()

        def stalled(plans: Any, out: IO[bytes], uid: int, gid: int) -> None:
            out.write(b"x" * 1024)
            out.flush()
            release.wait(60)  # a pod that does not read on

        monkeypatch.setattr(transfers_api, "pack_areas", stalled)
        count = min(32, (os.cpu_count() or 1) + 4) + 2
        tokens = [issue(client, plans, "in") for _ in range(count)]
        responses = []

        async def stall_them_all() -> str:
            for token in tokens:
                resp = await client.get(IN, headers=bearer(token))
                responses.append(resp)
                assert resp.status == 200 and len(await resp.content.readexactly(1024)) == 1024
            return await asyncio.to_thread(lambda: "free")

        try:
            # Would hang (and time out) if the stalled packers held every worker of the default executor.
            assert await asyncio.wait_for(stall_them_all(), timeout=20) == "free"
        finally:
            release.set()
        for resp in responses:
            assert await resp.read() == b""

    async def test_failure_before_the_first_byte_is_an_envelope(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount]
    ) -> None:
        """An area gone before packing starts answers an error in the envelope, not a broken stream."""
        token = issue(client, plans, "in")
        mounts[0].source.rename(mounts[0].source.with_name("moved"))
        message = await envelope_error(await client.get(IN, headers=bearer(token)), 500)
        assert RUN in message


class TestOut:
    async def test_upload_replaces_writable_areas_and_leaves_read_only_ones(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount]
    ) -> None:
        """The workspace becomes what was sent (its nested .git kept); the git and prompt areas stay as they were."""
        hostile_readonly = tar_of(
            ("a0", None),
            ("a0/new.py", b"print(2)\n"),
            ("a0/pkg", None),
            ("a0/pkg/mod.py", b"x = 2\n"),
            ("a1", None),
            ("a1/HEAD", b"ref: refs/heads/evil\n"),
            ("a2", None),
            ("a2/prompt.md", b"evil\n"),
        )
        resp = await client.put(OUT, data=hostile_readonly, headers={**bearer(issue(client, plans, "out")), **TAR})
        assert resp.status == 204, await resp.text()
        work, git, prompt = (m.source for m in mounts)
        assert snapshot(work) == {".git": "", "new.py": "print(2)\n", "pkg": "", "pkg/mod.py": "x = 2\n"}
        assert (git / "HEAD").read_text() == "ref: refs/heads/main\n"
        assert prompt.read_text() == "do it\n"
        assert list(tickets_of(client).root.iterdir()) == []  # ticket used up, upload's temp file gone

    async def test_git_entries_of_the_workspace_are_ignored(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount]
    ) -> None:
        """A hand-made upload (the out-token is the pod's) putting hooks and config under the workspace's .git,
        however the names are spelled, writes nothing there: that place is the read-only git area's."""
        hostile = tar_of(
            ("a0", None),
            ("a0/new.py", b"print(2)\n"),
            ("a0/.git", None),
            ("a0/.git/hooks", None),
            ("a0/.git/hooks/pre-commit", b"#!/bin/sh\ntouch /tmp/pwned\n"),
            ("a0/./.git/config", b"[core]\n\tfsmonitor = touch /tmp/pwned\n"),
            ("a0//.git/info/attributes", b"* filter=evil\n"),
            ("a0/.git/HEAD", "->/etc/passwd"),
            ("a1/hooks/pre-commit", b"#!/bin/sh\n"),
        )
        resp = await client.put(OUT, data=hostile, headers={**bearer(issue(client, plans, "out")), **TAR})
        assert resp.status == 204, await resp.text()
        work, git, _ = (m.source for m in mounts)
        assert snapshot(work) == {".git": "", "new.py": "print(2)\n"}
        assert (work / ".git").is_dir() and not (work / ".git").is_symlink()
        assert snapshot(git) == {"HEAD": "ref: refs/heads/main\n"}

    async def test_oversized_upload_is_413_and_changes_nothing(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount]
    ) -> None:
        """A body past the areas' caps plus tar overhead is refused (413), with or without a Content-Length."""
        before = snapshot(mounts[0].source)
        cap = tickets_of(client).claim(issue(client, plans, "out"), "out").upload_cap  # type: ignore[union-attr]
        big = back(("a0/big.bin", b"\0" * (cap + 1)))
        message = await envelope_error(
            await client.put(OUT, data=big, headers={**bearer(issue(client, plans, "out")), **TAR}), 413
        )
        assert str(cap) in message

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(big), 64 * 1024):
                yield big[start : start + 64 * 1024]

        resp = await client.put(OUT, data=chunked(), headers={**bearer(issue(client, plans, "out")), **TAR})
        await envelope_error(resp, 413)
        assert snapshot(mounts[0].source) == before
        assert [p.name for p in tickets_of(client).root.iterdir() if ".tmp-" in p.name] == []

    @pytest.mark.parametrize(
        ("entries", "why"),
        [
            ((("/etc/cron.d/x", b"evil"),), "absolute"),
            ((("a0/../../escape.txt", b"evil"),), "climbs out"),
            (tuple((f"a0/f{i}.txt", b"x") for i in range(25)), "more than 20 entries"),
            ((("elsewhere/x", b"evil"),), "outside 'a0'"),
            ((("a0/big.bin", b"\0" * 10_001),), "more than 10000 bytes"),
        ],
        ids=["absolute", "dotdot", "too-many", "other-top", "too-big"],
    )
    async def test_hostile_archive_is_422_and_changes_nothing(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount], entries: Any, why: str
    ) -> None:
        """A name outside the area, a link out of it or a broken cap refuses the whole upload; nothing changes."""
        before = snapshot(mounts[0].source)
        body = back(("a0/new.py", b"print(2)\n"), *entries)
        resp = await client.put(OUT, data=body, headers={**bearer(issue(client, plans, "out")), **TAR})
        message = await envelope_error(resp, 422)
        assert "no area was changed" in message and why in message
        assert snapshot(mounts[0].source) == before
        assert not (mounts[0].source.parent.parent / "escape.txt").exists()

    @pytest.mark.parametrize(
        "entries",
        [
            (("a0/link", "->/etc/passwd"),),
            (("a0/pkg", None), ("a0/pkg/up", "->../../../outside")),
            (("a0/hard", "=>a1/HEAD"),),
            (("a0/pipe", "|"),),
        ],
        ids=["symlink-absolute", "symlink-climbs", "hardlink-out", "fifo"],
    )
    async def test_links_out_and_special_files_are_dropped(
        self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount], entries: Any
    ) -> None:
        """A link leading out of its area or a special file is left out; the rest of the area comes back."""
        body = back(("a0/new.py", b"print(2)\n"), *entries)
        resp = await client.put(OUT, data=body, headers={**bearer(issue(client, plans, "out")), **TAR})
        assert resp.status == 204, await resp.text()
        area = mounts[0].source
        assert (area / "new.py").read_text() == "print(2)\n"
        names = {str(p.relative_to(area)) for p in area.rglob("*")}
        assert not {"link", "pkg/up", "hard", "pipe"} & names
        assert not (area.parent.parent / "outside").exists()

    async def test_not_a_tar_is_422(self, client: AppClient, plans: list[AreaPlan], mounts: list[Mount]) -> None:
        """Garbage in place of an archive is refused like a hostile one."""
        before = snapshot(mounts[0].source)
        resp = await client.put(OUT, data=b"not a tar" * 200, headers={**bearer(issue(client, plans, "out")), **TAR})
        await envelope_error(resp, 422)
        assert snapshot(mounts[0].source) == before

    async def test_wrong_media_type_is_415_and_keeps_the_ticket(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """A body that is not application/x-tar is 415 before the claim, so the token still works afterwards."""
        token = issue(client, plans, "out")
        resp = await client.put(OUT, data=back(), headers={**bearer(token), "Content-Type": "application/json"})
        await envelope_error(resp, 415)
        resp = await client.put(OUT, data=back(("a0/new.py", b"1")), headers={**bearer(token), **TAR})
        assert resp.status == 204


class TestTickets:
    async def test_token_works_exactly_once(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """A second use of either token is refused (401), whatever the first did."""
        token_in, token_out = issue(client, plans, "in"), issue(client, plans, "out")
        assert (await client.get(IN, headers=bearer(token_in))).status == 200
        await envelope_error(await client.get(IN, headers=bearer(token_in)), 401)
        body = back(("a0/new.py", b"1"))
        assert (await client.put(OUT, data=body, headers={**bearer(token_out), **TAR})).status == 204
        await envelope_error(await client.put(OUT, data=body, headers={**bearer(token_out), **TAR}), 401)

    async def test_two_concurrent_claims_one_wins(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """Two downloads racing with one token: one gets the areas, the other 401."""
        token = issue(client, plans, "in")
        first, second = await asyncio.gather(
            client.get(IN, headers=bearer(token)), client.get(IN, headers=bearer(token))
        )
        assert sorted([first.status, second.status]) == [200, 401]

    def test_racing_threads_one_claim_wins(self, home: Path, plans: list[AreaPlan]) -> None:
        """Of many threads claiming one token at once, exactly one gets the ticket."""
        tickets = TransferTickets(home / "transfers")
        for _ in range(5):
            token = tickets.issue(run_id=RUN, plans=plans, direction="in", uid=1, gid=1, ttl_seconds=60)
            barrier = threading.Barrier(8)
            won: list[Ticket | None] = []

            def claim(token: str = token, barrier: threading.Barrier = barrier, won: list[Any] = won) -> None:
                barrier.wait()
                won.append(tickets.claim(token, "in"))

            threads = [threading.Thread(target=claim) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert sum(t is not None for t in won) == 1

    async def test_head_does_not_use_the_token_up(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """HEAD is no download (refused like any unrouted method); the token still opens the GET afterwards."""
        token = issue(client, plans, "in")
        assert (await client.head(IN, headers=bearer(token))).status in (401, 405)
        assert (await client.get(IN, headers=bearer(token))).status == 200

    async def test_wrong_direction_is_refused_and_keeps_the_ticket(
        self, client: AppClient, plans: list[AreaPlan]
    ) -> None:
        """An IN token at the OUT route (and back) is 401; it still opens its own direction."""
        token_in, token_out = issue(client, plans, "in"), issue(client, plans, "out")
        await envelope_error(await client.put(OUT, data=back(), headers={**bearer(token_in), **TAR}), 401)
        await envelope_error(await client.get(IN, headers=bearer(token_out)), 401)
        assert (await client.get(IN, headers=bearer(token_in))).status == 200

    async def test_expired_token_is_refused(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """A ticket past its wall-clock expiry is 401 and its file is removed."""
        root = tickets_of(client).root
        past = TransferTickets(root, clock=lambda: 1_000_000.0)
        token = past.issue(run_id=RUN, plans=plans, direction="in", uid=UID, gid=GID, ttl_seconds=3600)
        assert len(list(root.glob("*.json"))) == 1
        await envelope_error(await client.get(IN, headers=bearer(token)), 401)
        assert list(root.glob("*.json")) == []

    async def test_revoked_tokens_are_refused(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """revoke(run) ends every ticket of that run, and only of that run."""
        token_in, token_out = issue(client, plans, "in"), issue(client, plans, "out")
        other = issue(client, plans, "in", run_id="r-99999999")
        tickets_of(client).revoke(RUN)
        await envelope_error(await client.get(IN, headers=bearer(token_in)), 401)
        await envelope_error(await client.put(OUT, data=back(), headers={**bearer(token_out), **TAR}), 401)
        assert (await client.get(IN, headers=bearer(other))).status == 200

    async def test_ticket_survives_a_restart(
        self,
        aiohttp_client: AiohttpClient,
        client: AppClient,
        config: Config,
        plans: list[AreaPlan],
        mounts: list[Mount],
    ) -> None:
        """An OUT token issued before a restart opens the upload on the new daemon (whose start-up sweep keeps it)."""
        token = issue(client, plans, "out")
        await client.close()
        restarted = await aiohttp_client(create_app(config, sandbox=FakeSandbox()))
        resp = await restarted.put(OUT, data=back(("a0/after.py", b"1")), headers={**bearer(token), **TAR})
        assert resp.status == 204
        assert (mounts[0].source / "after.py").read_text() == "1"

    async def test_start_up_sweeps_expired_tickets(
        self, aiohttp_client: AiohttpClient, config: Config, home: Path, plans: list[AreaPlan]
    ) -> None:
        """A daemon starting removes tickets that expired while it was down, and a crash's temp files."""
        root = home / "transfers"
        TransferTickets(root, clock=lambda: 1_000_000.0).issue(
            run_id=RUN, plans=plans, direction="out", uid=1, gid=1, ttl_seconds=60
        )
        live = TransferTickets(root).issue(run_id=RUN, plans=plans, direction="out", uid=1, gid=1, ttl_seconds=60)
        (root / ".tmp-upload-0123.tar").write_bytes(b"half")
        await aiohttp_client(create_app(config, sandbox=FakeSandbox()))
        assert [p.name for p in root.iterdir()] == [hashlib.sha256(live.encode()).hexdigest() + ".json"]

    def test_file_holds_no_token_and_is_private(self, home: Path, plans: list[AreaPlan], mounts: list[Mount]) -> None:
        """The ticket is <sha256 of token>.json (0600, folder 0700) with the areas, never the token."""
        tickets = TransferTickets(home / "transfers")
        token = tickets.issue(run_id=RUN, plans=plans, direction="out", uid=UID, gid=GID, ttl_seconds=60)
        files = list(tickets.root.iterdir())
        assert [f.name for f in files] == [hashlib.sha256(token.encode()).hexdigest() + ".json"]
        raw = files[0].read_text()
        assert token not in raw
        record = json.loads(raw)
        assert record["run_id"] == RUN and record["direction"] == "out" and (record["uid"], record["gid"]) == (UID, GID)
        assert [a["source"] for a in record["areas"]] == [str(m.source) for m in mounts]
        assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
        assert stat.S_IMODE(tickets.root.stat().st_mode) == 0o700

    def test_claimed_plans_are_the_issued_ones(self, home: Path, plans: list[AreaPlan]) -> None:
        """A claimed ticket rebuilds the very AreaPlans it was issued for."""
        tickets = TransferTickets(home / "transfers")
        token = tickets.issue(run_id=RUN, plans=plans, direction="out", uid=UID, gid=GID, ttl_seconds=60)
        ticket = tickets.claim(token, "out")
        assert ticket is not None and ticket.plans == tuple(plans) and (ticket.uid, ticket.gid) == (UID, GID)

    def test_out_ticket_outside_the_home_is_refused(self, home: Path, tmp_path: Path) -> None:
        """Writing back anywhere but the daemon's folders cannot be issued, and a forged ticket file is ignored."""
        outside = tmp_path / "elsewhere"
        outside.mkdir()
        plans = plan_areas([Mount(outside, "/workspace")])
        tickets = TransferTickets(home / "transfers", writable_roots=(home,))
        with pytest.raises(SandboxError, match="outside the daemon's folders"):
            tickets.issue(run_id=RUN, plans=plans, direction="out", uid=1, gid=1, ttl_seconds=60)
        # A ticket for a folder in home, then edited on disk to point elsewhere.
        inside = home / "work"
        inside.mkdir(parents=True)
        token = tickets.issue(
            run_id=RUN, plans=plan_areas([Mount(inside, "/workspace")]), direction="out", uid=1, gid=1, ttl_seconds=60
        )
        (path,) = tickets.root.glob("*.json")
        path.write_text(path.read_text().replace(str(inside), str(outside)))
        assert tickets.claim(token, "out") is None
        # Reading is another matter: an IN ticket may name read-only sources anywhere.
        assert tickets.issue(run_id=RUN, plans=plans, direction="in", uid=1, gid=1, ttl_seconds=60)

    def test_sweep_removes_expired_and_leftovers_only(self, home: Path, plans: list[AreaPlan]) -> None:
        """sweep() drops expired tickets and a crash's temp and claimed files, and keeps live tickets."""
        now = [1_000_000.0]
        tickets = TransferTickets(home / "transfers", clock=lambda: now[0])
        tickets.issue(run_id=RUN, plans=plans, direction="in", uid=1, gid=1, ttl_seconds=10)
        live = tickets.issue(run_id=RUN, plans=plans, direction="out", uid=1, gid=1, ttl_seconds=1000)
        (tickets.root / ".tmp-upload-0123.tar").write_bytes(b"half")
        (tickets.root / f"{'0' * 64}.claimed-abcd").write_text("{}")
        now[0] += 100
        assert tickets.sweep() == 3
        assert [p.name for p in tickets.root.iterdir()] == [hashlib.sha256(live.encode()).hexdigest() + ".json"]

    def test_sweep_does_not_create_the_folder(self, home: Path) -> None:
        """A daemon that never issued a ticket has no transfers folder (its home keeps its layout)."""
        assert TransferTickets(home / "transfers").sweep() == 0
        assert not (home / "transfers").exists()

    def test_is_a_transfer_issuer(self, home: Path) -> None:
        """TransferTickets fits the protocol the Kubernetes provider depends on."""
        assert isinstance(TransferTickets(home / "transfers"), TransferIssuer)


class TestAuth:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer "}, bearer("x" * 43)],
        ids=["none", "basic", "empty", "unknown"],
    )
    async def test_no_valid_token_is_401_alike(self, client: AppClient, headers: dict[str, str]) -> None:
        """Missing, malformed and unknown tokens all get the same 401 in the envelope."""
        messages = {
            await envelope_error(await client.get(IN, headers=headers), 401),
            await envelope_error(await client.put(OUT, data=back(), headers={**headers, **TAR}), 401),
        }
        assert messages == {transfers_api.NO_TICKET}

    async def test_daemon_token_does_not_open_a_transfer(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """The daemon's own token (header or login cookie) is no ticket; the rest of /api still needs it."""
        await envelope_error(await client.get(IN, headers=bearer(DAEMON_TOKEN)), 401)
        await envelope_error(await client.put(OUT, data=back(), headers={**bearer(DAEMON_TOKEN), **TAR}), 401)
        await envelope_error(await client.get(IN, cookies={"haflow_token": DAEMON_TOKEN}), 401)
        # The exemption is these two routes only.
        await envelope_error(await client.get("/api/missions", headers=bearer(issue(client, plans, "in"))), 401)
        assert (await client.get("/api/missions", headers=bearer(DAEMON_TOKEN))).status == 200

    async def test_json_rule_is_waived_for_the_upload_only(self, client: AppClient) -> None:
        """Other routes still refuse a tar body (415): the waiver is the upload's alone."""
        resp = await client.post("/api/missions", data=back(), headers={**bearer(DAEMON_TOKEN), **TAR})
        await envelope_error(resp, 415)

    async def test_disallowed_origin_is_403_before_the_claim(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """A browser page's Origin is refused (403) on both routes, before the ticket is touched."""
        token_in, token_out = issue(client, plans, "in"), issue(client, plans, "out")
        evil = {"Origin": "https://evil.example"}
        await envelope_error(await client.get(IN, headers={**bearer(token_in), **evil}), 403)
        await envelope_error(await client.put(OUT, data=back(), headers={**bearer(token_out), **TAR, **evil}), 403)
        assert (await client.get(IN, headers=bearer(token_in))).status == 200

    async def test_rebinding_host_is_403(self, client: AppClient, plans: list[AreaPlan]) -> None:
        """The Host check still guards the transfer routes."""
        resp = await client.get(IN, headers={**bearer(issue(client, plans, "in")), "Host": "evil.example"})
        await envelope_error(resp, 403)


class TestDocument:
    async def test_routes_are_documented_with_their_own_security(self, client: AppClient) -> None:
        """Both routes are in the OpenAPI document: ticket-only security, tar bodies, 204 without content."""
        doc = json.loads(await (await client.get("/api/openapi.json", headers=bearer(DAEMON_TOKEN))).read())
        get_in, put_out = doc["paths"][IN]["get"], doc["paths"][OUT]["put"]
        assert get_in["security"] == put_out["security"] == [{"transferTicket": []}]
        assert "transferTicket" in doc["components"]["securitySchemes"]
        assert list(get_in["responses"]["200"]["content"]) == ["application/x-tar"]
        assert list(put_out["requestBody"]["content"]) == ["application/x-tar"]
        assert "content" not in put_out["responses"]["204"]
        assert {"401", "403", "413", "415", "422"} <= set(put_out["responses"])


class TestNoBlocking:
    @pytest.fixture
    def tokens(self, client: AppClient, plans: list[AreaPlan]) -> tuple[str, str]:
        # Issued before blockbuster is on: the provider writes a ticket (a few hundred bytes) in place.
        return issue(client, plans, "in"), issue(client, plans, "out")

    async def test_transfers_move_content_off_the_loop(
        self,
        client: AppClient,
        tokens: tuple[str, str],
        content_io_forbidden: Any,  # noqa: F811
    ) -> None:
        """Packing, receiving and unpacking read and write files only in threads (blockbuster raises otherwise)."""
        resp = await client.get(IN, headers=bearer(tokens[0]))
        assert resp.status == 200 and len(await resp.read()) > 1024
        resp = await client.put(OUT, data=back(("a0/new.py", b"1")), headers={**bearer(tokens[1]), **TAR})
        assert resp.status == 204
