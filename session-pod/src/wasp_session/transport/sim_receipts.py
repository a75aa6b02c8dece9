"""The simulator's pending receipts in Redis, and when the next one is due.

WhatsApp's servers keep a device's receipts until it is online; the
simulator keeps them in the tenant's sorted set
(``contract.simulator_receipts_key``: members ``{"kind", "whatsapp_id"}``,
scored by due time in epoch seconds), so a killed process loses none. Each
due one is claimed (``ZREM``) before it is played: whoever removes it plays
it, so no two processes of the tenant play one.

Owns the members' encoding and when to look at the set: only when a receipt
is due by what this process knows (its own sends, ``noted``, and the due
times its last look saw), or every ``RECHECK_SECONDS`` anyway for receipts
another process of the tenant put there. Idle, a connected simulator thus
asks Redis about receipts once in ``RECHECK_SECONDS``. Must not emit events
or decide whether the device is online: the simulator does.
"""

from __future__ import annotations

import json
import math
import threading
import time
from typing import Final, NamedTuple

import redis
import structlog

from wasp import contract

RECHECK_SECONDS: Final = 10.0  # receipts another process of the tenant put back: looked for
BATCH: Final = 100  # receipts looked at and claimed a look: at most this many in flight

log = structlog.stdlib.get_logger("wasp_session.simulator")


class DueReceipt(NamedTuple):
    """A receipt claimed: play it."""

    whatsapp_id: str
    kind: str  # "delivered" or "read"
    at: float  # when it was due, epoch seconds


def receipt_member(whatsapp_id: str, kind: str) -> str:
    """A pending receipt as a member of the receipts sorted set (sorts "delivered" first)."""
    return json.dumps({"kind": kind, "whatsapp_id": whatsapp_id}, sort_keys=True)


def parse_receipt(member: str) -> tuple[str, str] | None:
    """The WhatsApp id and kind of a pending receipt, or None if it is not one."""
    try:
        receipt = json.loads(member)
    except ValueError:
        return None
    if not isinstance(receipt, dict):
        return None
    whatsapp_id, kind = receipt.get("whatsapp_id"), receipt.get("kind")
    if not isinstance(whatsapp_id, str) or kind not in ("delivered", "read"):
        return None
    return whatsapp_id, kind


class PendingReceipts:
    """The tenant's pending receipts as one simulator sees them (thread-safe)."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """The receipts of ``tenant``; ``client`` decodes responses to ``str``."""
        self._redis = client
        self.key = contract.simulator_receipts_key(tenant)
        self._lock = threading.Lock()
        self._due = math.inf  # the earliest in Redis as of the last look (inf: none)
        self._looked_at: float | None = None  # monotonic; None: look at the next chance
        self._sent_due = math.inf  # the earliest of this process's sends since that look

    def noted(self, due: float) -> None:
        """This process added a receipt due at ``due`` (after writing it)."""
        with self._lock:
            self._sent_due = min(self._sent_due, due)

    def forget(self) -> None:
        """Look at the set at the next chance (e.g. the device comes back online)."""
        with self._lock:
            self._looked_at = None

    def next_due(self) -> float:
        """When the next receipt is due by what this process knows (epoch s; inf: none)."""
        with self._lock:
            return min(self._due, self._sent_due)

    def may_be_due(self) -> bool:
        """Whether a receipt is due by what this process knows, or it is time to look anyway."""
        with self._lock:
            looked_at = self._looked_at
            due = min(self._due, self._sent_due)
        if looked_at is None or time.monotonic() - looked_at >= RECHECK_SECONDS:
            return True
        return due <= time.time()

    def claim_due(self) -> list[DueReceipt]:
        """Claim the due receipts among the earliest, at most one per message, and return them.

        A message's later receipt waits for the next look (then due at once).
        """
        batch = self._look()
        if not batch:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for member, _receipt in batch:
            pipe.zrem(self.key, member)
        claimed = pipe.execute()
        # Not removed: another process of the tenant played it.
        return [
            receipt for (_member, receipt), removed in zip(batch, claimed, strict=True) if removed
        ]

    def put_back(self, receipts: list[DueReceipt]) -> None:
        """Return receipts claimed but not played, due as before (a Redis error logged)."""
        if not receipts:
            return
        members = {receipt_member(r.whatsapp_id, r.kind): r.at for r in receipts}
        try:
            self._redis.zadd(self.key, members)
        except redis.RedisError as error:
            log.warning("simulator_receipts_lost", error=str(error), receipts=len(members))
        self.forget()

    def _look(self) -> list[tuple[str, DueReceipt]]:
        """The due receipts among the ``BATCH`` earliest, with their members; notes the next due."""
        with self._lock:  # a send from now on is seen by this look, or noted again
            self._sent_due = math.inf
        now = time.time()
        earliest: list[tuple[str, float]] = self._redis.zrange(  # type: ignore[assignment]
            self.key, 0, BATCH - 1, withscores=True
        )
        batch: dict[str, tuple[str, DueReceipt]] = {}
        next_due = math.inf if len(earliest) < BATCH else now  # more: look again
        for member, score in earliest:
            parsed = parse_receipt(str(member))
            if float(score) > now:
                next_due = min(next_due, float(score))
            elif parsed is None:
                log.warning("simulator_receipt_malformed", receipt=str(member))
                self._redis.zrem(self.key, member)
            elif parsed[0] not in batch:
                batch[parsed[0]] = (str(member), DueReceipt(*parsed, float(score)))
            else:  # its later receipt waits for the next look
                next_due = now
        with self._lock:
            self._due = next_due
            self._looked_at = time.monotonic()
        return list(batch.values())
