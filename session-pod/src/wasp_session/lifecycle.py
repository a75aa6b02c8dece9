"""The session's lifecycle: lease, restore, connect, react to every event, shut down.

Owns the phases of DESIGN.md for one pod, on the main thread. It carries out
what ``decisions.decide`` says for each transport event, restarts the
transport with full-jitter backoff after failed starts, counts pairing
windows, checkpoints (after pairing, on Connected, debounced after receipts,
periodically, at shutdown), and keeps the lease alive on a thread of its own
that, on loss, closes the gate and stops the transport at once; from then on
nothing more is written. It opens the send gate only on Connected with the
lease held.

A pod that waits for another pod's lease writes only the standby fields of
the status (never the phase, which belongs to the holder) and answers
``/readyz`` with 503.
"""

from __future__ import annotations

import json
import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import redis
import structlog

from wasp import contract
from wasp_session import metrics
from wasp_session.auth_store import AuthStore
from wasp_session.config import Config
from wasp_session.decisions import (
    Action,
    Decision,
    backoff_ceiling,
    backoff_delay,
    connection_is_stable,
    decide,
    start_failure_is_fatal,
)
from wasp_session.delivery.receipts import apply_receipt
from wasp_session.errors import (
    EXIT_FAILED,
    EXIT_LEASE_LOST,
    EXIT_OK,
    EXIT_TRANSPORT_STOPPED,
    AuthStoreError,
    LeaseLostError,
)
from wasp_session.gate import SendGate
from wasp_session.lease import Lease
from wasp_session.status import PAIRING_FIELDS, StatusBoard, rfc3339
from wasp_session.transport.base import (
    Connected,
    KeepAliveTimedOut,
    PairFailed,
    PairingCodeIssued,
    PairSucceeded,
    QRCodeIssued,
    ReceiptReceived,
    StartError,
    TemporarilyBanned,
    Timelocked,
    Transport,
    TransportEvent,
)

log = structlog.stdlib.get_logger("wasp_session.lifecycle")
_TICK = 0.1
ACCOUNT_FIELDS = (contract.STATUS_ACCOUNT_JID, contract.STATUS_PUSH_NAME)


class _Exit(Exception):  # noqa: N818 - control flow, not an error
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class _Counters:
    start_failures: int = 0
    backoff_attempt: int = 0
    windows_used: int = 0
    window_open: bool = False
    code_requested: bool = False
    connected_since: float | None = None
    paired: bool = False
    dirty_since: float | None = None
    last_checkpoint: float = 0.0
    ban_ends: float | None = None
    halted: bool = False  # Conflict / PairingExpired: waits for a `pair` command


