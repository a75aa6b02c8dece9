"""The ``wasp`` command line: Redis-direct, for users outside Kubernetes.

Owns argument parsing, rendering (text, JSON, terminal QR codes with segno)
and the error contract: any failure is one readable line on stderr and a
non-zero exit code, never a traceback. The work is done by ``WaspClient``.
The kubectl plugin (``wasp_kubectl``) reuses the rendering; it finds the
Redis and the credential through the API server instead.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any, Final, TextIO

import redis
import segno
import structlog

from wasp import __version__, contract
from wasp.accounts import forget_account, mask_account
from wasp.client import WaspClient
from wasp.errors import WaspError

EXIT_OK: Final = 0
EXIT_ERROR: Final = 1  # the command failed (bad number, unknown message, Redis down, ...)
EXIT_USAGE: Final = 2  # the command line itself is wrong (argparse's own code)
EXIT_INTERRUPTED: Final = 130

_DESCRIPTION = """\
Send OTPs through wasp and follow tenants' WhatsApp sessions.

Every command talks to the Redis that the tenant's session pod uses: pass
--redis-url or set WASP_REDIS_URL. A SESSION argument is the tenant id
(spec.tenantId of the WhatsAppSession, by default its name). In a cluster,
`kubectl wasp` finds all of that through the kubeconfig instead.
"""

_EPILOG = """\
exit codes: 0 ok, 1 the command failed, 2 bad command line, 130 interrupted.
examples:
  wasp send acme +4915112345678 493817 --wait read
  wasp status acme
  wasp status acme 3f2b9c1e0d6a4b5c
  wasp qr acme
  wasp events acme --group audit --timeout 5
  wasp pair acme
  wasp pair acme --new-account
"""


def add_send_arguments(send: argparse.ArgumentParser) -> None:
    """The ``send`` command's arguments after the session (also ``kubectl wasp send``)."""
    send.add_argument("phone", help="recipient, e.g. +4915112345678 or 015112345678")
    send.add_argument("code", help="the one-time code: 4 to 10 letters or digits")
    send.add_argument("--ttl", type=int, help="seconds the code stays valid (default: tenant's)")
    send.add_argument("--template", help="message text with {code} and {minutes}")
    send.add_argument("--message-id", help="your own id (sending the same id twice sends once)")
    send.add_argument("--region", help="default region for numbers without +CC, e.g. DE")
    send.add_argument(
        "--wait",
        choices=[s for s in contract.MESSAGE_STATES if s not in ("queued", "failed")],
        help="wait until the message reaches this state (or fails)",
    )
    send.add_argument("--timeout", type=float, default=60.0, help="seconds --wait waits (60)")


