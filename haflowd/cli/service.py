"""Running haflowd as a service: the systemd user unit and the launchd agent.

``haflowd service install`` writes the unit for this platform into the
user's unit folder with the absolute path of the ``haflowd`` executable and
prints the commands that enable it; only ``--enable`` runs them. The files
in the repository's ``systemd/`` folder are these same templates rendered
for a ``pip install --user`` (``tests/cli/test_service.py`` keeps them equal).

Neither unit holds secrets: systemd reads ``~/.config/haflow/env`` (if it
exists) for ``HAFLOW_TOKEN`` and friends; an exposed daemon otherwise
generates its token into ``HAFLOW_HOME/token``.
"""

from __future__ import annotations

import argparse
import os
import plistlib
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..config import DEFAULT_HOME

UNIT_NAME = "haflowd.service"
LABEL = "dev.haflow.haflowd"
PLIST_NAME = f"{LABEL}.plist"
#: Where ``pip install --user`` puts the console script; the repository's unit uses it.
SAMPLE_SYSTEMD_EXE = "%h/.local/bin/haflowd"
SAMPLE_LAUNCHD_EXE = "/usr/local/bin/haflowd"
SAMPLE_HOME = "/Users/you"
#: Seconds the daemon gets to stop (it needs about one: sandboxes keep running).
STOP_TIMEOUT = 30
#: launchd starts agents with a bare PATH; Docker Desktop and Homebrew live here.
LAUNCHD_PATH = "/usr/local/bin:/opt/homebrew/bin:/usr/bin:/bin:/usr/sbin:/sbin"

SYSTEMD_TEMPLATE = """\
# haflowd as a systemd user service (no root needed).
#   install:  haflowd service install      (or copy to ~/.config/systemd/user/)
#   enable:   systemctl --user daemon-reload && systemctl --user enable --now haflowd
#   keep it running after logout:  loginctl enable-linger "$USER"
#   reload workflow and agent files:  systemctl --user reload haflowd
# Settings (HAFLOW_HOME, PORT, HOST, HAFLOW_TOKEN, ...) go into ~/.config/haflow/env.

[Unit]
Description=haflow daemon: AI missions in Docker sandboxes with human review gates

[Service]
Type=exec
EnvironmentFile=-%h/.config/haflow/env
ExecStart={exe} serve
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
TimeoutStopSec={stop_timeout}
# SIGTERM to haflowd only; it stops its own helpers. Agent containers keep
# running under Docker and are re-attached at the next start.
KillMode=mixed
NoNewPrivileges=yes

[Install]
WantedBy=default.target
"""


def render_systemd(exe: str) -> str:
    """The systemd user unit running ``exe serve``."""
    if any(c.isspace() for c in exe):
        # systemd splits ExecStart on whitespace unless quoted.
        exe = '"' + exe.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return SYSTEMD_TEMPLATE.format(exe=exe, stop_timeout=STOP_TIMEOUT)


def render_launchd(exe: str, home: str, env: Mapping[str, str] | None = None) -> bytes:
    """The launchd agent running ``exe serve``; ``env`` adds environment variables."""
    logs = f"{home}/Library/Logs/haflowd.log"
    plist = {
        "Label": LABEL,
        "ProgramArguments": [exe, "serve"],
        "EnvironmentVariables": {"PATH": LAUNCHD_PATH, **(env or {})},
        "RunAtLoad": True,
        # Restart when it fails, not after a clean stop.
        "KeepAlive": {"SuccessfulExit": False},
        "ThrottleInterval": 5,
        "ExitTimeOut": STOP_TIMEOUT,
        "ProcessType": "Background",
        "StandardOutPath": logs,
        "StandardErrorPath": logs,
    }
    return plistlib.dumps(plist, sort_keys=False)


def executable() -> str:
    """The absolute path of the ``haflowd`` console script running now, or on PATH."""
    here = Path(sys.argv[0])
    if here.name == "haflowd" and here.exists():
        return str(here.resolve())
    beside = Path(sys.executable).parent / "haflowd"
    if beside.exists():
        return str(beside)
    found = shutil.which("haflowd")
    if found:
        return str(Path(found).resolve())
    raise FileNotFoundError("cannot find the haflowd executable; pass --exe /path/to/haflowd")


def default_platform() -> str:
    return "launchd" if sys.platform == "darwin" else "systemd"


def unit_path(platform: str, env: Mapping[str, str]) -> Path:
    home = Path(env.get("HOME") or Path.home())
    if platform == "launchd":
        return home / "Library" / "LaunchAgents" / PLIST_NAME
    config = Path(env.get("XDG_CONFIG_HOME") or home / ".config")
    return config / "systemd" / "user" / UNIT_NAME


