"""Whether the tenant's worker may send right now.

The lifecycle opens the gate on Connected (with the lease held) and closes it
on every other phase; the worker waits on it before taking a job, so jobs stay
in the queue, their TTL running, while the session is not connected. It also
carries the one restriction on every send: a temporary ban. WhatsApp's 463
reach-out timelock is not one: it refuses only sends to new contacts, and
WhatsApp decides which those are, per message (docs/delivery.md).

Fenced by the lease's deadline (``fence_with``, wired by the lifecycle to
``LeaseKeeper.lease_valid``): past it the gate is not open, whatever the
phase, and ``check_lease()`` is the sender's last check right before the
transport's send (``LeaseDeadlinePassedError``, a ``NotConnectedError``: the
job waits for the gate, or is left to the next holder if the lease is lost).
A pod that stopped (SIGSTOP) or lost Redis for longer than its lease thus
sends nothing until the lease is renewed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from wasp_session.transport.base import NotConnectedError

_FENCE_POLL_SECONDS: Final = 0.05


class LeaseDeadlinePassedError(NotConnectedError):
    """The lease's deadline passed without a renewal: not this pod's to send now."""

    def __init__(self) -> None:
        """A transient failure: nothing was sent."""
        super().__init__("the lease's deadline passed without a renewal")


class SendGate:
    """A thread-safe open/closed flag with the session's send restriction (a ban)."""

    def __init__(self) -> None:
        """Start closed, with no ban."""
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._ban_ends: float | None = None  # time.monotonic() the ban ends at
        self._lease_valid: Callable[[], bool] = lambda: True

    def fence_with(self, lease_valid: Callable[[], bool]) -> None:
        """Refuse sends whenever ``lease_valid()`` is false (the lease's deadline passed)."""
        self._lease_valid = lease_valid

    def lease_valid(self) -> bool:
        """Whether the lease surely still holds (the last check before a send)."""
        return self._lease_valid()

    def check_lease(self) -> None:
        """Raise ``LeaseDeadlinePassedError`` unless the lease surely still holds."""
        if not self._lease_valid():
            raise LeaseDeadlinePassedError

    def open(self) -> None:
        """Let the worker send."""
        self._open.set()

    def close(self) -> None:
        """Make the worker wait."""
        self._open.clear()

    @property
    def is_open(self) -> bool:
        """Whether sending is allowed now (open, and the lease surely held)."""
        return self._open.is_set() and self._lease_valid()

    def wait_open(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the gate to open; return whether it is."""
        end = time.monotonic() + timeout
        while self._open.wait(max(0.0, end - time.monotonic())):
            if self._lease_valid():
                return True
            left = end - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(_FENCE_POLL_SECONDS, left))
        return False

    @property
    def banned(self) -> bool:
        """Whether a temporary ban is in force now."""
        with self._lock:
            return self._ban_ends is not None and time.monotonic() < self._ban_ends

    def set_banned_for(self, seconds: float | None) -> None:
        """Record a temporary ban ending ``seconds`` from now (``None``: no ban).

        Counted on the monotonic clock: a step of this pod's wall clock
        neither ends a ban early nor prolongs it.
        """
        with self._lock:
            self._ban_ends = None if seconds is None else time.monotonic() + seconds
