"""One OTP's record in Redis: its state machine, its hash and its change feed.

Owns ``wasp:<tenant>:msg:<id>`` (``contract.message_key``): creating it as
``queued``, moving it forward (``queued → sending → sent → delivered →
read``, or ``failed`` with a reason before it was sent), never backwards (a
late ``delivered`` after ``read`` is ignored), stamping each state's time,
publishing every change as JSON on ``contract.receipts_channel`` and keeping
the hash for ``contract.MESSAGE_RETENTION_SECONDS`` after its last change.
Each change is one Lua script, so the check and the write are atomic against
the client, the worker and the receipts arriving at once.

Both the client (which creates messages) and the session's worker (which
moves them) use this module; it must not send anything or touch RQ.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal, TypeAlias, cast

import redis
import redis.client

from wasp import contract
from wasp.timestamps import format_timestamp, parse_timestamp, utc_now

__all__ = [
    "FailureReason",
    "MessageState",
    "MessageStatus",
    "MessageStore",
    "decode_reply",
    "is_past",
    "parse_message",
]

MessageState: TypeAlias = Literal["queued", "sending", "sent", "delivered", "read", "failed"]
FailureReason: TypeAlias = Literal[
    "invalid_number",
    "not_on_whatsapp",
    "expired",
    "timelocked",
    "banned",
    "send_error",
    "invalid_job",
    "uncertain",
]

# Forward order of the states; ``failed`` may follow only states before ``sent``.
_RANK: Final[dict[str, int]] = {"queued": 0, "sending": 1, "sent": 2, "delivered": 3, "read": 4}

# KEYS: message hash. ARGV: new state, now, retention seconds, channel, message id,
# state field, updated-at field, message-id field, must-exist ("1"/"0"),
# then field/value pairs to set alongside.
_TRANSITION = """
local rank = {queued = 0, sending = 1, sent = 2, delivered = 3, read = 4}
local new, now, retention, channel, id = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local state_field, updated_field, id_field, must_exist = ARGV[6], ARGV[7], ARGV[8], ARGV[9]
local current = redis.call('HGET', KEYS[1], state_field)
local allowed
if not current then
  allowed = must_exist ~= '1'
elseif current == 'failed' then
  allowed = false
elseif new == 'failed' then
  allowed = rank[current] < rank['sent']
elseif new == current then
  allowed = new == 'sending'
else
  allowed = rank[new] > rank[current]
end
if not allowed then
  return {0, redis.call('HGETALL', KEYS[1])}
