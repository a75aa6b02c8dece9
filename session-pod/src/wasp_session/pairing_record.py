"""The tenant's halt record: what a restarted pod must not forget, about pairing and halts.

Owns ``wasp:<tenant>:pairing`` (``contract.pairing_key``), one small hash:
how many pairing windows were opened since the last pairing, connection or
``pair`` command (``windows``), and whether the session is halted (``halt``,
with the ``reason`` and ``message`` it showed): waiting for a human
(``Conflict``, ``PairingExpired``, ``Failed`` for a refused account,
``AccountMismatch``) or waiting out a temporary ban (``Banned``, with
``banned_until``: the ban's end in epoch seconds on Redis's clock, the one
clock every pod of the tenant shares). A pod restarted during a QR storm
therefore goes on at the next window instead of window 1; a halted session
stays halted after a restart until a ``pair`` command re-arms it; and a
banned one waits out the rest of its ban before it connects again.

Every write is one Lua script that acts only while this pod holds the lease
(the same check as the status hash), stamping the lease's fencing token, so
a pod without the lease can never count, halt or un-halt the tenant; a write
without the lease raises ``LeaseLostError``. The record has no TTL: a halt
lasts until a human acts (a ban: until it ends and the session connects).
It is deleted on pairing, on connecting, on a logout (a new pairing starts
afresh), on a ``pair`` command, and with the session. Decides nothing: the
reactions and the account guard say what to record.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Final, cast

import redis

from wasp import contract
from wasp_session.errors import LeaseLostError
from wasp_session.lease import Lease
from wasp_session.status import utc_now

FIELD_WINDOWS: Final = "windows"  # pairing windows opened (shown) since the last reset
FIELD_HALT: Final = "halt"  # phase the session halted in, waiting for `pair`
FIELD_REASON: Final = "reason"
FIELD_MESSAGE: Final = "message"
FIELD_UPDATED_AT: Final = "updated_at"
FIELD_BANNED_UNTIL: Final = "banned_until"  # a Banned halt's end: epoch s, Redis's clock
FIELD_LEASE_TOKEN: Final = "lease_token"  # noqa: S105 - a field name, no secret
HALT_BANNED: Final = "Banned"  # the one halt that ends by itself, at ``banned_until``
HALT_UNLINKED: Final = "LoggedOut"  # logged out by an `unlink` (the session is being deleted)
HALT_PHASES: Final = frozenset({"Conflict", "PairingExpired", "Failed", HALT_BANNED, HALT_UNLINKED})

# KEYS: the record, the lease. ARGV[1]: the lease value we hold; ARGV[2]:
# "set" (then field/value pairs, replacing the whole hash) or "clear".
_WRITE = """
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return false end
redis.call('DEL', KEYS[1])
if ARGV[2] == 'set' then redis.call('HSET', KEYS[1], unpack(ARGV, 3, #ARGV)) end
return 1
"""


@dataclass(frozen=True)
class Pairing:
    """What the record says: windows opened, and the halt (``""``: not halted).

    ``banned_until``: a ``Banned`` halt's end (epoch seconds, Redis's clock).
    """

    windows: int = 0
    halt: str = ""
    reason: str = ""
    message: str = ""
    banned_until: float = 0.0


def _parse(fields: dict[str, str]) -> Pairing:
    """The record's hash as ``Pairing``; anything malformed reads as nothing recorded."""
    try:
        windows = max(0, int(fields.get(FIELD_WINDOWS, "0")))
    except ValueError:
        windows = 0
    halt = fields.get(FIELD_HALT, "")
    if halt not in HALT_PHASES:
        halt = ""
    try:  # a ban without a readable end reads as ended: the session connects
        banned_until = float(fields.get(FIELD_BANNED_UNTIL, "0")) if halt == HALT_BANNED else 0.0
    except ValueError:
        banned_until = 0.0
    if not math.isfinite(banned_until):
        banned_until = 0.0
    return Pairing(
        windows,
        halt,
        fields.get(FIELD_REASON, "") if halt else "",
        fields.get(FIELD_MESSAGE, "") if halt else "",
        banned_until,
    )


class PairingRecord:
    """Reads and writes the tenant's halt record (writes fenced by the lease)."""

    def __init__(self, client: redis.Redis, tenant: str, lease: Lease) -> None:
        """Keep ``tenant``'s record under ``lease``; ``client`` decodes to ``str``."""
        self._redis = client
        self._key = contract.pairing_key(tenant)
        self._lease = lease
        self._write = client.register_script(_WRITE)
        self._lock = threading.Lock()
        self._empty = False  # known to be absent: clearing again writes nothing

    def read(self) -> Pairing:
        """The record as it is in Redis now."""
        fields = cast("dict[str, str]", self._redis.hgetall(self._key))
        self._empty = not fields
        return _parse(fields)

    def save(self, pairing: Pairing) -> None:
        """Replace the record with ``pairing``."""
        fields = {
            FIELD_WINDOWS: str(pairing.windows),
            FIELD_UPDATED_AT: utc_now(),
        }
        if pairing.halt:
            fields |= {
                FIELD_HALT: pairing.halt,
                FIELD_REASON: pairing.reason,
                FIELD_MESSAGE: pairing.message,
            }
        if pairing.halt == HALT_BANNED:
            fields[FIELD_BANNED_UNTIL] = repr(pairing.banned_until)
        self._run("set", fields)
        self._empty = False

    def clear(self) -> None:
        """Delete the record (nothing counted, not halted)."""
        if self._empty:
            return
        self._run("clear", {})
        self._empty = True

    def _run(self, mode: str, fields: dict[str, str]) -> None:
        held = self._lease.held()
        if held is None:
            msg = "pairing record write without the lease"
            raise LeaseLostError(msg)
        lease_value, token = held
        if fields:
            fields[FIELD_LEASE_TOKEN] = str(token)
        pairs = [item for field in fields.items() for item in field]
        with self._lock:
            if self._write(keys=[self._key, self._lease.key], args=[lease_value, mode, *pairs]):
                return
            # The lease expired unclaimed (Redis was away longer than its TTL): ours again.
            if self._lease.renew() and self._write(
                keys=[self._key, self._lease.key], args=[lease_value, mode, *pairs]
            ):
                return
        self._lease.forget()
        msg = "the lease was lost before the pairing record was written"
        raise LeaseLostError(msg)
