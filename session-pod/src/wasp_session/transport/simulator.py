"""The simulator transport: WhatsApp's behaviour without WhatsApp, for staging and demos.

Implements ``Transport`` with the same rhythm as whatsmeow: a QR window of
codes valid 60 s then 20 s each (configurable), pairing when told to, receipts
"delivered" then "read" after a delay, and every fault on command. The
vocabulary is documented in ``sim_commands`` and ``docs/simulator.md``.

The simulator stands in for WhatsApp's servers, and those keep a device's
pending receipts until it is online: so do we, in Redis
(``contract.simulator_receipts_key``, scored by due time), written in one
script call with the outbox entry (after the absent-number check: a send is
one round trip). A killed process therefore loses no receipt; whichever
simulator of the tenant is connected plays the due ones, each claimed by
``ZREM`` before it is emitted, so no two processes play one.

So does its 463 timelock (``contract.simulator_timelock_key``, read at
each connect): a restarted pod's simulator is timelocked still.
And so does the phones' list of linked devices (``contract.simulator_linked_key``:
a scan adds the device, a logout from either side removes it), which
outlives the session as a real phone's list does.

The simulated device lives in ``simulator.db`` in the data dir (see
``sim_device``), checkpointed and restored by the auth store exactly like
whatsmeow's database. Connection work runs on a thread of its own; sends run
on the caller's thread. Never writes the session status or message hashes:
it reports events, records its outbox, and that is all.

Idle, it costs Redis about one call a second: its thread waits for a
command with a blocking ``BLPOP`` (on a connection of its own,
``BlockingConnection``, which ``stop`` cuts short; a command pushed
meanwhile is handed over at once) until the next thing it must do by itself
is due: a timer, the end of a QR code, a receipt; at most ``_IDLE_SECONDS``
and at most the receipt delay (so a send during a wait gets its receipts on
time), at least ``_BUSY_SECONDS`` (the 100 ms rounds of old). It asks Redis
for receipts only when one is due (``sim_receipts``).

The ``hang`` fault wedges the session, not the simulator: for its
``seconds``, every blocking read of ``events`` does not return, so the
session's thread stops making progress as it would on a call into a wedged
whatsmeow client (``/healthz`` then names the lifecycle's loop).
"""

from __future__ import annotations

import heapq
import itertools
import json
import queue
import secrets
import string
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import structlog

from wasp import contract
from wasp.accounts import account_of_jid, mask_account
from wasp_session.blocking_connection import BlockingConnection, WaitInterruptedError
from wasp_session.transport.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    KeepAliveRestored,
    KeepAliveTimedOut,
    LoggedOut,
    MessageReceived,
    NotConnectedError,
    PairingCodeIssued,
    PairingWindowEnded,
    PairSucceeded,
    QRCodeIssued,
    ReceiptReceived,
    SendError,
    SendUncertainError,
    SentMessage,
    StartError,
    StreamReplaced,
    TemporarilyBanned,
    Timelocked,
    TimelockedError,
    TransportError,
    TransportEvent,
    TransportStopped,
)
from wasp_session.transport.sim_commands import CommandError, SimCommand, parse_command
from wasp_session.transport.sim_device import Device, DeviceFile
from wasp_session.transport.sim_receipts import DueReceipt, PendingReceipts, receipt_member

DATABASE_NAME = "simulator.db"
_POLL_SECONDS = 0.1  # how often a hung ``events`` read looks whether the hang is over
_BUSY_SECONDS = 0.1  # the shortest wait for a command: something is due sooner, or now
_IDLE_SECONDS = 1.0  # the longest: nothing is due sooner
_DEFAULT_ACCOUNT = "4915100000000"  # the account a bare `scan` pairs
_USER_SERVER = "s.whatsapp.net"  # the server of a user's JID, as check_number answers
_PAIR_PHONE_REFUSAL = "info query returned status 429: rate-overlimit"  # whatsmeow's words
_INBOUND_KEPT = 1000  # messages kept for an offline device (the oldest go first)
_INBOUND_SENDER = "4915199999999"  # who writes when `inbound` names no phone
log = structlog.stdlib.get_logger("wasp_session.simulator")

# A send in one round trip: unless the number is in the absent set (KEYS[1], E.164
# with or without "+": ARGV[1], ARGV[2]), the outbox entry (KEYS[2], ARGV[3]) and
# both receipts (KEYS[3]: ARGV[4] score, ARGV[5] member, ARGV[6], ARGV[7]), all or
# nothing. Replies 1 if sent, 0 if the number is not on WhatsApp.
_SEND_LUA = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1
  or redis.call('SISMEMBER', KEYS[1], ARGV[2]) == 1 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return 1
