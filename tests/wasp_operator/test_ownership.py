"""Who owns a tenant lives in its Redis: the first claim wins, only the owner forgets it."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aioredis

from harness.redis_server import RedisServer
from wasp import contract
from wasp_operator import ownership

pytestmark = pytest.mark.isolation

OWNER, IMPOSTOR = "uid-owner", "uid-impostor"
USERS = (contract.session_redis_user("acme"), contract.api_redis_user("acme"))


def other_spelling(server: RedisServer) -> str:
    """The same server, spelled as another Secret might: a host name, no database."""
    return f"redis://localhost:{server.port}"


async def claim(url: str, tenant: str, uid: str) -> str:
    async with aioredis.Redis.from_url(url, decode_responses=True) as client:
        return await ownership.claim(client, tenant, uid)


async def release(url: str, tenant: str, uid: str) -> bool:
    async with aioredis.Redis.from_url(url, decode_responses=True) as client:
        return await ownership.release(client, tenant, uid, USERS)


def test_the_first_claim_owns_the_tenant_however_the_url_is_spelled(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    assert asyncio.run(claim(redis_server.url, "acme", OWNER)) == OWNER
    assert asyncio.run(claim(other_spelling(redis_server), "acme", IMPOSTOR)) == OWNER
    assert asyncio.run(claim(redis_server.url, "acme", OWNER)) == OWNER, "claiming again is a no-op"
    assert asyncio.run(claim(other_spelling(redis_server), "globex", IMPOSTOR)) == IMPOSTOR
    assert redis_client.get(contract.owner_key("acme")) == OWNER


def seed(client: redis.Redis) -> None:
    for key in contract.keys_deleted_with_session("acme"):
        client.set(key, "x")
    client.rpush(f"rq:queue:{contract.delivery_queue('acme')}", "acme_m1")
    for user in USERS:
        client.acl_setuser(user, enabled=True, passwords=["+secret"], keys=["wasp:acme:*"])
    client.set(contract.owner_key("acme"), OWNER)


def test_a_resource_that_is_not_the_owner_forgets_nothing(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    seed(redis_client)
    assert asyncio.run(release(other_spelling(redis_server), "acme", IMPOSTOR)) is False
    for key in contract.keys_deleted_with_session("acme"):
        assert redis_client.exists(key), key
    assert redis_client.get(contract.owner_key("acme")) == OWNER
    assert set(USERS) <= set(redis_client.acl_users())


def test_nobody_forgets_an_unowned_tenant(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set(contract.auth_key("acme"), "store")
    assert asyncio.run(release(redis_server.url, "acme", OWNER)) is False
    assert redis_client.get(contract.auth_key("acme")) == "store"


def test_the_owner_forgets_its_users_and_keys_and_nothing_else(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    seed(redis_client)
    redis_client.set(contract.auth_key("globex"), "another tenant's store")
    redis_client.set(contract.lease_fence_key("acme"), "9")
    redis_client.hset(contract.message_key("acme", "m1"), contract.MESSAGE_STATE, "read")

    assert asyncio.run(release(other_spelling(redis_server), "acme", OWNER)) is True

    assert redis_client.exists(*contract.keys_deleted_with_session("acme")) == 0
    assert not set(USERS) & set(redis_client.acl_users())
    assert redis_client.get(contract.auth_key("globex")) == "another tenant's store"
    assert redis_client.get(contract.lease_fence_key("acme")) == "9", "tokens never repeat"
    assert redis_client.hget(contract.message_key("acme", "m1"), contract.MESSAGE_STATE) == "read"
    # The tenant is free again: the next resource that claims it owns it.
    assert asyncio.run(claim(redis_server.url, "acme", IMPOSTOR)) == IMPOSTOR
