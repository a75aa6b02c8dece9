"""What the session does next: pure functions from events and counters to decisions.

Owns the event table of notes/neonize.md as code (``decide``), the reconnect
backoff (``backoff_delay``, full jitter, capped), when a start failure or
a pairing window ends the road, and whether an account may be used under the
tenant's pin (``judge_account``, with the sentence a refusal shows). No I/O,
no clocks, no randomness of its own (callers pass them in), so every row has
a plain unit test. The lifecycle carries the decisions out.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from wasp import contract
from wasp.accounts import mask_account
from wasp_session.transport.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    KeepAliveRestored,
    KeepAliveTimedOut,
    LoggedOut,
    MessageReceived,
    PairFailed,
    PairingCodeIssued,
    PairingWindowEnded,
    PairSucceeded,
    QRCodeIssued,
    ReceiptReceived,
    StreamReplaced,
    TemporarilyBanned,
    Timelocked,
    TransportEvent,
    TransportStopped,
)


class Action(enum.Enum):
    """What the lifecycle must do besides entering the decided phase."""

    NONE = "none"
    SHOW_PAIRING = "show_pairing"  # publish the QR / code, keep it in the status
    PAIRED = "paired"  # record the account, clear pairing fields, checkpoint now
    ONLINE = "online"  # open the gate, checkpoint, count a stable connection
    PAUSE = "pause"  # close the gate; the transport reconnects by itself
    NEW_WINDOW = "new_window"  # restart the transport for a fresh pairing window
    EXPIRE_PAIRING = "expire_pairing"  # stop; wait for a `pair` command
    WIPE_AND_PAIR = "wipe_and_pair"  # delete auth (Redis and disk), pair again
    HALT = "halt"  # stop the transport, no reconnect (Conflict)
    WAIT_BAN = "wait_ban"  # stop, wait for the ban's expiry, reconnect
    FAIL = "fail"  # phase Failed, exit non-zero
    RESTART_PROCESS = "restart_process"  # checkpoint, exit non-zero (unexpected end)
    RECEIPT = "receipt"  # hand to delivery.receipts, debounce a checkpoint
    INBOUND = "inbound"  # record it in the stream, maybe auto-reply (``inbound``)
    TIMELOCK = "timelock"  # set or clear the timelock condition
    METRIC = "metric"  # count it, nothing else
    REFUSE_ACCOUNT = "refuse_account"  # log out, wipe, no checkpoint, no send; wait for `pair`


class AccountVerdict(enum.Enum):
    """What an account that paired or connected means under the tenant's pin."""

    PIN = "pin"  # nothing pinned yet: pin this account, then go on
    MATCH = "match"  # the pinned account: go on
    MISMATCH = "mismatch"  # another account: refuse it
    UNKNOWN = "unknown"  # the transport could not say which account: send nothing


@dataclass(frozen=True)
class Decision:
    """The phase to enter (``None``: keep the current one) and the action."""

    action: Action
    phase: str | None = None
    reason: str = ""
    message: str = ""


