"""When the auth state is checkpointed into Redis, and the bookkeeping of each one.

Owns the schedule: a checkpoint now (after pairing, on Connected, before an
exit, at shutdown), debounced after activity (receipts change the store),
and periodically. Only an account worth keeping is checkpointed:
``account_kept`` is true once a device was restored or paired and accepted,
and false after a logout or while an account is refused, so a device that
the pin refused never reaches Redis. A lost lease found by a checkpoint is
reported through ``on_lease_lost`` and raised.

Must not decide how a checkpoint is written (``auth_store`` does) nor react
to transport events.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import structlog

from wasp_session import metrics
from wasp_session.auth_store import AuthStore
from wasp_session.config import Timings
from wasp_session.errors import AuthStoreError, LeaseLostError

log = structlog.stdlib.get_logger("wasp_session.checkpoints")


class CheckpointScheduler:
    """Decides when to checkpoint and records how it went."""

    def __init__(
        self, store: AuthStore, timings: Timings, on_lease_lost: Callable[[], None]
    ) -> None:
        """Checkpoint ``store`` on the schedule of ``timings``."""
        self._store = store
        self._timings = timings
        self._on_lease_lost = on_lease_lost
        self.account_kept = False
        self._dirty_since: float | None = None
        self._last = time.monotonic()

    def restart_clock(self) -> None:
        """Count the periodic interval from now (the session starts)."""
        self._last = time.monotonic()

    def mark_dirty(self) -> None:
        """The store changed: checkpoint after the debounce delay."""
        self._dirty_since = self._dirty_since or time.monotonic()

    def tick(self) -> None:
        """Checkpoint if the debounce delay or the periodic interval has passed."""
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
