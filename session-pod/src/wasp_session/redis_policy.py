"""Whether the tenant's Redis may drop wasp's keys on its own: refuse one that may.

Owns the one check the session makes of the Redis server itself, before it
takes the lease or a job: the server's ``maxmemory-policy``, read from
``INFO memory`` (the session's ACL user may run ``INFO``, never ``CONFIG``,
see ``wasp.redis_acl``). Only ``noeviction`` keeps every key: the
``volatile-*`` policies evict exactly the keys wasp gives a TTL and cannot
lose unnoticed (the lease, the sent markers, the queued jobs, the message
hashes), the ``allkeys-*`` ones any key. Any other policy stops the session
with phase ``Failed``, reason ``RedisEvictionPolicy`` and exit code 2, as a
bad configuration does. A server that does not say (``INFO`` refused, no
``maxmemory_policy`` field: some Redis-compatible servers) is logged and
accepted. See docs/redis.md ("Memory and eviction").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import redis
import structlog

from wasp import contract
from wasp_session.config import Config

log = structlog.stdlib.get_logger("wasp_session.redis_policy")

# The maxmemory-policy values under which Redis never drops a key by itself.
SAFE_POLICIES: Final = frozenset({"noeviction"})

# Writes phase Failed with a reason and a message (taking the free lease for the
# moment): ``app._write_failure_leased``. Arguments: client, tenant, pod, reason, message.
FailureWriter = Callable[[redis.Redis, str, str, str, str], bool]


def eviction_policy(client: redis.Redis) -> str | None:
    """The server's ``maxmemory-policy`` from ``INFO memory``; None if it does not say."""
    try:
        info = client.info("memory")
    except redis.RedisError as error:
        log.warning("redis_policy_unknown", error=str(error))
        return None
    value = info.get("maxmemory_policy")
    if not value:
        log.warning("redis_policy_unknown", error="INFO memory has no maxmemory_policy")
        return None
    return str(value)


def refusal(policy: str | None) -> str | None:
    """Why a Redis with ``policy`` cannot serve wasp, or None when it can (or does not say)."""
    if policy is None or policy in SAFE_POLICIES:
        return None
    return (
        f"Redis maxmemory-policy is {policy}: Redis may evict the lease, the sent markers "
        "and queued OTPs without a word. Set maxmemory-policy noeviction "
        "(redis.conf, or CONFIG SET maxmemory-policy noeviction; volatile-* is not safe "
        "either: it evicts exactly the keys wasp gives a TTL); see docs/redis.md."
    )


def refuse_evicting_redis(config: Config, write_failure: FailureWriter) -> bool:
    """Whether the Redis may evict keys; if so, say so (status and log): the session stops."""
    with redis.Redis.from_url(config.redis_url, decode_responses=True) as client:
        policy = eviction_policy(client)
        message = refusal(policy)
        if message is None:
            return False
        try:
            written = write_failure(
                client,
                config.tenant,
                config.pod_name,
                contract.REASON_REDIS_EVICTION_POLICY,
                message,
            )
        except redis.RedisError:
            written = False
    log.error(
        "redis_eviction_policy_refused",
        reason=contract.REASON_REDIS_EVICTION_POLICY,
        policy=policy,
        error=message,
        status_written=written,
    )
    return True


__all__ = ["SAFE_POLICIES", "eviction_policy", "refusal", "refuse_evicting_redis"]
