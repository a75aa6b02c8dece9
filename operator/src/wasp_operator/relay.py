"""Redis, as the operator sees it: the status relay, status reads, cleanup.

Owns the operator's Redis connections. For every Redis the sessions use
(usually one) it keeps ONE pattern subscription to every tenant's events
channel, remembers the latest report per tenant and wakes that tenant's
session loop; after a (re)subscription it wakes them all, so they resync from
the status hashes whatever they missed. It also answers which resource holds
a tenant (two resources on one Redis must never run the same tenant).

It never talks to the Kubernetes API and decides nothing about the status:
``status.py`` does, in the session loop (``supervisor.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wasp import contract
from wasp_operator.errors import RedisUnavailableError

logger = logging.getLogger(__name__)
RECONNECT_DELAYS = (0.5, 1.0, 2.0, 5.0, 10.0)
POLL_SECONDS = 1.0

Key = tuple[str, str]  # (Redis URL, tenant)


@dataclass
class _Follower:
    """One Redis: its client, its subscription task, its tenants."""

    client: aioredis.Redis
    task: asyncio.Task[None] | None = None
    tenants: dict[str, Callable[[], None]] = field(default_factory=dict)


class StatusRelay:
    """Latest reports from Redis, and wake-ups for the sessions that care."""

    def __init__(self) -> None:
        """Nothing is followed until a session registers."""
        self._followers: dict[str, _Follower] = {}
        self._latest: dict[Key, dict[str, str]] = {}
        self._holders: dict[Key, str] = {}

    # -- sessions ------------------------------------------------------------
    def register(self, url: str, tenant: str, holder: str, wake: Callable[[], None]) -> str:
        """Follow ``tenant`` on ``url`` for ``holder``; the holder in effect is returned.

        The first resource to register a tenant holds it; another one gets
        the holder's name back and must not run the tenant.
        """
        current = self._holders.setdefault((url, tenant), holder)
        if current != holder:
            return current
        follower = self._followers.get(url)
        if follower is None:
            follower = _Follower(aioredis.Redis.from_url(url, decode_responses=True))
            self._followers[url] = follower
            follower.task = asyncio.create_task(self._follow(url, follower))
        follower.tenants[tenant] = wake
        return holder

    def unregister(self, url: str, tenant: str, holder: str) -> None:
        """Stop following ``tenant`` for ``holder`` (no-op if it does not hold it)."""
        if self._holders.get((url, tenant)) != holder:
            return
        del self._holders[(url, tenant)]
        self._latest.pop((url, tenant), None)
        follower = self._followers.get(url)
        if follower is not None:
            follower.tenants.pop(tenant, None)

    def holder(self, url: str, tenant: str) -> str | None:
        """Which resource runs ``tenant`` on ``url``, if any."""
        return self._holders.get((url, tenant))

    def take(self, url: str, tenant: str) -> dict[str, str] | None:
        """The latest report received for a tenant since the last call, if any."""
        return self._latest.pop((url, tenant), None)

    # -- direct reads and writes -------------------------------------------------
    async def read_status(self, url: str, tenant: str) -> dict[str, str]:
        """The tenant's status hash, as the session pod last wrote it."""
        async with self._borrowed(url) as client:
            try:
                raw = await client.hgetall(contract.status_key(tenant))
            except (RedisError, OSError) as error:
                msg = f"cannot read the status of tenant {tenant}: {error}"
                raise RedisUnavailableError(msg) from error
        return {str(k): str(v) for k, v in raw.items()}

    async def forget_tenant(self, url: str, tenant: str) -> None:
        """Delete the tenant's auth state, lease, status and sandbox: the account is unlinked."""
        async with self._borrowed(url) as client:
            try:
                await client.delete(*contract.keys_deleted_with_session(tenant))
            except (RedisError, OSError) as error:
                msg = f"cannot delete the auth state of tenant {tenant}: {error}"
                raise RedisUnavailableError(msg) from error

    @contextlib.asynccontextmanager
    async def _borrowed(self, url: str) -> AsyncIterator[aioredis.Redis]:
        """The followed Redis's client, or a client of its own closed after use."""
        follower = self._followers.get(url)
        if follower is not None:
            yield follower.client
            return
        client = aioredis.Redis.from_url(url, decode_responses=True)
        try:
            yield client
        finally:
            await client.aclose()

    async def close(self) -> None:
        """Stop every subscription and close every connection."""
        followers, self._followers = self._followers, {}
        for follower in followers.values():
            if follower.task is not None:
                follower.task.cancel()
                await asyncio.gather(follower.task, return_exceptions=True)
            await follower.client.aclose()

    # -- the subscription ------------------------------------------------------
    async def _follow(self, url: str, follower: _Follower) -> None:
        attempt = 0
        while True:
            try:
                async with follower.client.pubsub(ignore_subscribe_messages=True) as pubsub:
                    await pubsub.psubscribe(contract.EVENTS_CHANNEL_PATTERN)
                    attempt = 0
                    self._wake_all(follower)  # whatever was missed: resync from the hashes
                    while True:
                        message = await pubsub.get_message(timeout=POLL_SECONDS)
                        if message is not None:
                            self._receive(url, follower, message)
            except (RedisError, OSError) as error:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.warning("redis_subscription_lost url_host=%s error=%s", _host(url), error)
                await asyncio.sleep(delay)

    def _receive(self, url: str, follower: _Follower, message: dict[str, Any]) -> None:
        tenant = contract.tenant_of_events_channel(str(message.get("channel", "")))
        wake = follower.tenants.get(tenant or "")
        if tenant is None or wake is None:
            return
        try:
            report = json.loads(message.get("data") or "")
        except (TypeError, ValueError):
            logger.warning("status_event_unreadable tenant=%s", tenant)
            return
        if isinstance(report, dict):
            self._latest[(url, tenant)] = {
                str(k): str(v) for k, v in report.items() if v is not None
            }
            wake()

    @staticmethod
    def _wake_all(follower: _Follower) -> None:
        for wake in list(follower.tenants.values()):
            wake()


def _host(url: str) -> str:
    """The host part of a Redis URL, never its password."""
    return url.rsplit("@", 1)[-1]