def build_parser() -> argparse.ArgumentParser:
    """Describe the ``wasp`` command line."""
    parser = argparse.ArgumentParser(
        prog="wasp",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "--redis-url",
        default=os.environ.get(contract.ENV_REDIS_URL),
        help="Redis of the sessions, e.g. redis://localhost:6379/0 "
        f"(default: ${contract.ENV_REDIS_URL})",
    )
    # Also after the command (`wasp pair acme --redis-url ...`), as users type it.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=argparse.SUPPRESS, help="Redis of the sessions (as above)"
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    send = commands.add_parser(
        "send",
        parents=[common],
        help="enqueue one OTP and print its message id",
        description=(
            "Enqueue one OTP for the tenant's session to send. The number is normalised to "
            "E.164 with the tenant's default region and refused at once if invalid. Prints "
            "the message id; with --wait, waits for that state and prints the status."
        ),
    )
    send.add_argument("tenant", metavar="SESSION", help="tenant id of the session")
    add_send_arguments(send)

    status = commands.add_parser(
        "status",
        parents=[common],
        help="show a session's status, or one message's",
        description="Show the session's phase, account and pairing state; with MESSAGE_ID, "
        "that message's state, timestamps and failure reason.",
    )
    status.add_argument("tenant", metavar="SESSION", help="tenant id of the session")
    status.add_argument("message_id", nargs="?", help="a message id printed by `wasp send`")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    qr = commands.add_parser(
        "qr",
        parents=[common],
        help="show the live pairing QR code in the terminal, refreshing as it rotates",
        description="Render the session's live pairing QR code in this terminal and redraw it "
        "each time WhatsApp rotates it; ends when the session is paired (or leaves pairing).",
    )
    qr.add_argument("tenant", metavar="SESSION", help="tenant id of the session")
    qr.add_argument("--timeout", type=float, help="give up after this many seconds without news")

    watch = commands.add_parser(
        "watch",
        parents=[common],
        help="follow a session's status changes (one JSON line each)",
        description="Print every status change the session publishes, one JSON object a line, "
        "until interrupted; with --messages, also every message state change.",
    )
    watch.add_argument("tenant", metavar="SESSION", help="tenant id of the session")
    watch.add_argument("--messages", action="store_true", help="also print message changes")
    watch.add_argument("--timeout", type=float, help="stop after this many seconds without news")

    events = commands.add_parser(
        "events",
        parents=[common],
        help="read the session's durable event stream with a consumer group (JSON lines)",
        description="Print the tenant's durable events (message state changes, session phase "
        "changes, inbound messages; docs/events.md) as one JSON object a line, read as "
        "CONSUMER of consumer group GROUP: run again, it goes on where it stopped. Each "
        "entry is acknowledged once the next is asked for. Entries the group can no "
        "longer get are said on stderr, once, and the command exits 1.",
    )
    events.add_argument("tenant", metavar="SESSION", help="tenant id of the session")
    events.add_argument("--group", required=True, help="consumer group name, e.g. audit")
    events.add_argument("--consumer", default="wasp-cli", help="consumer name (wasp-cli)")
    events.add_argument(
        "--from-now", action="store_true", help="a new group starts after the last entry"
    )
    events.add_argument("--timeout", type=float, help="stop after this many seconds without news")

    pair = commands.add_parser(
        "pair",
        parents=[common],
        help="start pairing again (PairingExpired, Conflict, a refused account)",
        description="Ask the session pod to show a new QR / pairing code after its pairing "
        "windows ran out (PairingExpired), after a Conflict, or after it refused an account "
        "(Failed, AccountMismatch): the pinned account may then scan again. Follow it with "
        "`wasp qr SESSION`. With --new-account, first remove the session's account pin so "
        "that another WhatsApp account can be linked; that needs a Redis credential allowed "
        "to write the pin (the platform's admin or the session's own): the tenant API's "
        "credential is refused.",
    )
    pair.add_argument("tenant", metavar="SESSION", help="session name / tenant id")
    pair.add_argument(
        "--new-account",
        action="store_true",
        help="remove the account pin first, so another account can pair (admin or "
        "session credential only)",
    )
    return parser


