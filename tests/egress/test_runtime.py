"""Another local user can neither prepare nor redirect the folders of the daemon's egress sockets (issue 18, finding 1).

The attacker is a real second user, created for the test (``useradd``), whose
steps run in a child process with that user's uid and gid. The daemon's side
runs as this process (root, as a system service does, so it hands sockets to
the sidecar's user 65534).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web

from haflowd.config import Config
from haflowd.egress import runtime
from haflowd.egress.errors import EgressUnavailable
from haflowd.egress.sidecar import hand_over_socket
from haflowd.sandbox.docker.egress_runs import EgressRuns
from haflowd.sandbox.protocol import instance_id
from haflowd.web.app import create_app
from tests.egress.conftest import Intruder
from tests.fakes import FakeSandbox

#: The sidecar's user when the daemon is root.
SIDECAR = "65534:65534"


@pytest.fixture
def base() -> Iterator[Path]:
    """A short folder in /tmp that other users may traverse (a HAFLOW_HOME's parent)."""
    path = Path(tempfile.mkdtemp(prefix="hf-rt-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def den(base: Path, intruder: Intruder) -> Path:
    """A folder of the intruder's own, where they keep what they point symlinks at."""
    path = base / "den"
    path.mkdir(mode=0o755)
    os.chown(path, intruder.uid, intruder.gid)
    return path


@pytest.fixture
def home(base: Path) -> Path:
    path = base / "home"
    path.mkdir(mode=0o700)
    return path


def intruder_folder(intruder: Intruder, path: Path) -> None:
    """The intruder makes ``path``, mode 0755: a folder the daemon must never chown, chmod or fill."""
    done = intruder.run(f"import os; os.mkdir({str(path)!r}); os.chmod({str(path)!r}, 0o755)")
    assert done.returncode == 0, done.stderr


def assert_untouched(path: Path, intruder: Intruder) -> None:
    st = path.lstat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (intruder.uid, intruder.gid, 0o755)
    assert list(path.iterdir()) == []


def run_id() -> str:
    return "r-" + os.urandom(4).hex()


class TestOldPredictableFolder:
    """The old socket folder, ``<tmp>/haflow-<uid>-<instance>``, is anyone's to create: the daemon no longer uses it."""

    async def test_prepared_old_folder_changes_nothing(
        self, intruder: Intruder, home: Path, den: Path, request: pytest.FixtureRequest
    ) -> None:
        """An intruder who made the old folder first, with a run's folder pointing at their own, gets no socket
        and no chown or chmod; the socket is in HAFLOW_HOME/run, where the intruder can neither look nor swap it."""
        rid = run_id()
        old = Path(tempfile.gettempdir()) / f"haflow-{os.getuid()}-{instance_id(home)}"
        target = den / "target"
        shutil.rmtree(old, ignore_errors=True)
        request.addfinalizer(lambda: shutil.rmtree(old, ignore_errors=True))
        done = intruder.run(
            f"""
            import os
            os.mkdir({str(old)!r}); os.chmod({str(old)!r}, 0o777)
            os.mkdir({str(target)!r}); os.chmod({str(target)!r}, 0o755)
            os.symlink({str(target)!r}, os.path.join({str(old)!r}, {rid!r}))
            """
        )
        assert done.returncode == 0, done.stderr
        runs = EgressRuns(instance=instance_id(home), home=home, user=SIDECAR)
        try:
            await runs.resume(rid, "api.test:443")  # as after a daemon restart: serve and hand over
            assert runs.serving(rid)
            assert_untouched(target, intruder)
            sock = runs.folder(rid) / runtime.SOCKET_NAME
            assert sock.parent.parent == home.resolve() / "run"
            assert stat.S_ISSOCK(sock.lstat().st_mode)
            assert sorted(p.name for p in old.iterdir()) == [rid] and (old / rid).is_symlink()

            # What the attack did next: replace the socket. The intruder cannot even see it.
            swap = intruder.run(
                f"""
                import os, sys
                try:
                    os.unlink({str(sock)!r})
                except PermissionError:
                    sys.exit(7)
                """
            )
            assert swap.returncode == 7, (swap.returncode, swap.stderr)
            assert stat.S_ISSOCK(sock.lstat().st_mode)
        finally:
            await runs.close(rid)
            shutil.rmtree(old, ignore_errors=True)
        assert not runs.folder(rid).exists()


class TestStartUpRefusesForeignFolders:
    """HAFLOW_HOME/run must be the daemon's and 0700: anything else stops the daemon with the path and the fix."""

    async def test_folder_made_by_another_user(self, intruder: Intruder, home: Path) -> None:
        """A run folder another user made (while HAFLOW_HOME was open to them) is refused at start-up, untouched."""
        home.chmod(0o777)
        intruder_folder(intruder, home / "run")
        home.chmod(0o700)
        config = Config.from_env({"HAFLOW_AUTH": "none"}, home=home, port=0)
        runner = web.AppRunner(create_app(config, sandbox=FakeSandbox()))
        with pytest.raises(EgressUnavailable) as refused:
            await runner.setup()  # the daemon's start-up
        await runner.cleanup()
        message = str(refused.value)
        assert str(home / "run") in message and f"belongs to uid {intruder.uid}" in message
        assert "rm -rf" in message
        assert_untouched(home / "run", intruder)

    @pytest.mark.parametrize("mode", [0o755, 0o750, 0o701, 0o777])
    def test_loose_modes(self, home: Path, mode: int) -> None:
        """The daemon's own folder with looser modes than 0700 is refused, and left as it was (never chmodded)."""
        (home / "run").mkdir()
        (home / "run").chmod(mode)
        with pytest.raises(EgressUnavailable, match=f"mode {mode:04o}; it must be 0700.*chmod 700 -- {home}/run"):
            runtime.check_at_start(home)
        with pytest.raises(EgressUnavailable, match="must be 0700"):
            runtime.runtime_root(home)
        assert stat.S_IMODE((home / "run").stat().st_mode) == mode

    def test_home_writable_by_others(self, home: Path) -> None:
        """A HAFLOW_HOME others can write to (they could rename run/ and put theirs) is refused, naming it."""
        home.chmod(0o777)
        with pytest.raises(EgressUnavailable, match=f"parent {home} can be changed by another local user"):
            runtime.check_at_start(home)

    def test_symlink_in_place_of_the_folder(self, intruder: Intruder, home: Path, den: Path) -> None:
        """HAFLOW_HOME/run as a symlink to the intruder's folder is refused, never followed."""
        intruder_folder(intruder, den / "target")
        (home / "run").symlink_to(den / "target")
        with pytest.raises(EgressUnavailable, match="not a folder of its own"):
            runtime.check_at_start(home)
        assert_untouched(den / "target", intruder)

    def test_fresh_folder(self, home: Path) -> None:
        """Start-up creates nothing; the first networked run makes HAFLOW_HOME/run, 0700 and its own; the next start
        accepts it."""
        assert runtime.check_at_start(home) is None and list(home.iterdir()) == []
        root = runtime.runtime_root(home)
        assert root == home.resolve() / "run"
        st = root.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
        assert runtime.check_at_start(home) == root
        assert runtime.runtime_root(home) == root


class TestRunFolderSymlink:
    """A run's folder replaced by a symlink is refused; its target's owner and mode stay as they were."""

    async def test_resume_refuses_symlinked_run_folder(
        self, intruder: Intruder, home: Path, den: Path, caplog: pytest.LogCaptureFixture
    ) -> None:
        """After a restart, resuming a run whose folder is now a symlink chowns and chmods nothing through it."""
        rid = run_id()
        runs = EgressRuns(instance=instance_id(home), home=home, user=SIDECAR)
        intruder_folder(intruder, den / "target")
        (runs.root() / rid).symlink_to(den / "target")
        with caplog.at_level(logging.ERROR):
            await runs.resume(rid, "api.test:443")
        assert not runs.serving(rid)
        assert any(r.getMessage() == "egress.resume_failed" for r in caplog.records)
        assert_untouched(den / "target", intruder)
        with pytest.raises(EgressUnavailable, match="not a folder"):
            runtime.run_folder(runs.root(), rid)
        assert_untouched(den / "target", intruder)

    def test_hand_over_refuses_symlinked_folder(self, intruder: Intruder, home: Path, den: Path) -> None:
        """Handing a socket to the sidecar's user through a folder that became a symlink is refused."""
        intruder_folder(intruder, den / "target")
        (home / "link").symlink_to(den / "target")
        with pytest.raises(EgressUnavailable, match="not a folder"):
            hand_over_socket(home / "link" / "proxy.sock", SIDECAR)
        assert_untouched(den / "target", intruder)


class TestLongHome:
    """When HAFLOW_HOME/run is too long for socket paths, the root is private too, and stable across restarts."""

    def test_temporary_root_remembered(self, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without $XDG_RUNTIME_DIR: a fresh mkdtemp folder, 0700, named in HAFLOW_HOME and found again."""
        monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        long_home = home / ("h" * 90)
        long_home.mkdir(mode=0o700)
        root = runtime.runtime_root(long_home)
        try:
            assert not root.is_relative_to(long_home) and root.name.startswith("haflow-run-")
            st = root.stat()
            assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (os.geteuid(), 0o700)
            assert runtime.runtime_root(long_home) == root
            assert (long_home / runtime.FALLBACK_POINTER).read_text().strip() == str(root)
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def test_user_runtime_dir(self, home: Path, base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """With a private $XDG_RUNTIME_DIR, the root is a folder of its own there."""
        xdg = base / "xdg"
        xdg.mkdir(mode=0o700)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(xdg))
        long_home = home / ("h" * 90)
        long_home.mkdir(mode=0o700)
        root = runtime.runtime_root(long_home)
        assert root.parent == xdg.resolve() and root.name.startswith("haflow-")
        assert stat.S_IMODE(root.stat().st_mode) == 0o700
