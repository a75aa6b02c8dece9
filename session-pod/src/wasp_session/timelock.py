"""WhatsApp's 463 reach-out timelock as the session records it: status fields, gauge, bound.

Owns the timelock's record: ``timelocked`` and ``timelocked_until`` in the
status hash (kept there across restarts) and the ``wasp_session_timelocked``
gauge, from a 463 until WhatsApp clears it or ``WASP_TIMELOCK_SECONDS``
after the last one pass, counted on Redis's clock (the pod's wall clock may
be minutes off). It stops no send: WhatsApp refuses the sends it covers,
one message at a time (docs/delivery.md).

Must not write the phase nor touch the send gate: the reactions own those.
"""

from __future__ import annotations

from collections.abc import Callable

import redis
import structlog

from wasp import contract
from wasp.timestamps import parse_timestamp
from wasp_session import metrics
from wasp_session.status import StatusBoard, rfc3339

log = structlog.stdlib.get_logger("wasp_session.timelock")


class TimelockRecord:
    """The tenant's 463 timelock: recorded, restored after a restart, ended past its bound."""

    def __init__(
        self,
        client: redis.Redis,
        status: StatusBoard,
        *,
        tenant: str,
        bound_seconds: float,
        now: Callable[[], float],
    ) -> None:
        """Record in ``status``; ``now()`` is epoch seconds on Redis's clock."""
        self._client = client
        self._status = status
        self._tenant = tenant
        self._bound = bound_seconds
        self._now = now
        self._ends: float | None = None  # epoch seconds (Redis's clock) it is taken to end at

    def seen(self, *, active: bool) -> None:
        """A 463 (again: the bound counts from the last one), or WhatsApp clearing it."""
        if not active:
            self._end("WhatsApp cleared it")
            return
        until = self._now() + self._bound
        self._ends = until
        metrics.TIMELOCKED.set(1)
        self._status.update(
            {contract.STATUS_TIMELOCKED: "1", contract.STATUS_TIMELOCKED_UNTIL: rfc3339(until)}
        )
        log.warning("session_timelocked", until=rfc3339(until))

    def restore(self) -> None:
        """Take up a timelock an earlier pod recorded, or clear it if its bound has passed."""
        key = contract.status_key(self._tenant)
        held, until = self._client.hmget(
            key, [contract.STATUS_TIMELOCKED, contract.STATUS_TIMELOCKED_UNTIL]
        )
        if held is None:
            return
        try:
            ends = parse_timestamp(str(until)).timestamp()
        except ValueError:
            ends = 0.0  # no bound recorded (an older pod's record): taken as ended
        if ends <= self._now():
            self._end("its bound passed while no pod ran")
            return
        self._ends = ends
        metrics.TIMELOCKED.set(1)
        log.warning("session_timelock_restored", until=until)

    def tick(self) -> None:
        """End the timelock once its bound has passed."""
        if self._ends is not None and self._now() >= self._ends:
            self._end(f"its bound passed ({self._bound:.0f} s)")

    def _end(self, why: str) -> None:
        self._ends = None
        metrics.TIMELOCKED.set(0)
        self._status.update(remove=(contract.STATUS_TIMELOCKED, contract.STATUS_TIMELOCKED_UNTIL))
        log.info("session_timelock_cleared", why=why)
