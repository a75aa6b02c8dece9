"""The ``kubectl wasp`` command line: parsing, the commands, and one line per error.

Owns kubectl's flags (``--kubeconfig``, ``--context``, ``-n``), the
commands (``status``, ``qr``, ``send``, ``watch``, ``pair``, ``logout``, ``messages``)
and the error contract: any failure is one line on stderr that says what to
do, and a non-zero exit code, never a traceback. A command finds the
WhatsAppSession and the tenant API's Redis credential through the API
server (``cluster``), reaches that Redis directly or through a port-forward
(``tunnel``), and leaves the work to ``WaspClient``; the text it prints is
drawn by ``wasp.cli``'s helpers, so both programs look alike.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

import redis
import structlog

from wasp import __version__
from wasp.cli import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    add_send_arguments,
    plain,
    print_fields,
    send_command,
)
from wasp.cli import render_qr as draw_qr
from wasp.client import WaspClient
from wasp.errors import SessionNotFoundError, WaspError
from wasp_kubectl.cluster import Cluster, SessionResource, connect
from wasp_kubectl.render import print_messages, print_resource
from wasp_kubectl.tunnel import Forward, redis_url_for

__all__ = ["build_parser", "main", "run"]

PROG: Final = "kubectl wasp"
DEFAULT_MESSAGES: Final = 20
MAX_MESSAGES: Final = 500

_DESCRIPTION = """\
Follow and drive a WhatsAppSession through the Kubernetes API, as kubectl does.

Reads your kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config; --context;
-n, else the context's namespace), finds the WhatsAppSession, and uses the
tenant API's own Redis credential (the Secret its status.apiCredentials names).
A Redis inside the cluster is reached through a port-forward when it is not
reachable directly. No environment variable is needed.
"""

_EPILOG = """\
exit codes: 0 ok, 1 the command failed, 2 bad command line, 130 interrupted.
examples:
  kubectl wasp status acme -n tenants
  kubectl wasp qr acme -n tenants
  kubectl wasp send acme +4915112345678 493817 --wait read -n tenants
  kubectl wasp messages acme -n tenants
  kubectl wasp pair acme -n tenants
  kubectl wasp logout acme -n tenants
"""


def _limit(text: str) -> int:
    """``--limit``: a whole number from 1 to ``MAX_MESSAGES``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_MESSAGES:
        msg = f"must be a whole number from 1 to {MAX_MESSAGES}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _cluster_flags(parser: argparse.ArgumentParser, default: object) -> None:
    """Add kubectl's own flags (and ``--redis-url``), each with ``default``."""
    parser.add_argument(
        "--kubeconfig",
        default=default,
        help="kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)",
    )
    parser.add_argument(
        "--context", default=default, help="kubeconfig context (default: the current one)"
    )
    parser.add_argument(
        "-n",
        "--namespace",
        default=default,
        help="namespace of the WhatsAppSession (default: the context's)",
    )
    parser.add_argument(
        "--redis-url",
        default=default,
        help="use this Redis directly instead of the credential in the cluster "
        "(SESSION is then the tenant id; the API server is not asked)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Describe the ``kubectl wasp`` command line."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _cluster_flags(parser, None)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    # kubectl hands the plugin every flag as typed: they may come after the command too,
    # and there must not reset what came before it.
    flags = argparse.ArgumentParser(add_help=False)
    _cluster_flags(flags, argparse.SUPPRESS)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[flags], help=help_text, description=help_text)
        sub.add_argument("session", metavar="SESSION", help="name of the WhatsAppSession")
        return sub

    status = command("status", "show the resource, its session and its recent Events")
    status.add_argument("message_id", nargs="?", help="show this message instead (from `send`)")
    status.add_argument("--json", action="store_true", help="print JSON instead of text")

    qr = command("qr", "draw the live pairing QR code, redrawn as it rotates, until paired")
    qr.add_argument("--timeout", type=float, help="give up after this many seconds without news")

    add_send_arguments(command("send", "enqueue one OTP and print its message id"))

    watch = command("watch", "follow the session's status changes (one JSON line each)")
    watch.add_argument("--messages", action="store_true", help="also print message changes")
    watch.add_argument("--timeout", type=float, help="stop after this many seconds without news")

    command("pair", "show a new QR / pairing code (after PairingExpired, Conflict, Failed)")
    command("logout", "unlink the device from its WhatsApp account; the resource stays")

    messages = command("messages", "list recent messages (their jobs still live) and states")
    messages.add_argument(
        "--limit",
        type=_limit,
        default=DEFAULT_MESSAGES,
        help=f"at most this many ({DEFAULT_MESSAGES})",
    )
    messages.add_argument("--json", action="store_true", help="print JSON lines instead of a table")
    return parser


# ---------------------------------------------------------------- the target
@dataclass
class Target:
    """What a command works on: the resource (if asked for), its tenant and a client."""

    resource: SessionResource | None
    cluster: Cluster | None
    tenant: str
    client: WaspClient
    redis_address: str


