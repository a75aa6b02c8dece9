"""A tenant's session as the client sees it: the status hash and its feeds.

Owns reading ``contract.status_key`` into a ``SessionStatus`` and following
the pub/sub channels the session pod writes (``contract.events_channel``,
``contract.qr_channel``). Read-only: it must never write a session's state.
"""

from __future__ import annotations

import json
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import redis

from wasp import contract
from wasp.timestamps import parse_timestamp

__all__ = ["SessionStatus", "follow_channels", "parse_session"]

# Phases in which a QR or pairing code may still come.
PAIRING_PHASES = frozenset({"Pending", "Starting", "AwaitingPairing", "LoggedOut"})


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class SessionStatus:
    """A session's current phase and what goes with it."""

    tenant: str
    phase: str
    reason: str | None = None
    message: str | None = None
    qr: str | None = None
    pairing_code: str | None = None
    account_jid: str | None = None
    push_name: str | None = None
    heartbeat: datetime | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def connected(self) -> bool:
        """Whether jobs flow now."""
        return self.phase == "Connected"


def parse_session(tenant: str, fields: Mapping[str, str]) -> SessionStatus:
    """A ``SessionStatus`` from the status hash (decoded to ``str``)."""
    heartbeat = fields.get(contract.STATUS_HEARTBEAT)
    return SessionStatus(
        tenant=tenant,
        phase=fields.get(contract.STATUS_PHASE) or "Pending",
        reason=fields.get(contract.STATUS_REASON) or None,
        message=fields.get(contract.STATUS_MESSAGE) or None,
        qr=fields.get(contract.STATUS_QR) or None,
        pairing_code=fields.get(contract.STATUS_PAIRING_CODE) or None,
        account_jid=fields.get(contract.STATUS_ACCOUNT_JID) or None,
        push_name=fields.get(contract.STATUS_PUSH_NAME) or None,
        heartbeat=parse_timestamp(heartbeat) if heartbeat else None,
        fields=dict(fields),
    )


def read_hash(client: redis.Redis, key: str) -> dict[str, str]:
    """A hash with keys and values decoded to ``str``."""
    raw = cast("dict[object, object]", client.hgetall(key))
    return {_text(k): _text(v) for k, v in raw.items()}


def follow_channels(
    client: redis.Redis, channels: list[str], timeout: float | None = None
) -> Generator[tuple[str, str], None, None]:
    """Yield ``(channel, payload)`` for each message on ``channels``.

    Ends after ``timeout`` seconds without a message (``None``: never). The
    subscription is closed when the iterator is closed.
    """
    pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(*channels)
    try:
        idle_since = time.monotonic()
        while True:
            message: dict[str, Any] | None = pubsub.get_message(timeout=0.5)
            if message is not None and message.get("type") == "message":
                idle_since = time.monotonic()
                yield _text(message["channel"]), _text(message["data"])
            elif timeout is not None and time.monotonic() - idle_since > timeout:
                return
    finally:
        pubsub.close()


def decode_event(payload: str) -> dict[str, Any]:
    """One JSON object from an events or receipts channel (a non-object is wrapped)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return {"raw": payload}
    return data if isinstance(data, dict) else {"raw": data}
