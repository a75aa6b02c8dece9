"""The neonize transport: the real WhatsApp connection through whatsmeow.

Owns one neonize client at a time. ``connect()`` runs neonize's blocking
``connect()`` on a thread of its own and waits briefly: a dial failure (which
neonize raises at once) becomes ``StartError``; after that, any end of
``connect()`` that ``stop()`` did not ask for is ``TransportStopped`` (fatal:
the pod checkpoints and exits). Callbacks only translate neonize's events
into ``TransportEvent`` values and enqueue them. A watchdog ends a QR window
that neonize lets lapse silently (no new code for ~25 s).

whatsmeow's SQLite store lives in ``whatsmeow.db`` in the data dir, in WAL
mode. Nothing here opens that file with Python's sqlite3 (see
``sqlite_child``). Imported only when the neonize transport is chosen: the
import loads the Go runtime and calls ``logging.basicConfig``.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from pathlib import Path
from typing import Any

import structlog
from neonize.client import NewClient
from neonize.events import (
    ClientOutdatedEv,
    ConnectedEv,
    ConnectFailureEv,
    DisconnectedEv,
    KeepAliveRestoredEv,
    KeepAliveTimeoutEv,
    LoggedOutEv,
    MessageEv,
    PairStatusEv,
    ReceiptEv,
    StreamErrorEv,
    StreamReplacedEv,
    TemporaryBanEv,
)
from neonize.proto.Neonize_pb2 import ConnectFailureReason, PairStatus, Receipt
from neonize.utils.enum import ClientName
from neonize.utils.jid import build_jid

from wasp_session.transport.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    KeepAliveRestored,
    KeepAliveTimedOut,
    LoggedOut,
    NotConnectedError,
    PairFailed,
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
from wasp_session.transport.neonize_messages import message_received

DATABASE_NAME = "whatsmeow.db"
# WAL through the name; the dummy `_x=` swallows the `?_foreign_keys=on` neonize appends.
_DSN_OPTIONS = "?_journal_mode=WAL&_busy_timeout=15000&_foreign_keys=on&_x="
_FIRST_QR_SECONDS = 60.0
_NEXT_QR_SECONDS = 20.0
_WINDOW_SECONDS = 160.0
_QR_SILENCE_SECONDS = 25.0
# whatsmeow's ErrServerReturnedError for a 463 nack ("server returned error 463",
# NackCallerReachoutTimelocked): the reach-out timelock refused this recipient.
# Matched as that phrase, not as any "463" (a number in the text is not one).
_REACHOUT_TIMELOCK = re.compile(r"\berror 463\b")
_RECEIPT_KINDS = {
    int(Receipt.ReceiptType.DELIVERED): "delivered",
    int(Receipt.ReceiptType.READ): "read",
    int(Receipt.ReceiptType.PLAYED): "read",  # a played voice note was read
}
# whatsmeow's errors after the message node was written: no acknowledgement came
# (ErrMessageTimedOut, DisconnectedError{Action: "message send"}). It may have gone.
_MAY_HAVE_GONE = (
    "timed out waiting for message send response",
    "disconnected before message send returned response",
)
_USER_SERVER = "s.whatsapp.net"  # build_jid's default: a user's JID
_CLIENT_OUTDATED = int(ConnectFailureReason.CLIENT_OUTDATED)
_PAIR_SUCCESS = int(PairStatus.PStatus.SUCCESS)
log = structlog.stdlib.get_logger("wasp_session.neonize")


class NeonizeTransport:
    """whatsmeow through neonize, one client per ``connect()``."""

    def __init__(self, data_dir: Path, start_timeout: float = 10.0) -> None:
        """Keep whatsmeow's store in ``data_dir``; wait ``start_timeout`` s for a dial failure."""
        self.database = data_dir / DATABASE_NAME
        self._start_timeout = start_timeout
        self._events: queue.Queue[TransportEvent] = queue.Queue()
        self._lock = threading.Lock()
        self._client: Any = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._window_started: float | None = None
        self._last_qr: float | None = None
        self._qr_count = 0
        self._paired = threading.Event()

    @property
    def events(self) -> queue.Queue[TransportEvent]:
        """Everything the connection reports, in order."""
        return self._events

    # ------------------------------------------------------------ connect / stop
    def connect(self) -> None:
        """Start neonize's connection thread; ``StartError`` if the dial fails at once."""
        self.stop()
        self.database.parent.mkdir(parents=True, exist_ok=True)
        client = NewClient(f"{self.database}{_DSN_OPTIONS}")
        self._register(client)
        stopping = threading.Event()
        settled = threading.Event()  # first event seen, or connect() returned
        outcome: dict[str, BaseException | None] = {}
        with self._lock:
            self._client = client
            self._stopping = stopping
            self._window_started = self._last_qr = None
            self._qr_count = 0
            self._paired.clear()
        self._settled = settled
        thread = threading.Thread(
            target=self._run,
            args=(client, stopping, settled, outcome),
            name="neonize",
            daemon=True,
        )
        self._thread = thread
        thread.start()
        settled.wait(self._start_timeout)
        if "error" in outcome and not thread.is_alive():
            with self._lock:
                self._client = None
            msg = f"neonize connect failed: {outcome['error']}"
            raise StartError(msg)
        watchdog = threading.Thread(
            target=self._watch_qr, args=(stopping,), name="neonize-qr", daemon=True
        )
        watchdog.start()

    def _run(
        self,
        client: Any,  # noqa: ANN401 - neonize is untyped
        stopping: threading.Event,
        settled: threading.Event,
        outcome: dict[str, BaseException | None],
    ) -> None:
        try:
            client.connect()
            outcome["error"] = None
            reason = "neonize connect() returned"
        except Exception as error:  # noqa: BLE001 - every end is reported
            outcome["error"] = error
            reason = f"neonize connect() raised: {error}"
        if stopping.is_set():
            return
        if not settled.is_set():
            settled.set()  # a start failure: connect() reports it
            return
        log.error("neonize_connection_ended", reason=reason)
        self._emit(TransportStopped(reason))

    def stop(self) -> None:
        """Stop the client; ``connect()``'s thread ends. Idempotent."""
        with self._lock:
            client, self._client = self._client, None
            self._stopping.set()
        if client is not None:
            try:
                client.stop()
            except Exception as error:  # noqa: BLE001 - stopping must not fail
                log.warning("neonize_stop_failed", error=str(error))
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        self._thread = None

    # ------------------------------------------------------------ actions
    def _require(self) -> Any:  # noqa: ANN401 - neonize is untyped
        with self._lock:
            client = self._client
        if client is None:
            raise NotConnectedError
        return client

    def pair_phone(self, phone_digits: str) -> None:
        """Ask WhatsApp for a pairing code; emitted as ``PairingCodeIssued``.

        Whatever ``PairPhone`` raises (a number WhatsApp refuses, a rate limit,
        the network) becomes ``TransportError``, for the reactions to retry.
        """
        client = self._require()
        try:
            code = client.PairPhone(
                phone_digits, show_push_notification=True, client_name=ClientName.LINUX
            )
        except Exception as error:
            msg = f"PairPhone failed: {error}"
            raise TransportError(msg) from error
        started = self._window_started or time.monotonic()
        remaining = max(1.0, _WINDOW_SECONDS - (time.monotonic() - started))
        self._emit(PairingCodeIssued(code=str(code), valid_seconds=remaining))

    def send_text(self, to: str, text: str) -> SentMessage:
        """Send to ``to`` (the JID ``check_number`` returned) and wait for the acknowledgement."""
        client = self._require()
        try:
            response = client.send_message(jid_of(to), text)
        except Exception as error:
            message = str(error)
            if _REACHOUT_TIMELOCK.search(message):  # this message fails; the others are tried
                self._emit(Timelocked(active=True))
                raise TimelockedError(message) from error
            if "not connected" in message or "client is nil" in message:
                raise NotConnectedError(message) from error
            if any(sign in message for sign in _MAY_HAVE_GONE):
                raise SendUncertainError(message) from error
            raise SendError(message, transient=True) from error
        return SentMessage(
            whatsapp_id=str(response.ID), timestamp=epoch_seconds(response.Timestamp)
        )

    def check_number(self, phone_digits: str) -> str | None:
        """The JID WhatsApp gives the number (``user@server``), or None if it has no account."""
        try:
            answers = self._require().is_on_whatsapp(phone_digits)
        except NotConnectedError:
            raise
        except Exception as error:
            raise SendError(str(error), transient=True) from error
        return address_of(answers[0], phone_digits) if answers else None

    def logout(self) -> None:
        """Unlink this device from its account; ``TransportError`` if WhatsApp did not confirm.

        whatsmeow's ``Logout`` disconnects and deletes its store without
        dispatching ``LoggedOut`` (that event is for the phone's unlinking):
        it is emitted here, so the session reacts to both alike.
        """
        client = self._require()
        try:
            client.logout()
        except Exception as error:
            msg = f"logout failed: {error}"
            raise TransportError(msg) from error
        self._emit(LoggedOut(reason="logged out by this device"))

    # ------------------------------------------------------------ callbacks
    def _emit(self, event: TransportEvent) -> None:
        settled = getattr(self, "_settled", None)
        if settled is not None:
            settled.set()
        self._events.put(event)

    def _watch_qr(self, stopping: threading.Event) -> None:
        while not stopping.wait(1.0):
            with self._lock:
                last = self._last_qr
            if last is None or self._paired.is_set():
                continue
            if time.monotonic() - last > _QR_SILENCE_SECONDS + _FIRST_QR_SECONDS * (
                self._qr_count == 1
            ):
                with self._lock:
                    self._last_qr = None
                self._emit(PairingWindowEnded())

    def _on_message(self, _: object, event: Any) -> None:  # noqa: ANN401 - neonize's proto
        try:  # a stranger's message: whatever it holds, neonize's event loop goes on
            received = message_received(event)
        except Exception as error:  # noqa: BLE001 - logged, the message is skipped
            log.warning("neonize_message_unreadable", error=str(error)[:200])
            return
        if received is not None:
            self._emit(received)

    def _register(self, client: Any) -> None:  # noqa: ANN401 - neonize is untyped
        events = client.event

        def on_qr(_: object, data: bytes) -> None:
            with self._lock:
                now = time.monotonic()
                self._window_started = self._window_started or now
                self._last_qr = now
                self._qr_count += 1
                valid = _FIRST_QR_SECONDS if self._qr_count == 1 else _NEXT_QR_SECONDS
            self._emit(QRCodeIssued(code=data.decode("utf-8", "replace"), valid_seconds=valid))

        def on_pair(_: object, event: Any) -> None:  # noqa: ANN401
            if event.Status == _PAIR_SUCCESS:
                self._paired.set()
                jid = f"{event.ID.User}@{event.ID.Server}"
                self._emit(PairSucceeded(jid=jid, push_name=str(event.BusinessName)))
            else:
                self._emit(PairFailed(reason=str(event.Error)))

        def on_connected(connected_client: Any, __: object) -> None:  # noqa: ANN401
            self._paired.set()
            self._emit(Connected(*_own_account(connected_client)))

        def on_failure(_: object, event: Any) -> None:  # noqa: ANN401
            outdated = int(event.Reason) == _CLIENT_OUTDATED
            self._emit(ConnectFailed(f"{event.Reason}: {event.Message}", client_outdated=outdated))

        def on_receipt(_: object, event: Any) -> None:  # noqa: ANN401
            kind = _RECEIPT_KINDS.get(int(event.Type))
            if kind is not None:
                ids = tuple(str(i) for i in event.MessageIDs)
                self._emit(ReceiptReceived(ids, kind, epoch_seconds(event.Timestamp)))

        events.qr(on_qr)
        events(PairStatusEv)(on_pair)
        events(ConnectedEv)(on_connected)
        events(ConnectFailureEv)(on_failure)
        events(ReceiptEv)(on_receipt)
        events(MessageEv)(self._on_message)
        events(DisconnectedEv)(lambda _, __: self._emit(Disconnected("socket closed")))
        events(StreamErrorEv)(lambda _, e: self._emit(Disconnected(f"stream error {e.Code}")))
        events(KeepAliveTimeoutEv)(lambda _, __: self._emit(KeepAliveTimedOut()))
        events(KeepAliveRestoredEv)(lambda _, __: self._emit(KeepAliveRestored()))
        events(LoggedOutEv)(lambda _, e: self._emit(LoggedOut(reason=str(e.Reason))))
        events(StreamReplacedEv)(lambda _, __: self._emit(StreamReplaced()))
        events(TemporaryBanEv)(
            lambda _, e: self._emit(TemporarilyBanned(int(e.Code), ban_seconds(e.Expire)))
        )
        events(ClientOutdatedEv)(
            lambda _, __: self._emit(ConnectFailed("client outdated", client_outdated=True))
        )


