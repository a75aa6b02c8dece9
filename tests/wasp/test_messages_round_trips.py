"""The worker's one-round-trip moves keep every rule of the step-by-step ones."""

from collections.abc import Callable
from datetime import timedelta

import redis

from wasp import contract
from wasp.messages import MessageStore, Start, decode_start
from wasp.timestamps import utc_now

TENANT = "acme"  # the tenant of the `store` and `changes` fixtures (conftest.py)
TTL = timedelta(hours=1)
SENDING = {contract.MESSAGE_ATTEMPTS: "1", contract.MESSAGE_PHONE: "+4915112345678"}


def _start(redis_client: redis.Redis, store: MessageStore, message_id: str = "m1") -> Start:
    now = utc_now()
    pipe = redis_client.pipeline(transaction=False)
    store.ensure_loaded()
    store.start_in(
        pipe,
        message_id,
        created_at=now,
        expires_at=now + TTL,
        earliest_live=now - TTL,
        fields=SENDING,
    )
    return decode_start(pipe.execute()[0])


def test_a_new_job_is_created_and_moved_to_sending_publishing_both(
    redis_client: redis.Redis, store: MessageStore, changes: Callable[[], list[dict[str, str]]]
) -> None:
    started = _start(redis_client, store)
    assert (started.sending, started.state) == (True, "sending")
    status = store.get("m1")
    assert status is not None
    assert (status.state, status.attempts, status.phone) == ("sending", 1, "+4915112345678")
    assert set(status.timestamps) == {"queued", "sending"}
    assert status.expires_at is not None
    assert [c["state"] for c in changes()] == ["queued", "sending"]


def test_a_message_handled_already_is_left_alone(
    redis_client: redis.Redis, store: MessageStore
) -> None:
    _start(redis_client, store)
    assert store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    started = _start(redis_client, store)
    assert (started.sending, started.state) == (False, "sent")
    status = store.get("m1")
    assert status is not None
    assert status.state == "sent"


def test_a_message_first_created_beyond_its_ttl_stays_queued(
    redis_client: redis.Redis, store: MessageStore
) -> None:
    long_ago = utc_now() - 2 * TTL
    store.create("m1", phone=None, created_at=long_ago, expires_at=long_ago + TTL)
    started = _start(redis_client, store)
    assert (started.sending, started.state) == (False, "queued")
    assert started.created_at is not None
    assert started.created_at < utc_now() - TTL


def test_a_receipt_moves_the_message_its_whatsapp_id_names(
    redis_client: redis.Redis, store: MessageStore
) -> None:
    _start(redis_client, store)
    store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    index = contract.whatsapp_id_key(TENANT, "W1")
    redis_client.set(index, "m1")
    assert store.transition_referenced(index, "read") == (True, "m1")
    assert store.transition_referenced(index, "delivered") == (False, "m1")  # never backwards
    status = store.get("m1")
    assert status is not None
    assert status.state == "read"


def test_a_receipt_for_an_unknown_whatsapp_id_changes_nothing(
    redis_client: redis.Redis, store: MessageStore
) -> None:
    index = contract.whatsapp_id_key(TENANT, "W-unknown")
    assert store.transition_referenced(index, "read") == (False, None)
    redis_client.set(index, "gone")  # the message itself already expired from Redis
    assert store.transition_referenced(index, "read") == (False, "gone")
    assert store.get("gone") is None
