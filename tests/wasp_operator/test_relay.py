"""The relay: one subscription wakes every follower; only the lease holder's status is relayed."""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

import pytest
import redis

from harness.redis_server import RedisServer
from wasp import contract
from wasp_operator.relay import Reading, StatusRelay, not_from_lease_holder

TIMEOUT = 10.0
POD = "wasp-session-acme"


async def until(condition: object, what: str) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not condition():
        assert loop.time() < deadline, f"never happened: {what}"
        await asyncio.sleep(0.02)


def test_one_subscription_follows_every_tenant_and_wakes_only_its_followers(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    async def scenario() -> None:
        relay = StatusRelay()
        woken: list[str] = []
        try:
            for tenant in ("acme", "globex", "initech"):
                relay.follow(
                    redis_server.url,
                    tenant,
                    f"ns/{tenant}",
                    functools.partial(woken.append, tenant),
                )
            # An impostor of globex follows it too: both look again when globex reports.
            relay.follow(
                redis_server.url, "globex", "ns/twin", functools.partial(woken.append, "twin")
            )
            await until(lambda: len(woken) >= 4, "a wake for each follower once subscribed")
            assert redis_client.pubsub_numpat() == 1
            woken.clear()

            redis_client.publish(contract.events_channel("globex"), json.dumps({"phase": "x"}))
            await until(lambda: len(woken) >= 2, "globex's followers are woken")
            await asyncio.sleep(0.2)
            assert sorted(woken) == ["globex", "twin"]

            woken.clear()
            relay.unfollow(redis_server.url, "globex", "ns/twin")
            redis_client.publish(contract.events_channel("globex"), "not even JSON")
            await until(lambda: woken, "an event is a wake-up, whatever it carries")
            await asyncio.sleep(0.2)
            assert woken == ["globex"]
        finally:
            await relay.close()

    asyncio.run(scenario())


def holder_writes(client: redis.Redis, tenant: str, fields: dict[str, str], pod: str = POD) -> int:
    """Take the lease as a session pod does, and write the status with its token."""
    token = int(client.incr(contract.lease_fence_key(tenant)))
    client.set(contract.lease_key(tenant), f"{token} {pod}")
    written = fields | {contract.STATUS_POD: pod, contract.STATUS_LEASE_TOKEN: str(token)}
    client.hset(contract.status_key(tenant), mapping=dict[Any, Any](written))
    return token


def test_a_reading_is_the_status_hash_lease_and_fence_of_one_tenant(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    token = holder_writes(redis_client, "acme", {contract.STATUS_PHASE: "Connected"})
    redis_client.hset(contract.status_key("globex"), contract.STATUS_PHASE, "Banned")

    async def scenario() -> tuple[Reading, Reading]:
        relay = StatusRelay()
        try:
            return (
                await relay.read(redis_server.url, "acme"),
                await relay.read(redis_server.url, "initech"),
            )
        finally:
            await relay.close()

    acme, nobody = asyncio.run(scenario())
    assert acme == Reading(
        status={
            contract.STATUS_PHASE: "Connected",
            contract.STATUS_POD: POD,
            contract.STATUS_LEASE_TOKEN: str(token),
        },
        lease=f"{token} {POD}",
        fence=str(token),
    )
    assert not_from_lease_holder(acme) is None
    assert nobody == Reading(status={}, lease=None, fence=None)


def test_a_thousand_tenants_reporting_at_once_are_all_read(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    """More reads at once than redis-py's pool allows connections (100): they queue, none fails."""
    tenants = [f"t{index:04d}" for index in range(1000)]
    with redis_client.pipeline(transaction=False) as pipe:
        for tenant in tenants:
            pipe.hset(contract.status_key(tenant), contract.STATUS_PHASE, f"phase-of-{tenant}")
        pipe.execute()

    async def scenario() -> list[Reading]:
        relay = StatusRelay()
        try:
            for tenant in tenants:
                relay.follow(redis_server.url, tenant, f"ns/{tenant}", lambda: None)
            return await asyncio.gather(*(relay.read(redis_server.url, t) for t in tenants))
        finally:
            await relay.close()

    readings = asyncio.run(scenario())
    assert [r.status[contract.STATUS_PHASE] for r in readings] == [
        f"phase-of-{tenant}" for tenant in tenants
    ]


GENUINE = {contract.STATUS_PHASE: "Connected", contract.STATUS_POD: POD}


@pytest.mark.isolation
@pytest.mark.parametrize(
    ("status", "lease", "fence", "refused"),
    [
        pytest.param(GENUINE | {"lease_token": "7"}, f"7 {POD}", "7", False, id="the holder"),
        pytest.param(GENUINE | {"lease_token": "7"}, None, "7", False, id="the last holder"),
        pytest.param(GENUINE, f"7 {POD}", "7", True, id="no token"),
        pytest.param(GENUINE | {"lease_token": ""}, None, None, True, id="an empty token"),
        pytest.param(GENUINE | {"lease_token": "6"}, f"7 {POD}", "7", True, id="an old token"),
        pytest.param(GENUINE | {"lease_token": "6"}, None, "7", True, id="an old holder"),
        pytest.param(GENUINE | {"lease_token": "8"}, f"7 {POD}", "7", True, id="a made-up token"),
        pytest.param(GENUINE | {"lease_token": "7"}, None, None, True, id="no lease ever"),
        pytest.param(
            GENUINE | {"lease_token": "7"}, "7 wasp-session-other", "7", True, id="another pod"
        ),
        pytest.param(
            GENUINE | {"lease_token": "7", "pod": "wasp-session-other"},
            f"7 {POD}",
            "7",
            True,
            id="right token, another pod",
        ),
    ],
)
def test_only_the_lease_holders_status_is_relayed(
    status: dict[str, str], lease: str | None, fence: str | None, *, refused: bool
) -> None:
    why = not_from_lease_holder(Reading(status=status, lease=lease, fence=fence))
    assert (why is not None) is refused, why
