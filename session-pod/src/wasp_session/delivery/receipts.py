"""Receipts from WhatsApp move a message to ``delivered`` and ``read``.

The lifecycle calls ``apply_receipt`` for every ``ReceiptReceived`` event.
(Placeholder until the delivery work lands: it does nothing yet.)
"""

from __future__ import annotations

import redis

from wasp_session.transport.base import ReceiptReceived


def apply_receipt(client: redis.Redis, tenant: str, receipt: ReceiptReceived) -> None:
    """Record ``receipt`` on the messages it names and publish the change."""
    del client, tenant, receipt
