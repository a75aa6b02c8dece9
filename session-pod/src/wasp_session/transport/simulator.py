"""The simulator transport: WhatsApp's behaviour without WhatsApp, for staging and demos.

Implements ``Transport`` with the same rhythm as whatsmeow: a QR window of
codes valid 60 s then 20 s each (configurable), pairing when told to, receipts
"delivered" then "read" after a delay, and every fault on command. The
vocabulary is documented in ``sim_commands`` and ``docs/simulator.md``.

The simulator stands in for WhatsApp's servers, and those keep a device's
pending receipts until it is online: so do we, in Redis
(``contract.simulator_receipts_key``, scored by due time), written in one
transaction with the outbox entry. A killed process therefore loses no
receipt; whichever simulator of the tenant is connected plays the due ones,
each claimed by ``ZREM`` before it is emitted, so no two processes play one.

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
from wasp_session.transport.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    KeepAliveRestored,
    KeepAliveTimedOut,
    LoggedOut,
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

DATABASE_NAME = "simulator.db"
_POLL_SECONDS = 0.1
_DEFAULT_ACCOUNT = "4915100000000"  # the account a bare `scan` pairs
_USER_SERVER = "s.whatsapp.net"  # the server of a user's JID, as check_number answers
_PAIR_PHONE_REFUSAL = "info query returned status 429: rate-overlimit"  # whatsmeow's words
_RECEIPT_BATCH = 100  # receipts claimed a round (10 rounds a second): at most this many in flight
log = structlog.stdlib.get_logger("wasp_session.simulator")


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
        self._thread = threading.Thread(
            target=self._run, args=(self._stop,), name="simulator", daemon=True
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
        if not self.check_number(phone_digits):
            msg = f"+{phone_digits} is not on WhatsApp"
            raise SendError(msg, transient=False)
        whatsapp_id = "SIM" + secrets.token_hex(8).upper()
        now = time.time()
        record = {"to": f"+{phone_digits}", "text": text, "whatsapp_id": whatsapp_id, "at": now}
        delay = self._settings.receipt_delay
        pending = {
            _receipt_member(whatsapp_id, "delivered"): now + delay,
            _receipt_member(whatsapp_id, "read"): now + 2 * delay,
        }
        pipe = self._redis.pipeline(transaction=True)  # the outbox and its receipts, or neither
        pipe.rpush(contract.simulator_outbox_key(self._tenant), json.dumps(record))
        pipe.zadd(contract.simulator_receipts_key(self._tenant), pending)
        pipe.execute()
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
    def _run(self, stop: threading.Event) -> None:
        device = self._device.load()
        if device is not None:
            self._go_online(device)
        else:
            with self._lock:
                self._window_codes = list(self._settings.qr_seconds)
            self._next_qr()
        while not stop.is_set():
            self._fire_timers()
            self._tick_window()
            try:
                self._play_receipts(stop)
                popped = self._redis.blpop(
                    [contract.simulator_commands_key(self._tenant)], timeout=_POLL_SECONDS
                )
            except redis.RedisError as error:
                log.warning("simulator_redis_error", error=str(error))
                stop.wait(1.0)
                continue
            if popped is not None and not stop.is_set():
                self._play_raw(str(popped[1]))

    def _play_receipts(self, stop: threading.Event) -> None:
        """Emit the tenant's due receipts while connected, each claimed (ZREM) first.

        Claims only when the session has read every event already emitted, and
        at most one receipt per message a round: a receipt claimed but not yet
        handled dies with the process, and this keeps that to a moment.
        """
        with self._lock:
            if not self._connected:
                return  # WhatsApp keeps them until the device is back
        if stop.is_set() or not self._events.empty():
            return
        key = contract.simulator_receipts_key(self._tenant)
        due: list[tuple[str, float]] = self._redis.zrangebyscore(  # type: ignore[assignment]
            key, "-inf", time.time(), start=0, num=_RECEIPT_BATCH, withscores=True
        )
        batch: dict[str, tuple[str, str, float]] = {}  # whatsapp id -> member, kind, due
        for member, score in due:
            parsed = _parse_receipt(str(member))
            if parsed is None:
                log.warning("simulator_receipt_malformed", receipt=str(member))
                self._redis.zrem(key, member)
            elif parsed[0] not in batch:  # its later receipt waits for the next round
                batch[parsed[0]] = (str(member), parsed[1], float(score))
        if not batch:
            return
        pipe = self._redis.pipeline(transaction=False)
        for member, _kind, _at in batch.values():
            pipe.zrem(key, member)
        claimed = pipe.execute()
        for (whatsapp_id, (_member, kind, at)), removed in zip(batch.items(), claimed, strict=True):
            if removed == 1:  # else another process of the tenant played it
                self._emit(ReceiptReceived((whatsapp_id,), kind, at))

    def _return_unread_receipts(self) -> None:
        """Put receipts emitted but not yet taken from ``events`` back in Redis, due as before.

        A stopped connection (SIGTERM, a lost lease, a new pairing window) then
        loses none: whichever simulator of the tenant connects next plays them.
        """
        kept: list[TransportEvent] = []
        unread: dict[str, float] = {}
        while True:
            try:
                event = self._events.get_nowait()
            except queue.Empty:
                break
            if isinstance(event, ReceiptReceived):
                for whatsapp_id in event.whatsapp_ids:
                    unread[_receipt_member(whatsapp_id, event.kind)] = event.timestamp
            else:
                kept.append(event)
        for event in kept:  # the rest stays for the session to read, in order
            self._events.put(event)
        if not unread:
            return
        try:
            self._redis.zadd(contract.simulator_receipts_key(self._tenant), unread)
        except redis.RedisError as error:
            log.warning("simulator_receipts_lost", error=str(error), receipts=len(unread))

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

    def _emit(self, event: TransportEvent) -> None:
        self._events.put(event)


def _scanned_jid(command: SimCommand, pairing_phone: str | None) -> str:
    """The JID a ``scan`` pairs: its ``jid``, else its ``phone``, else the pairing phone's."""
    phone = command.text("phone", "").strip().removeprefix("+")
    digits = phone or pairing_phone or _DEFAULT_ACCOUNT
    return command.text("jid", f"{digits}@s.whatsapp.net")


def _names(device: Device | None) -> tuple[str, str]:
    return ("", "") if device is None else (device.jid, device.push_name)


def _receipt_member(whatsapp_id: str, kind: str) -> str:
    """A pending receipt as a member of the receipts sorted set (sorts "delivered" first)."""
    return json.dumps({"kind": kind, "whatsapp_id": whatsapp_id}, sort_keys=True)


def _parse_receipt(member: str) -> tuple[str, str] | None:
    """The WhatsApp id and kind of a pending receipt, or None if it is not one."""
    try:
        receipt = json.loads(member)
    except ValueError:
        return None
    if not isinstance(receipt, dict):
        return None
    whatsapp_id, kind = receipt.get("whatsapp_id"), receipt.get("kind")
    if not isinstance(whatsapp_id, str) or kind not in ("delivered", "read"):
        return None
    return whatsapp_id, kind
