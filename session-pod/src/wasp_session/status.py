"""The tenant's status hash and its events channel, written by the lease holder alone.

Owns ``wasp:<tenant>:status`` and ``wasp:<tenant>:events`` (and the QR
channel). Every change is one Lua script that writes only while the lease
still holds this pod's value, sets and deletes fields, stamps the lease's
fencing token (``lease_token``) and returns the hash, which is then
published as JSON, so a reader needs only the latest message. The operator
relays a status only when its ``lease_token`` is the lease's current token:
a pod without the lease can therefore never put a phase, a QR code or a
pairing code into any resource's status, and this module never lets it try
(a write without the lease raises ``LeaseLostError``).

A pod waiting for the lease writes only the standby fields (never the phase,
never the token). A pod that refuses to start (bad configuration, another
resource owns the tenant) may leave its reason with ``record_refusal``: only
while no pod holds the lease, and without a token, so the operator never
relays it and no live holder's status is overwritten.

The heartbeat is refreshed without a publication (it is not a change); a
heartbeat that finds the field no longer the one this pod wrote last sets
``writes_lost`` (Redis restarted without its writes, or was rolled back):
whoever holds the auth state checks it with a checkpoint. ``rewrite`` puts
the hash back as this pod last wrote it, for a Redis that lost recent
writes (rolled back to an older snapshot, ``rollback``).
Every write that changes the phase also appends a ``session`` entry (phase,
reason, message, at) to the tenant's event stream (``wasp.event_stream``)
in the same script, so the stream's phases are the hash's, in its order.
Decides nothing: the lifecycle says what to write.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any

import redis

from wasp import contract, timestamps
from wasp.event_stream import XADD_LUA
from wasp.timestamps import format_seconds
from wasp_session.delivery.sender import RedisClock
from wasp_session.errors import LeaseLostError
from wasp_session.lease import Lease

PAIRING_FIELDS = (
    contract.STATUS_QR,
    contract.STATUS_PAIRING_CODE,
    contract.STATUS_PAIRING_EXPIRES_AT,
)
# Fields written outside the fenced script (a standby's, the heartbeat): never rewritten.
_NOT_REWRITTEN = frozenset(
    {contract.STATUS_HEARTBEAT, contract.STATUS_STANDBY_POD, contract.STATUS_STANDBY_SINCE}
)

# ``append_phase_change`` appends the status's phase, reason, message and
# updated-at to the event stream if its phase is no longer ``before``.
_PHASE_ENTRY_LUA = f"""
local function append_phase_change(status, stream, before)
  local now = redis.call('HMGET', status, '{contract.STATUS_PHASE}', '{contract.STATUS_REASON}',
                         '{contract.STATUS_MESSAGE}', '{contract.STATUS_UPDATED_AT}')
  if now[1] and now[1] ~= before then
    append_event(stream, {{'{contract.EVENT_KIND}', '{contract.EVENT_KIND_SESSION}',
                           '{contract.STATUS_PHASE}', now[1],
                           '{contract.STATUS_REASON}', now[2] or '',
                           '{contract.STATUS_MESSAGE}', now[3] or '',
                           '{contract.EVENT_AT}', now[4] or ''}})
  end
end
"""

# KEYS: status hash, lease, event stream. ARGV[1]: the lease value we hold, or ""
# for "only while nobody holds the lease"; ARGV[2]: n, the number of fields to set;
# then n field/value pairs; then the fields to delete.
_WRITE = (
    XADD_LUA
    + _PHASE_ENTRY_LUA
    + f"""
local before = redis.call('HGET', KEYS[1], '{contract.STATUS_PHASE}')
local lease = redis.call('GET', KEYS[2])
if ARGV[1] == '' then
  if lease then return false end
elseif lease ~= ARGV[1] then
  return false
