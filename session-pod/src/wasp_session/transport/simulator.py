"""The simulator transport: WhatsApp's behaviour without WhatsApp, for staging and demos.

Implements ``Transport`` with the same rhythm as whatsmeow: a QR window of
codes valid 60 s then 20 s each (configurable), pairing when told to, receipts
"delivered" then "read" after a delay, and every fault on command. The
vocabulary is documented in ``sim_commands`` and ``docs/simulator.md``.

The simulated device lives in ``simulator.db`` in the data dir (see
``sim_device``), checkpointed and restored by the auth store exactly like
whatsmeow's database. Connection work runs on a thread of its own; sends run
on the caller's thread. Never writes the session status or message hashes:
it reports events, records its outbox, and that is all.
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
    SentMessage,
    StartError,
    StreamReplaced,
    TemporarilyBanned,
    Timelocked,
    TimelockedError,
    TransportEvent,
    TransportStopped,
)
from wasp_session.transport.sim_commands import CommandError, SimCommand, parse_command
from wasp_session.transport.sim_device import Device, DeviceFile

DATABASE_NAME = "simulator.db"
_POLL_SECONDS = 0.1
log = structlog.stdlib.get_logger("wasp_session.simulator")


@dataclass(frozen=True)
class SimulatorSettings:
    """The simulator's timings."""

    qr_seconds: tuple[float, ...] = (60.0, 20.0, 20.0, 20.0, 20.0, 20.0)
    receipt_delay: float = 1.0


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
        self._events: queue.Queue[TransportEvent] = queue.Queue()
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
        self._fail_sends = 0
        self._timelocked = False
        self._contacted: set[str] = set()

    # ------------------------------------------------------------ interface
    @property
    def events(self) -> queue.Queue[TransportEvent]:
        """Everything the simulated connection reports, in order."""
        return self._events

    def connect(self) -> None:
        """Start the simulated connection; ``StartError`` if a dial failure is due."""
        self.stop()
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
        """Issue a pairing code for ``phone_digits`` within the live window."""
        with self._lock:
            self._pairing_phone = phone_digits
            remaining = sum(self._window_codes)
            if self._window_deadline is not None:
                remaining += max(0.0, self._window_deadline - time.monotonic())
        self._emit(PairingCodeIssued(code=_pairing_code(), valid_seconds=remaining))

    def send_text(self, phone_digits: str, text: str) -> SentMessage:
        """Record the message in the outbox; receipts follow."""
        with self._lock:
            if not self._connected:
                raise NotConnectedError
            if self._fail_sends > 0:
                self._fail_sends -= 1
                msg = "simulated send failure"
                raise SendError(msg, transient=True)
            if self._timelocked and phone_digits not in self._contacted:
                raise TimelockedError
        if not self.check_number(phone_digits):
            msg = f"+{phone_digits} is not on WhatsApp"
            raise SendError(msg, transient=False)
        whatsapp_id = "SIM" + secrets.token_hex(8).upper()
        now = time.time()
        record = {"to": f"+{phone_digits}", "text": text, "whatsapp_id": whatsapp_id, "at": now}
        self._redis.rpush(contract.simulator_outbox_key(self._tenant), json.dumps(record))
        delay = self._settings.receipt_delay
        with self._lock:
            self._contacted.add(phone_digits)
            due = time.monotonic() + delay
            self._schedule(due, ReceiptReceived((whatsapp_id,), "delivered", now + delay))
            self._schedule(due + delay, ReceiptReceived((whatsapp_id,), "read", now + 2 * delay))
        return SentMessage(whatsapp_id=whatsapp_id, timestamp=now)

    def check_number(self, phone_digits: str) -> bool:
        """Whether the number is on WhatsApp (not in the absent set)."""
        key = contract.simulator_absent_key(self._tenant)
        pipe = self._redis.pipeline(transaction=False)
        pipe.sismember(key, f"+{phone_digits}")
        pipe.sismember(key, phone_digits)
        return not any(pipe.execute())

    def logout(self) -> None:
        """Unlink the simulated device."""
        self._logged_out("logged out by this device")

    def stop(self) -> None:
        """End the simulated connection. Idempotent."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        self._thread = None
        with self._lock:
            self._connected = False
            self._window_codes = []
            self._window_deadline = None
            self._timers = [t for t in self._timers if isinstance(t[2], ReceiptReceived)]

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
                popped = self._redis.blpop(
                    [contract.simulator_commands_key(self._tenant)], timeout=_POLL_SECONDS
                )
            except redis.RedisError as error:
                log.warning("simulator_redis_error", error=str(error))
                stop.wait(1.0)
                continue
            if popped is not None and not stop.is_set():
                self._play_raw(str(popped[1]))

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
        log.info("simulator_command", command=command.name, **command.arguments)
        self._play(command)

    def _play(self, command: SimCommand) -> None:  # noqa: C901, PLR0912 - one branch per command
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
                with self._lock:
                    self._timelocked = active
                self._emit(Timelocked(active=active))
            case "fail_sends":
                with self._lock:
                    self._fail_sends += int(command.number("count", 1))
            case "fail_starts":
                with self._lock:
                    self._fail_starts += int(command.number("count", 1))
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
        default_jid = f"{phone or '4915100000000'}@s.whatsapp.net"
        device = Device(
            jid=command.text("jid", default_jid), push_name=command.text("push_name", "Simulator")
        )
        self._device.store(device)
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


def _names(device: Device | None) -> tuple[str, str]:
    return ("", "") if device is None else (device.jid, device.push_name)
