"""When the auth state is checkpointed into Redis, and the bookkeeping of each one.

Owns the schedule: a checkpoint now (after pairing, on Connected, before an
exit, at shutdown), debounced after activity (receipts change the store),
periodically, and soon after Redis is found to have lost writes
(``writes_lost``: the status heartbeat was not the one written last). Only
an account worth keeping is checkpointed: ``account_kept`` is true once a
device was restored or paired and accepted, and false after a logout or
while an account is refused, so a device that the pin refused never
reaches Redis. A lost lease found by a checkpoint is
reported through ``on_lease_lost`` and raised. A checkpoint written over
older state (Redis rolled back: ``auth_store.Rollback``) is counted
(``wasp_session_redis_rollbacks_total``), logged (``redis_rolled_back``) and
handed to ``on_rollback``, which tells the user. After each checkpoint
written, and after a restore (``announce_generation``), the auth generation
goes into the status hash (``auth_generation``): the operator keeps the
highest in the resource's status and so finds a rollback that no pod had
newer state to detect (a pod rescheduled without its local copy).

Must not decide how a checkpoint is written (``auth_store`` does) nor react
to transport events.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis
import structlog

from wasp import contract
from wasp_session import metrics
from wasp_session.auth_store import AuthStore, Rollback
from wasp_session.config import Timings
from wasp_session.errors import AuthStoreError, LeaseLostError
from wasp_session.status import StatusBoard

log = structlog.stdlib.get_logger("wasp_session.checkpoints")


def _ignore(_: Rollback) -> None:
    """No one to tell."""


class CheckpointScheduler:
    """Decides when to checkpoint and records how it went."""

    def __init__(  # noqa: PLR0913 - the rest keyword-only, each a distinct collaborator
        self,
        store: AuthStore,
        timings: Timings,
        on_lease_lost: Callable[[], None],
        *,
        on_rollback: Callable[[Rollback], None] = _ignore,
        writes_lost: threading.Event | None = None,
        status: StatusBoard | None = None,
    ) -> None:
        """Checkpoint ``store`` on the schedule of ``timings`` (and when ``writes_lost`` is set).

        ``status`` receives the auth generation after each checkpoint.
        """
        self._store = store
        self._status = status
        self._writes_lost = writes_lost
        self._timings = timings
        self._on_lease_lost = on_lease_lost
        self._on_rollback = on_rollback
        self.account_kept = False
        self._dirty_since: float | None = None
        self._last = time.monotonic()

    def announce_generation(self) -> None:
        """Write the auth generation restored or last written into the status hash."""
        if self._status is not None:
            self._status.update({contract.STATUS_AUTH_GENERATION: str(self._store.generation)})

    def restart_clock(self) -> None:
        """Count the periodic interval from now (the session starts)."""
        self._last = time.monotonic()

    def mark_dirty(self) -> None:
        """The store changed: checkpoint after the debounce delay."""
        self._dirty_since = self._dirty_since or time.monotonic()

    def tick(self) -> None:
        """Checkpoint if the debounce delay or the periodic interval has passed."""
        if self._writes_lost is not None and self._writes_lost.is_set():
            self._writes_lost.clear()
            log.warning("redis_lost_writes")
            self.mark_dirty()  # whether it lost auth state too, the checkpoint finds out
        now = time.monotonic()
        if self._dirty_since is not None and now - self._dirty_since >= (
            self._timings.checkpoint_debounce
        ):
            self.now("activity")
        elif now - self._last >= self._timings.checkpoint_interval:
            self.now("periodic")

    def now(self, why: str) -> None:
        """Checkpoint at once (if an account is kept); a failure is logged, a lost lease raised."""
        self._last = time.monotonic()
        self._dirty_since = None
        if not self.account_kept:
            return
        try:
            done = self._store.checkpoint()
        except LeaseLostError:
            metrics.CHECKPOINTS.labels(result="lease_lost").inc()
            self._on_lease_lost()
            raise
        except AuthStoreError as error:
            metrics.CHECKPOINTS.labels(result="failed").inc()
            log.error("checkpoint_failed", why=why, error=str(error))  # noqa: TRY400 - expected, no trace
            return
        if done is None:
            return
        metrics.CHECKPOINTS.labels(result="ok").inc()
        metrics.CHECKPOINT_BYTES.set(done.bytes_stored)
        metrics.CHECKPOINT_SECONDS.observe(done.seconds)
        log.info(
            "checkpoint_written",
            why=why,
            generation=done.generation,
            bytes=done.bytes_stored,
            has_device=done.has_device,
            seconds=round(done.seconds, 4),
        )
        if done.rollback is not None:  # first: it puts back the hash this pod wrote
            self._rolled_back(done.rollback)
        self.announce_generation()

    def _rolled_back(self, rollback: Rollback) -> None:
        metrics.REDIS_ROLLBACKS.inc()
        log.warning(
            "redis_rolled_back",
            stored_generation=rollback.stored_generation,
            our_generation=rollback.ours,
            written_generation=rollback.written,
            from_local_copy=rollback.from_local_copy,
        )
        try:
            self._on_rollback(rollback)
        except redis.RedisError as error:  # the checkpoint is written; the report waits for none
            log.error("redis_rollback_report_failed", error=str(error))  # noqa: TRY400 - no trace