# ---------------------------------------------------------------- rendering
def plain(value: object) -> object:
    """``value`` fit for JSON: datetimes as RFC 3339 text, dicts with text keys."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    return value


def print_fields(fields: dict[str, Any], out: TextIO) -> None:
    """Write ``name: value`` lines (``name.sub: value`` for dicts), leaving out empty values."""
    lines: list[str] = []
    for name, value in fields.items():
        if value in (None, "", {}):
            continue
        if isinstance(value, dict):
            lines.extend(f"{name}.{sub}: {plain(v)}" for sub, v in value.items())
        else:
            lines.append(f"{name}: {plain(value)}")
    out.writelines(line + "\n" for line in lines)


def render_qr(code: str, out: TextIO, *, clear: bool) -> None:
    """Draw ``code`` as a QR code in the terminal (clearing the screen first if asked)."""
    if clear:
        out.write("\x1b[2J\x1b[H")
    segno.make(code, error="l").terminal(out=out, compact=True)
    out.write("Scan with WhatsApp: Settings > Linked devices > Link a device\n")
    out.flush()


# ---------------------------------------------------------------- commands
def _client(args: argparse.Namespace) -> WaspClient:
    if not args.redis_url:
        msg = f"no Redis URL: pass --redis-url or set {contract.ENV_REDIS_URL}"
        raise WaspError(msg)
    return WaspClient.from_url(
        args.redis_url, args.tenant, default_region=getattr(args, "region", None)
    )


def send_command(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    """Enqueue the OTP of ``add_send_arguments``, print its id; with ``--wait``, its status."""
    message_id = client.send_otp(
        args.phone,
        args.code,
        message_id=args.message_id,
        ttl_seconds=args.ttl,
        template=args.template,
    )
    out.write(f"{message_id}\n")
    if args.wait:
        status = client.wait_for(message_id, args.wait, timeout=args.timeout)
        print_fields(asdict(status), out)
        if status.state == "failed":
            return EXIT_ERROR
    return EXIT_OK


def _status(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.message_id:
        fields = asdict(client.message_status(args.message_id))
    else:
        fields = asdict(client.session_status())
        fields.pop("fields", None)
    if args.json:
        out.write(json.dumps(plain(fields), sort_keys=True) + "\n")
    else:
        print_fields(fields, out)
    return EXIT_OK


def _qr(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    for shown, code in enumerate(client.qr_codes(timeout=args.timeout)):
        render_qr(code, out, clear=shown > 0 and out.isatty())
    try:
        phase = client.session_status().phase
    except WaspError:
        phase = "unknown"
    out.write(f"pairing ended: session is {phase}\n")
    return EXIT_OK if phase == "Connected" else EXIT_ERROR


def _watch(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    for channel, event in client.feed(messages=args.messages, timeout=args.timeout):
        line = {"channel": channel, **event} if args.messages else event
        out.write(json.dumps(line, sort_keys=True) + "\n")
        out.flush()
    return EXIT_OK


def _events(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    start = "$" if args.from_now else "0"
    for event in client.consume_events(
        args.group, args.consumer, timeout=args.timeout, start=start
    ):
        out.write(json.dumps({**event.fields, "id": event.id}, sort_keys=True) + "\n")
        out.flush()
    return EXIT_OK


def _pair(client: WaspClient, args: argparse.Namespace, out: TextIO) -> int:
    if args.new_account:
        with redis.Redis.from_url(args.redis_url) as connection:
            removed = forget_account(connection, client.tenant)
        was = f"pinned to {mask_account(removed)}" if removed else "not pinned"
        out.write(f"account pin of {client.tenant} removed (it was {was})\n")
    else:
        client.request_pairing()
    out.write(f"pairing requested for {client.tenant}: run `wasp qr {client.tenant}` to scan\n")
    return EXIT_OK


_COMMANDS = {
    "send": send_command,
    "status": _status,
    "qr": _qr,
    "watch": _watch,
    "events": _events,
    "pair": _pair,
}


def run(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Run one command; return its exit code. Errors are one line on ``err``."""
    out = out or sys.stdout
    err = err or sys.stderr
    if not structlog.is_configured():  # the library's logs: warnings only, never on stdout
        structlog.configure(
            wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
            logger_factory=structlog.PrintLoggerFactory(err),
        )
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    try:
        with _client(args) as client:
            return _COMMANDS[args.command](client, args, out)
    except KeyboardInterrupt:
        err.write("wasp: interrupted\n")
        return EXIT_INTERRUPTED
    except (WaspError, ValueError) as error:
        err.write(f"wasp: {error}\n")
    except redis.RedisError as error:
        err.write(f"wasp: Redis at {args.redis_url}: {error}\n")
    except Exception as error:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
        err.write(f"wasp: unexpected {type(error).__name__}: {error}\n")
    return EXIT_ERROR


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``wasp``."""
    raise SystemExit(run(argv))
