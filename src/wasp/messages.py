"""One OTP's record in Redis: its state machine, its hash and its change feed.

Owns ``wasp:<tenant>:msg:<id>`` (``contract.message_key``): creating it as
``queued``, moving it forward (``queued → sending → sent → delivered →
read``, or ``failed`` with a reason before it was sent), never backwards (a
late ``delivered`` after ``read`` is ignored), stamping each state's time,
publishing every change as JSON on ``contract.receipts_channel``, appending it
to the tenant's event stream (``wasp.event_stream``: kind ``message``, with
the change's reason, error, WhatsApp id and attempt, never the phone number)
and keeping the hash for ``contract.MESSAGE_RETENTION_SECONDS`` after its
last change. Each change is one Lua script, so the check, the write and the
stream entry are atomic against the client, the worker and the receipts
arriving at once, and a message's entries are in the order of its states.

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
from wasp.event_stream import XADD_LUA
from wasp.timestamps import format_timestamp, parse_timestamp, utc_now

__all__ = [
    "FailureReason",
    "MessageState",
    "MessageStatus",
    "MessageStore",
    "Start",
    "decode_reply",
    "decode_start",
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

# The fields of a change that its event stream entry carries besides its id, state and time.
_STREAMED_FIELDS: Final = (
    contract.MESSAGE_REASON,
    contract.MESSAGE_ERROR,
    contract.MESSAGE_WHATSAPP_ID,
    contract.MESSAGE_ATTEMPTS,
)
_STREAM_ENTRY_LUA: Final = f"""
local event_stream = KEYS[2]
local event_head = {{'{contract.EVENT_KIND}', '{contract.EVENT_KIND_MESSAGE}'}}
local event_names = {{'{contract.MESSAGE_ID}', '{contract.MESSAGE_STATE}', '{contract.EVENT_AT}'}}
local streamed = {{{", ".join(f"['{name}'] = true" for name in _STREAMED_FIELDS)}}}
"""

# Every script below opens with this: KEYS[2] is the tenant's event stream;
# ARGV[1..6] are the retention seconds, the change channel, and the state,
# updated-at, message-id and created-at field names. ``move`` moves the message at
# ``key`` (id ``id``) to ``new`` at ``now`` with the field/value pairs
# ARGV[first..last], if that goes forward, publishes the change and appends it to the
# stream; it returns whether it did.
_MOVE: Final = (
    XADD_LUA
    + _STREAM_ENTRY_LUA
    + """
