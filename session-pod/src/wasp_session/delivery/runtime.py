"""Which delivery the OTP job function runs in: the one binding between them.

``wasp_session.jobs.send_otp`` is found by RQ through its dotted name and
called with the job's arguments only; it reaches the running delivery (its
transport, gate, Redis and settings) through ``active()``. ``run_delivery``
binds one on start and unbinds it on exit. Must not hold anything else.
"""

from __future__ import annotations

import threading
from typing import Protocol

from rq.job import Job, Retry


class JobHandler(Protocol):
    """What the job function hands each job to."""

    def handle(self, job: Job, args: tuple[object, ...], kwargs: dict[str, object]) -> Retry | None:
        """Run one OTP job; return a ``Retry`` to have RQ run it again later."""
        ...


_lock = threading.Lock()
_active: JobHandler | None = None


def bind(handler: JobHandler) -> None:
    """Make ``handler`` the one that runs OTP jobs in this process."""
    global _active  # noqa: PLW0603 - the one process-wide binding, by design
    with _lock:
        _active = handler


def unbind(handler: JobHandler) -> None:
    """Forget ``handler`` if it is the bound one."""
    global _active  # noqa: PLW0603
    with _lock:
        if _active is handler:
            _active = None


def active() -> JobHandler:
    """The bound handler; ``RuntimeError`` outside a running session process."""
    with _lock:
        handler = _active
    if handler is None:
        msg = "no OTP delivery runs in this process: OTP jobs run only inside wasp-session"
        raise RuntimeError(msg)
    return handler
