"""Through the daemon, on real Docker: a second local user's prepared folder changes nothing of a real egress run."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from haflowd.sandbox.docker.local import DockerProvider
from tests.egress.conftest import Intruder
from tests.egress.test_daemon_egress import (  # noqa: F401 (fixtures)
    StartDaemon,
    daemon,
    instance,
    log_of,
    parse_probes,
    probes,
    provider,
    run_cleanup_step,
    write_agent,
)
from tests.egress.test_sidecar import API_PORT, Internet, internet  # noqa: F401 (fixture)


@pytest.fixture
def home() -> Iterator[Path]:
    """A HAFLOW_HOME short enough for its ``run`` folder to hold the sockets (no fallback)."""
    base = Path(tempfile.mkdtemp(prefix="hf-e2e-", dir="/tmp"))
    yield base / "home"
    shutil.rmtree(base, ignore_errors=True)


@pytest.mark.docker
async def test_intruders_old_folder_changes_nothing(
    daemon: StartDaemon,  # noqa: F811
    provider: DockerProvider,  # noqa: F811
    home: Path,
    instance: str,  # noqa: F811
    internet: Internet,  # noqa: F811
    intruder: Intruder,
) -> None:
    """With the old ``/tmp/haflow-<uid>-<instance>`` made first by another user (open to all), the run's agent
    reaches only its pair, through a socket in HAFLOW_HOME/run, and nothing ever appears in the intruder's folder."""
    old = Path(tempfile.gettempdir()) / f"haflow-{os.getuid()}-{instance}"
    shutil.rmtree(old, ignore_errors=True)
    made = intruder.run(f"import os; os.mkdir({str(old)!r}); os.chmod({str(old)!r}, 0o777)")
    assert made.returncode == 0, made.stderr
    try:
        write_agent(home, "cleanup-agent", probes(internet), egress=[f"api.test:{API_PORT}"])
        client = await daemon()
        mid, found = await run_cleanup_step(client)
        (run,) = found["runs"]
        log = log_of(home, mid, run["run_id"])
        assert found["status"] == "waiting_human", (found.get("last_error"), log)
        results = parse_probes(log)
        assert "200 Connection Established" in results["allowed"] and "API-OK" in results["allowed"]
        assert "403 Forbidden" in results["other_host"]
        assert provider.egress.root() == home.resolve() / "run"
        assert list(old.iterdir()) == []
        assert old.stat().st_uid == intruder.uid
    finally:
        shutil.rmtree(old, ignore_errors=True)