def enable_commands(platform: str, path: Path) -> list[list[str]]:
    """What turns the installed unit on; printed, and run with ``--enable``."""
    if platform == "launchd":
        domain = f"gui/{os.getuid()}"
        return [
            ["launchctl", "bootout", f"{domain}/{LABEL}"],
            ["launchctl", "bootstrap", domain, str(path)],
        ]
    return [
        ["systemctl", "--user", "daemon-reload"],
        ["systemctl", "--user", "enable", "--now", "haflowd"],
    ]


def render(platform: str, exe: str, env: Mapping[str, str]) -> bytes:
    if platform == "launchd":
        extra = {k: env[k] for k in ("HAFLOW_HOME", "PORT", "HOST") if env.get(k)}
        return render_launchd(exe, str(Path(env.get("HOME") or Path.home())), extra)
    return render_systemd(exe).encode()


def install(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    platform = args.platform or default_platform()
    try:
        exe = args.exe or executable()
    except FileNotFoundError as exc:
        print(f"haflowd: {exc}", file=sys.stderr)
        return 1
    content = render(platform, exe, env)
    if args.print:
        sys.stdout.write(content.decode())
        return 0
    path = unit_path(platform, env)
    path.parent.mkdir(parents=True, exist_ok=True)
    existed = path.exists()
    path.write_bytes(content)
    print(f"{'updated' if existed else 'wrote'} {path}")
    commands = enable_commands(platform, path)
    if platform == "launchd":
        print(f"logs go to {Path(env.get('HOME') or Path.home())}/Library/Logs/haflowd.log")
    else:
        print("settings (HAFLOW_HOME, PORT, HOST, HAFLOW_TOKEN, ...) go into ~/.config/haflow/env")
    if not args.enable:
        print("enable and start it with:")
        for command in commands:
            print("  " + shlex.join(command))
        if platform == "systemd":
            print('keep it running after you log out with:\n  loginctl enable-linger "$USER"')
        return 0
    return _run_all(commands, tolerate_first=platform == "launchd")


def _run_all(commands: Sequence[list[str]], *, tolerate_first: bool) -> int:
    for i, command in enumerate(commands):
        print("$ " + shlex.join(command))
        try:
            done = subprocess.run(command, check=False)
        except FileNotFoundError:
            print(f"haflowd: {command[0]} not found", file=sys.stderr)
            return 1
        # launchctl bootout fails when the agent was not loaded yet: fine.
        if done.returncode != 0 and not (tolerate_first and i == 0):
            print(f"haflowd: '{shlex.join(command)}' failed with exit code {done.returncode}", file=sys.stderr)
            return 1
    return 0


def reload(args: argparse.Namespace) -> int:
    from ..config import Config
    from ..errors import HaflowError
    from ..web.reload import signal_reload

    config = Config.from_env(home=args.home)
    try:
        pid = signal_reload(config)
    except HaflowError as exc:
        print(f"haflowd: {exc.message}", file=sys.stderr)
        return 1
    print(f"asked haflowd (pid {pid}) to reload its workflow and agent files; its log says reload.done or why not")
    return 0


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``service install`` and ``reload`` to the ``haflowd`` command."""
    service = commands.add_parser("service", help="run haflowd as a systemd or launchd user service")
    actions = service.add_subparsers(dest="service_command", metavar="ACTION", required=True)
    inst = actions.add_parser(
        "install",
        help="write the user unit and print how to enable it",
        description="Write the systemd user unit (~/.config/systemd/user/haflowd.service) or the "
        f"launchd agent (~/Library/LaunchAgents/{PLIST_NAME}) for this platform, pointing at this "
        "haflowd executable. Nothing is enabled or started unless --enable is given.",
    )
    inst.add_argument("--platform", choices=("systemd", "launchd"), help="default: this machine's")
    inst.add_argument("--exe", help="absolute path of haflowd (default: the one running)")
    inst.add_argument("--enable", action="store_true", help="also enable and start the service now")
    inst.add_argument("--print", action="store_true", help="print the unit instead of writing it")
    inst.set_defaults(handler=install)

    rel = commands.add_parser(
        "reload",
        help="reload workflow and agent files without stopping running steps",
        description="Send SIGHUP to the daemon whose pid is in HAFLOW_HOME/haflowd.pid. "
        "A bad file is logged and the daemon keeps its current definitions.",
    )
    rel.add_argument("--home", help="data folder of the daemon (env HAFLOW_HOME, default " + DEFAULT_HOME + ")")
    rel.set_defaults(handler=reload)
