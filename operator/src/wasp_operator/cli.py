"""The operator's command line: flags over environment variables, then run.

Owns argument parsing only; ``config.py`` owns the settings and their env
vars, ``runner.py`` starts kopf.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Sequence

from wasp import __version__, contract
from wasp_operator.config import (
    OperatorConfig,
    config_from_env,
    parse_labels,
    parse_list,
    parse_networks,
    parse_port,
    parse_port_range,
    parse_rate,
    parse_seconds,
    parse_secret_ref,
)


def build_parser() -> argparse.ArgumentParser:
    """Describe the operator's command line."""
    parser = argparse.ArgumentParser(
        prog="wasp-operator",
        description=(
            "Run the wasp operator: one session pod per WhatsAppSession, "
            "and each resource's status relayed from Redis. Every flag has an "
            "environment variable; the flag wins."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "--namespace",
        "-n",
        action="append",
        help=(
            "watch only this namespace; repeat it, or separate names with commas, for several "
            f"(env {contract.ENV_OPERATOR_NAMESPACE}; default: all)"
        ),
    )
    scope.add_argument(
        "--all-namespaces",
        "-A",
        action="store_true",
        help="watch every namespace (the default)",
    )
    parser.add_argument(
        "--session-image",
        help=f"default image of session pods (env {contract.ENV_OPERATOR_SESSION_IMAGE})",
    )
    parser.add_argument(
        "--allowed-session-images",
        metavar="IMAGE[,IMAGE...]",
        help=(
            "images a WhatsAppSession's podTemplate.image may name, comma-separated; the "
            "default session image is always allowed, any other is refused "
            f"(env {contract.ENV_OPERATOR_SESSION_IMAGES})"
        ),
    )
    parser.add_argument(
        "--scraper-namespaces",
        metavar="NS[,NS...]",
        help=(
            "namespaces from which the metrics scraper may reach session pods' health port "
            f"(env {contract.ENV_OPERATOR_SCRAPER_NAMESPACES}; default: none may)"
        ),
    )
    parser.add_argument(
        "--scraper-labels",
        metavar="KEY=VALUE[,...]",
        help=(
            "labels of the scraper's pods in those namespaces "
            f"(env {contract.ENV_OPERATOR_SCRAPER_LABELS}; default: any pod there)"
        ),
    )
    parser.add_argument(
        "--redis-secret",
        metavar="NAME[:KEY]",
        help=(
            "the Secret with the admin Redis URL for sessions "
            f"without spec.redis (env {contract.ENV_OPERATOR_REDIS_SECRET}; "
            f"default {contract.DEFAULT_REDIS_SECRET}:{contract.DEFAULT_REDIS_SECRET_KEY})"
        ),
    )
    parser.add_argument(
        "--redis-secret-namespace",
        metavar="NS",
        help=(
            "the namespace of that default Secret, usually the operator's own "
            f"(env {contract.ENV_OPERATOR_REDIS_SECRET_NAMESPACE}; default: each session's)"
        ),
    )
    parser.add_argument(
        "--resync-seconds",
        metavar="SECONDS",
        help=(
            "compare each session with the world at least this often, and make its "
            f"Redis users again if they are gone (env {contract.ENV_OPERATOR_RESYNC_SECONDS}; "
            "default 30)"
        ),
    )
    parser.add_argument(
        "--max-resyncs-per-second",
        metavar="RATE",
        help=(
            "resync at most this many sessions per second in all: past 0.75 x resync seconds "
            "x RATE sessions, each resyncs less often "
            f"(env {contract.ENV_OPERATOR_MAX_RESYNCS_PER_SECOND}; default 50)"
        ),
    )
    parser.add_argument(
        "--session-host-ports",
        metavar="FIRST-LAST",
        help=(
            "run session pods on the node's network, each with its own health port from "
            "this range, e.g. 20000-20999; empty: on the pod network, port "
            f"{contract.SESSION_HEALTH_PORT} (env {contract.ENV_OPERATOR_SESSION_HOST_PORTS})"
        ),
    )
    parser.add_argument(
        "--webhook-allowed-networks",
        metavar="CIDR,...",
        help=(
            "private networks session webhooks may reach besides public addresses; empty: "
            f"none (env {contract.ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS})"
        ),
    )
    peering = parser.add_mutually_exclusive_group()
    peering.add_argument(
        "--standalone",
        action="store_true",
        default=None,
        help=(
            "run without peering: only for a single replica "
            f"(env {contract.ENV_OPERATOR_STANDALONE}=1)"
        ),
    )
    peering.add_argument(
        "--peering",
        dest="standalone",
        action="store_false",
        help=f"peer with the other replicas through the {contract.PEERING_NAME!r} peering object",
    )
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help=(
            "serve kopf's health endpoint (liveness and readiness: 200 only while the "
            "watched sessions can be listed), e.g. http://0.0.0.0:8080/healthz "
            f"(env {contract.ENV_OPERATOR_LIVENESS})"
        ),
    )
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        help=f"serve Prometheus /metrics on this port (env {contract.ENV_OPERATOR_METRICS_PORT})",
    )
    parser.add_argument(
        "--verbose", "-v", action="store_true", help="log kopf's and the operator's debug lines"
    )
    return parser


