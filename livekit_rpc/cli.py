"""The ``livekit-rpc`` command line.

Subcommands are registered in :data:`COMMANDS`: a name mapped to a :class:`Command` holding a
function that adds the subcommand's arguments and a function that runs it. Adding a subcommand
means adding one entry; :func:`main` needs no change.

* ``livekit-rpc server``: run the dev room server (like ``livekit-server --dev``).
* ``livekit-rpc token``: print a join token.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .server.auth import DEFAULT_TTL, DEV_API_KEY, DEV_API_SECRET, mint_token
from .server.config import DEFAULT_HOST, DEFAULT_PORT, ServerConfig

__all__ = ["COMMANDS", "Command", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """One subcommand: its help line, how to declare its arguments, and what it runs.

    ``run`` receives the parsed arguments and returns the process exit code.
    """

    help: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


def _add_credentials(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LIVEKIT_API_KEY", DEV_API_KEY),
        help="API key (default: $LIVEKIT_API_KEY or %(default)s)",
    )
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("LIVEKIT_API_SECRET", DEV_API_SECRET),
        help="API secret (default: $LIVEKIT_API_SECRET or the dev secret)",
    )


def _configure_server(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dev",
        action="store_true",
        help=f"dev mode: key {DEV_API_KEY!r}, secret {DEV_API_SECRET!r}, debug logging",
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (default %(default)s)")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port (default %(default)s)"
    )
    _add_credentials(parser)
    parser.add_argument(
        "--rtc-host",
        action="append",
        metavar="ADDR",
        help="address to offer as ICE host candidate (repeatable); default: the bind address "
        "if it is loopback or specific, every interface for a wildcard bind",
    )
    parser.add_argument(
        "--enable-v1",
        action="store_true",
        help="also serve the single-peer-connection path /rtc/v1 (default: 404, clients "
        "fall back to /rtc)",
    )
    parser.add_argument(
        "--standard-sctp-packets",
        action="store_true",
        help="never use large SCTP packets, even with participants on this machine that "
        "offer them (see livekit_rpc.sctp); shows what a peer on another host gets",
    )
    parser.add_argument(
        "--pc-timeout",
        type=float,
        default=ServerConfig.pc_connect_timeout,
        help="seconds a peer connection may take to connect (default %(default)s)",
    )


def _run_server(args: argparse.Namespace) -> int:
    from .server.run import serve

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.dev:
        logging.getLogger("livekit_rpc").setLevel(logging.DEBUG)
    if args.dev:
        api_key, api_secret = DEV_API_KEY, DEV_API_SECRET
    else:
        api_key, api_secret = args.api_key, args.api_secret
    try:
        config = ServerConfig(
            host=args.host,
            port=args.port,
            api_key=api_key,
            api_secret=api_secret,
            rtc_hosts=tuple(args.rtc_host) if args.rtc_host else None,
            pc_connect_timeout=args.pc_timeout,
            enable_v1=args.enable_v1,
            large_sctp_packets=not args.standard_sctp_packets,
        )
    except ValueError as exc:
        print(f"livekit-rpc server: {exc}", file=sys.stderr)
        return 2

    def ready(server: object) -> None:
        print(f"livekit-rpc server listening on {getattr(server, 'url', '')}", flush=True)
        print(f"API key: {api_key}  API secret: {api_secret}", flush=True)

    try:
        asyncio.run(serve(config, on_ready=ready))
    except OSError as exc:
        print(f"livekit-rpc server: {exc}", file=sys.stderr)
        return 1
    return 0


def _configure_token(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", required=True, help="participant identity")
    parser.add_argument("--room", required=True, help="room name")
    parser.add_argument("--name", default=None, help="participant display name")
    _add_credentials(parser)
    parser.add_argument(
        "--ttl",
        type=float,
        default=DEFAULT_TTL,
        help="lifetime in seconds (default %(default)s)",
    )


def _run_token(args: argparse.Namespace) -> int:
    try:
        token = mint_token(
            args.api_key,
            args.api_secret,
            args.identity,
            args.room,
            ttl=args.ttl,
            name=args.name,
        )
    except ValueError as exc:
        print(f"livekit-rpc token: {exc}", file=sys.stderr)
        return 2
    print(token)
    return 0


def _configure_demo(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=0, help="dev server port (default: a free one)")


def _run_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo  # imports the room SDK (aiortc) only when needed

    return asyncio.run(run_demo(port=args.port))


COMMANDS: dict[str, Command] = {
    "server": Command("run the dev room server", _configure_server, _run_server),
    "token": Command("print a join token", _configure_token, _run_token),
    "demo": Command(
        "run the dev server and participants in separate processes (loopback only)",
        _configure_demo,
        _run_demo,
    ),
}
"""Subcommand name -> :class:`Command`. Add entries here to add subcommands."""


def build_parser(commands: dict[str, Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser for ``commands`` (default :data:`COMMANDS`)."""
    parser = argparse.ArgumentParser(
        prog="livekit-rpc", description="LiveKit-compatible RPC tools."
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in (commands or COMMANDS).items():
        sub = subparsers.add_parser(name, help=command.help, description=command.help)
        command.configure(sub)
        sub.set_defaults(_run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``livekit-rpc`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args._run
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