end
local event = {message_id = id, state = new, at = now}
redis.call('HSET', KEYS[1], state_field, new, new .. '_at', now, updated_field, now, id_field, id)
for i = 10, #ARGV, 2 do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  event[ARGV[i]] = ARGV[i + 1]
end
redis.call('EXPIRE', KEYS[1], retention)
redis.call('PUBLISH', channel, cjson.encode(event))
return {1, redis.call('HGETALL', KEYS[1])}
"""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def is_past(state: str, target: str) -> bool:
    """Whether a message in ``state`` has reached ``target`` or moved beyond it.

    ``failed`` reaches only ``failed``; every other state is compared in the
    forward order ``queued < sending < sent < delivered < read``.
    """
    if state == "failed" or target == "failed":
        return state == target
    return _RANK.get(state, -1) >= _RANK[target]


@dataclass(frozen=True)
class MessageStatus:
    """What is known about one OTP, as read from its hash."""

    message_id: str
    state: MessageState
    phone: str | None = None
    reason: FailureReason | None = None
    error: str | None = None
    whatsapp_id: str | None = None
    attempts: int = 0
    created_at: datetime | None = None
    expires_at: datetime | None = None
    updated_at: datetime | None = None
    timestamps: Mapping[str, datetime] = field(default_factory=dict)

    @property
    def is_final(self) -> bool:
        """Whether nothing more is expected of it (``delivered``, ``read`` or ``failed``)."""
        return self.state in contract.FINAL_MESSAGE_STATES

    @property
    def is_pending(self) -> bool:
        """Whether it still waits to be sent (``queued``, or ``sending`` cut short by a crash)."""
        return self.state in ("queued", "sending")


def parse_message(message_id: str, fields: Mapping[str, str]) -> MessageStatus:
    """A ``MessageStatus`` from a message hash (already decoded to ``str``)."""

    def moment(name: str) -> datetime | None:
        value = fields.get(name)
        return parse_timestamp(value) if value else None

    stamps = {
        state: parse_timestamp(fields[contract.message_state_at_field(state)])
        for state in contract.MESSAGE_STATES
        if fields.get(contract.message_state_at_field(state))
    }
    reason = fields.get(contract.MESSAGE_REASON) or None
    return MessageStatus(
        message_id=message_id,
        state=cast("MessageState", fields.get(contract.MESSAGE_STATE, "queued")),
        phone=fields.get(contract.MESSAGE_PHONE) or None,
        reason=cast("FailureReason | None", reason),
        error=fields.get(contract.MESSAGE_ERROR) or None,
        whatsapp_id=fields.get(contract.MESSAGE_WHATSAPP_ID) or None,
        attempts=int(fields.get(contract.MESSAGE_ATTEMPTS) or 0),
        created_at=moment(contract.MESSAGE_CREATED_AT),
        expires_at=moment(contract.MESSAGE_EXPIRES_AT),
        updated_at=moment(contract.MESSAGE_UPDATED_AT),
        timestamps=stamps,
    )


class MessageStore:
    """The message hashes of one tenant."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Work on ``tenant``'s messages through ``client`` (decoding or not)."""
        self._client = client
        self.tenant = tenant
        self._script = client.register_script(_TRANSITION)

    def get(self, message_id: str) -> MessageStatus | None:
        """The message's status, or ``None`` if no hash exists."""
        raw = cast("dict[object, object]", self._client.hgetall(self.key(message_id)))
        if not raw:
            return None
        return parse_message(message_id, {_text(k): _text(v) for k, v in raw.items()})

    def key(self, message_id: str) -> str:
        """The Redis key of the message's hash."""
        return contract.message_key(self.tenant, message_id)

    def create(
        self,
        message_id: str,
        *,
        phone: str | None,
        created_at: datetime,
        expires_at: datetime,
    ) -> bool:
        """Write the message as ``queued`` unless it exists; return whether it was new."""
        extra = self._creation(phone, created_at, expires_at)
        return self.transition(message_id, "queued", extra, at=created_at)

    def create_and_read(
        self,
        message_id: str,
        *,
        phone: str | None,
        created_at: datetime,
        expires_at: datetime,
    ) -> MessageStatus:
        """Like ``create``, and return the message as it is afterwards (one round trip)."""
        extra = self._creation(phone, created_at, expires_at)
        _moved, status = self.transition_and_read(message_id, "queued", extra, at=created_at)
        return status

    @staticmethod
    def _creation(phone: str | None, created_at: datetime, expires_at: datetime) -> dict[str, str]:
        extra = {
            contract.MESSAGE_CREATED_AT: format_timestamp(created_at),
            contract.MESSAGE_EXPIRES_AT: format_timestamp(expires_at),
            contract.MESSAGE_ATTEMPTS: "0",
        }
        if phone:
            extra[contract.MESSAGE_PHONE] = phone
        return extra

    def transition(
        self,
        message_id: str,
        state: MessageState,
        extra: Mapping[str, str] | None = None,
        *,
        at: datetime | None = None,
        must_exist: bool = False,
    ) -> bool:
        """Move the message to ``state`` with ``extra`` fields; False if that would go back.

        ``must_exist`` refuses to create a hash that is not there (receipts for
        messages that already expired from Redis).
        """
        args = self._arguments(message_id, state, extra, at, must_exist=must_exist)
        return self._transition(message_id, args)

    def _transition(self, message_id: str, args: list[str]) -> bool:
        moved, _fields = self._run(message_id, args)
        return moved

    def _arguments(
        self,
        message_id: str,
        state: str,
        extra: Mapping[str, str] | None,
        at: datetime | None,
        *,
        must_exist: bool,
    ) -> list[str]:
        args: list[str] = [
            state,
            format_timestamp(at or utc_now()),
            str(contract.MESSAGE_RETENTION_SECONDS),
            contract.receipts_channel(self.tenant),
            message_id,
            contract.MESSAGE_STATE,
            contract.MESSAGE_UPDATED_AT,
            contract.MESSAGE_ID,
            "1" if must_exist else "0",
        ]
        for name, value in (extra or {}).items():
            args.extend((name, value))
        return args

    def transition_and_read(
        self,
        message_id: str,
        state: MessageState,
        extra: Mapping[str, str] | None = None,
        *,
        at: datetime | None = None,
    ) -> tuple[bool, MessageStatus]:
        """Like ``transition``, and return the message as it is afterwards (one round trip)."""
        moved, fields = self._run(
            message_id, self._arguments(message_id, state, extra, at, must_exist=False)
        )
        return moved, parse_message(message_id, fields)

    def transition_in(
        self,
        pipe: redis.client.Pipeline,
        message_id: str,
        state: MessageState,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a ``transition`` on ``pipe`` (its reply: ``[moved, hash]``)."""
        args = self._arguments(message_id, state, extra, None, must_exist=False)
        pipe.evalsha(self._script.sha, 1, self.key(message_id), *args)

    def ensure_loaded(self) -> None:
        """Load the script into Redis (``transition_in`` uses it by its hash)."""
        self._client.script_load(_TRANSITION)

    def _run(self, message_id: str, args: list[str]) -> tuple[bool, dict[str, str]]:
        reply = cast("list[Any]", self._script(keys=[self.key(message_id)], args=args))
        return decode_reply(reply)

    def fail(
        self,
        message_id: str,
        reason: FailureReason,
        error: str,
        extra: Mapping[str, str] | None = None,
    ) -> bool:
        """Move the message to ``failed`` with ``reason`` and a human sentence."""
        fields = {contract.MESSAGE_REASON: reason, contract.MESSAGE_ERROR: error, **(extra or {})}
        return self.transition(message_id, "failed", fields)


def decode_reply(reply: list[Any]) -> tuple[bool, dict[str, str]]:
    """The transition script's reply: whether it moved, and the hash afterwards."""
    flat = [_text(x) for x in reply[1]]
    return bool(int(reply[0])), dict(zip(flat[::2], flat[1::2], strict=True))


def decode_change(payload: str | bytes) -> dict[str, str]:
    """One JSON change from ``contract.receipts_channel`` as a dict."""
    data = json.loads(payload)
    return {str(k): str(v) for k, v in data.items()}
