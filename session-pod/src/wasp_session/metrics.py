"""The session pod's Prometheus metrics (default registry) and its health endpoints.

Owns ``/healthz`` (the process answers and its loops make progress: the
callable it is given names a stuck loop, see ``health``), ``/readyz``
(Connected and holding the lease: the callable it is given decides) and
``/metrics``, served by the
standard library's HTTP server on a daemon thread. Defines the metric
objects once, at import; records nothing by itself.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Enum, Gauge, Histogram, generate_latest

from wasp import contract

CONNECTION_STATE = Enum(
    "wasp_session_phase", "The session's lifecycle phase.", states=list(contract.PHASES)
)
CONNECTED = Gauge("wasp_session_connected", "1 while connected to WhatsApp and holding the lease.")
LEASE_HELD = Gauge("wasp_session_lease_held", "1 while this pod holds the tenant's lease.")
LEASE_VALID = Gauge(
    "wasp_session_lease_valid",
    "1 while the lease surely holds (renewed within its TTL); 0 closes the send gate.",
)
LEASE_DEADLINE_PASSED = Counter(
    "wasp_session_lease_deadline_passed",
    "Times the lease's deadline passed without a renewal (sends held until renewed).",
)
RECONNECTS = Counter(
    "wasp_session_reconnects", "Connection losses and failed starts, each followed by a retry."
)
START_FAILURES = Counter("wasp_session_start_failures", "Starts of the connection that failed.")
PAIRING_WINDOWS = Counter("wasp_session_pairing_windows", "Pairing windows (QR or code) opened.")
KEEPALIVE_TIMEOUTS = Counter("wasp_session_keepalive_timeouts", "Keep-alive pings that failed.")
BANS = Counter("wasp_session_bans", "Temporary bans WhatsApp imposed on the account.")
ACCOUNTS_REFUSED = Counter(
    "wasp_session_accounts_refused",
    "Accounts refused for not being the pinned one (AccountMismatch).",
)
PAIR_PHONE_FAILURES = Counter(
    "wasp_session_pair_phone_failures", "Pairing-code requests (PairPhone) WhatsApp refused."
)
TIMELOCKED = Gauge(
    "wasp_session_timelocked",
    "1 while WhatsApp's 463 reach-out timelock is taken to hold (sends to new contacts refused).",
)
CHECKPOINTS = Counter(
    "wasp_session_checkpoints", "Auth-state checkpoints, by result.", labelnames=["result"]
)
CHECKPOINT_BYTES = Gauge(
    "wasp_session_checkpoint_bytes", "Size of the last sealed snapshot written to Redis."
)
CHECKPOINT_SECONDS = Histogram(
    "wasp_session_checkpoint_duration_seconds",
    "Time to back up, seal and write one checkpoint.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
REDIS_ROLLBACKS = Counter(
    "wasp_session_redis_rollbacks",
    "Times Redis held older auth state than this session had written (a rollback); "
    "the newer state was written back.",
)
INBOUND_MESSAGES = Counter(
    "wasp_session_inbound_messages",
    "Messages people sent the account, recorded in the event stream, by type.",
    labelnames=["type"],
)
INBOUND_SKIPPED = Counter(
    "wasp_session_inbound_skipped",
    "Messages not recorded (own, group, broadcast, newsletter, ...), by reason.",
    labelnames=["reason"],
)
AUTO_REPLIES = Counter(
    "wasp_session_auto_replies",
    "Auto-replies, by result (sent, already_sent, rate_limited, not_connected, dropped, ...).",
    labelnames=["result"],
)
LOOP_LAST_BEAT = Gauge(
    "wasp_session_loop_last_beat_timestamp_seconds",
    "When each watched loop last made progress (Unix time); /healthz fails when one is stale.",
    labelnames=["loop"],
)
WEBHOOK_DELIVERIES = Counter(
    "wasp_session_webhook_deliveries",
    "Webhook POSTs of stream entries, by result: delivered, http_error, network_error, "
    "refused_error (an address webhooks may not reach), misconfigured (checked, not sent).",
    labelnames=["result"],
)
WEBHOOK_FAILING = Gauge(
    "wasp_session_webhook_failing", "1 while the webhook's last attempt failed or cannot be made."
)


def set_phase(phase: str) -> None:
    """Record the phase the session entered."""
    CONNECTION_STATE.state(phase)


class HealthServer:
    """``/healthz``, ``/readyz`` and ``/metrics`` on one port."""

    def __init__(
        self, port: int, ready: Callable[[], bool], stuck: Callable[[], str | None] = lambda: None
    ) -> None:
        """Listen on ``port`` (all interfaces); ``ready()`` answers ``/readyz``.

        ``stuck()`` answers ``/healthz``: ``None`` while every loop makes
        progress, else a one-line JSON body naming the stuck loop (503).
        """

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    problem = stuck()
                    if problem is None:
                        self._reply(200, b"ok\n", "text/plain")
                    else:
                        self._reply(503, problem.encode() + b"\n", "application/json")
                elif self.path == "/readyz":
                    ok = ready()
                    self._reply(
                        200 if ok else 503, b"ready\n" if ok else b"not ready\n", "text/plain"
                    )
                elif self.path == "/metrics":
                    self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, code: int, body: bytes, content_type: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
                del format, args  # probes every few seconds are not worth a log line

        self._server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - a pod's probe port
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health", daemon=True
        )

    @property
    def port(self) -> int:
        """The port actually bound."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve on a daemon thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
