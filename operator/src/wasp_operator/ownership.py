"""Which WhatsAppSession owns a tenant on a Redis: recorded in that Redis, never in memory.

Owns ``contract.owner_key(tenant)``: the uid of the owning resource, set once
(``SET NX``) before the operator makes anything for a session, and deleted
last, by the owner's cleanup alone. That cleanup also deletes the tenant's
RQ queue and its jobs (``wasp.redis_acl.rq_tenant_key_patterns``): a
deleted session's OTPs are never sent, and its queue does not outlive it.
Because the record lives in the Redis the tenant's data lives in, it holds
whatever the operator's restarts, replicas or spellings of the Redis URL:
two URLs of one server see one owner.

It never decides what a conflict means for the resource (``supervisor.py``
and ``status.py`` do) and never deletes anything of a tenant for a resource
that is not its owner.
"""

from __future__ import annotations

from collections.abc import Iterable
from fnmatch import fnmatchcase

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wasp import contract, redis_acl
from wasp_operator.errors import redis_failure

# RQ's global set of queue keys (``Queue.redis_queues_keys``), and how many keys go per UNLINK.
_RQ_QUEUES = "rq:queues"
_UNLINK_BATCH = 500

# Deletes the tenant's keys in order (the owner key last) if, and only if, the
# owner key still holds this resource's uid: atomically, so a cleanup can
# never delete what another resource claimed in between.
_RELEASE = """
if redis.call('GET', KEYS[#KEYS]) ~= ARGV[1] then
  return 0
end
for index = 1, #KEYS do
  redis.call('DEL', KEYS[index])
end
return 1
"""


async def claim(client: aioredis.Redis, tenant: str, uid: str) -> str:
    """Claim ``tenant`` for the resource ``uid`` unless it is owned; the owner's uid after.

    One ``SET NX GET``: the tenant's owner is whoever set the key first.
    """
    try:
        previous = await client.set(contract.owner_key(tenant), uid, nx=True, get=True)
    except (RedisError, OSError) as error:
        msg = f"cannot read the owner of tenant {tenant}"
        raise redis_failure(msg, error) from error
    return uid if previous is None else str(previous)


async def owner(client: aioredis.Redis, tenant: str) -> str | None:
    """The uid of the resource that owns ``tenant``, if any."""
    try:
        found = await client.get(contract.owner_key(tenant))
    except (RedisError, OSError) as error:
        msg = f"cannot read the owner of tenant {tenant}"
        raise redis_failure(msg, error) from error
    return None if found is None else str(found)


async def release(client: aioredis.Redis, tenant: str, uid: str, usernames: Iterable[str]) -> bool:
    """As the owner ``uid``: delete the tenant's Redis users, then its keys, owner key last.

    Returns False, touching nothing, when ``uid`` does not own the tenant
    (another resource does, or nobody does).
    """
    keys = contract.keys_deleted_with_session(tenant)
    if keys[-1] != contract.owner_key(tenant):  # pragma: no cover - a contract invariant
        msg = "keys_deleted_with_session must end with the owner key"
        raise AssertionError(msg)
    if await owner(client, tenant) != uid:
        return False
    names = list(usernames)
    try:
        if names:  # while the owner key stands, no other resource can make them again
            await client.execute_command("ACL", "DELUSER", *names)  # type: ignore[no-untyped-call]
        await _delete_queue(client, tenant)  # no identity of the tenant can enqueue any more
        released = await client.eval(_RELEASE, len(keys), *keys, uid)
    except (RedisError, OSError) as error:
        msg = f"cannot forget tenant {tenant}"
        raise redis_failure(msg, error) from error
    return bool(released)


async def _delete_queue(client: aioredis.Redis, tenant: str) -> None:
    """Delete the tenant's RQ queue, registries and job keys (one SCAN of ``rq:*``)."""
    patterns = redis_acl.rq_tenant_key_patterns(tenant)
    doomed: list[str] = []
    async for found in client.scan_iter(match="rq:*", count=1000):
        key = found.decode() if isinstance(found, bytes) else str(found)
        if any(fnmatchcase(key, pattern) for pattern in patterns):
            doomed.append(key)
    for start in range(0, len(doomed), _UNLINK_BATCH):
        await client.unlink(*doomed[start : start + _UNLINK_BATCH])
    await client.srem(_RQ_QUEUES, f"rq:queue:{contract.delivery_queue(tenant)}")


__all__ = ["claim", "owner", "release"]
