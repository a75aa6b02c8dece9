"""A message's record: forward-only states, timestamps, change feed, expiry."""

from collections.abc import Callable
from datetime import timedelta

import redis

from wasp import contract
from wasp.messages import MessageStore
from wasp.timestamps import utc_now

TENANT = "acme"  # the tenant of the `store` and `changes` fixtures (conftest.py)


def _create(store: MessageStore, message_id: str = "m1") -> None:
    now = utc_now()
    assert store.create(message_id, phone="+4915112345678", created_at=now, expires_at=now)


def test_a_message_moves_forward_with_a_timestamp_per_state(store: MessageStore) -> None:
    _create(store)
    for state in ("sending", "sent", "delivered", "read"):
        assert store.transition("m1", state)
    status = store.get("m1")
    assert status is not None
    assert status.state == "read"
    assert set(status.timestamps) == {"queued", "sending", "sent", "delivered", "read"}
    assert status.is_final


def test_state_never_moves_backwards(store: MessageStore) -> None:
    _create(store)
    store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    assert store.transition("m1", "read")
    assert not store.transition("m1", "delivered")  # a late receipt
    assert not store.transition("m1", "queued")
    assert not store.fail("m1", "send_error", "too late to fail")
    status = store.get("m1")
    assert status is not None
    assert status.state == "read"
    assert status.whatsapp_id == "W1"


def test_a_failed_message_stays_failed_with_its_reason(store: MessageStore) -> None:
    _create(store)
    assert store.fail("m1", "not_on_whatsapp", "+4915112345678 has no WhatsApp account")
    assert not store.transition("m1", "sent")
    status = store.get("m1")
    assert status is not None
    assert (status.state, status.reason) == ("failed", "not_on_whatsapp")
    assert status.error == "+4915112345678 has no WhatsApp account"


def test_creating_twice_keeps_the_first(store: MessageStore) -> None:
    _create(store)
    store.transition("m1", "sending")
    later = utc_now() + timedelta(hours=1)
    assert not store.create("m1", phone="+1", created_at=later, expires_at=later)
    status = store.get("m1")
    assert status is not None
    assert (status.state, status.phone) == ("sending", "+4915112345678")


def test_every_change_is_published_as_json(
    store: MessageStore, changes: Callable[[], list[dict[str, str]]]
) -> None:
    _create(store)
    store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    store.transition("m1", "delivered")  # published
    store.transition("m1", "delivered")  # not a change: not published
    seen = changes()
    assert [c["state"] for c in seen] == ["queued", "sent", "delivered"]
    assert all(c["message_id"] == "m1" for c in seen)
    assert seen[1]["whatsapp_id"] == "W1"


def test_messages_expire_after_the_documented_retention(
    store: MessageStore, redis_client: redis.Redis
) -> None:
    _create(store)
    ttl = redis_client.ttl(contract.message_key(TENANT, "m1"))
    assert contract.MESSAGE_RETENTION_SECONDS - 5 < ttl <= contract.MESSAGE_RETENTION_SECONDS


def test_receipts_never_create_a_message_that_is_gone(store: MessageStore) -> None:
    assert not store.transition("gone", "read", must_exist=True)
    assert store.get("gone") is None
