"""Receipts from WhatsApp move a message to ``delivered`` and ``read``.

The lifecycle calls ``apply_receipt`` for every ``ReceiptReceived`` event,
on its own thread. Each WhatsApp id is mapped back to wasp's message id
(``contract.whatsapp_id_key``) and the message moved forward through
``wasp.messages`` (never backwards: a late ``delivered`` after ``read`` is
ignored); the lookup and the move are one round trip. A receipt that
arrives before the worker has recorded its send is parked under
``contract.early_receipt_key`` and applied by the worker right after it
records the send (``apply_early_receipt``). Must not send anything,
and must stay quick: it runs on the thread that reads WhatsApp's events.
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Final

import redis
import structlog

from wasp import contract
from wasp.messages import MessageState, MessageStore
from wasp_session.delivery import metrics
from wasp_session.transport.base import ReceiptReceived

# Receipt kinds we act on, and the message state each one means.
_STATES: Final[dict[str, MessageState]] = {
    "delivered": "delivered",
    "read": "read",
    "played": "read",
}
_EARLY_TTL_SECONDS: Final = 600

log = structlog.get_logger("wasp_session.delivery.receipts")


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _moment(timestamp: float) -> datetime | None:
    return datetime.fromtimestamp(timestamp, UTC) if timestamp > 0 else None


@functools.lru_cache(maxsize=4)
def _store(client: redis.Redis, tenant: str) -> MessageStore:
    """The tenant's message store, made once (it registers its scripts)."""
    return MessageStore(client, tenant)


def apply_receipt(client: redis.Redis, tenant: str, receipt: ReceiptReceived) -> None:
    """Record ``receipt`` on the messages it names and publish the change."""
    state = _STATES.get(receipt.kind.lower())
    if state is None:
        return
    store = _store(client, tenant)
    for whatsapp_id in receipt.whatsapp_ids:
        index = contract.whatsapp_id_key(tenant, whatsapp_id)
        moved, message_id = store.transition_referenced(index, state, at=_moment(receipt.timestamp))
        if message_id is None:
            # The worker has not recorded this send yet: park it (keep "read" over "delivered").
            key = contract.early_receipt_key(tenant, whatsapp_id)
            client.set(key, state, ex=_EARLY_TTL_SECONDS, nx=state != "read")
            log.debug("receipt_parked", tenant=tenant, whatsapp_id=whatsapp_id, state=state)
            # The worker may have recorded it in between: then apply what was parked now.
            raw = client.get(index)
            if raw is not None:
                apply_early_receipt(client, store, tenant, _text(raw), whatsapp_id)
            continue
        if moved:
            metrics.count_state(tenant, state)
            log.debug("otp_receipt", tenant=tenant, message_id=message_id, state=state)


def apply_early_receipt(
    client: redis.Redis, store: MessageStore, tenant: str, message_id: str, whatsapp_id: str
) -> None:
    """Apply a receipt that arrived before the send of ``message_id`` was recorded."""
    raw = client.getdel(contract.early_receipt_key(tenant, whatsapp_id))
    if raw is None:
        return
    state = _STATES.get(_text(raw))
    if state is None:
        return
    if store.transition(message_id, state, must_exist=True):
        metrics.count_state(tenant, state)
        log.debug("otp_receipt", tenant=tenant, message_id=message_id, state=state, early=True)
