"""Redis lost recent writes (rolled back to an older snapshot): what the session tells the user.

The auth store detects a rollback (a checkpoint found older auth state than
this session had written, or none) and writes the newer state back; the
checkpoint scheduler counts and logs it and hands it here. This module owns
what a user then sees, and what else of the session's own state it puts
back: the status hash, rewritten as this pod last wrote it (a rolled-back
hash may show an old phase, an old QR code) with reason ``RedisRolledBack``
and a sentence in ``message`` and ``lastError``, the phase unchanged; and,
while Connected, the halt record cleared (a rolled-back halt would stop the
next pod, though the session is online).

Must not detect a rollback (``auth_store``) nor decide when to checkpoint
(``checkpoints``). ``rollback_message`` is a pure function.
"""

from __future__ import annotations

from wasp import contract
from wasp_session.auth_store import Rollback
from wasp_session.pairing_record import PairingRecord
from wasp_session.phases import Phases
from wasp_session.status import StatusBoard, utc_now


def rollback_message(rollback: Rollback) -> str:
    """The sentence a user reads: what Redis held, what the session had, what it did."""
    stored = (
        "missing"
        if rollback.stored_generation is None
        else f"generation {rollback.stored_generation}"
    )
    if rollback.from_local_copy:
        return (
            f"Redis lost recent writes: the stored auth state was {stored}, this pod's "
            f"local copy was generation {rollback.ours}; kept the local copy and wrote it "
            f"back as generation {rollback.written}."
        )
    return (
        f"Redis lost recent writes: the stored auth state was {stored}, this session had "
        f"written generation {rollback.ours}; rewritten from the live session as "
        f"generation {rollback.written}."
    )


class RollbackReport:
    """Tells the user of a rollback and puts the session's own records back."""

    def __init__(self, status: StatusBoard, phases: Phases, halts: PairingRecord) -> None:
        """Write through ``status``; ``phases`` says whether the session is Connected."""
        self._status = status
        self._phases = phases
        self._halts = halts

    def __call__(self, rollback: Rollback) -> None:
        """Rewrite the status hash with the rollback's reason; clear a stale halt."""
        message = rollback_message(rollback)
        reason = contract.REASON_REDIS_ROLLED_BACK
        self._status.rewrite(
            {
                contract.STATUS_REASON: reason,
                contract.STATUS_MESSAGE: message,
                contract.STATUS_LAST_ERROR_REASON: reason,
                contract.STATUS_LAST_ERROR_MESSAGE: message,
                contract.STATUS_LAST_ERROR_AT: utc_now(),
            }
        )
        if self._phases.current == "Connected":  # online: no halt may stand
            self._halts.read()
            self._halts.clear()
