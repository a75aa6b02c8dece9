"""The session program: configuration, wiring, threads, signals and the exit code.

Owns the order of things: configuration (a bad value stops the program with
one line and a ``Failed`` status), the ownership check (a pod whose resource
does not own the tenant stops with ``TenantConflict`` before it touches the
auth state, the lease or the queue), the Redis's eviction policy (one that
may evict keys stops it with ``RedisEvictionPolicy``: ``redis_policy``),
logging, the health server, the lease, the auth store, the transport, the
delivery worker thread, the webhook sender thread (``webhooks``), and shutdown on SIGTERM within
``WASP_SHUTDOWN_TIMEOUT_SECONDS`` (stop taking jobs, final checkpoint, stop
the transport, release the lease, exit 0). Makes the process's
``health.Heartbeats`` (bounds from the lease TTL, the job TTL and
``WASP_LIVENESS_STALL_SECONDS``) that ``/healthz`` reads. Decides nothing
about phases: ``lifecycle`` does.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from types import FrameType

import redis
import structlog

from wasp import contract
from wasp_session import early_signals
from wasp_session.auth_store import AuthStore
from wasp_session.config import Config, load_config, owner_uid_from, redis_url_from, tenant_from
from wasp_session.delivery import DeliveryContext, run_delivery
from wasp_session.errors import EXIT_CONFIG, EXIT_SHUTDOWN_TIMED_OUT, ConfigError
from wasp_session.health import BeatingGate, Heartbeats, bounds, stall_from
from wasp_session.lease import Lease
from wasp_session.lifecycle import Lifecycle
from wasp_session.logs import configure_logging
from wasp_session.metrics import HealthServer
from wasp_session.ownership import conflict_message, foreign_owner
from wasp_session.redis_policy import refuse_evicting_redis
from wasp_session.status import StatusBoard
from wasp_session.transport.base import Transport
from wasp_session.webhooks import WebhookSender, WebhookSettings, webhook_settings_from

log = structlog.stdlib.get_logger("wasp_session.app")


def build_transport(config: Config, client: redis.Redis) -> tuple[Transport, Path]:
    """The transport the configuration names and its SQLite file (neonize only when chosen)."""
    if config.transport == "simulator":
        from wasp_session.transport.simulator import (  # noqa: PLC0415 - only when chosen
            SimulatorSettings,
            SimulatorTransport,
        )

        settings = SimulatorSettings(
            qr_seconds=config.timings.simulator_qr,
            receipt_delay=config.timings.simulator_receipt_delay,
        )
        simulator = SimulatorTransport(client, config.tenant, config.data_dir, settings)
        return simulator, simulator.database
    from wasp_session.transport.whatsmeow import (  # noqa: PLC0415 - loads the Go runtime
        NeonizeTransport,
    )

    transport = NeonizeTransport(config.data_dir)
    configure_logging(config.tenant, config.log_format)  # neonize's import reset the root logger
    return transport, transport.database


def _report_config_error(env: Mapping[str, str], error: ConfigError) -> None:
    """One log line, and the reason in the tenant's status when Redis is reachable.

    The status is written under the lease (taken for the moment, so the
    operator relays it) when the lease is free and the owner record does not
    name another resource; else only logged.
    """
    written = False
    try:
        tenant = tenant_from(env)
        url = redis_url_from(env)
        uid = owner_uid_from(env)
    except ConfigError:
        tenant = None
    if tenant is not None:
        pod = env.get(contract.ENV_POD_NAME, "").strip() or socket.gethostname()
        try:
            with redis.Redis.from_url(url, decode_responses=True, socket_timeout=3) as client:
                written = foreign_owner(client, tenant, uid) is None and _write_failure_leased(
                    client, tenant, pod, "InvalidConfiguration", str(error)
                )
        except (redis.RedisError, ValueError):
            written = False
    configure_logging(tenant, "json" if not sys.stderr.isatty() else "console")
    log.error(
        "configuration_invalid",
        variable=error.variable,
        problem=error.problem,
        error=str(error),
        status_written=written,
    )


def _write_failure_leased(
    client: redis.Redis, tenant: str, pod: str, reason: str, message: str
) -> bool:
    """Take the free lease, write phase Failed with its token, release; whether written."""
    lease = Lease(client, tenant, pod, ttl=10)
    if not lease.try_acquire():
        return False
    try:
        board = StatusBoard(client, tenant, pod, lease)
        board.record_error(reason, message)
        board.set_phase(
            "Failed", reason=reason, message=message, extra={contract.STATUS_LEASE_HELD: "0"}
        )
    finally:
        lease.release()
    return True


def _refuse_foreign_owner(config: Config) -> bool:
    """Whether another resource owns the tenant; if so, say so (status and log) and stop."""
    if config.owner_uid is None:
        return False
    with redis.Redis.from_url(config.redis_url, decode_responses=True) as client:
        owner = foreign_owner(client, config.tenant, config.owner_uid)
        if owner is None:
            return False
        message = conflict_message(config.tenant, owner, config.owner_uid)
        lease = Lease(client, config.tenant, config.pod_name, config.timings.lease_ttl)
        board = StatusBoard(client, config.tenant, config.pod_name, lease)  # never acquired
        written = board.record_refusal(contract.REASON_TENANT_CONFLICT, message)
    log.error(
        "tenant_owned_by_another_resource",
        reason=contract.REASON_TENANT_CONFLICT,
        owner_uid=owner,
        uid=config.owner_uid,
        error=message,
        status_written=written,
    )
    return True


def run(env: Mapping[str, str] | None = None) -> int:
    """Run the session from environment variables; return the exit code."""
    environ = os.environ if env is None else env
    try:
        config = load_config(environ)
        stall = stall_from(environ, config.timings.lease_ttl)
        webhook = webhook_settings_from(environ)
    except ConfigError as error:
        _report_config_error(environ, error)
        return EXIT_CONFIG
    configure_logging(config.tenant, config.log_format)
    if _refuse_foreign_owner(config):
        return EXIT_CONFIG
    if refuse_evicting_redis(config, _write_failure_leased):  # may evict: refuse (redis_policy)
        return EXIT_CONFIG
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return Session(config, stall, webhook).run()


class Session:
    """One process's session: owns the threads and clients, not the decisions."""

    def __init__(
        self, config: Config, stall: float | None = None, webhook: WebhookSettings | None = None
    ) -> None:
        """Create the clients and the pieces; nothing runs yet.

        ``stall``: the silence after which a loop is stuck (default the lease TTL);
        ``webhook``: where the event stream goes (``None``: nowhere).
        """
        self.config = config
        ttl = config.timings.lease_ttl
        self.heartbeats = Heartbeats(
            bounds(ttl if stall is None else stall, ttl, config.delivery.ttl_seconds)
        )
        self.text = redis.Redis.from_url(config.redis_url, decode_responses=True)
        self.binary = redis.Redis.from_url(config.redis_url)
        self.stop = threading.Event()
        self.jobs_stop = threading.Event()
        self.gate = BeatingGate(self.heartbeats)
        self.lease = Lease(self.text, config.tenant, config.pod_name, config.timings.lease_ttl)
        self.status = StatusBoard(self.text, config.tenant, config.pod_name, self.lease)
        self.transport, database = build_transport(config, self.text)
        self.store = AuthStore(
            self.binary,
            tenant=config.tenant,
            key=config.auth_key,
            lease=self.lease,
            transport=config.transport,
            database=database,
        )
        self.delivery: threading.Thread | None = None
        self.webhook_stop = threading.Event()  # not a liveness loop: a dead receiver is no fault
        self.webhook = threading.Thread(
            target=WebhookSender(
                webhook,
                tenant=config.tenant,
                redis_url=config.redis_url,
                lease=self.lease,
                status=self.status,
                stop=self.webhook_stop,
            ).run,
            name="webhook",
            daemon=True,
        )
        self.lifecycle = Lifecycle(
            config,
            transport=self.transport,
            client=self.text,
            status=self.status,
            store=self.store,
            lease=self.lease,
            gate=self.gate,
            stop=self.stop,
            stop_jobs=self._stop_jobs,
            heartbeats=self.heartbeats,
        )

    def _on_signal(self, signum: int, _: FrameType | None) -> None:
        if self.stop.is_set():
            return
        log.info("signal_received", signal=signal.Signals(signum).name)
        self.stop.set()
        timer = threading.Timer(self.config.timings.shutdown_timeout, self._too_slow)
        timer.daemon = True
        timer.start()

    def _too_slow(self) -> None:
        log.error("shutdown_timed_out", seconds=self.config.timings.shutdown_timeout)
        os._exit(EXIT_SHUTDOWN_TIMED_OUT)

    def _start_jobs(self) -> None:
        context = DeliveryContext(
            tenant=self.config.tenant,
            redis_url=self.config.redis_url,
            settings=self.config.delivery,
            transport=self.transport,
            gate=self.gate,
        )
        self.heartbeats.expect(contract.LOOP_DELIVERY)
        self.delivery = threading.Thread(
            target=run_delivery, args=(context, self.jobs_stop), name="delivery", daemon=True
        )
        self.delivery.start()

    def _stop_jobs(self) -> None:
        # Told to stop: no longer watched (a worker that ends by itself stays watched: stuck).
        self.heartbeats.retire(contract.LOOP_DELIVERY)
        self.jobs_stop.set()
        if self.delivery is not None:
            self.delivery.join(timeout=max(1.0, self.config.timings.shutdown_timeout / 2))
            if self.delivery.is_alive():
                log.warning("delivery_still_running")

    def run(self) -> int:
        """Serve until stopped or fatal; return the exit code."""
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        early = early_signals.pending()
        if early is not None:  # asked to stop while loading: stop now, cleanly
            log.info("signal_received_while_loading", signal=signal.Signals(early).name)
            self._on_signal(early, None)
        health = HealthServer(
            self.config.health_port, lambda: self.lifecycle.ready, self.heartbeats.report
        )
        health.start()
        log.info(
            "session_starting",
            transport=self.config.transport,
            pod=self.config.pod_name,
            pairing_method=self.config.pairing_method,
        )
        self._start_jobs()
        self.webhook.start()
        try:
            code = self.lifecycle.run()
        finally:
            self.jobs_stop.set()
            self.webhook_stop.set()
            self.webhook.join(timeout=2)
            health.stop()
        log.info("session_exit", code=code)
        return code
