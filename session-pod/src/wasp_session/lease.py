"""The tenant's singleton lease: one live session per tenant, with a fencing token.

Owns ``wasp:<tenant>:lease`` (value ``"<token> <pod>"``, with a TTL) and the
counter ``wasp:<tenant>:lease:fence`` that hands out strictly growing tokens.
Acquire is ``SET NX PX``; renew and release are Lua scripts that act only if
the value is still ours, so a pod that lost its lease can neither extend nor
delete the new holder's. The auth store checks the same value in its own
script before every write (``Lease.value``). Must not decide what losing the
lease means: ``holds()`` and ``renew()`` report, the app reacts.
"""

from __future__ import annotations

import threading

import redis

from wasp import contract

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class Lease:
    """This pod's claim on the tenant's lease."""

    def __init__(self, client: redis.Redis, tenant: str, pod_name: str, ttl: float) -> None:
        """Prepare to claim ``tenant``'s lease as ``pod_name`` for ``ttl`` seconds at a time."""
        self._redis = client
        self._key = contract.lease_key(tenant)
        self._fence_key = contract.lease_fence_key(tenant)
        self._pod = pod_name
        self._ttl_ms = max(1, int(ttl * 1000))
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
        if not self._redis.set(self._key, value, nx=True, px=self._ttl_ms):
            return False
        with self._lock:
            self._value = value
            self.token = token
        return True

    def holder(self) -> str | None:
        """Who holds the lease now, per Redis (``"<token> <pod>"``)."""
        value = self._redis.get(self._key)
        return None if value is None else str(value)

    def renew(self) -> bool:
        """Extend the lease; on failure forget it and return ``False``."""
        value = self.value
        if value is None:
            return False
        if int(self._renew(keys=[self._key], args=[value, self._ttl_ms])) == 1:
            return True
        self.forget()
        return False

    def forget(self) -> None:
        """Stop believing we hold the lease (after a loss)."""
        with self._lock:
            self._value = None

    def release(self) -> None:
        """Give the lease up if it is still ours."""
        value = self.value
        self.forget()
        if value is not None:
            self._release(keys=[self._key], args=[value])
