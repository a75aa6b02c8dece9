"""Keeping the tenant's lease for the session: wait for it, renew it, notice its loss.

Owns the session's side of ``lease.Lease``: standing by (writing only the
standby fields of the status, never the phase or a lease token) until the
lease is free, then renewing it on a thread of its own every third of its
TTL with a heartbeat. Both loops beat ``health.Heartbeats`` when given one
(standing by is the lifecycle's loop; renewing is ``contract.LOOP_LEASE``).
On a loss it marks the lease lost and calls
``on_lost`` at once (the lifecycle closes the send gate and stops the
transport there), so from then on nothing more is sent or written; the
session's thread finds out through ``check()``.

``lease_valid()`` is the send gate's fence (``Lease.surely_held``: the
lease's deadline not passed) and reports each passing of the deadline once:
the log line ``lease_deadline_passed``, ``wasp_session_lease_valid`` 0 and
``wasp_session_lease_deadline_passed_total``; then ``lease_deadline_restored``
when a renewal lands. It is asked by whoever looks (the worker each gate
wait, ``/readyz``, the renewing loop), so it reports even while the renewal
itself hangs on a Redis that does not answer. A renewal that lands after the
deadline is repeated at once, so the gate reopens as soon as Redis answers.

Must not decide what the session does after a loss: the lifecycle does.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import redis
import structlog

from wasp import contract
from wasp_session import metrics
from wasp_session.errors import LeaseLostError
from wasp_session.health import Heartbeats
from wasp_session.lease import Lease
from wasp_session.status import StatusBoard

log = structlog.stdlib.get_logger("wasp_session.lease")


class LeaseKeeper:
    """Acquires, renews and watches one pod's lease."""

    def __init__(
        self,
        lease: Lease,
        status: StatusBoard,
        ttl: float,
        on_lost: Callable[[], None],
        heartbeats: Heartbeats | None = None,
    ) -> None:
        """Keep ``lease`` (TTL ``ttl`` seconds); call ``on_lost`` once if it is lost."""
        self._heartbeats = heartbeats
        self._lease = lease
        self._status = status
        self._ttl = ttl
        self._on_lost = on_lost
        self.lost = threading.Event()
        self._valid_lock = threading.Lock()
        self._valid = True  # as last reported

    def wait(self, stop: threading.Event) -> bool:
        """Stand by until the lease is ours (``True``) or ``stop`` is set (``False``)."""
        announced = False
        while not stop.is_set():
            self._beat(contract.LOOP_LIFECYCLE)
            if self._lease.try_acquire():
                self._status.clear_standby()
                metrics.LEASE_HELD.set(1)
                metrics.LEASE_VALID.set(1)
                log.info("lease_acquired", token=self._lease.token)
                return True
            if not announced:
                log.info("lease_waiting", holder=self._lease.holder())
                self._status.announce_standby()
                announced = True
            stop.wait(min(1.0, self._ttl / 3))
        self._status.clear_standby()
        return False

    def start_renewing(self, stop: threading.Event) -> None:
        """Renew the lease on a daemon thread until ``stop`` is set or the lease is lost."""
        thread = threading.Thread(target=self._renew, args=(stop,), name="lease", daemon=True)
        thread.start()

    def _beat(self, loop: str) -> None:
        if self._heartbeats is not None:
            self._heartbeats.beat(loop)

    def _renew(self, stop: threading.Event) -> None:
        self._beat(contract.LOOP_LEASE)
        self._renew_until(stop)  # a renewal that raised stays watched: it is stuck
        if self._heartbeats is not None:
            self._heartbeats.retire(contract.LOOP_LEASE)

    def _renew_until(self, stop: threading.Event) -> None:
        pause = self._ttl / 3
        while not stop.wait(pause):
            self._beat(contract.LOOP_LEASE)
            if not self._lease.holds():
                return
            self.lease_valid()  # reports a deadline that passed while we slept
            pause = self._ttl / 3
            try:
                renewed = self._lease.renew()
            except redis.RedisError as error:
                log.warning("lease_renew_failed", error=str(error))
                continue
            if not renewed:
                self.lose()
                return
            if not self.lease_valid():
                pause = 0.0  # it landed after the deadline: renew again at once
                continue
            try:
                self._status.heartbeat()
            except redis.RedisError as error:
                log.warning("status_heartbeat_failed", error=str(error))

    def lease_valid(self) -> bool:
        """Whether the lease surely still holds; report the deadline passing or restored."""
        valid = self._lease.surely_held()
        if not valid and not self._lease.holds():
            return False  # not held (standing by, lost, released): nothing to report
        with self._valid_lock:
            changed = valid != self._valid and not self.lost.is_set()
            self._valid = valid
        if changed and not valid:
            log.error("lease_deadline_passed", late_seconds=round(-self._lease.seconds_left(), 3))
            metrics.LEASE_VALID.set(0)
            metrics.LEASE_DEADLINE_PASSED.inc()
        elif changed:
            log.warning("lease_deadline_restored")
            metrics.LEASE_VALID.set(1)
        return valid

    def lose(self) -> None:
        """Record the loss and react at once (gate closed, transport stopped)."""
        log.error("lease_lost")
        self.lost.set()
        metrics.LEASE_HELD.set(0)
        metrics.LEASE_VALID.set(0)
        metrics.CONNECTED.set(0)
        self._on_lost()

    def check(self) -> None:
        """Raise ``LeaseLostError`` if the lease was lost."""
        if self.lost.is_set():
            raise LeaseLostError