local rank = {queued = 0, sending = 1, sent = 2, delivered = 3, read = 4}
local retention, channel = ARGV[1], ARGV[2]
local state_field, updated_field, id_field, created_field = ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local function move(key, id, new, now, must_exist, first, last)
  local current = redis.call('HGET', key, state_field)
  local allowed
  if not current then
    allowed = not must_exist
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
    return false
  end
  local event = {message_id = id, state = new, at = now}
  local fields = {state_field, new, new .. '_at', now, updated_field, now, id_field, id}
  local entry = {event_head[1], event_head[2], event_names[1], id, event_names[2], new,
                 event_names[3], now}
  for i = first, last, 2 do
    fields[#fields + 1] = ARGV[i]
    fields[#fields + 1] = ARGV[i + 1]
    event[ARGV[i]] = ARGV[i + 1]
    if streamed[ARGV[i]] then
      entry[#entry + 1] = ARGV[i]
      entry[#entry + 1] = ARGV[i + 1]
    end
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, retention)
  redis.call('PUBLISH', channel, cjson.encode(event))
  append_event(event_stream, entry)
  return true
end
"""
)
# KEYS: message hash, event stream. ARGV[7..]: message id, new state, now, must-exist ("1"/"0"),
# reply with the hash ("1"/"0"), then field/value pairs to set alongside.
_TRANSITION: Final = (
    _MOVE
    + """
local moved = move(KEYS[1], ARGV[7], ARGV[8], ARGV[9], ARGV[10] == '1', 12, #ARGV)
local fields = {}
if ARGV[11] == '1' then
  fields = redis.call('HGETALL', KEYS[1])
end
return {moved and 1 or 0, fields}
"""
)
# KEYS: a key holding a message id (an index), event stream. ARGV[7..]: the message key without the
# id, new state, now. The message's key is made here from the id the index holds
# (one Redis, never a cluster: docs/redis.md). Replies {moved, message id}, or
# {0, false} when the index does not exist.
_TRANSITION_REFERENCED: Final = (
    _MOVE
    + """
local id = redis.call('GET', KEYS[1])
if not id then
  return {0, false}
end
local moved = move(ARGV[7] .. id, id, ARGV[8], ARGV[9], true, 10, 9)
return {moved and 1 or 0, id}
"""
)
# KEYS: message hash, event stream. ARGV[7..]: message id, created at, the earliest creation time
# whose TTL has not ended (now minus the TTL), now, the number n of creation
# field/value pairs, those pairs, then the field/value pairs of ``sending``. Creates
# the message as ``queued`` at its creation time unless it exists, then moves it to
# ``sending`` if it is pending and its TTL, counted from its first creation, has not
# ended (timestamps compare as strings: one fixed format). Replies {moved to sending,
# state, created at}.
_START: Final = (
    _MOVE
    + """
local id, created_at, earliest, now = ARGV[7], ARGV[8], ARGV[9], ARGV[10]
local last_creation = 12 + 2 * tonumber(ARGV[11]) - 1
move(KEYS[1], id, 'queued', created_at, false, 12, last_creation)
local state = redis.call('HGET', KEYS[1], state_field)
local first_created = redis.call('HGET', KEYS[1], created_field)
local live = not first_created or first_created > earliest
local started = false
if live and (state == 'queued' or state == 'sending') then
  started = move(KEYS[1], id, 'sending', now, true, last_creation + 1, #ARGV)
  if started then
    state = 'sending'
  end
end
return {started and 1 or 0, state, first_created}
"""
)


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


@dataclass(frozen=True)
class Start:
    """What ``MessageStore.start_in`` found: whether the message is now ``sending``.

    When it is not, ``state`` and ``created_at`` say why: it is past sending
    (``state``), or its TTL, counted from its first creation (``created_at``), ended.
    """

    sending: bool
    state: MessageState
    created_at: datetime | None


class MessageStore:
    """The message hashes of one tenant."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Work on ``tenant``'s messages through ``client`` (decoding or not)."""
        self._client = client
        self.tenant = tenant
        self._script = client.register_script(_TRANSITION)
        self._referenced = client.register_script(_TRANSITION_REFERENCED)
        self._start = client.register_script(_START)
        self._stream = contract.event_stream_key(tenant)
        self._header = [
            str(contract.MESSAGE_RETENTION_SECONDS),
            contract.receipts_channel(tenant),
            contract.MESSAGE_STATE,
            contract.MESSAGE_UPDATED_AT,
            contract.MESSAGE_ID,
            contract.MESSAGE_CREATED_AT,
        ]

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
        args = self._arguments(message_id, state, extra, at, must_exist=must_exist, read=False)
        moved, _fields = self._run(message_id, args)
        return moved

    def transition_referenced(
        self, index_key: str, state: MessageState, *, at: datetime | None = None
    ) -> tuple[bool, str | None]:
        """Move the message whose id ``index_key`` holds to ``state``, if it exists.

        One round trip for an index lookup and the move (a receipt names the
        WhatsApp id, ``contract.whatsapp_id_key`` maps it back). Returns whether
        it moved and the message id, or ``(False, None)`` when the index is absent.
        """
        prefix = contract.message_key(self.tenant, "")
        args = [*self._header, prefix, state, format_timestamp(at or utc_now())]
        reply = cast("list[Any]", self._referenced(keys=[index_key, self._stream], args=args))
        message_id = None if reply[1] is None else _text(reply[1])
        return bool(int(reply[0])), message_id

    def _arguments(  # noqa: PLR0913 - the script's arguments, each named
        self,
        message_id: str,
        state: str,
        extra: Mapping[str, str] | None,
        at: datetime | None,
        *,
        must_exist: bool,
        read: bool,
    ) -> list[str]:
        args: list[str] = [
            *self._header,
            message_id,
            state,
            format_timestamp(at or utc_now()),
            "1" if must_exist else "0",
            "1" if read else "0",
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
        args = self._arguments(message_id, state, extra, at, must_exist=False, read=True)
        moved, fields = self._run(message_id, args)
        return moved, parse_message(message_id, fields)

    def transition_in(
        self,
        pipe: redis.client.Pipeline,
        message_id: str,
        state: MessageState,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        """Queue a ``transition`` on ``pipe`` (its reply, to ``decode_reply``: whether it moved)."""
        args = self._arguments(message_id, state, extra, None, must_exist=False, read=False)
        pipe.evalsha(self._script.sha, 2, self.key(message_id), self._stream, *args)

    def start_in(  # noqa: PLR0913 - the creation and the move, in one call
        self,
        pipe: redis.client.Pipeline,
        message_id: str,
        *,
        created_at: datetime,
        expires_at: datetime,
        earliest_live: datetime,
        fields: Mapping[str, str],
    ) -> None:
        """Queue on ``pipe``: ``create`` (as ``queued``), then ``transition`` to ``sending``.

        The move happens only if the message is pending and created after
        ``earliest_live`` (now minus its TTL: enqueued twice, its TTL counts
        from the first time). Both changes are published, as two transitions
        would. Its reply, to ``decode_start``: a ``Start``.
        """
        creation = self._creation(None, created_at, expires_at)
        args: list[str] = [
            *self._header,
            message_id,
            format_timestamp(created_at),
            format_timestamp(earliest_live),
            format_timestamp(utc_now()),
            str(len(creation)),
        ]
        for pairs in (creation, fields):
            for name, value in pairs.items():
                args.extend((name, value))
        pipe.evalsha(self._start.sha, 2, self.key(message_id), self._stream, *args)

    def ensure_loaded(self) -> None:
        """Load the scripts into Redis (``transition_in`` and ``start_in`` use them by hash)."""
        self._client.script_load(_TRANSITION)
        self._client.script_load(_START)

    def _run(self, message_id: str, args: list[str]) -> tuple[bool, dict[str, str]]:
        keys = [self.key(message_id), self._stream]
        reply = cast("list[Any]", self._script(keys=keys, args=args))
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


def decode_start(reply: list[Any]) -> Start:
    """The start script's reply (``MessageStore.start_in``) as a ``Start``."""
    created = None if reply[2] is None else parse_timestamp(_text(reply[2]))
    return Start(
        sending=bool(int(reply[0])),
        state=cast("MessageState", _text(reply[1])),
        created_at=created,
    )


def decode_reply(reply: list[Any]) -> tuple[bool, dict[str, str]]:
    """The transition script's reply: whether it moved, and the hash afterwards."""
    flat = [_text(x) for x in reply[1]]
    return bool(int(reply[0])), dict(zip(flat[::2], flat[1::2], strict=True))


def decode_change(payload: str | bytes) -> dict[str, str]:
    """One JSON change from ``contract.receipts_channel`` as a dict."""
    data = json.loads(payload)
    return {str(k): str(v) for k, v in data.items()}