class Lifecycle:
    """Runs one tenant's session until stopped; ``run()`` returns the exit code."""

    def __init__(  # noqa: PLR0913 - the session's collaborators, each distinct
        self,
        config: Config,
        *,
        transport: Transport,
        client: redis.Redis,
        status: StatusBoard,
        store: AuthStore,
        lease: Lease,
        gate: SendGate,
        stop: threading.Event,
        stop_jobs: Callable[[], None],
        rand: Callable[[], float] = random.random,
    ) -> None:
        """Wire the session; ``client`` decodes responses to ``str``."""
        self._config = config
        self._transport = transport
        self._redis = client
        self._status = status
        self._store = store
        self._lease = lease
        self._gate = gate
        self._stop = stop
        self._stop_jobs = stop_jobs
        self._rand = rand
        self._lease_lost = threading.Event()
        self._phase = "Starting"
        self._n = _Counters()

    # ------------------------------------------------------------ public
    @property
    def ready(self) -> bool:
        """Connected and holding the lease (``/readyz``)."""
        return self._phase == "Connected" and self._lease.holds() and self._gate.is_open

    def run(self) -> int:
        """Wait for the lease, then run the session; return the exit code."""
        if not self._wait_for_lease():
            return EXIT_OK
        renewer = threading.Thread(target=self._keep_lease, name="lease", daemon=True)
        renewer.start()
        try:
            code = self._session()
        except _Exit as exit_:
            code = exit_.code
        except LeaseLostError:
            code = EXIT_LEASE_LOST
        if self._lease_lost.is_set() or not self._lease.holds():
            log.error("lease_lost_exiting")
            self._gate.close()
            self._stop_jobs()
            self._transport.stop()
            return EXIT_LEASE_LOST
        self._shutdown()
        return code

    # ------------------------------------------------------------ lease
    def _wait_for_lease(self) -> bool:
        announced = False
        while not self._stop.is_set():
            if self._lease.try_acquire():
                self._status.clear_standby()
                metrics.LEASE_HELD.set(1)
                log.info("lease_acquired", token=self._lease.token)
                return True
            if not announced:
                log.info("lease_waiting", holder=self._lease.holder())
                self._status.announce_standby()
                announced = True
            self._stop.wait(min(1.0, self._config.timings.lease_ttl / 3))
        self._status.clear_standby()
        return False

    def _keep_lease(self) -> None:
        interval = self._config.timings.lease_ttl / 3
        while not self._stop.wait(interval):
            if not self._lease.holds():
                return
            try:
                renewed = self._lease.renew()
            except redis.RedisError as error:
                log.warning("lease_renew_failed", error=str(error))
                continue
            if not renewed:
                self._lose_lease()
                return
            self._status.heartbeat()

    def _lose_lease(self) -> None:
        log.error("lease_lost")
        self._lease_lost.set()
        metrics.LEASE_HELD.set(0)
        metrics.CONNECTED.set(0)
        self._gate.close()
        self._transport.stop()

    def _check_lease(self) -> None:
        if self._lease_lost.is_set():
            raise LeaseLostError

    # ------------------------------------------------------------ phases
    def _enter(
        self,
        phase: str,
        reason: str = "",
        message: str = "",
        extra: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> None:
        self._check_lease()
        if phase != self._phase:
            log.info("session_phase", phase=phase, previous=self._phase, reason=reason)
        self._phase = phase
        metrics.set_phase(phase)
        if phase != "Connected":
            self._gate.close()
            metrics.CONNECTED.set(0)
        fields = {contract.STATUS_LEASE_HELD: "1", **(extra or {})}
        self._status.set_phase(phase, reason=reason, message=message, extra=fields, remove=remove)

    def _fail(self, reason: str, message: str, code: int = EXIT_FAILED) -> NoReturn:
        log.error("session_failed", reason=reason, error=message)
        self._status.record_error(reason, message)
        self._enter("Failed", reason, message, remove=PAIRING_FIELDS)
        raise _Exit(code)

    # ------------------------------------------------------------ the session
    def _session(self) -> int:
        self._enter("Starting", "Starting", "Restoring auth state and connecting.")
        try:
            self._n.paired = self._store.restore()
        except AuthStoreError as error:
            self._fail("AuthRestoreFailed", str(error))
        log.info("auth_restored" if self._n.paired else "auth_absent")
        self._n.last_checkpoint = time.monotonic()
        self._start()
        while not self._stop.is_set():
            self._check_lease()
            try:
                event = self._transport.events.get(timeout=_TICK)
            except queue.Empty:
                event = None
            if event is not None:
                self._handle(event)
            self._timers()
            self._control()
        return EXIT_OK

    def _start(self) -> None:
        """Connect, retrying failed starts with backoff until the limit."""
        self._n.window_open = False
        self._n.code_requested = False
        while not self._stop.is_set():
            self._check_lease()
            try:
                self._transport.connect()
            except StartError as error:
                self._n.start_failures += 1
                metrics.START_FAILURES.inc()
                metrics.RECONNECTS.inc()
                failures, limit = self._n.start_failures, self._config.max_start_failures
                if start_failure_is_fatal(failures, limit):
                    msg = f"{failures} starts failed in a row; last: {error}"
                    self._fail("StartFailed", msg)
                t = self._config.timings
                attempt = self._n.backoff_attempt
                delay = backoff_delay(attempt, t.reconnect_base, t.reconnect_max, self._rand)
                ceiling = backoff_ceiling(attempt, t.reconnect_base, t.reconnect_max)
                self._n.backoff_attempt += 1
                log.warning(
                    "start_failed",
                    error=str(error),
                    failures=failures,
                    retry_in=delay,
                    backoff_ceiling=ceiling,
                )
                self._status.record_error("StartFailed", str(error))
                self._enter(
                    "Reconnecting",
                    "StartFailed",
                    f"Start {failures} of {limit} failed ({error}); retrying in {delay:.1f} s.",
                )
                self._stop.wait(delay)
                continue
            log.info("transport_started", transport=self._config.transport)
            return

    def _handle(self, event: TransportEvent) -> None:
        decision = decide(
            event,
            windows_used=self._n.windows_used,
            max_windows=self._config.pairing_max_windows,
        )
        match event:
            case QRCodeIssued() | PairingCodeIssued():
                self._show_pairing(event)
            case PairSucceeded():
                self._paired(event)
            case Connected():
                self._online(event, decision.reason, decision.message)
            case TemporarilyBanned():
                self._banned(event, decision.reason, decision.message)
            case ReceiptReceived():
                apply_receipt(self._redis, self._config.tenant, event)
                self._n.dirty_since = self._n.dirty_since or time.monotonic()
            case Timelocked(active=active):
                self._timelock(active=active)
            case KeepAliveTimedOut():
                metrics.KEEPALIVE_TIMEOUTS.inc()
            case PairFailed(reason=reason):
                self._status.record_error("PairFailed", reason)
            case _:
                self._act(decision)

    def _act(self, decision: Decision) -> None:
        reason, message = decision.reason, decision.message
        match decision.action:
            case Action.PAUSE:
                self._pause(reason, message)
            case Action.NEW_WINDOW:
                self._n.windows_used += 1
                log.info("pairing_window_ended", windows=self._n.windows_used)
                self._transport.stop()
                self._start()
            case Action.EXPIRE_PAIRING:
                self._n.windows_used += 1
                self._transport.stop()
                self._n.halted = True
                self._enter("PairingExpired", reason, message, remove=PAIRING_FIELDS)
            case Action.WIPE_AND_PAIR:
                self._logged_out(reason, message)
            case Action.HALT:
                self._transport.stop()
                self._n.halted = True
                self._status.record_error(reason, message)
                self._enter("Conflict", reason, message)
            case Action.FAIL:
                self._checkpoint("before_exit")
                self._fail(reason, message)
            case Action.RESTART_PROCESS:
                self._status.record_error(reason, message)
                self._enter(str(decision.phase), reason, message)
                self._checkpoint("before_exit")
                raise _Exit(EXIT_TRANSPORT_STOPPED)
            case _:
                pass

    # ------------------------------------------------------------ actions
    def _show_pairing(self, event: QRCodeIssued | PairingCodeIssued) -> None:
        if not self._n.window_open:
            self._n.window_open = True
            metrics.PAIRING_WINDOWS.inc()
            log.info("pairing_window_opened", window=self._n.windows_used + 1)
        method_is_code = self._config.pairing_method == "PairingCode"
        if isinstance(event, QRCodeIssued) and method_is_code:
            if not self._n.code_requested and self._config.pairing_phone:
                self._n.code_requested = True
                self._transport.pair_phone(self._config.pairing_phone)
            return
        field = (
            contract.STATUS_QR if isinstance(event, QRCodeIssued) else contract.STATUS_PAIRING_CODE
        )
        self._status.publish_pairing(event.code)
        decision = decide(event, windows_used=0, max_windows=1)
        self._enter(
            "AwaitingPairing",
            decision.reason,
            decision.message,
            extra={
                field: event.code,
                contract.STATUS_PAIRING_EXPIRES_AT: rfc3339(time.time() + event.valid_seconds),
                contract.STATUS_PAIRING_WINDOW: str(self._n.windows_used + 1),
            },
        )
        log.info("pairing_code_issued", kind=field, valid_seconds=event.valid_seconds)

    def _paired(self, event: PairSucceeded) -> None:
        log.info("session_paired", jid=event.jid)
        self._n.paired = True
        self._n.windows_used = 0
        self._n.window_open = False
        self._status.update(
            {contract.STATUS_ACCOUNT_JID: event.jid, contract.STATUS_PUSH_NAME: event.push_name},
            remove=(*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW),
        )
        self._checkpoint("paired")

    def _online(self, event: Connected, reason: str, message: str) -> None:
        self._n.paired = True
        self._n.start_failures = 0
        self._n.connected_since = time.monotonic()
        self._n.windows_used = 0
        account = {}
        if event.jid:
            account[contract.STATUS_ACCOUNT_JID] = event.jid
        if event.push_name:
            account[contract.STATUS_PUSH_NAME] = event.push_name
        self._enter(
            "Connected",
            reason,
            message,
            extra=account,
            remove=(*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW, contract.STATUS_BANNED_UNTIL),
        )
        if self._lease.holds():
            self._gate.open()
            metrics.CONNECTED.set(1)
        log.info("session_connected", jid=event.jid or None)
        self._checkpoint("connected")

    def _pause(self, reason: str, message: str) -> None:
        since = self._n.connected_since
        if since is not None and connection_is_stable(
            time.monotonic() - since, self._config.timings.reconnect_max
        ):
            self._n.backoff_attempt = 0
        self._n.connected_since = None
        metrics.RECONNECTS.inc()
        log.warning("session_disconnected", reason=message)
        self._enter("Reconnecting", reason, message)

    def _logged_out(self, reason: str, message: str) -> None:
        log.warning("session_logged_out", reason=message)
        self._n.paired = False
        self._n.windows_used = 0
        self._enter("LoggedOut", reason, message, remove=ACCOUNT_FIELDS)
        self._status.record_error(reason, message)
        self._store.delete()
        self._transport.stop()
        self._store.wipe_local()
        self._start()

    def _banned(self, event: TemporarilyBanned, reason: str, message: str) -> None:
        until = time.time() + event.expires_in_seconds
        self._gate.set_banned_until(until)
        self._transport.stop()
        self._n.ban_ends = time.monotonic() + event.expires_in_seconds
        self._status.record_error(reason, message)
        self._enter("Banned", reason, message, extra={contract.STATUS_BANNED_UNTIL: rfc3339(until)})
        log.warning("session_banned", code=event.code, seconds=event.expires_in_seconds)

    def _timelock(self, *, active: bool) -> None:
        self._gate.set_timelocked(timelocked=active)
        log.warning("session_timelocked") if active else log.info("session_timelock_cleared")
        if active:
            self._status.update({contract.STATUS_TIMELOCKED: "1"})
        else:
            self._status.update(remove=(contract.STATUS_TIMELOCKED,))

    # ------------------------------------------------------------ timers, control
    def _timers(self) -> None:
        now = time.monotonic()
        t = self._config.timings
        if self._n.ban_ends is not None and now >= self._n.ban_ends:
            self._n.ban_ends = None
            self._gate.set_banned_until(None)
            log.info("session_ban_expired")
            self._enter(
                "Starting",
                "BanExpired",
                "The ban expired; reconnecting.",
                remove=(contract.STATUS_BANNED_UNTIL,),
            )
            self._start()
        if self._n.dirty_since is not None and now - self._n.dirty_since >= t.checkpoint_debounce:
            self._checkpoint("activity")
        elif now - self._n.last_checkpoint >= t.checkpoint_interval:
            self._checkpoint("periodic")

    def _control(self) -> None:
        raw = self._redis.lpop(contract.control_key(self._config.tenant))
        if raw is None:
            return
        command = str(raw)
        try:
            parsed = json.loads(command)
            if isinstance(parsed, dict):
                command = str(parsed.get("command", ""))
        except ValueError:
            pass
        if command != contract.CONTROL_PAIR:
            log.warning("control_command_unknown", command=command)
            return
        if not self._n.halted:
            log.info("control_pair_ignored", phase=self._phase)
            return
        log.info("control_pair", phase=self._phase)
        self._n.halted = False
        self._n.windows_used = 0
        self._enter("Starting", "PairRequested", "Pairing re-armed; connecting.")
        self._start()

    # ------------------------------------------------------------ checkpoints
    def _checkpoint(self, why: str) -> None:
        self._n.last_checkpoint = time.monotonic()
        self._n.dirty_since = None
        if not self._n.paired:
            return
        try:
            done = self._store.checkpoint()
        except LeaseLostError:
            metrics.CHECKPOINTS.labels(result="lease_lost").inc()
            self._lose_lease()
            raise
        except AuthStoreError as error:
            metrics.CHECKPOINTS.labels(result="failed").inc()
            log.error("checkpoint_failed", why=why, error=str(error))  # noqa: TRY400 - expected, no trace
            return
        if done is None:
            return
        metrics.CHECKPOINTS.labels(result="ok").inc()
        metrics.CHECKPOINT_BYTES.set(done.bytes_stored)
        metrics.CHECKPOINT_SECONDS.observe(done.seconds)
        log.info(
            "checkpoint_written",
            why=why,
            generation=done.generation,
            bytes=done.bytes_stored,
            has_device=done.has_device,
            seconds=round(done.seconds, 4),
        )

    # ------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        """Stop jobs, final checkpoint, stop the transport, release the lease."""
        log.info("session_stopping", phase=self._phase)
        self._gate.close()
        self._stop_jobs()
        try:
            self._checkpoint("shutdown")
        except LeaseLostError:
            return
        self._transport.stop()
        self._status.update({contract.STATUS_LEASE_HELD: "0"})
        self._lease.release()
        metrics.LEASE_HELD.set(0)
        log.info("session_stopped")
