"""The transport interface: connect, send a text, check a number, log out, stop.

A transport owns the connection to WhatsApp (or to the simulator) and nothing
else: it never writes the session's status, the auth store or message hashes.
It reports what happens as ``TransportEvent`` values on its ``events`` queue;
the lifecycle reads them on its own thread and decides. Callbacks from the
connection only enqueue, so a slow decision never stalls WhatsApp traffic.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from typing import Protocol, TypeAlias


# ---------------------------------------------------------------- events
@dataclass(frozen=True)
class QRCodeIssued:
    """A new QR string to show; valid for ``valid_seconds``."""

    code: str
    valid_seconds: float


@dataclass(frozen=True)
class PairingCodeIssued:
    """A pairing code ("ABCD-EFGH") to type on the phone; valid for ``valid_seconds``."""

    code: str
    valid_seconds: float


@dataclass(frozen=True)
class PairingWindowEnded:
    """The QR / pairing-code window ran out unscanned."""


@dataclass(frozen=True)
class PairSucceeded:
    """The phone linked this device: the device row is written."""

    jid: str
    push_name: str


@dataclass(frozen=True)
class PairFailed:
    """The phone tried to link and failed."""

    reason: str


@dataclass(frozen=True)
class Connected:
    """Online; jobs may flow. Again after every reconnect.

    ``jid`` and ``push_name`` name the account when the transport knows them.
    """

    jid: str = ""
    push_name: str = ""


@dataclass(frozen=True)
class Disconnected:
    """The socket closed; a transient loss."""

    reason: str


@dataclass(frozen=True)
class KeepAliveTimedOut:
    """Pings are failing."""


@dataclass(frozen=True)
class KeepAliveRestored:
    """Pings work again."""


@dataclass(frozen=True)
class LoggedOut:
    """The phone unlinked this device; the device rows are gone."""

    reason: str


@dataclass(frozen=True)
class StreamReplaced:
    """Another client took this account."""


@dataclass(frozen=True)
class TemporarilyBanned:
    """WhatsApp banned the account for ``expires_in_seconds``."""

    code: int
    expires_in_seconds: float


@dataclass(frozen=True)
class ConnectFailed:
    """A connect failure that needs a human (or a newer client, if ``client_outdated``)."""

    reason: str
    client_outdated: bool = False


@dataclass(frozen=True)
class ReceiptReceived:
    """WhatsApp says the messages ``whatsapp_ids`` reached ``kind`` ("delivered", "read")."""

    whatsapp_ids: tuple[str, ...]
    kind: str
    timestamp: float


@dataclass(frozen=True)
class MessageReceived:
    """Someone's message reached the account: reported as WhatsApp gave it, judged by the session.

    ``chat`` is the conversation (``user@server``: a person, a group, a
    broadcast, a newsletter); ``sender`` who wrote it, by phone number
    (``digits@s.whatsapp.net``) when WhatsApp tells it, else as given (e.g. a
    ``@lid``). ``text`` is the text or a caption, ``media_type`` the kind of
    media ("" for text; never its body); ``sent_at`` epoch seconds. Everything
    here comes from a stranger: the session bounds it (``inbound``).
    """

    chat: str
    sender: str
    text: str
    whatsapp_id: str
    sent_at: float
    media_type: str = ""
    from_me: bool = False


@dataclass(frozen=True)
class Timelocked:
    """WhatsApp's 463 reach-out timelock started (``active``) or ended."""

    active: bool


@dataclass(frozen=True)
class TransportStopped:
    """The connection ended without ``stop()`` being asked for: fatal."""

    reason: str


TransportEvent: TypeAlias = (
    QRCodeIssued
    | PairingCodeIssued
    | PairingWindowEnded
    | PairSucceeded
    | PairFailed
    | Connected
    | Disconnected
    | KeepAliveTimedOut
    | KeepAliveRestored
    | LoggedOut
    | StreamReplaced
    | TemporarilyBanned
    | ConnectFailed
    | ReceiptReceived
    | MessageReceived
    | Timelocked
    | TransportStopped
)


# ---------------------------------------------------------------- errors
class TransportError(Exception):
    """Root of what a transport raises."""


class StartError(TransportError):
    """``connect()`` could not start the connection (e.g. the dial failed)."""


class SendError(TransportError):
    """A send did not happen (``SendUncertainError``: may have). ``transient``: a retry may help."""

    def __init__(self, message: str, *, transient: bool) -> None:
        """Record whether a retry may help."""
        super().__init__(message)
        self.transient = transient


class SendUncertainError(SendError):
    """The request left for WhatsApp and no answer came (a timeout, a connection lost after it).

    It may have been delivered: never send it again. Not transient, not permanent: uncertain.
    """

    def __init__(self, message: str) -> None:
        """A send whose outcome is unknown."""
        super().__init__(message, transient=False)


class NotConnectedError(SendError):
    """Nothing is connected right now: transient."""

    def __init__(self, message: str = "not connected") -> None:
        """A transient failure."""
        super().__init__(message, transient=True)


class TimelockedError(SendError):
    """WhatsApp's 463 "reach-out timelock": no sending to new numbers for now."""

    def __init__(self, message: str = "463 reach-out timelock") -> None:
        """A permanent failure for this message."""
        super().__init__(message, transient=False)


# ---------------------------------------------------------------- interface
@dataclass(frozen=True)
class SentMessage:
    """WhatsApp acknowledged a message: its id and server timestamp (epoch seconds)."""

    whatsapp_id: str
    timestamp: float


class Transport(Protocol):
    """What the session needs from a WhatsApp connection.

    ``connect`` returns once the connection runs on its own thread (it raises
    ``StartError`` if it cannot start); everything after that arrives on
    ``events``. ``send_text`` and ``check_number`` block the calling thread
    (the worker's) until WhatsApp answers.
    """

    @property
    def events(self) -> queue.Queue[TransportEvent]:
        """Everything the connection reports, in order."""
        ...

    def connect(self) -> None:
        """Start the connection (pairing if no device is stored)."""
        ...

    def pair_phone(self, phone_digits: str) -> None:
        """Ask for a pairing code for ``phone_digits`` (E.164 without "+")."""
        ...

    def send_text(self, to: str, text: str) -> SentMessage:
        """Send ``text`` to ``to`` (the address ``check_number`` returned); ``SendError`` if not.

        ``SendUncertainError`` if the request was written and no answer came: it may have gone.
        """
        ...

    def check_number(self, phone_digits: str) -> str | None:
        """The address WhatsApp gives the number (e.g. its JID), or None if it has no account."""
        ...

    def logout(self) -> None:
        """Unlink this device from the account."""
        ...

    def stop(self) -> None:
        """End the connection; ``connect()``'s thread finishes. Idempotent."""
        ...
