"""A networked run's proxy bookkeeping: the allowlist kept in a label, proxies served and closed by run id.

Starting sidecars needs Docker and is tested end to end in tests/egress/; here
the parts that run without an engine: the label and a resumed run's proxy.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from haflowd.allowlist import parse_allowlist
from haflowd.sandbox.docker.egress_runs import EgressRuns, decode, encode

NO_DOCKER = "/nonexistent/docker"


@pytest.fixture
def runs(tmp_path: Path) -> EgressRuns:
    home = tmp_path / "home"
    home.mkdir(mode=0o700)
    return EgressRuns(docker=NO_DOCKER, home=home, user=f"{os.getuid()}:{os.getgid()}")


class TestLabel:
    def test_round_trip(self) -> None:
        """An allowlist written into the label reads back equal, pairs and local ports sorted."""
        allowlist = parse_allowlist(["b.example:443", "a.example:8443"], [11434])
        label = encode(allowlist)
        assert label == "a.example:8443,b.example:443,local:11434"
        assert decode(label) == allowlist

    def test_empty(self) -> None:
        """An empty allowlist is an empty label, and back."""
        assert encode(parse_allowlist()) == ""
        assert decode("") == parse_allowlist()


class TestProxies:
    async def test_resume_serves_the_runs_socket_until_closed(self, runs: EgressRuns) -> None:
        """A resumed run gets its proxy on a socket in its private folder; closing removes both."""
        run_id = "r-0123abcd"
        assert not runs.serving(run_id)
        await runs.resume(run_id, "api.example:443")
        try:
            assert runs.serving(run_id)
            folder = runs.folder(run_id)
            assert folder.parent == runs.root()
            assert stat.S_IMODE(folder.stat().st_mode) == 0o700
            assert any(stat.S_ISSOCK(p.lstat().st_mode) for p in folder.iterdir())
        finally:
            await runs.close(run_id)
        assert not runs.serving(run_id)
        assert not runs.folder(run_id).exists()

    async def test_resume_twice_keeps_one_proxy(self, runs: EgressRuns) -> None:
        """Resuming a run already served changes nothing."""
        await runs.resume("r-0123abcd", "")
        try:
            await runs.resume("r-0123abcd", "")
            assert runs.serving("r-0123abcd")
        finally:
            await runs.close("r-0123abcd")

    async def test_bad_label_is_logged_not_raised(self, runs: EgressRuns) -> None:
        """A label that does not parse leaves the run unserved without failing the re-attach."""
        await runs.resume("r-0123abcd", "not an endpoint")
        assert not runs.serving("r-0123abcd")

    async def test_close_of_an_unknown_run_is_quiet(self, runs: EgressRuns) -> None:
        """Closing a run with no proxy (and no reachable engine) does nothing."""
        await runs.close("r-ffffffff")
        assert not runs.serving("r-ffffffff")
