"""A tenant's event stream with the operator's Redis users: its own API reads it, no other tenant.

The users are made with ``wasp.redis_acl``'s rules, as the operator makes them.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from harness.redis_server import RedisServer
from wasp import WaspClient, contract, redis_acl

PHONE = "+4915112345678"


def api_url(admin: redis.Redis, server: RedisServer, tenant: str) -> str:
    """The URL of the tenant API's Redis user (made with the operator's rules)."""
    user = contract.api_redis_user(tenant)
    arguments = redis_acl.setuser_arguments(redis_acl.api_user_rules(tenant), "pw-" + tenant)
    admin.execute_command("ACL", "SETUSER", user, *arguments)  # type: ignore[no-untyped-call]
    return f"redis://{user}:pw-{tenant}@127.0.0.1:{server.port}/0"


@pytest.mark.isolation
def test_only_the_tenants_own_api_user_reaches_its_event_stream(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    key = contract.event_stream_key("acme")
    with WaspClient.from_url(api_url(redis_client, redis_server, "acme"), "acme") as acme:
        acme.send_otp(PHONE, "123456", message_id="m1")  # its creation appends
        events = list(acme.consume_events("api", "api-1", timeout=0.3))
        assert [event.fields["message_id"] for event in events] == ["m1"]

    with redis.Redis.from_url(api_url(redis_client, redis_server, "other")) as other:
        attempts: dict[str, Callable[[], object]] = {
            "read with a group": lambda: other.xreadgroup("api", "x", {key: ">"}),
            "make a group": lambda: other.xgroup_create(key, "spy", id="0"),
            "read": lambda: other.xrange(key),
            "look inside": lambda: other.xinfo_stream(key),
            "append": lambda: other.xadd(key, {"kind": "message", "state": "read"}),
            "acknowledge": lambda: other.xack(key, "api", "0-1"),
            "delete": lambda: other.delete(key),
        }
        allowed = []
        for what, attempt in attempts.items():
            try:
                attempt()
            except redis.exceptions.NoPermissionError:
                continue
            allowed.append(what)
        assert allowed == [], f"another tenant's API could {allowed} acme's event stream"
    assert redis_client.xlen(key) == 1
