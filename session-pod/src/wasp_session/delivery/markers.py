"""The "sent" marker: at most one send per message id, even across retries.

Owns ``contract.sent_marker_key`` (value ``<owner>|<whatsapp id>``, the owner
``<process>`` or, after a takeover, ``<process>#<takeovers>``) and
``contract.whatsapp_id_key``. Before a send the worker claims the marker
with ``SET NX`` under its owner id (one per process run); after WhatsApp
acknowledges, the WhatsApp id is written into it. A second attempt then finds:

* a WhatsApp id: the message went; record it, never send again;
* the marker of this very process without an id: an earlier attempt ended in
  an unexpected way and may have sent; do not send again (``uncertain``);
* the marker of another process without an id: that process died during its
  send (SIGKILL, node loss). The send may or may not have gone out; this is
  the one window where wasp sends again (``takeover``), so a crash never
  loses an OTP; at most one message per crash can be a duplicate;
* such a marker left by a takeover (``#1``): the resend killed its process
  too. A job that kills the process every time is sent at most twice, then
  given up (``crashed``), never resent on every restart until its TTL ends.

A message paced (``pacing.py``) takes its token in the same script, just
before the claim, and claims nothing when the token is not there.

A send that failed for sure (``SendError``) releases the marker; one that may
have gone (``SendUncertainError``) keeps it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, cast

import redis
import redis.client

from wasp import contract
from wasp_session.delivery.pacing import ACQUIRE_LUA, SendPacer

# KEYS: pacing bucket, marker. ARGV: sends a minute (<= 0: no pacing), owner, ttl,
# most takeovers. First the pacing token (``pacing.ACQUIRE_LUA``): not there, reply
# {'wait', seconds} and claim nothing. Then SET NX the marker; when it exists,
# inspect it, and take over one without a WhatsApp id left by another owner,
# counting the takeovers in the new owner (``<owner>#<n>``) up to the most allowed.
_CLAIM: Final = (
    ACQUIRE_LUA
    + """
if tonumber(ARGV[1]) > 0 then
  local wait = acquire(KEYS[1], ARGV[1])
  if wait > 0 then
    return {'wait', string.format('%.6f', wait)}
  end
end
local marker, owner, ttl = KEYS[2], ARGV[2], ARGV[3]
if redis.call('SET', marker, owner .. '|', 'NX', 'EX', ttl) then
  return {'claimed', ''}
end
local value = redis.call('GET', marker)
if not value then
  redis.call('SET', marker, owner .. '|', 'EX', ttl)
  return {'claimed', ''}
end
local sep = string.find(value, '|', 1, true)
local previous = string.sub(value, 1, sep - 1)
local whatsapp_id = string.sub(value, sep + 1)
if whatsapp_id ~= '' then
  return {'sent', whatsapp_id}
end
local takeovers = 0
local mark = string.find(previous, '#', 1, true)
if mark then
  takeovers = tonumber(string.sub(previous, mark + 1)) or 0
  previous = string.sub(previous, 1, mark - 1)
end
if previous == owner then
  return {'uncertain', previous}
end
if takeovers >= tonumber(ARGV[4]) then
  return {'crashed', previous}
end
redis.call('SET', marker, owner .. '#' .. (takeovers + 1) .. '|', 'EX', ttl)
return {'takeover', previous}
"""
)
# Resends after a crash during the send: one, so a job that kills its process
# every time goes out at most twice and then fails (``Claim.CRASHED``).
MAX_TAKEOVERS: Final = 1


class Claim(enum.Enum):
    """What the marker says about sending now."""

    CLAIMED = "claimed"  # nobody sent: send
    TAKEOVER = "takeover"  # a dead process may have sent: send again (the crash window)
    SENT = "sent"  # it went: do not send
    UNCERTAIN = "uncertain"  # this process may have sent: do not send
    CRASHED = "crashed"  # the process died during the send and its resend: do not send
    WAIT = "wait"  # not this message's turn yet (pacing): nothing claimed, try again later


@dataclass(frozen=True)
class ClaimResult:
    """The claim and its detail.

    ``SENT``: the WhatsApp id; ``TAKEOVER``, ``CRASHED``: the dead owner;
    ``WAIT``: the seconds until the pacing token is there.
    """

    claim: Claim
    detail: str = ""


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class SentMarkers:
    """One tenant's sent markers and WhatsApp-id mappings."""

    def __init__(
        self, client: redis.Redis, tenant: str, owner: str, pacer: SendPacer | None = None
    ) -> None:
        """Claim markers as ``owner`` (unique per process run), each after ``pacer``'s token."""
        self._client = client
        self._tenant = tenant
        self._owner = owner
        self._pacer = pacer
        self._claim = client.register_script(_CLAIM)
        self._ttl = contract.MESSAGE_RETENTION_SECONDS

    def claim(self, message_id: str) -> ClaimResult:
        """Take the pacing token and claim the right to send ``message_id`` now (one round trip).

        ``Claim.WAIT`` when the token is not there yet: nothing was claimed.
        """
        key = contract.sent_marker_key(self._tenant, message_id)
        bucket, rate = (self._pacer.key, self._pacer.rate) if self._pacer else (key, 0.0)
        args: list[str | int | float] = [rate, self._owner, self._ttl, MAX_TAKEOVERS]
        outcome = cast("list[object]", self._claim(keys=[bucket, key], args=args))
        return ClaimResult(Claim(_text(outcome[0])), _text(outcome[1]))

    def release(self, message_id: str) -> None:
        """The send did not happen: free the marker for a later attempt."""
        self._client.delete(contract.sent_marker_key(self._tenant, message_id))

    def record_in(self, pipe: redis.client.Pipeline, message_id: str, whatsapp_id: str) -> None:
        """Queue on ``pipe``: the send went out as ``whatsapp_id``; mark it, map the id back."""
        pipe.set(
            contract.sent_marker_key(self._tenant, message_id),
            f"{self._owner}|{whatsapp_id}",
            ex=self._ttl,
        )
        pipe.set(contract.whatsapp_id_key(self._tenant, whatsapp_id), message_id, ex=self._ttl)