def config_from(args: argparse.Namespace, environ: dict[str, str]) -> OperatorConfig:
    """The configuration: the environment's, with the given flags on top."""
    config = config_from_env(environ)
    changes: dict[str, object] = {}
    if args.all_namespaces:
        changes["namespaces"] = ()
    elif args.namespace:
        changes["namespaces"] = parse_list(",".join(args.namespace))
    changes |= _session_pod_changes(args)
    if args.scraper_namespaces is not None:
        changes["scraper_namespaces"] = parse_list(args.scraper_namespaces)
    if args.scraper_labels is not None:
        changes["scraper_labels"] = parse_labels(args.scraper_labels)
    changes |= _redis_changes(args)
    if args.standalone is not None:
        changes["standalone"] = args.standalone
    if args.liveness:
        changes["liveness_endpoint"] = args.liveness
    if args.metrics_port:
        changes["metrics_port"] = parse_port(args.metrics_port)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


def _session_pod_changes(args: argparse.Namespace) -> dict[str, object]:
    """The flags about session pods: their images, their network."""
    changes: dict[str, object] = {}
    if args.session_image:
        changes["session_image"] = args.session_image
    if args.allowed_session_images is not None:
        changes["allowed_session_images"] = parse_list(args.allowed_session_images)
    if args.session_host_ports is not None:
        changes["session_host_ports"] = parse_port_range(args.session_host_ports)
    if args.webhook_allowed_networks is not None:
        changes["webhook_allowed_networks"] = parse_networks(args.webhook_allowed_networks)
    return changes


def _redis_changes(args: argparse.Namespace) -> dict[str, object]:
    """The flags about Redis: the admin Secret, its namespace, the resync of the users."""
    changes: dict[str, object] = {}
    if args.redis_secret:
        changes["redis_secret"], changes["redis_secret_key"] = parse_secret_ref(args.redis_secret)
    if args.redis_secret_namespace:
        changes["redis_secret_namespace"] = args.redis_secret_namespace
    if args.resync_seconds:
        changes["resync_seconds"] = parse_seconds(args.resync_seconds)
    if args.max_resyncs_per_second:
        changes["max_resyncs_per_second"] = parse_rate(args.max_resyncs_per_second)
    return changes


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the operator until SIGTERM."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = config_from(args, dict(os.environ))
    except ValueError as error:
        parser.error(str(error))
    from wasp_operator import runner  # noqa: PLC0415 - kopf loads only when it will run

    runner.run(config, verbose=args.verbose)
