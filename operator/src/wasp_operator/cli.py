"""The operator's command line: parses arguments and starts the operator.

Owns argument parsing only; the reconcile logic lives in its own modules.
"""

import argparse
from collections.abc import Sequence

from wasp import __version__


def build_parser() -> argparse.ArgumentParser:
    """Describe the operator's command line."""
    parser = argparse.ArgumentParser(
        prog="wasp-operator",
        description=(
            "Run the wasp operator: one session pod per WhatsAppSession, "
            "and each resource's status relayed from Redis."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line; with nothing to run yet, print the help."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
