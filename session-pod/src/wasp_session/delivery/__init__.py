"""The tenant's OTP worker, run inside the session process.

``run_delivery`` is the one entry point the session's app calls, on a thread
of its own, once the transport is started. (Placeholder until the delivery
work lands: it only waits for the stop signal.)
"""

from __future__ import annotations

import threading

from wasp_session.delivery.context import DeliveryContext, DeliverySettings

__all__ = ["DeliveryContext", "DeliverySettings", "run_delivery"]


def run_delivery(context: DeliveryContext, stop: threading.Event) -> None:
    """Serve the tenant's queue until ``stop`` is set. Never forks."""
    del context
    stop.wait()
