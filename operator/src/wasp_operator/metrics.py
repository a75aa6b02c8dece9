"""The operator's Prometheus metrics, and the endpoint that serves them.

Owns the metric names and what they count; the supervisor reports into
them. Serves ``/metrics`` from a thread of prometheus_client's own when a
port is configured. Decides nothing.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, start_http_server

SESSIONS = Gauge(
    "wasp_operator_sessions",
    "WhatsAppSessions this operator runs, by the phase their status shows.",
    ["phase"],
)
PHASE_CHANGES = Counter(
    "wasp_operator_phase_changes_total",
    "Phase changes written to WhatsAppSession statuses, by the phase entered.",
    ["phase"],
)
POD_ACTIONS = Counter(
    "wasp_operator_pod_actions_total",
    "Session pods created or deleted, and why.",
    ["action", "reason"],
)
STATUS_PATCHES = Counter(
    "wasp_operator_status_patches_total", "Status patches written to WhatsAppSessions."
)
RESYNCS = Counter(
    "wasp_operator_resyncs_total",
    "Full cycles the resync timer started (not a change anyone reported): "
    "at most --max-resyncs-per-second.",
)
REDIS_USERS_MADE = Counter(
    "wasp_operator_redis_users_made_total",
    "Tenant Redis users made (ACL SETUSER), and why: missing, changed, started.",
    ["why"],
)
STATUS_REPORTS_IGNORED = Counter(
    "wasp_operator_status_reports_ignored_total",
    "Status hashes not relayed because their writer did not hold the lease (once per change).",
)
REDIS_ROLLBACKS = Counter(
    "wasp_operator_redis_rollbacks_total",
    "Auth generations that went back for the same account (Redis restored an older snapshot).",
)

DEVICE_UNLINKS = Counter(
    "wasp_operator_device_unlinks_total",
    "Session deletions by what became of the linked device: unlinked, kept, failed, not_linked.",
    ["outcome"],
)

EVENTS_DROPPED = Counter(
    "wasp_operator_events_dropped_total",
    "Kubernetes Events not posted: more were waiting than the event pacer keeps.",
)


def phase_moved(before: str | None, after: str | None) -> None:
    """Count a session out of its old phase and into its new one (None: none)."""
    if before == after:
        return
    if before is not None:
        SESSIONS.labels(phase=before).dec()
    if after is not None:
        SESSIONS.labels(phase=after).inc()
        PHASE_CHANGES.labels(phase=after).inc()


def serve(port: int, address: str = "0.0.0.0") -> None:  # noqa: S104 - scraped from other pods
    """Serve ``/metrics`` on ``port`` from a background thread."""
    start_http_server(port, addr=address)