def backoff_delay(attempt: int, base: float, cap: float, rand: Callable[[], float]) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base * 2**attempt)].

    ``attempt`` counts from 0; ``rand`` returns a float in [0, 1).
    """
    return backoff_ceiling(attempt, base, cap) * rand()


def backoff_ceiling(attempt: int, base: float, cap: float) -> float:
    """The largest delay ``backoff_delay`` may pick for ``attempt``."""
    return min(cap, base * 2.0 ** min(attempt, 62))


def start_failure_is_fatal(failures: int, max_failures: int) -> bool:
    """Whether ``failures`` failed starts in a row mean Failed (exit, let Kubernetes restart)."""
    return failures >= max_failures


def connection_is_stable(connected_for: float, cap: float) -> bool:
    """A connection that lasted a full backoff cap resets the reconnect attempts."""
    return connected_for >= cap


def window_may_open(windows_used: int, max_windows: int) -> bool:
    """Whether another pairing window may be shown after ``windows_used`` (restarts included)."""
    return windows_used < max_windows


def pairing_expired(windows_used: int) -> Decision:
    """``PairingExpired``: ``windows_used`` windows ended unscanned; wait for `pair`."""
    return Decision(
        Action.EXPIRE_PAIRING,
        "PairingExpired",
        "PairingWindowsExhausted",
        f"{windows_used} pairing windows ended unscanned; run `kubectl wasp pair` to try again.",
    )


def decide(event: TransportEvent, *, windows_used: int, max_windows: int) -> Decision:  # noqa: C901, PLR0911, PLR0912 - one row per event kind
    """The event table: what ``event`` means for the session.

    ``windows_used`` counts pairing windows that already ended before this event.
    """
    match event:
        case QRCodeIssued() | PairingCodeIssued():
            return Decision(
                Action.SHOW_PAIRING,
                "AwaitingPairing",
                "NoCredentials",
                "Scan the QR code or type the pairing code on the phone.",
            )
        case PairingWindowEnded():
            if not window_may_open(windows_used + 1, max_windows):
                return pairing_expired(windows_used + 1)
            return Decision(Action.NEW_WINDOW)
        case PairSucceeded():
            return Decision(Action.PAIRED)
        case PairFailed(reason=reason):
            return Decision(Action.METRIC, reason="PairFailed", message=reason)
        case Connected():
            return Decision(Action.ONLINE, "Connected", "Connected", "Linked and online.")
        case Disconnected(reason=reason):
            return Decision(Action.PAUSE, "Reconnecting", "Disconnected", reason)
        case KeepAliveTimedOut() | KeepAliveRestored():
            return Decision(Action.METRIC)
        case LoggedOut(reason=reason):
            return Decision(
                Action.WIPE_AND_PAIR,
                "LoggedOut",
                "LoggedOut",
                f"The phone unlinked this device ({reason}); pairing again.",
            )
        case StreamReplaced():
            return Decision(
                Action.HALT,
                "Conflict",
                "StreamReplaced",
                "Another client uses this account; not reconnecting.",
            )
        case TemporarilyBanned(code=code, expires_in_seconds=seconds):
            return Decision(
                Action.WAIT_BAN,
                "Banned",
                "TemporaryBan",
                f"WhatsApp banned the account (code {code}) for {seconds:.0f} s.",
            )
        case ConnectFailed(reason=reason, client_outdated=True):
            return Decision(
                Action.FAIL,
                "Failed",
                "ClientOutdated",
                f"WhatsApp refuses this client version; upgrade wasp ({reason}).",
            )
        case ConnectFailed(reason=reason):
            return Decision(Action.FAIL, "Failed", "ConnectFailure", reason)
        case ReceiptReceived():
            return Decision(Action.RECEIPT)
        case MessageReceived():
            return Decision(Action.INBOUND)
        case Timelocked():
            return Decision(Action.TIMELOCK)
        case TransportStopped(reason=reason):
            return Decision(Action.RESTART_PROCESS, "Reconnecting", "TransportStopped", reason)


def judge_account(pinned: str | None, account: str) -> AccountVerdict:
    """Whether ``account`` (digits, ``""`` if unknown) may be used when ``pinned`` is the pin."""
    if not account:
        return AccountVerdict.UNKNOWN
    if pinned is None:
        return AccountVerdict.PIN
    return AccountVerdict.MATCH if account == pinned else AccountVerdict.MISMATCH


def account_refusal(
    verdict: AccountVerdict, *, tenant: str, account: str, pinned: str | None, restored: bool
) -> Decision:
    """Phase Failed / ``AccountMismatch`` with the sentence saying what to do.

    ``restored``: the account came from the stored device (a reconnect), not
    from a pairing just now. Numbers keep their country code and last digits.
    """
    rearm = f"to link another account run `wasp pair {tenant} --new-account`"
    if verdict is AccountVerdict.UNKNOWN:
        message = (
            "connected, but WhatsApp did not say which account this device belongs to; "
            f"nothing is sent from it. Run `wasp pair {tenant}` to pair again"
        )
    else:
        how = "the stored device belongs to" if restored else "paired with"
        pin = mask_account(pinned or "")
        message = (
            f"{how} {mask_account(account)} but this session is pinned to {pin}; "
            f"the device was logged out and nothing is sent from it; {rearm}"
        )
    return Decision(Action.REFUSE_ACCOUNT, "Failed", contract.REASON_ACCOUNT_MISMATCH, message)