"""


@dataclass(frozen=True)
class SimulatorSettings:
    """The simulator's timings."""

    qr_seconds: tuple[float, ...] = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
    receipt_delay: float = 1.0


class _EventQueue(queue.Queue[TransportEvent]):
    """The simulator's events; during a ``hang`` a blocking ``get`` does not return."""

    def __init__(self) -> None:
        super().__init__()
        self._hang_lock = threading.Lock()
        self._hang_until = 0.0

    def hang(self, seconds: float) -> None:
        """Wedge blocking reads for ``seconds`` from now (0 ends a hang)."""
        with self._hang_lock:
            self._hang_until = time.monotonic() + seconds

    def get(self, block: bool = True, timeout: float | None = None) -> TransportEvent:  # noqa: FBT001, FBT002 - queue.Queue's signature
        """``queue.Queue.get``, after a ``hang`` has run out for a blocking read."""
        if block:
            while True:
                with self._hang_lock:
                    left = self._hang_until - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, _POLL_SECONDS))
        return super().get(block, timeout)


def _pairing_code() -> str:
    alphabet = string.ascii_uppercase + string.digits
    chars = "".join(secrets.choice(alphabet) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


class SimulatorTransport:
    """A simulated linked device for one tenant."""

    def __init__(
        self, client: redis.Redis, tenant: str, data_dir: Path, settings: SimulatorSettings
    ) -> None:
        """Simulate ``tenant``'s account; ``client`` decodes responses to ``str``."""
        self._redis = client
        self._send = client.register_script(_SEND_LUA)
        self._tenant = tenant
        self._settings = settings
        self.database = data_dir / DATABASE_NAME
        self._device = DeviceFile(self.database)
        self._events = _EventQueue()
        self._lock = threading.Lock()
        self._timers: list[tuple[float, int, TransportEvent]] = []
        self._sequence = itertools.count()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._connected = False
        self._window_codes: list[float] = []  # validity of the codes still to show
        self._window_deadline: float | None = None  # when the current code expires
        self._pairing_phone: str | None = None
        self._scan_pending: SimCommand | None = None
        self._fail_starts = 0
        self._fail_pair_phone: list[str] = []  # fail_pair_phone: the refusal, one per request
        self._fail_sends = 0
        self._lost_acks: list[float] = []  # send_timeout_after_delivery: seconds, one per send
        self._timelocked = False
        self._inbound_waiting: list[MessageReceived] = []  # written to it while offline
        self._waits: BlockingConnection | None = None  # the thread's wait for commands
        self._receipts = PendingReceipts(client, tenant)

    # ------------------------------------------------------------ interface
    @property
    def events(self) -> queue.Queue[TransportEvent]:
        """Everything the simulated connection reports, in order."""
        return self._events

    def connect(self) -> None:
        """Start the simulated connection; ``StartError`` if a dial failure is due."""
        self.stop()
        timelocked = bool(self._redis.exists(contract.simulator_timelock_key(self._tenant)))
        with self._lock:
            self._timelocked = timelocked  # as an earlier process of the tenant left it
        self._drain_commands()
        with self._lock:
            if self._fail_starts > 0:
                self._fail_starts -= 1
                msg = "simulated dial failure"
                raise StartError(msg)
        self._stop = threading.Event()
        self._waits = BlockingConnection(self._redis)
        self._thread = threading.Thread(
            target=self._run, args=(self._stop, self._waits), name="simulator", daemon=True
        )
        self._thread.start()

    def pair_phone(self, phone_digits: str) -> None:
        """Issue a pairing code for ``phone_digits`` within the live window.

        ``TransportError`` when a ``fail_pair_phone`` is due, as whatsmeow's
        ``PairPhone`` fails on a rate limit, a refused number or the network.
        """
        with self._lock:
            if self._fail_pair_phone:
                msg = f"simulated: {self._fail_pair_phone.pop(0)}"
                raise TransportError(msg)
            self._pairing_phone = phone_digits
            remaining = sum(self._window_codes)
            if self._window_deadline is not None:
                remaining += max(0.0, self._window_deadline - time.monotonic())
        self._emit(PairingCodeIssued(code=_pairing_code(), valid_seconds=remaining))

    def send_text(self, to: str, text: str) -> SentMessage:
        """Record the message in the outbox; receipts follow (unless the ack is lost)."""
        phone_digits = to.partition("@")[0]  # the JID check_number gave, or bare digits
        with self._lock:
            if not self._connected:
                raise NotConnectedError
            if self._fail_sends > 0:
                self._fail_sends -= 1
                msg = "simulated send failure"
                raise SendError(msg, transient=True)
            timelocked = self._timelocked
        if timelocked and not self._written_before(phone_digits):
            self._emit(Timelocked(active=True))  # as whatsmeow's transport does on a 463
            msg = "simulated: server returned error 463 (reach-out timelock: a new contact)"
            raise TimelockedError(msg)
        whatsapp_id = "SIM" + secrets.token_hex(8).upper()
        now = time.time()
        record = {"to": f"+{phone_digits}", "text": text, "whatsapp_id": whatsapp_id, "at": now}
        delay = self._settings.receipt_delay
        sent = self._send(  # the number checked, the outbox entry and its receipts: one call
            keys=[
                contract.simulator_absent_key(self._tenant),
                contract.simulator_outbox_key(self._tenant),
                self._receipts.key,
            ],
            args=[
                f"+{phone_digits}",
                phone_digits,
                json.dumps(record),
                repr(now + delay),
                receipt_member(whatsapp_id, "delivered"),
                repr(now + 2 * delay),
                receipt_member(whatsapp_id, "read"),
            ],
        )
        if not sent:
            msg = f"+{phone_digits} is not on WhatsApp"
            raise SendError(msg, transient=False)
        self._receipts.noted(now + delay)
        with self._lock:
            lost_ack = self._lost_acks.pop(0) if self._lost_acks else None
            stopped = self._stop
        if lost_ack is not None:  # it reached WhatsApp; the acknowledgement never comes
            stopped.wait(lost_ack)  # cut short when the connection stops
            msg = "simulated: timed out waiting for message send response"
            raise SendUncertainError(msg)
        return SentMessage(whatsapp_id=whatsapp_id, timestamp=now)

    def _written_before(self, phone_digits: str) -> bool:
        """Whether the account wrote to the number before: it is in the outbox (read only now)."""
        to = f"+{phone_digits}"
        entries = self._redis.lrange(contract.simulator_outbox_key(self._tenant), 0, -1)
        return any(json.loads(entry).get("to") == to for entry in entries)

    def check_number(self, phone_digits: str) -> str | None:
        """The number's JID, as WhatsApp answers, unless it is in the absent set."""
        key = contract.simulator_absent_key(self._tenant)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(key, f"+{phone_digits}")
        pipe.sismember(key, phone_digits)
        return None if any(pipe.execute()) else f"{phone_digits}@{_USER_SERVER}"

    def logout(self) -> None:
        """Unlink the simulated device (as WhatsApp would: the phone no longer lists it)."""
        device = self._device.load()
        log.info(
            "simulator_device_logged_out",
            device=mask_account(account_of_jid(device.jid)) if device else None,
        )
        self._logged_out("logged out by this device")

    def stop(self) -> None:
        """End the simulated connection; receipts not yet read go back to Redis. Idempotent."""
        self._stop.set()
        if self._waits is not None:
            self._waits.interrupt()  # the thread's wait for a command ends now
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        with self._lock:
            self._connected = False
            self._window_codes = []
            self._window_deadline = None
            self._timers = []
        self._return_unread_receipts()

    # ------------------------------------------------------------ the thread
    def _run(self, stop: threading.Event, waits: BlockingConnection) -> None:
        device = self._device.load()
        if device is not None:
            self._go_online(device)
        else:
            with self._lock:
                self._window_codes = list(self._settings.qr_seconds)
            self._next_qr()
        key = contract.simulator_commands_key(self._tenant)
        try:
            while not stop.is_set():
                self._fire_timers()
                self._tick_window()
                try:
                    self._play_receipts(stop)
                    popped = waits.blpop(key, self._seconds_to_wait())
                except WaitInterruptedError:
                    continue  # ``stop``
                except redis.RedisError as error:
                    log.warning("simulator_redis_error", error=str(error))
                    stop.wait(1.0)
                    continue
                if isinstance(popped, list) and not stop.is_set():
                    self._play_raw(str(popped[1]))
        finally:
            waits.close()

    def _seconds_to_wait(self) -> float:
        """How long to wait for a command: until the next thing due, within the bounds."""
        longest = min(_IDLE_SECONDS, max(_BUSY_SECONDS, self._settings.receipt_delay))
        with self._lock:
            moments = [longest]
            if self._timers:
                moments.append(self._timers[0][0] - time.monotonic())
            if self._window_deadline is not None:
                moments.append(self._window_deadline - time.monotonic())
            if self._connected:
                moments.append(self._receipts.next_due() - time.time())
        return max(_BUSY_SECONDS, min(moments))

    def _play_receipts(self, stop: threading.Event) -> None:
        """Emit the tenant's due receipts while connected, each claimed (ZREM) first.

        Claims only when the session has read every event already emitted, and
        at most one receipt per message a round: a receipt claimed but not yet
        handled dies with the process, and this keeps that to a moment.
        """
        with self._lock:
            if not self._connected:
                self._receipts.forget()  # back online, look at once
                return  # WhatsApp keeps them until the device is back
        if stop.is_set() or not self._events.empty() or not self._receipts.may_be_due():
            return
        for receipt in self._receipts.claim_due():
            self._emit(ReceiptReceived((receipt.whatsapp_id,), receipt.kind, receipt.at))

    def _return_unread_receipts(self) -> None:
        """Put receipts emitted but not yet taken from ``events`` back in Redis, due as before.

        A stopped connection (SIGTERM, a lost lease, a new pairing window) then
        loses none: whichever simulator of the tenant connects next plays them.
        """
        kept: list[TransportEvent] = []
        unread: list[DueReceipt] = []
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, ReceiptReceived):
                unread.extend(
                    DueReceipt(i, event.kind, event.timestamp) for i in event.whatsapp_ids
                )
            else:
                kept.append(event)
        for event in kept:  # the rest stays for the session to read, in order
            self._events.put(event)
        self._receipts.put_back(unread)

    def _drain_commands(self) -> None:
        key = contract.simulator_commands_key(self._tenant)
        while (raw := self._redis.lpop(key)) is not None:
            self._play_raw(str(raw))

    def _play_raw(self, raw: str) -> None:
        try:
            command = parse_command(raw)
        except CommandError as error:
            log.warning("simulator_command_rejected", error=str(error))
            return
        shown = {
            name: mask_account(account_of_jid(str(value))) if name in ("phone", "jid") else value
            for name, value in command.arguments.items()
        }
        log.info("simulator_command", command=command.name, **shown)
        self._play(command)

    def _play(self, command: SimCommand) -> None:  # noqa: C901, PLR0912, PLR0915 - one branch per command
        match command.name:
            case "scan":
                self._scan(command)
            case "disconnect":
                with self._lock:
                    self._connected = False
                    device = self._device.load()
                    back = time.monotonic() + command.number("seconds", 1.0)
                    self._schedule(back, Connected(*(_names(device))))
                self._emit(Disconnected("simulated disconnect"))
            case "logout":
                self._logged_out("simulated: the phone unlinked this device")
            case "stream_replaced":
                self._offline(StreamReplaced())
            case "ban":
                seconds = command.number("seconds", 60.0)
                code = int(command.number("code", 101))
                self._offline(TemporarilyBanned(code=code, expires_in_seconds=seconds))
            case "timelock" | "clear_timelock":
                active = command.name == "timelock"
                key = contract.simulator_timelock_key(self._tenant)
                if active:  # WhatsApp's servers hold it, not the device: kept in Redis
                    self._redis.set(key, "1")
                else:
                    self._redis.delete(key)
                with self._lock:
                    self._timelocked = active
                self._emit(Timelocked(active=active))
            case "fail_sends":
                with self._lock:
                    self._fail_sends += int(command.number("count", 1))
            case "send_timeout_after_delivery":
                seconds = max(0.0, command.number("seconds", 0.0))
                with self._lock:
                    self._lost_acks.extend([seconds] * int(command.number("count", 1)))
            case "fail_starts":
                with self._lock:
                    self._fail_starts += int(command.number("count", 1))
            case "fail_pair_phone":
                refusal = command.text("reason", _PAIR_PHONE_REFUSAL)
                with self._lock:
                    self._fail_pair_phone.extend([refusal] * int(command.number("count", 1)))
            case "expire_qr":
                with self._lock:
                    live = self._window_deadline is not None
                    self._window_codes = []
                    self._window_deadline = None
                if live:
                    self._emit(PairingWindowEnded())
            case "client_outdated":
                self._offline(ConnectFailed("simulated: client outdated", client_outdated=True))
            case "connect_failure":
                self._offline(ConnectFailed(command.text("reason", "simulated connect failure")))
            case "keepalive_timeout":
                self._emit(KeepAliveTimedOut())
            case "keepalive_restored":
                self._emit(KeepAliveRestored())
            case "crash":
                self._offline(TransportStopped("simulated: the connection ended unexpectedly"))
            case "hang":
                self._events.hang(max(0.0, command.number("seconds", 60.0)))
            case "inbound":
                self._inbound(command)

    def _scan(self, command: SimCommand) -> None:
        with self._lock:
            live = self._window_deadline is not None
            if not live:
                if self._device.load() is None:
                    self._scan_pending = command
                return
            self._window_codes = []
            self._window_deadline = None
            phone = self._pairing_phone
        device = Device(
            jid=_scanned_jid(command, phone), push_name=command.text("push_name", "Simulator")
        )
        self._device.store(device)
        self._redis.sadd(contract.simulator_linked_key(self._tenant), device.jid)  # phone lists it
        self._emit(PairSucceeded(jid=device.jid, push_name=device.push_name))
        self._go_online(device)

    def _inbound(self, command: SimCommand) -> None:
        """Someone writes to the account; an offline device gets it when it connects."""
        sender = command.text("phone", _INBOUND_SENDER).strip().removeprefix("+")
        sender_jid = f"{sender}@{_USER_SERVER}"
        message = MessageReceived(
            chat=command.text("jid", sender_jid),
            sender=sender_jid,
            text=command.text("text", ""),
            whatsapp_id="SIMIN" + secrets.token_hex(8).upper(),
            sent_at=time.time(),
            media_type=command.text("media", ""),
            from_me=command.arguments.get("from_me") in (True, "true", "1", 1),
        )
        with self._lock:
            if not self._connected:
                self._inbound_waiting = [*self._inbound_waiting, message][-_INBOUND_KEPT:]
                return
        self._emit(message)

    def _deliver_waiting_inbound(self) -> None:
        with self._lock:
            waiting, self._inbound_waiting = self._inbound_waiting, []
        for message in waiting:
            self._emit(message)

    def _next_qr(self) -> None:
        with self._lock:
            if not self._window_codes:
                return
            valid = self._window_codes.pop(0)
            self._window_deadline = time.monotonic() + valid
            pending, self._scan_pending = self._scan_pending, None
        self._emit(QRCodeIssued(code=f"2@{secrets.token_urlsafe(48)}", valid_seconds=valid))
        if pending is not None:
            self._scan(pending)

    def _tick_window(self) -> None:
        with self._lock:
            deadline = self._window_deadline
            if deadline is None or time.monotonic() < deadline:
                return
            more = bool(self._window_codes)
            if not more:
                self._window_deadline = None
        if more:
            self._next_qr()
        else:
            self._emit(PairingWindowEnded())

    def _go_online(self, device: Device) -> None:
        with self._lock:
            self._connected = True
        self._emit(Connected(jid=device.jid, push_name=device.push_name))
        self._deliver_waiting_inbound()

    def _offline(self, event: TransportEvent) -> None:
        with self._lock:
            self._connected = False
            self._timers = [t for t in self._timers if not isinstance(t[2], Connected)]
        self._emit(event)

    def _logged_out(self, reason: str) -> None:
        device = self._device.load()
        if device is not None:  # the phone no longer lists it
            self._redis.srem(contract.simulator_linked_key(self._tenant), device.jid)
        self._device.forget()
        self._offline(LoggedOut(reason))

    def _schedule(self, due: float, event: TransportEvent) -> None:
        heapq.heappush(self._timers, (due, next(self._sequence), event))

    def _fire_timers(self) -> None:
        due: list[TransportEvent] = []
        with self._lock:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                event = heapq.heappop(self._timers)[2]
                if isinstance(event, Connected):
                    self._connected = True
                due.append(event)
        for event in due:
            self._emit(event)
            if isinstance(event, Connected):
                self._deliver_waiting_inbound()

    def _emit(self, event: TransportEvent) -> None:
        self._events.put(event)


def _scanned_jid(command: SimCommand, pairing_phone: str | None) -> str:
    """The JID a ``scan`` pairs: its ``jid``, else its ``phone``, else the pairing phone's."""
    phone = command.text("phone", "").strip().removeprefix("+")
    digits = phone or pairing_phone or _DEFAULT_ACCOUNT
    return command.text("jid", f"{digits}@s.whatsapp.net")


def _names(device: Device | None) -> tuple[str, str]:
    return ("", "") if device is None else (device.jid, device.push_name)
