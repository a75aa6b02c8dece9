"""A stop signal that arrives before the session is wired is remembered, not lost.

Loading the session (neonize, RQ, the Go runtime) takes a moment. A SIGTERM
in that moment would kill a plain process at once, before anything could be
checkpointed, and is ignored outright by a container's PID 1 (which has no
default action for it), so the kubelet would wait out the whole grace period
and SIGKILL. ``latch()`` runs first thing in the entry point and only records
the signal; the app, once its own handlers are in place, asks ``pending()``
and stops as if the signal had come then. Must not import anything heavy.
"""

from __future__ import annotations

import signal
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_received: list[int] = []


def _remember(signum: int, _frame: FrameType | None) -> None:
    _received.append(signum)


def latch() -> None:
    """Record SIGTERM and SIGINT from now on, until the app installs its own handlers."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, _remember)


def pending() -> int | None:
    """The first stop signal recorded before the app took over, if any."""
    return _received[0] if _received else None