@contextlib.contextmanager
def _target(args: argparse.Namespace) -> Iterator[Target]:
    """Find the session and open its Redis (directly, or through a port-forward)."""
    forwards: list[Forward] = []
    cluster: Cluster | None = None
    resource: SessionResource | None = None
    try:
        if args.redis_url:
            tenant, url = args.session, args.redis_url
            address = _address(url)
        else:
            cluster = connect(args.kubeconfig, args.context, args.namespace)
            resource = cluster.session(args.session)
            tenant = resource.tenant
            stored = cluster.api_redis_url(resource)
            url = redis_url_for(cluster, stored, forwards)
            address = _address(stored)
            if forwards:
                address += f" (through a port-forward to pod {forwards[0].pod})"
        with WaspClient.from_url(url, tenant, default_region=getattr(args, "region", None)) as wasp:
            yield Target(resource, cluster, tenant, wasp, address)
    finally:
        for forward in forwards:
            forward.close()
        if cluster is not None:
            cluster.close()


def _address(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 6379}"


# ---------------------------------------------------------------- commands
def _status(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    if args.message_id:
        message = asdict(target.client.message_status(args.message_id))
        if args.json:
            out.write(json.dumps(plain(message), sort_keys=True) + "\n")
        else:
            print_fields(message, out)
        return EXIT_OK
    resource, cluster = target.resource, target.cluster
    report: dict[str, Any] = {}
    if resource is not None and cluster is not None:
        report["resource"] = resource.status
        report["events"] = cluster.recent_events(resource)
    if not args.json and resource is not None:
        print_resource(resource, report["events"], out)
    try:
        session = asdict(target.client.session_status())
    except SessionNotFoundError:
        if resource is None:
            raise
        session = {}
    session.pop("fields", None)
    report["session"] = session
    if args.json:
        out.write(json.dumps(plain(report), sort_keys=True) + "\n")
        return EXIT_OK
    if resource is None:
        print_fields(session, out)
    elif session:  # the pod's own words, beside the resource's; the QR is `qr`'s to draw
        print_fields({"session": {k: v for k, v in session.items() if k != "qr"}}, out)
    else:
        out.write("session: no status in Redis yet (its pod has not started)\n")
    return EXIT_OK


def _qr(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    for shown, code in enumerate(target.client.qr_codes(timeout=args.timeout)):
        draw_qr(code, out, clear=shown > 0 and out.isatty())
    try:
        phase = target.client.session_status().phase
    except WaspError:
        phase = "unknown"
    out.write(f"pairing ended: session is {phase}\n")
    return EXIT_OK if phase == "Connected" else EXIT_ERROR


def _send(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    return send_command(target.client, args, out)


def _watch(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    for channel, event in target.client.feed(messages=args.messages, timeout=args.timeout):
        line = {"channel": channel, **event} if args.messages else event
        out.write(json.dumps(line, sort_keys=True) + "\n")
        out.flush()
    return EXIT_OK


def _pair(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    target.client.request_pairing()
    out.write(f"pairing requested: run `{PROG} qr {args.session}{_flags(args)}` to scan\n")
    return EXIT_OK


def _logout(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    target.client.request_logout()
    out.write(
        f"logout requested: the device leaves the account and {args.session} stays; "
        f"link it again with `{PROG} qr {args.session}{_flags(args)}`\n"
    )
    return EXIT_OK


def _messages(target: Target, args: argparse.Namespace, out: TextIO) -> int:
    print_messages(target.client.recent_messages(args.limit), out, as_json=args.json)
    return EXIT_OK


def _flags(args: argparse.Namespace) -> str:
    """The flags that found this session, to repeat in a suggested command."""
    parts = []
    for flag in ("namespace", "context", "kubeconfig"):
        value = getattr(args, flag, None)
        if value:
            parts.append(f" --{flag} {value}")
    return "".join(parts)


_COMMANDS = {
    "status": _status,
    "qr": _qr,
    "send": _send,
    "watch": _watch,
    "pair": _pair,
    "logout": _logout,
    "messages": _messages,
}


# ---------------------------------------------------------------- the error contract
def _redis_error(error: redis.RedisError, address: str) -> str:
    if isinstance(error, redis.AuthenticationError):
        return (
            f"Redis at {address} refused the tenant's credential: the operator renews it "
            "within one resync; try again in a minute"
        )
    if isinstance(error, redis.exceptions.NoPermissionError):
        return f"Redis at {address} does not allow this to the tenant's credential ({error})"
    if isinstance(error, (redis.ConnectionError, redis.TimeoutError)):
        return (
            f"Redis at {address} is unreachable ({error}): check that the Redis pod runs "
            "(kubectl get pods in its namespace), or pass --redis-url"
        )
    return f"Redis at {address}: {error}"


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
    logging.getLogger("kubernetes").setLevel(logging.CRITICAL)  # its own retries: not for users
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(out)
        return EXIT_USAGE
    address = "(unknown)"
    try:
        with _target(args) as target:
            address = target.redis_address
            return _COMMANDS[args.command](target, args, out)
    except KeyboardInterrupt:
        err.write(f"{PROG}: interrupted\n")
        return EXIT_INTERRUPTED
    except (WaspError, ValueError) as error:
        err.write(f"{PROG}: {_one_line(str(error))}\n")
    except redis.RedisError as error:
        err.write(f"{PROG}: {_one_line(_redis_error(error, address))}\n")
    except Exception as error:  # noqa: BLE001 - the CLI's promise: one line, never a traceback
        err.write(f"{PROG}: unexpected {type(error).__name__}: {_one_line(str(error))}\n")
    return EXIT_ERROR


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``kubectl-wasp``."""
    raise SystemExit(run(argv))
