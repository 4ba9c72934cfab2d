"""The ``haflowd`` command. The only place that configures logging and runs the app."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Sequence

import attrs

from .. import __version__, daemon_log
from ..config import DEFAULT_HOME, DEFAULT_HOST, DEFAULT_PORT, Config
from ..errors import HaflowError
from . import client, service

log = logging.getLogger("haflowd")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="haflowd",
        description="haflow daemon: runs AI-assisted missions in locked-down sandboxes "
        "with human review gates. Without a command, 'serve' is assumed.",
    )
    parser.add_argument("--version", action="version", version=f"haflowd {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve",
        help="run the daemon (API, web UI and supervisor) in the foreground",
        description="Run the daemon in the foreground. Settings come from the "
        "environment (PORT, HOST, HAFLOW_HOME, HAFLOW_AGENT_IMAGE, HAFLOW_CORS_ORIGINS, "
        "HAFLOW_DOCKER); flags override them.",
    )
    add_serve_options(serve)

    image = commands.add_parser("image", help="manage the default agent image")
    image_commands = image.add_subparsers(dest="image_command", metavar="ACTION", required=True)
    build = image_commands.add_parser(
        "build",
        help="build the agent image locally (no registry needed)",
        description="Build the default agent image from a static busybox on this machine.",
    )
    build.add_argument("--tag", help="image tag (default: HAFLOW_AGENT_IMAGE or the built-in tag)")
    build.add_argument(
        "--agent",
        choices=("claude-code", "codex", "gemini", "opencode", "aider"),
        help="build a real agent CLI's image instead (Debian base via mmdebstrap, CLI at its pinned version)",
    )

    secrets_parser = commands.add_parser("secrets", help="API keys and other secrets agents need, by name")
    secret_commands = secrets_parser.add_subparsers(dest="secrets_command", metavar="ACTION", required=True)
    set_secret = secret_commands.add_parser(
        "set",
        help="store a secret in HAFLOW_HOME/secrets.env (mode 0600); the value is read from stdin",
        description="Store NAME=value in HAFLOW_HOME/secrets.env. The value comes from standard input "
        "(one line), never from the command line, so it stays out of shell history and ps.",
    )
    set_secret.add_argument("name", metavar="NAME")
    set_secret.add_argument("--home", help="data folder (env HAFLOW_HOME)")
    list_secrets = secret_commands.add_parser("list", help="the names stored (never the values)")
    list_secrets.add_argument("--home", help="data folder (env HAFLOW_HOME)")
    login = commands.add_parser(
        "login-url",
        help="print the address that logs a browser in (it holds the token: keep it to yourself)",
        description="Print the UI's login address with the daemon's token. The daemon itself prints it "
        "only to a terminal, never to a log or journal.",
    )
    add_serve_options(login)
    client.add_commands(commands)
    service.add_commands(commands)
    return parser


def add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help=f"address to listen on (env HOST, default {DEFAULT_HOST}, loopback only)")
    parser.add_argument("--port", type=int, help=f"port to listen on (env PORT, default {DEFAULT_PORT})")
    parser.add_argument("--home", help="data folder (env HAFLOW_HOME, default " + DEFAULT_HOME + ")")
    parser.add_argument("--agent-image", help="default agent image (env HAFLOW_AGENT_IMAGE)")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="log verbosity (default INFO)",
    )
    parser.add_argument(
        "--log-format",
        choices=daemon_log.FORMATS,
        help="text (readable, default) or json (one object per line); env HAFLOW_LOG_FORMAT",
    )


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not args_list or (args_list[0].startswith("-") and args_list[0] not in ("-h", "--help", "--version")):
        args_list.insert(0, "serve")
    # Everything after "--" is a command for a sandbox (missions run ID -- CMD),
    # taken as it is: argparse's subcommands mishandle "--".
    tail: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, tail = args_list[:cut], args_list[cut + 1 :]
    args = parser.parse_args(args_list)
    if tail:
        if not hasattr(args, "command_words"):
            parser.error("unexpected arguments after --")
        args.command_words = [*args.command_words, *tail]
    if args.command == "serve":
        return serve(args)
    if args.command == "image":
        return image_build(args)
    if args.command == "secrets":
        return secrets_command(args)
    if args.command == "login-url":
        return print_login_url(args)
    handler = getattr(args, "handler", None)
    if handler is not None:
        return int(handler(args))
    parser.print_help()
    return 2


def _config(args: argparse.Namespace) -> Config:
    return Config.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        home=getattr(args, "home", None),
        agent_image=getattr(args, "agent_image", None),
        log_format=getattr(args, "log_format", None),
    )


def _home_problem(config: Config) -> str | None:
    """Why the daemon cannot keep its data in ``config.home``, or ``None``."""
    import tempfile

    try:
        config.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        config.missions_dir.mkdir(exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=config.missions_dir, prefix=".write-check-"):
            pass
    except OSError as exc:
        return f"cannot write to HAFLOW_HOME {config.home}: {exc.strerror or exc}"
    return None


def serve(args: argparse.Namespace) -> int:
    from ..web import serving
    from ..web.app import create_app
    from ..web.auth import ensure_token, login_url, token_path
    from ..web.reload import lifecycle
    from ..web.tls import server_context

    try:
        config, _ = ensure_token(_config(args))
    except (ValueError, OSError) as exc:
        print(f"haflowd: invalid setting: {exc}", file=sys.stderr)
        return 1
    daemon_log.configure(args.log_level, config.log_format, secrets=[config.token] if config.token else [])
    if (problem := _home_problem(config)) is not None:
        print(f"haflowd: {problem}", file=sys.stderr)
        return 1
    try:
        ssl_context = server_context(config)
        app = create_app(config)
    except HaflowError as exc:
        print(f"haflowd: {exc.message}", file=sys.stderr)
        return 1
    app.cleanup_ctx.append(lifecycle)
    host = f"[{config.host}]" if ":" in config.host else config.host
    scheme = "https" if config.tls else "http"
    print(f"haflowd {__version__} listening on {scheme}://{host}:{config.port}", flush=True)
    print(f"missions: {config.missions_dir}", flush=True)
    if config.token is not None and os.environ.get("HAFLOW_TOKEN"):
        # The user chose this token: never echo it into a terminal or the journal.
        placeholder = attrs.evolve(config, token="$HAFLOW_TOKEN")  # noqa: S106 - shown, not used
        print(f"open the UI: {login_url(placeholder)}", flush=True)
    elif config.token is not None and sys.stdout.isatty():
        print(f"open the UI: {login_url(config)}", flush=True)
        print(f"API token: in {token_path(config)} (the CLI client reads it)", flush=True)
    elif config.token is not None:
        # Not a terminal: a journal, a log file or a pipe keeps what it is
        # given, so the token stays out; `haflowd login-url` prints it on demand.
        placeholder = attrs.evolve(config, token=None)
        print(
            f"open the UI: {login_url(placeholder)} (run `haflowd login-url` for the address that logs you in)",
            flush=True,
        )
        print(f"API token: in {token_path(config)} (the CLI client reads it)", flush=True)
    else:
        print("authentication is off (HAFLOW_AUTH=none): any local account can use this daemon", flush=True)
    try:
        asyncio.run(
            serving.serve(
                app,
                config.host,
                config.port,
                max_connections=config.max_connections,
                ssl_context=ssl_context,
                shutdown_timeout=5,
                access_log=logging.getLogger("haflowd.access"),
                access_log_class=daemon_log.RequestLogger,
            )
        )
    except OSError as exc:
        # Typically the port is taken (another haflowd?): say so, no traceback.
        print(f"haflowd: cannot listen on {host}:{config.port}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    return 0


def print_login_url(args: argparse.Namespace) -> int:
    """Print the login address of the daemon these settings describe (the token is read, never made)."""
    from ..web.auth import login_url, read_token_file, token_path

    try:
        config = _config(args)
    except (ValueError, OSError) as exc:
        print(f"haflowd: invalid setting: {exc}", file=sys.stderr)
        return 1
    if config.auth == "none":
        print(login_url(config))
        return 0
    if config.token is None:
        config = attrs.evolve(config, token=read_token_file(token_path(config)))
    if config.token is None:
        print(f"haflowd: no token in {token_path(config)}: start the daemon once to make it", file=sys.stderr)
        return 1
    print(login_url(config))
    return 0


def image_build(args: argparse.Namespace) -> int:
    from ..sandbox.docker.agent_images import build_agent_image
    from ..sandbox.docker.standin_image import build_image

    logging.basicConfig(level="INFO", format="%(message)s", stream=sys.stderr)
    config = Config.from_env()
    try:
        if args.agent:
            tag = asyncio.run(
                build_agent_image(config.docker, args.agent, progress=lambda line: print(line, flush=True))
            )
        else:
            tag = args.tag or config.agent_image
            asyncio.run(build_image(config.docker, tag))
    except HaflowError as exc:
        print(f"haflowd: {exc.message}", file=sys.stderr)
        return 1
    print(f"built {tag}")
    return 0


def secrets_command(args: argparse.Namespace) -> int:
    from .. import secrets

    config = Config.from_env(home=args.home)
    try:
        if args.secrets_command == "set":
            value = sys.stdin.readline().rstrip("\r\n")
            if not value:
                print('haflowd: give the value on standard input (e.g. printf %s "$KEY" | ...)', file=sys.stderr)
                return 2
            path = secrets.write_value(config.home, args.name, value)
            print(f"stored {args.name} in {path}")
        else:
            for name in sorted(secrets.read_file(config.home / secrets.SECRETS_FILE)):
                print(name)
    except HaflowError as exc:
        print(f"haflowd: {exc.message}", file=sys.stderr)
        return 1
    return 0
