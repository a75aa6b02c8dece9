"""A tenant's durable event stream: append, read with a consumer group, acknowledge.

Owns ``wasp:<tenant>:stream`` (``contract.event_stream_key``): a bounded Redis
Stream (``XADD MAXLEN ~ contract.EVENT_STREAM_MAX_LENGTH``, expiring
``contract.EVENT_STREAM_RETENTION_SECONDS`` after its last entry) of every
message state change, session phase change and inbound message. Every entry
has ``kind`` (``contract.EVENT_KINDS``) and ``at`` (RFC 3339 UTC) plus the
fields of its kind. Lua scripts that append inside their own transaction
(``wasp.messages``, the session's status board) use ``XADD_LUA``; Python
writers use ``EventStream.append``.

Readers use a consumer group: entries delivered to a consumer stay pending
until it acknowledges them, and a consumer that restarts reads its own
pending entries again before new ones (at-least-once; the entry id, and a
message's id and state, make a handler idempotent). Loss is never silent: a
group that fell behind the trimmed start of the stream, pending entries
trimmed before they were acknowledged, or a stream or group that vanished
(expired, deleted) are reported with the next batch (``StreamBatch.lost``).
Entries are hostile input (the tenant's API may write to its own stream): a
reader never trusts their fields beyond their being strings, and reads over
a connection that does not decode, so no bytes can make it fail.

Must not decide what happens on an event: it only stores and hands them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis
import redis.exceptions
import structlog

from wasp import contract
from wasp.binary_client import binary_twin
from wasp.timestamps import format_timestamp, utc_now

__all__ = ["XADD_LUA", "EventStream", "EventsLost", "StreamBatch", "StreamEvent"]

log = structlog.get_logger("wasp.event_stream")

# A Lua function for scripts that append as part of their own work:
# ``append_event(key, fields)`` adds the flat field/value list ``fields`` as one
# entry, trims, refreshes the expiry and returns the entry's id. A key that is no
# stream (the tenant's API may write anything there) is replaced by one, so the
# script that appends never fails for it. Its two constants are the contract's.
XADD_LUA: Final = f"""
local function append_event(key, fields)
  local limit = '{contract.EVENT_STREAM_MAX_LENGTH}'
  local id = redis.pcall('XADD', key, 'MAXLEN', '~', limit, '*', unpack(fields))
  if type(id) == 'table' and id.err then
    redis.call('DEL', key)
    id = redis.call('XADD', key, 'MAXLEN', '~', limit, '*', unpack(fields))
  end
  redis.call('EXPIRE', key, '{contract.EVENT_STREAM_RETENTION_SECONDS}')
  return id
end
"""

# KEYS: the stream. ARGV: the entry's field/value pairs. Replies its id.
_APPEND: Final = XADD_LUA + "return append_event(KEYS[1], ARGV)\n"

# KEYS: the stream. ARGV: group, start id. Creates the group (and the stream) with
# its read counter set, so Redis can count what the group has not read, trimmed
# entries included (``_lost``): a group from "0" has read what was trimmed before
# it existed, one from "$" everything so far. A key that is no stream is replaced.
# Replies 1 if made, 0 if it existed.
_ENSURE_GROUP: Final = """
local added, length = 0, 0
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'stream' and kind ~= 'none' then
  redis.call('DEL', KEYS[1])
elseif kind == 'stream' then
  local info = redis.call('XINFO', 'STREAM', KEYS[1])
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then added = info[i + 1] end
    if info[i] == 'length' then length = info[i + 1] end
  end
