"""Redis, as the operator sees it: wake-ups, connections, and the lease holder's status.

Owns the operator's Redis connections (one client per admin URL, at most
``REDIS_CONNECTIONS`` connections: a cycle waits for a free one, never
fails for want of one; redis-py's own pool refuses a call once 100 are in
use, which a thousand tenants reporting at once reach). For every
Redis the sessions use (usually one) it keeps ONE pattern subscription to
every tenant's events channel and wakes the session loops following that
tenant; after a (re)subscription (a Redis restart, a failover) it wakes them
all, so they resync whatever they missed and make lost users again.

An event is only a wake-up, never a report: anyone allowed to publish on a
channel could forge one. What a session reports is read from Redis itself,
in one round trip: the status hash, the tenant's lease and its fencing
counter. ``not_from_lease_holder`` says whether that hash may be relayed:
only if its writer holds (or was the last to hold) the lease.

It never talks to the Kubernetes API and decides nothing about the status
(``status.py`` does), nor about who owns a tenant (``ownership.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wasp import contract
from wasp_operator.errors import redis_failure
from wasp_operator.redis_users import redacted

logger = logging.getLogger(__name__)
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
POLL_SECONDS = 1.0
REDIS_CONNECTIONS = 16  # per Redis, the subscription's included
CONNECTION_WAIT_SECONDS = 20.0  # a call waits this long for a free connection, then fails


def _client(url: str) -> aioredis.Redis:
    """A client of the Redis at ``url`` whose calls queue for one of its few connections."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        max_connections=REDIS_CONNECTIONS,
        timeout=CONNECTION_WAIT_SECONDS,
    )
    return aioredis.Redis.from_pool(pool)


@dataclass(frozen=True)
class _Wakes:
    """How to wake one follower: for one report, and after a (re)subscription."""

    report: Callable[[], None]
    resync: Callable[[], None]


@dataclass
class _Follower:
    """One Redis: its client, its subscription task, who follows which tenant."""

    client: aioredis.Redis
    task: asyncio.Task[None] | None = None
    tenants: dict[str, dict[str, _Wakes]] = field(default_factory=dict)


@dataclass(frozen=True)
class Reading:
    """A tenant's status hash, lease and fencing counter, read in one round trip."""

    status: dict[str, str]
    lease: str | None  # "<token> <pod>" while a pod holds the lease
    fence: str | None  # the last fencing token handed out


def not_from_lease_holder(reading: Reading) -> str | None:
    """Why the status hash must not be relayed; None when its writer holds the lease.

    The hash's ``lease_token`` must be the fencing counter (the newest token
    ever handed out) and, while a lease exists, the lease must be that token
    held by the hash's ``pod``. With no lease (it expired, or its holder let
    it go) the last holder's word stands until a new holder writes.
    """
    status = reading.status
    token = status.get(contract.STATUS_LEASE_TOKEN)
    if not token:
        return "it carries no lease token"
    if reading.fence is None or token != reading.fence:
        return "its lease token is not the lease's current one"
    if reading.lease is not None and reading.lease != f"{token} {status.get(contract.STATUS_POD)}":
        return "another pod holds the lease"
    return None


class StatusRelay:
    """Wake-ups from Redis for the sessions that follow a tenant, and reads of their state."""

    def __init__(self) -> None:
        """Nothing is followed until a session follows a tenant."""
        self._followers: dict[str, _Follower] = {}

    # -- sessions ------------------------------------------------------------
    def follow(
        self,
        url: str,
        tenant: str,
        follower: str,
        wake: Callable[[], None],
        resync: Callable[[], None] | None = None,
    ) -> None:
        """Call ``wake`` when ``tenant`` reports on ``url``, ``resync`` after a resubscription.

        ``resync`` (default ``wake``) is for "anything may have been missed,
        look at everything". ``follower`` names the session loop
        ("namespace/name"); several may follow one tenant (an owner and an
        impostor both want to look again).
        """
        redis_follower = self._followers.get(url)
        if redis_follower is None:
            redis_follower = _Follower(_client(url))
            self._followers[url] = redis_follower
            redis_follower.task = asyncio.create_task(self._follow(url, redis_follower))
        redis_follower.tenants.setdefault(tenant, {})[follower] = _Wakes(wake, resync or wake)

    def unfollow(self, url: str, tenant: str, follower: str) -> None:
        """Stop waking ``follower`` for ``tenant`` on ``url``."""
        redis_follower = self._followers.get(url)
        if redis_follower is None:
            return
        wakes = redis_follower.tenants.get(tenant, {})
        wakes.pop(follower, None)
        if not wakes:
            redis_follower.tenants.pop(tenant, None)

    # -- reads -----------------------------------------------------------------
    async def read(self, url: str, tenant: str) -> Reading:
        """The tenant's status hash, lease and fencing counter, in one round trip."""
        async with self.connection(url) as client:
            try:
                async with client.pipeline(transaction=True) as pipe:
                    pipe.hgetall(contract.status_key(tenant))
                    pipe.get(contract.lease_key(tenant))
                    pipe.get(contract.lease_fence_key(tenant))
                    status, lease, fence = await pipe.execute()
            except (RedisError, OSError) as error:
                msg = f"cannot read the status of tenant {tenant}"
                raise redis_failure(msg, error) from error
        return Reading(
            status={str(k): str(v) for k, v in (status or {}).items()},
            lease=None if lease is None else str(lease),
            fence=None if fence is None else str(fence),
        )

    @contextlib.asynccontextmanager
    async def connection(self, url: str) -> AsyncIterator[aioredis.Redis]:
        """The followed Redis's client, or a client of its own closed after use."""
        redis_follower = self._followers.get(url)
        if redis_follower is not None:
            yield redis_follower.client
            return
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            yield client
        finally:
            await client.aclose()

    async def close(self) -> None:
        """Stop every subscription and close every connection."""
        followers, self._followers = self._followers, {}
        for redis_follower in followers.values():
            if redis_follower.task is not None:
                redis_follower.task.cancel()
                await asyncio.gather(redis_follower.task, return_exceptions=True)
            await redis_follower.client.aclose()

    # -- the subscription ------------------------------------------------------
    async def _follow(self, url: str, redis_follower: _Follower) -> None:
        attempt = 0
        while True:
            try:
                async with redis_follower.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.psubscribe(contract.EVENTS_CHANNEL_PATTERN)
                    attempt = 0
                    self._wake_all(redis_follower)  # whatever was missed: resync from Redis
                    while True:
                        message = await pubsub.get_message(timeout=POLL_SECONDS)
                        if message is not None:
                            self._receive(redis_follower, message)
            except (RedisError, OSError) as error:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning(
                    "redis_subscription_lost redis=%s error=%s", redacted(url), type(error).__name__
                )
                await asyncio.sleep(delay)

    @staticmethod
    def _receive(redis_follower: _Follower, message: dict[str, Any]) -> None:
        """A message on a tenant's events channel wakes its followers; its content is ignored."""
        tenant = contract.tenant_of_events_channel(str(message.get("channel", "")))
        for wakes in list(redis_follower.tenants.get(tenant or "", {}).values()):
            wakes.report()

    @staticmethod
    def _wake_all(redis_follower: _Follower) -> None:
        for followers in list(redis_follower.tenants.values()):
            for wakes in list(followers.values()):
                wakes.resync()
