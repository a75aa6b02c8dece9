"""Whether the tenant's worker may send right now.

The lifecycle opens the gate on Connected (with the lease held) and closes it
on every other phase; the worker waits on it before taking a job, so jobs stay
in the queue, their TTL running, while the session is not connected. It also
carries the two restrictions a send must respect: WhatsApp's 463 timelock and a
temporary ban.
"""

from __future__ import annotations

import threading
import time


class SendGate:
    """A thread-safe open/closed flag with the session's send restrictions."""

    def __init__(self) -> None:
        """Start closed, with no restriction."""
        self._open = threading.Event()
        self._lock = threading.Lock()
        self._timelocked = False
        self._banned_until: float | None = None

    def open(self) -> None:
        """Let the worker send."""
        self._open.set()

    def close(self) -> None:
        """Make the worker wait."""
        self._open.clear()

    @property
    def is_open(self) -> bool:
        """Whether sending is allowed now."""
        return self._open.is_set()

    def wait_open(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds for the gate to open; return whether it is."""
        return self._open.wait(timeout)

    @property
    def timelocked(self) -> bool:
        """Whether WhatsApp's 463 timelock holds (no sends to new numbers)."""
        with self._lock:
            return self._timelocked

    def set_timelocked(self, *, timelocked: bool) -> None:
        """Record the timelock starting or ending."""
        with self._lock:
            self._timelocked = timelocked

    @property
    def banned(self) -> bool:
        """Whether a temporary ban is in force now."""
        with self._lock:
            return self._banned_until is not None and time.time() < self._banned_until

    def set_banned_until(self, epoch_seconds: float | None) -> None:
        """Record a temporary ban's expiry (``None``: no ban)."""
        with self._lock:
            self._banned_until = epoch_seconds