end
local n = tonumber(ARGV[2])
if n > 0 then redis.call('HSET', KEYS[1], unpack(ARGV, 3, 2 + 2 * n)) end
if #ARGV > 2 + 2 * n then redis.call('HDEL', KEYS[1], unpack(ARGV, 3 + 2 * n, #ARGV)) end
append_phase_change(KEYS[1], KEYS[3], before)
return redis.call('HGETALL', KEYS[1])
"""
)


def utc_now() -> str:
    """Now as RFC 3339 UTC, second precision (the status hash's times)."""
    return format_seconds(timestamps.utc_now())


def rfc3339(epoch_seconds: float) -> str:
    """An epoch time as RFC 3339 UTC, second precision."""
    return format_seconds(datetime.fromtimestamp(epoch_seconds, UTC))


class StatusBoard:
    """Writes the status hash (fenced by the lease) and publishes every change."""

    def __init__(self, client: redis.Redis, tenant: str, pod_name: str, lease: Lease) -> None:
        """Write for ``tenant`` as ``pod_name`` under ``lease``; ``client`` decodes to ``str``."""
        self._redis = client
        self._tenant = tenant
        self._pod = pod_name
        self._lease = lease
        self._key = contract.status_key(tenant)
        self._stream = contract.event_stream_key(tenant)
        self._write = client.register_script(_WRITE)
        self._lock = threading.Lock()
        self._written: dict[str, str] = {}  # the hash as this pod's last write left it
        self._beat: str | None = None  # the heartbeat this pod wrote last
        self.writes_lost = threading.Event()  # a heartbeat found its last one gone
        # Phase changes and errors are dated on Redis's clock, not this pod's: the
        # operator compares ``updated_at`` with the pod's creation (the API's clock).
        self._clock = RedisClock(client)

    def _now(self) -> str:
        """Now on Redis's clock, RFC 3339 UTC, second precision."""
        return format_seconds(self._clock.now())

    def _run(self, lease_value: str, values: dict[str, str], remove: tuple[str, ...]) -> Any:  # noqa: ANN401 - a script's reply
        pairs = [item for field in values.items() for item in field]
        return self._write(
            keys=[self._key, self._lease.key, self._stream],
            args=[lease_value, len(values), *pairs, *remove],
        )

    def _publish(self, reply: list[str]) -> dict[str, str]:
        status = dict(zip(reply[::2], reply[1::2], strict=True))
        self._written = status
        self._redis.publish(
            contract.events_channel(self._tenant), json.dumps(status, sort_keys=True)
        )
        return status

    def update(
        self, fields: dict[str, str] | None = None, remove: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Set ``fields``, delete ``remove``, publish the whole hash; return it.

        Raises ``LeaseLostError`` (and forgets the lease) if this pod does not
        hold the lease: then nothing was written.
        """
        held = self._lease.held()
        if held is None:
            msg = "status write without the lease"
            raise LeaseLostError(msg)
        lease_value, token = held
        values = dict(fields or {})
        values[contract.STATUS_POD] = self._pod
        values[contract.STATUS_LEASE_TOKEN] = str(token)
        if contract.STATUS_PHASE in values:
            values[contract.STATUS_UPDATED_AT] = self._now()
        with self._lock:
            reply = self._run(lease_value, values, remove)
            if reply is None and self._lease.renew():  # it expired unclaimed: ours again
                reply = self._run(lease_value, values, remove)
            if reply is None:
                self._lease.forget()
                msg = "the lease was lost before the status was written"
                raise LeaseLostError(msg)
            return self._publish(reply)

    def rewrite(self, fields: dict[str, str]) -> dict[str, str]:
        """Write the hash back as this pod last wrote it, plus ``fields``; return it.

        For a Redis that lost recent writes: its hash may show an old phase,
        QR code or account. Fields this pod did not write last are removed;
        the heartbeat and a standby's fields are left as they are.
        """
        with self._lock:
            known = {k: v for k, v in self._written.items() if k not in _NOT_REWRITTEN}
        values = {**known, **fields}
        present = {str(field) for field in self._redis.hkeys(self._key)}
        stale = tuple(sorted(present - set(values) - _NOT_REWRITTEN))
        return self.update(values, stale)

    def set_phase(
        self,
        phase: str,
        *,
        reason: str = "",
        message: str = "",
        extra: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Enter ``phase`` with its reason and sentence."""
        fields = {
            contract.STATUS_PHASE: phase,
            contract.STATUS_REASON: reason,
            contract.STATUS_MESSAGE: message,
            **(extra or {}),
        }
        return self.update(fields, remove)

    def error_fields(self, reason: str, message: str) -> dict[str, str]:
        """The last error fields for ``reason`` and ``message``, dated now (Redis's clock).

        For a phase change that is also an error: passed as its ``extra``, a
        reader never sees the new phase without its error, nor the reverse.
        """
        return {
            contract.STATUS_LAST_ERROR_REASON: reason,
            contract.STATUS_LAST_ERROR_MESSAGE: message,
            contract.STATUS_LAST_ERROR_AT: self._now(),
        }

    def record_error(self, reason: str, message: str) -> dict[str, str]:
        """Set the last error fields (and publish)."""
        return self.update(self.error_fields(reason, message))

    def record_refusal(self, reason: str, message: str) -> bool:
        """Say why this pod will not run (phase Failed), unless a pod holds the lease.

        For a pod that stops before it ever holds the lease. The status gets
        no ``lease_token`` (any old one is removed, with the pairing fields),
        so the operator relays none of it; a live holder's status is left as
        it is. Returns whether the status was written.
        """
        now = self._now()
        values = {
            contract.STATUS_PHASE: "Failed",
            contract.STATUS_REASON: reason,
            contract.STATUS_MESSAGE: message,
            contract.STATUS_LAST_ERROR_REASON: reason,
            contract.STATUS_LAST_ERROR_MESSAGE: message,
            contract.STATUS_LAST_ERROR_AT: now,
            contract.STATUS_LEASE_HELD: "0",
            contract.STATUS_POD: self._pod,
            contract.STATUS_UPDATED_AT: now,
        }
        remove = (*PAIRING_FIELDS, contract.STATUS_PAIRING_WINDOW, contract.STATUS_LEASE_TOKEN)
        with self._lock:
            reply = self._run("", values, remove)
            if reply is None:
                return False
            self._publish(reply)
        return True

    def publish_pairing(self, code: str) -> None:
        """Publish a new QR string or pairing code on the QR channel."""
        self._redis.publish(contract.qr_channel(self._tenant), code)

    def heartbeat(self) -> None:
        """Refresh the heartbeat field (no publication); set ``writes_lost`` if the last is gone."""
        now = utc_now()
        with self._redis.pipeline(transaction=False) as pipe:  # one round trip, as one HSET
            pipe.hget(self._key, contract.STATUS_HEARTBEAT)
            pipe.hset(self._key, contract.STATUS_HEARTBEAT, now)
            found, _ = pipe.execute()
        if self._beat is not None and found != self._beat:
            self.writes_lost.set()
        self._beat = now

    def announce_standby(self) -> None:
        """Say that this pod waits for the lease, without touching the phase or the token."""
        self._redis.hset(
            self._key,
            mapping={
                contract.STATUS_STANDBY_POD: self._pod,
                contract.STATUS_STANDBY_SINCE: utc_now(),
            },
        )

    def clear_standby(self) -> None:
        """Remove this pod's standby fields (if they are still its own)."""
        if self._redis.hget(self._key, contract.STATUS_STANDBY_POD) == self._pod:
            self._redis.hdel(self._key, contract.STATUS_STANDBY_POD, contract.STATUS_STANDBY_SINCE)
