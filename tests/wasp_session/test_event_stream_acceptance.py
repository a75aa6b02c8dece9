"""The durable event stream end to end: a real session (simulator), a consumer that was away.

Issue 12's acceptance: stop the consumer, send 100 OTPs, start it again: it
receives every state change of all 100, none twice within its group, in
order per message. The consumer is the tenant's API, with the Redis user
the operator gives it (``wasp.redis_acl``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess
from wasp import StreamEvent, WaspClient, contract, redis_acl

TENANT = "acme"
PHONE = "+4915112345678"
COUNT = 100
GROUP = "orders-api"
FAST = {contract.ENV_RATE_PER_MINUTE: "10000000"}  # pacing is not what this is about


def api_client(admin: redis.Redis, server: RedisServer) -> WaspClient:
    user = contract.api_redis_user(TENANT)
    arguments = redis_acl.setuser_arguments(redis_acl.api_user_rules(TENANT), "pw")
    admin.execute_command("ACL", "SETUSER", user, *arguments)  # type: ignore[no-untyped-call]
    return WaspClient.from_url(f"redis://{user}:pw@127.0.0.1:{server.port}/0", TENANT)


def wait_until_read(admin: redis.Redis, ids: list[str], process: SessionProcess) -> None:
    deadline = time.monotonic() + 120
    while True:
        pipe = admin.pipeline(transaction=False)
        for message_id in ids:
            pipe.hget(contract.message_key(TENANT, message_id), contract.MESSAGE_STATE)
        states = pipe.execute()
        if all(state == "read" for state in states):
            return
        if time.monotonic() > deadline:
            msg = f"not all read: {sorted(set(states))}\n{process.process.log_tail()}"
            raise AssertionError(msg)
        time.sleep(0.5)


@pytest.mark.stream
def test_a_consumer_that_was_stopped_gets_every_change_of_100_otps_once_and_in_order(
    start_session: Callable[..., SessionProcess],
    redis_server: RedisServer,
    redis_client: redis.Redis,
) -> None:
    pod = start_session(**FAST)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    with api_client(redis_client, redis_server) as api:
        before = list(api.consume_events(GROUP, "api-1", timeout=1))  # then the API stops
        phases = [event.fields["phase"] for event in before if event.kind == "session"]
        assert phases[-1] == "Connected"
        assert "AwaitingPairing" in phases

        ids = [api.send_otp(PHONE, "123456", message_id=f"otp-{n:03d}") for n in range(COUNT)]
        wait_until_read(redis_client, ids, pod)

        after = list(api.consume_events(GROUP, "api-1", timeout=2))  # the API is back
        assert list(api.consume_events(GROUP, "api-1", timeout=0.5)) == []

    entry_ids = [event.id for event in before + after]
    assert len(entry_ids) == len(set(entry_ids)), "an entry was delivered twice"
    changes: dict[str, list[StreamEvent]] = defaultdict(list)
    for event in after:
        assert event.kind == contract.EVENT_KIND_MESSAGE, event
        changes[event.fields["message_id"]].append(event)
    assert sorted(changes) == ids
    for message_id in ids:
        stamped = redis_client.hgetall(contract.message_key(TENANT, message_id))
        recorded = {  # in the forward order of the states
            state: stamped[contract.message_state_at_field(state)]
            for state in contract.MESSAGE_STATES
            if contract.message_state_at_field(state) in stamped
        }
        got = [(event.fields["state"], event.fields["at"]) for event in changes[message_id]]
        # Every change the message's record shows, each once, in the order of the states.
        assert got == list(recorded.items()), message_id
        assert [state for state, _ in got][:3] == ["queued", "sending", "sent"]
        assert got[-1][0] == "read"
