"""The session pod's command line: parses arguments and starts the session.

Owns argument parsing only; the connection, auth store and worker live in
their own modules.
"""

import argparse
from collections.abc import Sequence

from wasp import __version__


def build_parser() -> argparse.ArgumentParser:
    """Describe the session pod's command line."""
    parser = argparse.ArgumentParser(
        prog="wasp-session",
        description=(
            "Run one tenant's WhatsApp session: the connection, its auth state "
            "in Redis, the pairing QR or code, and the tenant's OTP worker."
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line; with nothing to run yet, print the help."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
