"""The status relay: one pattern subscription follows every tenant on a Redis."""

from __future__ import annotations

import asyncio
import functools
import json

import redis

from harness.redis_server import RedisServer
from wasp import contract
from wasp_operator.relay import StatusRelay

TIMEOUT = 10.0


async def until(condition: object, what: str) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def test_one_subscription_follows_every_tenant_and_wakes_only_the_one_reported(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        relay = StatusRelay()
        woken: list[str] = []
        try:
            for tenant in ("acme", "globex", "initech"):
                holder = relay.register(
                    redis_server.url,
                    tenant,
                    f"ns/{tenant}",
                    functools.partial(woken.append, tenant),
                )
                assert holder == f"ns/{tenant}"
            await until(lambda: len(woken) >= 3, "a wake for each tenant once subscribed")
            assert redis_client.pubsub_numpat() == 1
            woken.clear()

            report = {contract.STATUS_PHASE: "Connected", contract.STATUS_POD: "p"}
            redis_client.publish(contract.events_channel("globex"), json.dumps(report))
            await until(lambda: woken, "the reported tenant is woken")
            assert woken == ["globex"]
            assert relay.take(redis_server.url, "globex") == report
            assert relay.take(redis_server.url, "globex") is None
            assert relay.take(redis_server.url, "acme") is None
        finally:
            await relay.close()

    asyncio.run(scenario())


def test_a_tenant_is_held_by_one_resource_at_a_time(redis_server: RedisServer) -> None:
    async def scenario() -> None:
        relay = StatusRelay()
        try:
            assert relay.register(redis_server.url, "acme", "a/acme", lambda: None) == "a/acme"
            assert relay.register(redis_server.url, "acme", "b/acme", lambda: None) == "a/acme"
            relay.unregister(redis_server.url, "acme", "b/acme")  # not the holder: no effect
            assert relay.holder(redis_server.url, "acme") == "a/acme"
            relay.unregister(redis_server.url, "acme", "a/acme")
            assert relay.register(redis_server.url, "acme", "b/acme", lambda: None) == "b/acme"
        finally:
            await relay.close()

    asyncio.run(scenario())


def test_forgetting_a_tenant_deletes_its_auth_lease_and_status_only(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    for tenant in ("acme", "globex"):
        redis_client.set(contract.auth_key(tenant), "store")
        redis_client.set(contract.lease_key(tenant), "token")
        redis_client.hset(contract.status_key(tenant), contract.STATUS_PHASE, "Connected")

    async def scenario() -> None:
        relay = StatusRelay()
        try:
            assert (await relay.read_status(redis_server.url, "acme")) == {
                contract.STATUS_PHASE: "Connected"
            }
            await relay.forget_tenant(redis_server.url, "acme")
        finally:
            await relay.close()

    asyncio.run(scenario())
    assert (
        redis_client.exists(
            contract.auth_key("acme"), contract.lease_key("acme"), contract.status_key("acme")
        )
        == 0
    )
    assert (
        redis_client.exists(
            contract.auth_key("globex"), contract.lease_key("globex"), contract.status_key("globex")
        )
        == 3
    )
