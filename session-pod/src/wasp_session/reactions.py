"""What the session does about each transport event, about time passing, and about ``pair``.

Owns the reaction to every ``TransportEvent``: ``decisions.decide`` says what
the event means, and this module carries it out. It shows QR and pairing
codes and counts pairing windows, in the tenant's pairing record too
(``pairing_record``), so a restarted pod goes on at the next window and
never shows one beyond the limit; checks every account that pairs or
connects against the tenant's pin (``account_guard``) before it records the
account, checkpoints it or opens the send gate; pauses on a disconnect;
wipes and pairs again after a logout; waits out a ban, recorded (with its
end on Redis's clock) in the tenant's halt record before it is shown, so a
pod restarted while banned waits out the rest of it and connects only then;
hands WhatsApp's 463 reach-out timelock to ``timelock`` (which records it
until WhatsApp clears it or its bound passes);
ends the session on fatal events. It connects the transport, retrying a
failed start with full-jitter backoff up to the limit, and re-arms a halted
session (Conflict, PairingExpired, a refused account) on a ``pair`` command.
A Conflict, PairingExpired or Banned halt is recorded before it is shown (a
refused account by the account guard), and a pod that starts with a
recorded halt enters it without connecting (``resume``).

Must not keep the lease nor decide when to checkpoint on a schedule
(``lease_keeper`` and ``checkpoints`` do); it asks for a checkpoint now
where the event table says so.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
import structlog

from wasp import contract
from wasp.accounts import account_of_jid, mask_account
from wasp_session import metrics
from wasp_session.account_guard import AccountGuard
from wasp_session.auth_store import AuthStore
from wasp_session.checkpoints import CheckpointScheduler
from wasp_session.config import Config
from wasp_session.decisions import (
    Action,
    Decision,
    backoff_ceiling,
    backoff_delay,
    connection_is_stable,
    decide,
    pairing_expired,
    start_failure_is_fatal,
    window_may_open,
)
from wasp_session.delivery.receipts import apply_receipt
from wasp_session.delivery.sender import RedisClock
from wasp_session.errors import EXIT_TRANSPORT_STOPPED
from wasp_session.gate import SendGate
from wasp_session.pairing_record import HALT_BANNED, Pairing, PairingRecord
from wasp_session.phases import ACCOUNT_FIELDS, Phases, SessionExit
from wasp_session.status import PAIRING_FIELDS, StatusBoard, rfc3339
from wasp_session.timelock import TimelockRecord
from wasp_session.transport.base import (
    Connected,
    KeepAliveTimedOut,
    MessageReceived,
    PairFailed,
    PairingCodeIssued,
    PairSucceeded,
    QRCodeIssued,
    ReceiptReceived,
    StartError,
    TemporarilyBanned,
    Timelocked,
    Transport,
    TransportError,
    TransportEvent,
)

log = structlog.stdlib.get_logger("wasp_session.reactions")


@dataclass
class _Counters:
    start_failures: int = 0
    backoff_attempt: int = 0
    windows_used: int = 0
    window_open: bool = False
    code_requested: bool = False
    paired_now: bool = False  # this connection paired (the device was not restored)
    connected_since: float | None = None
    ban_ends: float | None = None  # epoch seconds (Redis's clock) the ban ends at
    halted: bool = False  # Conflict / PairingExpired / refused account: waits for `pair`
    stay_unlinked: bool = False  # an `unlink` asked: the next logout halts, no new pairing


@dataclass(frozen=True)
class Collaborators:
    """What the reactions act on, each owned elsewhere."""

    transport: Transport
    client: redis.Redis  # decodes to str; for receipts
    status: StatusBoard
    store: AuthStore
    gate: SendGate
    phases: Phases
    checkpoints: CheckpointScheduler
    guard: AccountGuard
    pairing: PairingRecord  # windows opened and the halt, kept across restarts
    lease_held: Callable[[], bool]
    check_lease: Callable[[], None]
    beat: Callable[[], None] = lambda: None  # the lifecycle loop's heartbeat (``health``)
    inbound: Callable[[MessageReceived], object] = lambda _: None  # ``inbound.Inbound.received``


class Reactions:
    """Carries out what each event means for one tenant's session."""

    def __init__(
        self,
        config: Config,
        parts: Collaborators,
        stop: threading.Event,
        rand: Callable[[], float] = random.random,
    ) -> None:
        """React for ``config.tenant`` with ``parts``; stop retrying once ``stop`` is set."""
        self._config = config
        self._p = parts
        self._stop = stop
        self._rand = rand
        self._n = _Counters()
        self._clock = RedisClock(parts.client)  # bans and timelocks end on Redis's clock
        self._timelock = TimelockRecord(
            parts.client,
            parts.status,
            tenant=config.tenant,
            bound_seconds=config.timings.timelock,
            now=self._now,
        )

    # ------------------------------------------------------------ connecting
    def resume(self) -> None:
        """Take up the pairing record, then connect, unless it says the session is halted."""
        self._timelock.restore()
        record = self._p.pairing.read()
        self._n.windows_used = record.windows
        if record.windows or record.halt:
            log.info("pairing_record_restored", windows=record.windows, halt=record.halt)
        if record.halt == HALT_BANNED:
            if record.banned_until > self._now():
                log.warning("session_ban_restored", until=rfc3339(record.banned_until))
                self._enter_ban(record.reason, record.message, record.banned_until)
                return
            self._lift_ban()  # it ended while no pod ran
        elif record.halt:
            self._n.halted = True
            self._p.phases.enter(record.halt, record.reason, record.message, remove=PAIRING_FIELDS)
            return
        self.connect()

    def connect(self) -> None:
        """Start the transport, retrying failed starts with backoff until the limit."""
        self._n.window_open = False
        self._n.code_requested = False
        self._n.paired_now = False
        while not self._stop.is_set():
            self._p.check_lease()
            try:
                self._p.transport.connect()
            except StartError as error:
                self._start_failed(error)
                continue
            log.info("transport_started", transport=self._config.transport)
            return

    def _start_failed(self, error: TransportError, reason: str = "StartFailed") -> None:
        """A start (or the pairing-code request after it) failed: back off, or fail at the limit."""
        self._n.start_failures += 1
        metrics.START_FAILURES.inc()
        metrics.RECONNECTS.inc()
        failures, limit = self._n.start_failures, self._config.max_start_failures
        if start_failure_is_fatal(failures, limit):
            self._p.phases.fail(reason, f"{failures} starts failed in a row; last: {error}")
        t = self._config.timings
        attempt = self._n.backoff_attempt
        delay = backoff_delay(attempt, t.reconnect_base, t.reconnect_max, self._rand)
        ceiling = backoff_ceiling(attempt, t.reconnect_base, t.reconnect_max)
        self._n.backoff_attempt += 1
        log.warning(
            "start_failed",
            reason=reason,
            error=str(error),
            failures=failures,
            retry_in=delay,
            backoff_ceiling=ceiling,
        )
        self._p.status.record_error(reason, str(error))
        self._p.phases.enter(
            "Reconnecting",
            reason,
            f"Start {failures} of {limit} failed ({error}); retrying in {delay:.1f} s.",
        )
        self._wait_beating(delay)

    def _wait_beating(self, seconds: float) -> None:
        """Wait out a backoff (or until stopped), beating the lifecycle's loop each second."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self._p.beat()
            if self._stop.wait(min(left, 1.0)):
                return

    # ------------------------------------------------------------ events
    def handle(self, event: TransportEvent) -> None:
        """React to one event from the transport."""
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
                self._online(event, decision)
            case TemporarilyBanned():
                self._banned(event, decision)
            case ReceiptReceived():
                apply_receipt(self._p.client, self._config.tenant, event)
                self._p.checkpoints.mark_dirty()
            case Timelocked(active=active):
                self._timelock.seen(active=active)
            case MessageReceived():
                self._p.inbound(event)
            case KeepAliveTimedOut():
                metrics.KEEPALIVE_TIMEOUTS.inc()
            case PairFailed(reason=reason):
                self._p.status.record_error("PairFailed", reason)
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
                self._p.transport.stop()
                self.connect()
            case Action.EXPIRE_PAIRING:
                self._n.windows_used += 1
                self._expire(decision)
            case Action.WIPE_AND_PAIR:
                self._logged_out(reason, message)
            case Action.HALT:
                self._p.transport.stop()
                self._halt(decision)
                self._p.status.record_error(reason, message)
                self._p.phases.enter("Conflict", reason, message)
            case Action.FAIL:
                self._p.checkpoints.now("before_exit")
                self._p.phases.fail(reason, message)
            case Action.RESTART_PROCESS:
                self._p.status.record_error(reason, message)
                self._p.phases.enter(str(decision.phase), reason, message)
                self._p.checkpoints.now("before_exit")
                raise SessionExit(EXIT_TRANSPORT_STOPPED)
            case _:
                pass

    def _halt(self, decision: Decision) -> None:
        """Halted until `pair`: recorded first, so a restarted pod halts too."""
        self._n.halted = True
        self._p.pairing.save(
            Pairing(self._n.windows_used, str(decision.phase), decision.reason, decision.message)
        )

    def _expire(self, decision: Decision) -> None:
        self._p.transport.stop()
        self._halt(decision)
        self._p.phases.enter(
            "PairingExpired", decision.reason, decision.message, remove=PAIRING_FIELDS
        )

    def _reset_pairing(self) -> None:
        """Paired, connected, logged out or re-armed: the window count starts again."""
        self._n.windows_used = 0
        self._p.pairing.clear()

    def _show_pairing(self, event: QRCodeIssued | PairingCodeIssued) -> None:
        if self._n.halted:
            return  # what a stopped transport said last; no QR while halted
        if not self._n.window_open:
            if not window_may_open(self._n.windows_used, self._config.pairing_max_windows):
                self._expire(pairing_expired(self._n.windows_used))  # used up before a restart
                return
            self._n.window_open = True
            self._p.pairing.save(Pairing(self._n.windows_used + 1))
            metrics.PAIRING_WINDOWS.inc()
            log.info("pairing_window_opened", window=self._n.windows_used + 1)
        method_is_code = self._config.pairing_method == "PairingCode"
        if isinstance(event, QRCodeIssued) and method_is_code:
            if not self._n.code_requested and self._config.pairing_phone:
                self._n.code_requested = True
                self._request_code(self._config.pairing_phone)
            return
        field = (
            contract.STATUS_QR if isinstance(event, QRCodeIssued) else contract.STATUS_PAIRING_CODE
        )
        decision = decide(event, windows_used=0, max_windows=1)
        self._p.phases.enter(  # the lease holder's status first, then the channel
            "AwaitingPairing",
            decision.reason,
            decision.message,
            extra={
                field: event.code,
                contract.STATUS_PAIRING_EXPIRES_AT: rfc3339(self._now() + event.valid_seconds),
                contract.STATUS_PAIRING_WINDOW: str(self._n.windows_used + 1),
            },
        )
        self._p.status.publish_pairing(event.code)
        log.info("pairing_code_issued", kind=field, valid_seconds=event.valid_seconds)

    def _request_code(self, phone_digits: str) -> None:
        """Ask for the pairing code; a refusal is a failed start: backoff, reconnect, or Failed.

        WhatsApp refuses a number, rate-limits, or the network fails: the
        window is not counted (none was shown), the refusal is the status's
        last error and reason (``PairPhoneFailed``), and after
        ``WASP_MAX_START_FAILURES`` in a row the session fails with it.
        """
        try:
            self._p.transport.pair_phone(phone_digits)
        except TransportError as error:
            metrics.PAIR_PHONE_FAILURES.inc()
            log.warning("pair_phone_failed", error=str(error))
            self._n.window_open = False
            self._record_windows()  # the window opened for it showed nothing
            self._p.transport.stop()
            self._start_failed(error, "PairPhoneFailed")
            self.connect()

    def _paired(self, event: PairSucceeded) -> None:
        if not self._p.guard.admit(event.jid, restored=False):
            self._n.halted = True
            return
        log.info("session_paired", device=mask_account(account_of_jid(event.jid)))
        self._n.paired_now = True
        self._reset_pairing()
        self._n.window_open = False
        self._p.checkpoints.account_kept = True
        self._p.status.update(
            {contract.STATUS_ACCOUNT_JID: event.jid, contract.STATUS_PUSH_NAME: event.push_name},
            remove=(*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW),
        )
        self._p.checkpoints.now("paired")

    def _online(self, event: Connected, decision: Decision) -> None:
        if self._n.halted:
            return  # what a stopped connection said last; nothing is sent from it
        if not self._p.guard.admit(event.jid, restored=not self._n.paired_now):
            self._n.halted = True
            return
        self._p.checkpoints.account_kept = True
        self._n.start_failures = 0
        self._n.connected_since = time.monotonic()
        self._reset_pairing()
        account = {}
        if event.jid:
            account[contract.STATUS_ACCOUNT_JID] = event.jid
        if event.push_name:
            account[contract.STATUS_PUSH_NAME] = event.push_name
        self._p.phases.enter(
            "Connected",
            decision.reason,
            decision.message,
            extra=account,
            remove=(*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW, contract.STATUS_BANNED_UNTIL),
        )
        if self._p.lease_held():
            self._p.gate.open()
            metrics.CONNECTED.set(1)
        log.info("session_connected", device=mask_account(account_of_jid(event.jid)))
        self._p.checkpoints.now("connected")

    def _pause(self, reason: str, message: str) -> None:
        since = self._n.connected_since
        if since is not None and connection_is_stable(
            time.monotonic() - since, self._config.timings.reconnect_max
        ):
            self._n.backoff_attempt = 0
        self._n.connected_since = None
        metrics.RECONNECTS.inc()
        log.warning("session_disconnected", reason=message)
        self._p.phases.enter("Reconnecting", reason, message)

    def _logged_out(self, reason: str, message: str) -> None:
        log.warning("session_logged_out", reason=message)
        self._p.checkpoints.account_kept = False
        self._reset_pairing()
        error = self._p.status.error_fields(reason, message)
        self._p.phases.enter("LoggedOut", reason, message, extra=error, remove=ACCOUNT_FIELDS)
        self._p.store.delete()
        self._p.transport.stop()
        self._p.store.wipe_local()
        if self._n.stay_unlinked:  # the session is being deleted: no QR, no code, ever again
            self._halt(Decision(Action.HALT, "LoggedOut", reason, message))
            log.info("session_stays_unlinked")
            return
        self.connect()

    def _banned(self, event: TemporarilyBanned, decision: Decision) -> None:
        """Banned: recorded first (its end on Redis's clock), so a restarted pod waits too."""
        until = self._now() + event.expires_in_seconds
        reason, message = decision.reason, decision.message
        self._p.pairing.save(Pairing(self._n.windows_used, HALT_BANNED, reason, message, until))
        metrics.BANS.inc()
        self._p.transport.stop()
        self._p.status.record_error(reason, message)
        self._enter_ban(reason, message, until)
        log.warning("session_banned", code=event.code, seconds=event.expires_in_seconds)

    def _enter_ban(self, reason: str, message: str, until: float) -> None:
        """Wait in ``Banned`` until ``until`` (Redis's clock); ``tick`` reconnects then."""
        self._n.ban_ends = until
        self._p.gate.set_banned_for(max(0.0, until - self._now()))
        self._p.phases.enter(
            "Banned", reason, message, extra={contract.STATUS_BANNED_UNTIL: rfc3339(until)}
        )

    def _lift_ban(self) -> None:
        """The ban ended: the record keeps the window count, and no halt."""
        self._n.ban_ends = None
        self._p.gate.set_banned_for(None)
        self._record_windows()

    def _record_windows(self) -> None:
        """The record holds the windows used so far, and no halt."""
        if self._n.windows_used:
            self._p.pairing.save(Pairing(self._n.windows_used))
        else:
            self._p.pairing.clear()

    def _now(self) -> float:
        """Epoch seconds on Redis's clock (every pod of the tenant shares it)."""
        return self._clock.now().timestamp()

    # ------------------------------------------------------------ time, commands
    def tick(self) -> None:
        """End the timelock past its bound; reconnect when a ban has expired."""
        self._timelock.tick()
        if self._n.ban_ends is None or self._now() < self._n.ban_ends:
            return
        self._lift_ban()
        log.info("session_ban_expired")
        self._p.phases.enter(
            "Starting",
            "BanExpired",
            "The ban expired; reconnecting.",
            remove=(contract.STATUS_BANNED_UNTIL,),
        )
        self.connect()

    def stay_unlinked(self) -> None:
        """An ``unlink`` command: the logout that follows halts in LoggedOut (``pair`` re-arms)."""
        self._n.stay_unlinked = True

    def rearm(self) -> None:
        """A ``pair`` command: start pairing (or connecting) again if the session is halted."""
        if not self._n.halted:
            log.info("control_pair_ignored", phase=self._p.phases.current)
            return
        log.info("control_pair", phase=self._p.phases.current)
        self._n.halted = False
        self._n.stay_unlinked = False
        self._reset_pairing()
        self._p.phases.enter("Starting", "PairRequested", "Pairing re-armed; connecting.")
        self.connect()