end
local command = {'XGROUP', 'CREATE', KEYS[1], ARGV[1], ARGV[2], 'MKSTREAM'}
if ARGV[2] == '$' then
  command[#command + 1], command[#command + 2] = 'ENTRIESREAD', added
elseif ARGV[2] == '0' or ARGV[2] == '0-0' then
  command[#command + 1], command[#command + 2] = 'ENTRIESREAD', added - length
end
local made = redis.pcall(unpack(command))
if type(made) == 'table' and made.err then
  if string.find(made.err, 'BUSYGROUP', 1, true) then return 0 end
  return redis.error_reply(made.err)
end
return 1
"""


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _stream_id(value: object) -> tuple[int, int]:
    """An entry id (``<ms>-<seq>``) as a pair that orders as Redis orders them."""
    ms, _, seq = _text(value).partition("-")
    return int(ms), int(seq or 0)


@dataclass(frozen=True)
class StreamEvent:
    """One entry: its id (``<ms>-<seq>``), kind and fields (``kind`` and ``at`` included)."""

    id: str
    kind: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EventsLost:
    """Entries a group will never get: trimmed, or gone with the stream, before it read them.

    ``count`` is how many (``None``: unknown, e.g. the stream itself vanished);
    ``after`` where: the last entry id the group had been given before them
    (for pending entries trimmed away, the first of those); ``reason`` a sentence.
    """

    group: str
    count: int | None
    after: str
    reason: str


@dataclass(frozen=True)
class StreamBatch:
    """What one read returned: the entries, and any loss found on the way (else ``None``)."""

    events: list[StreamEvent]
    lost: EventsLost | None = None


class EventStream:
    """The event stream of one tenant."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Work on ``tenant``'s stream through ``client`` (decoding or not)."""
        self._client = client
        self._reader = binary_twin(client)
        self.tenant = tenant
        self.key = contract.event_stream_key(tenant)
        self._append = client.register_script(_APPEND)
        self._ensure_group = client.register_script(_ENSURE_GROUP)
        self._log = log.bind(tenant=tenant)

    def close(self) -> None:
        """Close the reading connection this stream opened itself (if any)."""
        if self._reader is not self._client:
            self._reader.close()

    def append(self, kind: str, fields: Mapping[str, str]) -> str:
        """Add an entry of ``kind`` with ``fields`` (``at`` is now unless given); return its id."""
        entry = {contract.EVENT_KIND: kind, contract.EVENT_AT: format_timestamp(utc_now())}
        entry.update(fields)
        pairs = [item for pair in entry.items() for item in pair]
        return _text(self._append(keys=[self.key], args=pairs))

    def ensure_group(self, group: str, *, start: str = "0") -> None:
        """Create ``group`` (and the stream) unless it exists; a new group reads from ``start``.

        ``"0"``: every entry still in the stream; ``"$"``: only entries added from
        now on. Groups made here let ``read_batch`` count entries trimmed before
        the group read them; groups made otherwise may not (Redis then estimates).
        """
        self._ensure_group(keys=[self.key], args=[group, start])

    def read(
        self, group: str, consumer: str, *, count: int = 100, block_ms: int | None = None
    ) -> list[StreamEvent]:
        """The next entries for ``consumer`` of ``group``: its own pending ones first, then new.

        ``read_batch``'s entries; a loss it finds is logged (``event_stream_lost``).
        """
        return self.read_batch(group, consumer, count=count, block_ms=block_ms).events

    def read_batch(
        self,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
        pending_after: str = "0",
    ) -> StreamBatch:
        """The next entries for ``consumer`` of ``group``, and any loss found on the way.

        Pending entries (delivered before, never acknowledged: the consumer
        stopped) come back first, oldest first; pending ones trimmed since are
        acknowledged and counted as lost. When none is pending, new entries,
        waiting up to ``block_ms`` for one (``None``: do not wait). A group that
        fell behind the trimmed start of the stream gets the oldest entries kept
        and the count of those it missed; a group (or stream) that is gone is
        made again from ``"0"``, its loss unknown. ``pending_after`` skips pending
        entries up to that id (a reader that keeps entries unacknowledged passes
        the last id it got, so it gets each of them once per run).
        """
        trimmed: list[str] = []
        while True:
            events, gone = self._pending(group, consumer, count, pending_after)
            if gone:
                self._reader.xack(self.key, group, *gone)
                trimmed.extend(gone)
            if events or not gone:
                break
        lost = None
        if trimmed:
            reason = f"{len(trimmed)} pending entries were trimmed before they were acknowledged"
            lost = EventsLost(group, len(trimmed), trimmed[0], reason)
        if not events:
            events, behind = self._new(group, consumer, count, block_ms)
            lost = _both(lost, behind)
        if lost is not None:
            self._log.warning(
                "event_stream_lost", group=group, count=lost.count, reason=lost.reason
            )
        return StreamBatch(events, lost)

    def _pending(
        self, group: str, consumer: str, count: int, after: str
    ) -> tuple[list[StreamEvent], list[str]]:
        """Up to ``count`` of this consumer's pending entries after ``after``; trimmed ones' ids."""
        try:
            reply = self._reader.xreadgroup(group, consumer, {self.key: after}, count=count)
        except redis.exceptions.ResponseError as error:
            if not _gone(error):
                raise
            return [], []  # nothing pending where there is no group; ``_new`` makes it
        return _entries(reply)

    def _new(
        self, group: str, consumer: str, count: int, block_ms: int | None
    ) -> tuple[list[StreamEvent], EventsLost | None]:
        """New entries for ``consumer``, and what the group missed before them."""
        with self._reader.pipeline(transaction=True) as pipe:
            pipe.xinfo_stream(self.key)
            pipe.xinfo_groups(self.key)
            pipe.xreadgroup(group, consumer, {self.key: ">"}, count=count)
            try:
                stream, groups, reply = pipe.execute()
            except redis.exceptions.ResponseError as error:
                if not _gone(error):
                    raise
                return self._remade(group, consumer, count)
        events, _ = _entries(reply)
        lost = _lost(group, stream, groups)
        if not events and block_ms is not None:
            reply = self._reader.xreadgroup(
                group, consumer, {self.key: ">"}, count=count, block=block_ms
            )
            events, _ = _entries(reply)
        return events, lost

    def _remade(
        self, group: str, consumer: str, count: int
    ) -> tuple[list[StreamEvent], EventsLost]:
        """Make the vanished group again from ``"0"``; read what the stream still has."""
        self.ensure_group(group, start="0")
        reply = self._reader.xreadgroup(group, consumer, {self.key: ">"}, count=count)
        events, _ = _entries(reply)
        reason = (
            "the stream or its group was gone (a week without entries, deleted or overwritten) "
            "and was made again: entries from before may be missing"
        )
        return events, EventsLost(group, None, "0-0", reason)

    def ack(self, group: str, *entry_ids: str) -> int:
        """Acknowledge ``entry_ids`` for ``group``: never delivered again. Returns how many."""
        if not entry_ids:
            return 0
        return int(self._reader.xack(self.key, group, *entry_ids))


def _gone(error: redis.exceptions.ResponseError) -> bool:
    """Whether ``error`` says the group or the stream is not there (or the key is no stream)."""
    text = str(error)
    return any(sign in text for sign in ("NOGROUP", "no such key", "WRONGTYPE"))


def _both(first: EventsLost | None, second: EventsLost | None) -> EventsLost | None:
    """Two losses found in one read, as one."""
    if first is None or second is None:
        return first or second
    count = None if first.count is None or second.count is None else first.count + second.count
    return EventsLost(first.group, count, first.after, f"{first.reason}; {second.reason}")


def _entries(reply: Any) -> tuple[list[StreamEvent], list[str]]:  # noqa: ANN401 - XREADGROUP's reply
    """An XREADGROUP reply as events, and the ids of pending entries trimmed away since."""
    events: list[StreamEvent] = []
    trimmed: list[str] = []
    for _stream, entries in reply or []:
        for entry_id, values in entries:
            if not values:  # pending, but trimmed since (an entry always has a field)
                trimmed.append(_text(entry_id))
                continue
            fields = {_text(k): _text(v) for k, v in cast("dict[object, object]", values).items()}
            kind = fields.get(contract.EVENT_KIND, "")
            events.append(StreamEvent(_text(entry_id), kind, fields))
    return events, trimmed


def _lost(
    group: str, stream: Mapping[str, Any], groups: list[Mapping[str, Any]]
) -> EventsLost | None:
    """What ``group`` missed, from XINFO STREAM and XINFO GROUPS taken before its read.

    Trimming removes the oldest entries. A group whose last entry is older
    than the stream's first has missed every entry it has not read that is
    no longer there: its lag (added minus read, counted by Redis) minus the
    stream's length. Without a lag (the tenant deleted entries with XDEL)
    the count is unknown, and reported only for a group that had read some.
    """
    info = next((g for g in groups if _text(g.get("name")) == group), None)
    if info is None:
        return None
    after = _text(info.get("last-delivered-id") or "0-0")
    first = stream.get("first-entry")
    length = int(stream.get("length") or 0)
    if first and _stream_id(after) >= _stream_id(first[0]):
        return None  # it had read up to entries still there: trimming took none of its own
    lag = info.get("lag")
    if lag is None:
        if _stream_id(after) == (0, 0):
            return None
        reason = f"entries after {after} were trimmed or deleted before the group read them"
        return EventsLost(group, None, after, reason)
    missed = int(lag) - length
    if missed <= 0:
        return None
    reason = (
        f"{missed} entries were trimmed before the group read them "
        f"(the stream keeps about {contract.EVENT_STREAM_MAX_LENGTH})"
    )
    return EventsLost(group, missed, after, reason)
