"""The tenant's send pacing: a token bucket in Redis, one token deep.

Owns ``contract.rate_limit_key``: a hash ``{tokens, ts}`` refilled at
``rate_per_minute / 60`` tokens per second, taken one per send by an atomic
Lua script that reads Redis's own clock (so every pod of a tenant, and a pod
after a restart, shares one bucket). The bucket holds one token at most and
``settle()`` empties it when a send ends, so consecutive sends are at least
``60 / rate_per_minute`` seconds apart, end to start: no window of 60 seconds
ever holds more than ``rate_per_minute`` sends, and WhatsApp never sees a
burst. Must not send or sleep; the caller decides how to wait.
"""

from __future__ import annotations

from typing import Final

import redis
import redis.client

from wasp import contract

# KEYS: bucket. ARGV: rate per minute. Returns "0" when a token was taken, else the
# seconds until one will be there.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rate = tonumber(ARGV[1]) / 60.0
local tokens = tonumber(redis.call('HGET', KEYS[1], 'tokens') or '1')
local ts = tonumber(redis.call('HGET', KEYS[1], 'ts') or tostring(now))
tokens = math.min(1, tokens + math.max(0, now - ts) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.9f', tokens),
           'ts', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], 3600)
return string.format('%.6f', wait)
"""

# KEYS: bucket. A send just ended: the next token starts filling now.
_SETTLE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('HSET', KEYS[1], 'tokens', '0', 'ts', string.format('%.6f', now))
redis.call('EXPIRE', KEYS[1], 3600)
return 1
"""


class SendPacer:
    """One tenant's token bucket; ``rate_per_minute <= 0`` means no limit."""

    def __init__(self, client: redis.Redis, tenant: str, rate_per_minute: float) -> None:
        """Pace ``tenant``'s sends at ``rate_per_minute``."""
        self._key = contract.rate_limit_key(tenant)
        self._rate = rate_per_minute
        self._acquire = client.register_script(_ACQUIRE)
        self._settle = client.register_script(_SETTLE)

    @property
    def limited(self) -> bool:
        """Whether sends are paced at all."""
        return self._rate > 0

    def try_acquire(self) -> float:
        """Take the token (return 0.0), or return the seconds until it is there."""
        if not self.limited:
            return 0.0
        wait = self._acquire(keys=[self._key], args=[self._rate])
        return float(wait.decode() if isinstance(wait, bytes) else wait)

    def settle(self) -> None:
        """Record that a send ended now: the next token is a full interval away."""
        if self.limited:
            self._settle(keys=[self._key])

    def settle_in(self, pipe: redis.client.Pipeline) -> None:
        """Queue ``settle`` on ``pipe`` (the script must be loaded: ``ensure_loaded``)."""
        if self.limited:
            pipe.evalsha(self._settle.sha, 1, self._key)

    def ensure_loaded(self, client: redis.Redis) -> None:
        """Load the scripts into Redis (``settle_in`` uses them by their hash)."""
        client.script_load(_SETTLE)
