"""The tenant's RQ worker, run on a thread of the session process, never forking.

Owns the loop that takes OTP jobs: RQ's ``SimpleWorker`` (jobs run in this
process: a forked child cannot use neonize's Go runtime), adapted to a
thread of its own (no signal handlers, no SIGALRM job timeouts: the job
bounds itself by its TTL) and gated: it dequeues only while the session's
``SendGate`` is open, so jobs wait in the queue, TTL running, while the
session is not Connected. Before its first job it recovers jobs a killed
predecessor left in RQ's started/failed registries or intermediate queue.
RQ's scheduler (which moves ``Retry`` backoffs back to the queue) runs here
too, by hand, on another thread. Must not decide anything about a message:
``sender.py`` does that.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import redis
import structlog
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.scheduler import RQScheduler
from rq.timeouts import BaseDeathPenalty

from wasp_session.delivery import metrics
from wasp_session.delivery.recovery import recover_abandoned_jobs
from wasp_session.gate import SendGate

_GATE_POLL_SECONDS: Final = 0.5
_HEARTBEAT_SECONDS: Final = 5.0
_SCHEDULER_INTERVAL_SECONDS: Final = 1.0

log = structlog.get_logger("wasp_session.delivery.worker")


class _NoDeathPenalty(BaseDeathPenalty):
    """No SIGALRM (main thread only): the OTP job ends itself within its TTL."""

    def setup_death_penalty(self) -> None:
        """Nothing to arm."""

    def cancel_death_penalty(self) -> None:
        """Nothing to disarm."""


class GatedWorker(SimpleWorker):
    """A ``SimpleWorker`` for a non-main thread that takes jobs only through an open gate."""

    death_penalty_class = _NoDeathPenalty

    def __init__(
        self,
        queue: Queue,
        *,
        tenant: str,
        gate: SendGate,
        stop: threading.Event,
        is_message_done: Callable[[str], bool],
    ) -> None:
        """Serve ``queue`` while ``gate`` is open, until ``stop`` is set."""
        super().__init__([queue], connection=queue.connection)
        self._tenant = tenant
        self._gate = gate
        self._stop = stop
        self._is_message_done = is_message_done
        self._recovered = False
        self._queue = queue
        self._last_heartbeat = 0.0
        self._last_depth = 0.0

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:  # noqa: ANN401
        """RQ's heartbeat, but on its own at most every few seconds (it costs 3 round trips)."""
        now = time.monotonic()
        if pipeline is None and now - self._last_heartbeat < _HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = now
        super().heartbeat(timeout, pipeline)

    def _install_signal_handlers(self) -> None:
        """The session app owns the process's signals; this thread installs none."""

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Wait for the gate, then for a job, a second at a time, watching ``stop``."""
        del timeout, max_idle_time
        while True:
            if self._stop.is_set():
                raise StopRequested
            if time.monotonic() - self._last_depth >= 1.0:
                self._last_depth = time.monotonic()
                metrics.QUEUE_DEPTH.labels(tenant=self._tenant).set(self._queue.count)
            if not self._gate.wait_open(_GATE_POLL_SECONDS):
                self.heartbeat()
                continue
            if not self._recovered:
                recovered = recover_abandoned_jobs(self._queue, self._is_message_done)
                if recovered:
                    log.warning("otp_jobs_recovered", tenant=self._tenant, count=recovered)
                self._recovered = True
            result: tuple[Job, Queue] | None = super().dequeue_job_and_maintain_ttl(1, 1)
            if result is not None:
                return result


def run_scheduler(queue_name: str, connection: redis.Redis, stop: threading.Event) -> None:
    """Move due ``Retry`` backoffs back onto the queue about every second, until ``stop``.

    The session holds the tenant's lease, so a scheduler lock left by a killed
    predecessor is stale: it is taken over at once instead of after its TTL.
    """
    scheduler = RQScheduler([queue_name], connection=connection, interval=1)
    lock_key = RQScheduler.get_locking_key(queue_name)
    holder = connection.get(lock_key)
    if holder is not None and holder != scheduler.name.encode():
        connection.delete(lock_key)
    scheduler.register_birth()
    try:
        while not stop.wait(_SCHEDULER_INTERVAL_SECONDS):
            try:
                if queue_name not in scheduler.acquired_locks:
                    scheduler.acquire_locks()  # type: ignore[no-untyped-call]
                if scheduler.acquired_locks:
                    scheduler.heartbeat()  # type: ignore[no-untyped-call]
                    scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            except redis.RedisError as error:
                log.warning("otp_scheduler_redis_error", error=str(error))
    finally:
        with contextlib.suppress(redis.RedisError):
            scheduler.stop()  # type: ignore[no-untyped-call]
