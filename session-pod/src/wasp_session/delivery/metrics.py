"""The delivery's Prometheus metrics, in the default registry of the session process.

Owns the metric objects and their names: messages by state reached and
failure reason, the enqueue-to-sent latency, the queue depth, and sends that
may have been duplicated by a crash. Defined once at import (the default
registry refuses a second definition); everything else only increments.
"""

from __future__ import annotations

from typing import Final

from prometheus_client import Counter, Gauge, Histogram

MESSAGES: Final = Counter(
    "wasp_otp_messages",
    "OTP messages by the state they reached (sent, delivered, read, failed) and failure reason.",
    ["tenant", "state", "reason"],
)
SEND_LATENCY: Final = Histogram(
    "wasp_otp_enqueue_to_sent_seconds",
    "Seconds from an OTP job's creation to WhatsApp acknowledging the message.",
    ["tenant"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
QUEUE_DEPTH: Final = Gauge(
    "wasp_otp_queue_depth",
    "OTP jobs waiting in the tenant's queue.",
    ["tenant"],
)
POSSIBLE_DUPLICATES: Final = Counter(
    "wasp_otp_possible_duplicates",
    "Sends repeated because the process died while the first attempt was in flight.",
    ["tenant"],
)


def count_state(tenant: str, state: str, reason: str = "") -> None:
    """Count one message reaching ``state`` (with ``reason`` when it failed)."""
    MESSAGES.labels(tenant=tenant, state=state, reason=reason).inc()
