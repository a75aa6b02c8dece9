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
from wasp_operator.config import OperatorConfig, config_from_env, parse_port, parse_secret_ref


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
        help=f"watch only this namespace (env {contract.ENV_OPERATOR_NAMESPACE}; default: all)",
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
        "--redis-secret",
        metavar="NAME[:KEY]",
        help=(
            "the Secret, in each session's namespace, with the Redis URL for sessions "
            f"without spec.redis (env {contract.ENV_OPERATOR_REDIS_SECRET}; "
            f"default {contract.DEFAULT_REDIS_SECRET}:{contract.DEFAULT_REDIS_SECRET_KEY})"
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
            "serve kopf's liveness probe, e.g. http://0.0.0.0:8080/healthz "
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
        changes["namespace"] = None
    elif args.namespace:
        changes["namespace"] = args.namespace
    if args.session_image:
        changes["session_image"] = args.session_image
    if args.redis_secret:
        changes["redis_secret"], changes["redis_secret_key"] = parse_secret_ref(args.redis_secret)
    if args.standalone is not None:
        changes["standalone"] = args.standalone
    if args.liveness:
        changes["liveness_endpoint"] = args.liveness
    if args.metrics_port:
        changes["metrics_port"] = parse_port(args.metrics_port)
    return dataclasses.replace(config, **changes)  # type: ignore[arg-type]


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
