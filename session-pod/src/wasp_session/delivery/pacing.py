"""The tenant's send pacing: a token bucket in Redis, one token deep.

Owns ``contract.rate_limit_key``: a hash ``{tokens, ts}`` refilled at
``rate_per_minute / 60`` tokens per second, taken one per send by an atomic
Lua script that reads Redis's own clock (so every pod of a tenant, and a pod
after a restart, shares one bucket). The bucket holds one token at most and
``settle()`` empties it when a send ends, so consecutive sends are at least
``60 / rate_per_minute`` seconds apart, end to start: no window of 60 seconds
ever holds more than ``rate_per_minute`` sends, and WhatsApp never sees a
burst. The sender takes the token in the same script that claims the sent
marker (``markers.py``, ``ACQUIRE_LUA``): one round trip. Must not send or
sleep; the caller decides how to wait.
"""

from __future__ import annotations

from typing import Final

import redis
import redis.client

from wasp import contract

# A Lua function for the scripts that take a token (``markers.py`` takes it with its
# claim): take the token from ``bucket`` refilled at ``per_minute``; return 0 when
# taken, else the seconds until one will be there.
ACQUIRE_LUA: Final = """
local function acquire(bucket, per_minute)
  local t = redis.call('TIME')
  local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
  local rate = tonumber(per_minute) / 60.0
  local tokens = tonumber(redis.call('HGET', bucket, 'tokens') or '1')
  local ts = tonumber(redis.call('HGET', bucket, 'ts') or tostring(now))
  tokens = math.min(1, tokens + math.max(0, now - ts) * rate)
  local wait = 0
  if tokens >= 1 then
    tokens = tokens - 1
  else
    wait = (1 - tokens) / rate
  end
  redis.call('HSET', bucket, 'tokens', string.format('%.9f', tokens),
             'ts', string.format('%.6f', now))
  redis.call('EXPIRE', bucket, 3600)
  return wait
end
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
        self._settle = client.register_script(_SETTLE)

    @property
    def key(self) -> str:
        """The bucket's Redis key."""
        return self._key

    @property
    def rate(self) -> float:
        """Sends a minute at most (``<= 0``: no limit)."""
        return self._rate

    @property
    def limited(self) -> bool:
        """Whether sends are paced at all."""
        return self._rate > 0

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
