"""The ``wasp`` command line (also the kubectl plugin ``kubectl-wasp``).

Owns argument parsing and one-line error output; the work is done by the
client library.
"""

import argparse
from collections.abc import Sequence

from wasp import __version__


def build_parser() -> argparse.ArgumentParser:
    """Describe the ``wasp`` command line."""
    parser = argparse.ArgumentParser(
        prog="wasp",
        description="Send OTPs through wasp and follow tenants' WhatsApp sessions.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line; with no subcommand yet, print the help."""
    parser = build_parser()
    parser.parse_args(argv)
    parser.print_help()
