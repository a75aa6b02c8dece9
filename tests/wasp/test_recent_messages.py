"""``WaspClient.recent_messages`` (what ``kubectl wasp messages`` lists), as the tenant API user."""

from __future__ import annotations

import redis

from harness.redis_server import RedisServer
from wasp import contract, redis_acl
from wasp.client import WaspClient

PHONE = "+4915112345678"


def api_client(admin: redis.Redis, server: RedisServer, tenant: str) -> WaspClient:
    """A client with the tenant API's Redis user, made with the operator's rules."""
    user = contract.api_redis_user(tenant)
    arguments = redis_acl.setuser_arguments(redis_acl.api_user_rules(tenant), "pw")
    admin.execute_command("ACL", "SETUSER", user, *arguments)  # type: ignore[no-untyped-call]
    return WaspClient.from_url(f"redis://{user}:pw@127.0.0.1:{server.port}/0", tenant)


def test_recent_messages_lists_the_newest_first_with_the_api_users_rights(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    with (
        api_client(redis_client, redis_server, "acme") as acme,
        api_client(redis_client, redis_server, "other") as other,
    ):
        sent = [acme.send_otp(PHONE, f"12345{n}", message_id=f"m{n}") for n in range(3)]
        other.send_otp(PHONE, "999999", message_id="theirs")

        listed = acme.recent_messages(10)
        assert [status.message_id for status in listed] == list(reversed(sent))
        assert {status.state for status in listed} == {"queued"}
        assert [status.message_id for status in acme.recent_messages(2)] == ["m2", "m1"]
        assert acme.recent_messages(0) == []
        assert [status.message_id for status in other.recent_messages(10)] == ["theirs"]
