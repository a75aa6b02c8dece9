"""The session pod's command line: ``wasp-session [run]`` and ``wasp-session simulate``.

Owns argument parsing only. ``run`` (the default) starts the session from
environment variables (see ``wasp.contract``, ``ENV_*``); ``simulate`` pushes
one command for a tenant's simulator transport onto Redis, so a shell, a demo
or a test can scan a QR or play a fault. The session itself lives in ``app``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

import redis

from wasp import __version__, contract
from wasp_session.transport.sim_commands import COMMANDS, CommandError, push_command

_EPILOG = """\
exit codes: 0 stopped cleanly; 1 Failed (needs a human: client outdated,
repeated start failures, unreadable auth state); 2 bad configuration, or
another WhatsAppSession owns the tenant (TenantConflict); 3 the connection
ended unexpectedly (a restart may help); 4 lost the lease.
"""


def build_parser() -> argparse.ArgumentParser:
    """Describe the session pod's command line."""
    parser = argparse.ArgumentParser(
        prog="wasp-session",
        description=(
            "Run one tenant's WhatsApp session: the connection, its auth state "
            "in Redis, the pairing QR or code, and the tenant's OTP worker. "
            f"Configured by environment variables ({contract.ENV_TENANT}, "
            f"{contract.ENV_REDIS_URL} or {contract.ENV_REDIS_URL_FILE}, "
            f"{contract.ENV_AUTH_KEY} or {contract.ENV_AUTH_KEY_FILE}, "
            f"{contract.ENV_OWNER_UID}, ...)."
        ),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="run the session from environment variables (the default)")
    simulate = commands.add_parser(
        "simulate", help="play a command on a tenant's simulator transport (see docs/simulator.md)"
    )
    simulate.add_argument("name", choices=COMMANDS, metavar="COMMAND", help=", ".join(COMMANDS))
    simulate.add_argument("--tenant", required=True)
    simulate.add_argument("--redis-url", required=True)
    simulate.add_argument("--seconds", type=float, help="disconnect / ban duration")
    simulate.add_argument("--count", type=int, help="fail_sends / fail_starts count")
    simulate.add_argument("--code", type=int, help="ban code")
    simulate.add_argument("--reason", help="connect_failure reason")
    simulate.add_argument(
        "--phone",
        help="scan: the account that scans; inbound: the sender. E.164 (e.g. +4915112345678)",
    )
    simulate.add_argument(
        "--jid", help="scan: the account's JID (instead of --phone); inbound: the chat's JID"
    )
    simulate.add_argument("--push-name", help="scan: the account's display name")
    simulate.add_argument("--text", help="inbound: the message's text (or a media's caption)")
    simulate.add_argument("--media", help="inbound: a media type instead of text (e.g. image)")
    simulate.add_argument(
        "--from-me", action="store_true", default=None, help="inbound: the account wrote it"
    )
    return parser


def _simulate(args: argparse.Namespace) -> int:
    with redis.Redis.from_url(args.redis_url, decode_responses=True) as client:
        try:
            payload = push_command(
                client,
                args.tenant,
                args.name,
                seconds=args.seconds,
                count=args.count,
                code=args.code,
                reason=args.reason,
                phone=args.phone,
                jid=args.jid,
                push_name=args.push_name,
                text=args.text,
                media=args.media,
                from_me=args.from_me,
            )
        except (CommandError, redis.RedisError) as error:
            sys.stderr.write(f"wasp-session simulate: {error}\n")
            return 1
    sys.stdout.write(f"{payload}\n")
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run what it asks for; exit with its code."""
    args = build_parser().parse_args(argv)
    if args.command == "simulate":
        sys.exit(_simulate(args))
    from wasp_session.app import run  # noqa: PLC0415 - keep `--help` light

    code = run()
    # neonize's connect() runs Go on a non-daemon thread that a clean interpreter
    # exit would wait for; everything of ours is flushed and stopped by now.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
