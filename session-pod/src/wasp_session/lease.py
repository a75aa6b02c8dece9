"""The tenant's singleton lease: one live session per tenant, with a fencing token.

Owns ``wasp:<tenant>:lease`` (value ``"<token> <pod>"``, with a TTL) and the
counter ``wasp:<tenant>:lease:fence`` that hands out strictly growing tokens.
Acquire is ``SET NX PX``; renew and release are Lua scripts that act only if
the value is still ours, so a pod that lost its lease can neither extend nor
delete the new holder's. The auth store checks the same value in its own
script before every write (``Lease.value``).

Also owns the lease's deadline, the one place that says until when the lease
surely still holds: the monotonic time at which the last successful acquire
or renew was *sent*, plus the TTL, minus a small margin (``surely_held()``).
Monotonic time keeps running while the process is stopped (SIGSTOP) or
waits for a Redis that does not answer, so a pod that resumes after its TTL
is past its deadline at once, before any renewal could tell it so. A renew
that finds the key expired while nobody took the lease since (the fencing
counter still at our token) claims it again under the same value and token:
a Redis outage longer than the TTL costs the session nothing once it ends.
Must not decide what losing the lease means: ``holds()``, ``surely_held()``
and ``renew()`` report, the app reacts.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import redis

from wasp import contract

# KEYS: lease, fence counter. ARGV: our value, TTL ms, our token. 1: renewed,
# 2: claimed again (it had expired and nobody acquired it since), 0: lost.
_RENEW = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
if not value and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 2
end
return 0
"""

MARGIN_FRACTION = 0.1  # of the TTL: Redis's clock and the round trip may run a little ahead
MAX_MARGIN_SECONDS = 1.0

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """This pod's claim on the tenant's lease."""

    def __init__(
        self,
        client: redis.Redis,
        tenant: str,
        pod_name: str,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Prepare to claim ``tenant``'s lease as ``pod_name`` for ``ttl`` seconds at a time."""
        self._redis = client
        self._key = contract.lease_key(tenant)
        self._fence_key = contract.lease_fence_key(tenant)
        self._pod = pod_name
        self._ttl_ms = max(1, int(ttl * 1000))
        self._clock = clock
        self._holds_for = ttl - min(MAX_MARGIN_SECONDS, ttl * MARGIN_FRACTION)
        self._deadline: float | None = None
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._value: str | None = None
        self.token: int | None = None

    @property
    def key(self) -> str:
        """The lease's Redis key."""
        return self._key

    @property
    def value(self) -> str | None:
        """The value stored while we hold the lease (``None`` if we do not)."""
        with self._lock:
            return self._value

    def holds(self) -> bool:
        """Whether this pod believes it holds the lease (last renew succeeded)."""
        return self.value is not None

    def surely_held(self) -> bool:
        """Whether the lease surely still holds: held, and its deadline not passed."""
        with self._lock:
            return (
                self._value is not None
                and self._deadline is not None
                and self._clock() < self._deadline
            )

    def seconds_left(self) -> float:
        """Seconds until the deadline (negative once passed; 0 while not held)."""
        with self._lock:
            if self._value is None or self._deadline is None:
                return 0.0
            return self._deadline - self._clock()

    def _extend(self, sent_at: float) -> None:
        """A claim or renew sent at ``sent_at`` succeeded: the lease holds until the deadline."""
        self._deadline = sent_at + self._holds_for

    def held(self) -> tuple[str, int] | None:
        """The lease's value and fencing token while we hold it, else ``None``."""
        with self._lock:
            if self._value is None or self.token is None:
                return None
            return self._value, self.token

    def try_acquire(self) -> bool:
        """Claim the lease if nobody holds it; a new fencing token each time."""
        if self.holds():
            return True
        if self._redis.exists(self._key):
            return False
        token = int(self._redis.incr(self._fence_key))
        value = f"{token} {self._pod}"
        sent_at = self._clock()
        if not self._redis.set(self._key, value, nx=True, px=self._ttl_ms):
            return False
        with self._lock:
            self._value = value
            self.token = token
            self._extend(sent_at)
        return True

    def holder(self) -> str | None:
        """Who holds the lease now, per Redis (``"<token> <pod>"``)."""
        value = self._redis.get(self._key)
        return None if value is None else str(value)

    def renew(self) -> bool:
        """Extend the lease (or claim it again if it expired unclaimed).

        On success the deadline moves to when this renew was sent plus the
        TTL (minus the margin); on a loss forget the lease and return ``False``.
        """
        held = self.held()
        if held is None:
            return False
        value, token = held
        sent_at = self._clock()
        keys = [self._key, self._fence_key]
        reply = int(self._renew(keys=keys, args=[value, self._ttl_ms, token]))
        if reply in (1, 2):
            with self._lock:
                if self._value == value:
                    self._extend(sent_at)
            return True
        self.forget()
        return False

    def forget(self) -> None:
        """Stop believing we hold the lease (after a loss)."""
        with self._lock:
            self._value = None
            self._deadline = None

    def release(self) -> None:
        """Give the lease up if it is still ours."""
        value = self.value
        self.forget()
        if value is not None:
            self._release(keys=[self._key], args=[value])
