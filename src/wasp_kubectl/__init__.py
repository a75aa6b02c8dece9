"""``kubectl wasp``: the kubectl plugin that reaches a WhatsAppSession through the API server.

A program of its own (like the operator and the session pod), so that the
client library ``wasp`` stays free of the Kubernetes client: ``cluster``
reads the kubeconfig, the resource, its Events and the tenant's credential
Secret; ``tunnel`` reaches a Redis inside the cluster through a port-forward
when it is not reachable directly; ``cli`` parses and keeps the promise of
one line on stderr per error; ``render`` lays out what ``status`` and
``messages`` show. The work on Redis is ``WaspClient``'s.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main() -> None:
    """Entry point of ``kubectl-wasp``; one line, not a traceback, without the Kubernetes client."""
    try:
        from wasp_kubectl.cli import main as run  # noqa: PLC0415 - the one guarded import
    except ModuleNotFoundError as error:
        sys.stderr.write(
            f"kubectl wasp: {error.name} is not installed: "
            "install the plugin with `pip install 'wasp[kubectl]'`\n"
        )
        raise SystemExit(1) from None
    run()