def address_of(answer: Any, phone_digits: str) -> str | None:  # noqa: ANN401 - neonize's proto
    """Where to send, from one ``is_on_whatsapp`` answer: its JID as ``user@server``.

    None if the number has no account (``IsIn`` false). whatsmeow's
    ``IsOnWhatsAppResponse.JID`` is the account's own JID, which need not be
    built from the digits that were asked (a changed or ported number); only
    an answer without a JID falls back to the digits at the user server.
    """
    if not answer.IsIn:
        return None
    jid = answer.JID
    user, server = str(jid.User), str(jid.Server)
    return f"{user}@{server}" if user and server else f"{phone_digits}@{_USER_SERVER}"


def jid_of(address: str) -> Any:  # noqa: ANN401 - neonize's proto
    """The JID proto of ``user@server`` (or of bare digits, at the user server)."""
    user, _, server = address.partition("@")
    return build_jid(user, server or _USER_SERVER)


def epoch_seconds(stamp: object) -> float:
    """A neonize time (``SendResponse``/``Receipt`` ``Timestamp``) as epoch seconds.

    neonize encodes Go's ``time.Time`` with ``.Unix()`` (``EncodeSendResponse``,
    ``EncodeReceipts`` in goneonize/utils/encoder.go): whole seconds, an int64.
    Go's zero time (no time given) reads as now.
    """
    seconds = int(stamp)  # type: ignore[call-overload]
    return float(seconds) if seconds > 0 else time.time()


def ban_seconds(expire: object) -> float:
    """``TemporaryBan.Expire`` as seconds from now: a duration, not a moment.

    whatsmeow's ``events.TemporaryBan.Expire`` is a ``time.Duration``; neonize
    encodes it as ``int64(ban.Expire.Seconds())`` (``EncodeTemporaryBan``).
    """
    return float(max(0, int(expire)))  # type: ignore[call-overload]


def _own_account(client: Any) -> tuple[str, str]:  # noqa: ANN401 - neonize is untyped
    """The connected device's account JID (no device suffix) and push name; blanks if unknown.

    Read from whatsmeow's store (``GetMe``): the session checks the account
    against the tenant's pin before it sends anything.
    """
    try:
        me = getattr(client, "me", None)  # neonize keeps the device it was told about
        if me is None or not me.JID.User:
            me = client.get_me()
        user, server = str(me.JID.User), str(me.JID.Server)
        push_name = str(me.PushName)
    except Exception as error:  # noqa: BLE001 - an unknown account is refused, never guessed
        log.warning("neonize_account_unknown", error=str(error))
        return "", ""
    return (f"{user}@{server}" if user and server else ""), push_name
