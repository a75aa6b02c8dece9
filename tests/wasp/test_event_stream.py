"""The tenant's durable event stream, against a real redis-server.

What a tenant's API notices: every message state change is an entry, in the
order of its states; a consumer that stops gets its unacknowledged entries
again, then new ones, never an acknowledged one twice; entries it can no
longer get (trimmed, or the stream gone) are said once, never silently; junk
that the tenant's API wrote into its own stream neither crashes a reader nor
stops a message from moving.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasp import EventsLostError, StreamEvent, WaspClient, contract
from wasp.event_stream import EventStream
from wasp.messages import MessageStore
from wasp.timestamps import format_timestamp, utc_now

TENANT = "acme"
PHONE = "+4915112345678"
KEY = contract.event_stream_key(TENANT)


@pytest.fixture
def stream(redis_client: redis.Redis) -> Iterator[EventStream]:
    """Tenant acme's stream, through the test's decoding client."""
    events = EventStream(redis_client, TENANT)
    yield events
    events.close()


@pytest.fixture
def client(redis_client: redis.Redis) -> Iterator[WaspClient]:
    """Tenant acme's client library, through the test's decoding client."""
    with WaspClient(redis_client, TENANT) as wasp_client:
        yield wasp_client


def message_entries(events: list[StreamEvent]) -> list[tuple[str, str]]:
    return [
        (event.fields["message_id"], event.fields["state"])
        for event in events
        if event.kind == contract.EVENT_KIND_MESSAGE
    ]


def test_every_state_change_is_one_entry_in_the_order_of_the_states(
    stream: EventStream, redis_client: redis.Redis, store: MessageStore
) -> None:
    now = utc_now()
    store.create("m1", phone=PHONE, created_at=now, expires_at=now + timedelta(minutes=5))
    store.transition("m1", "sending", {contract.MESSAGE_ATTEMPTS: "1"})
    store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    assert not store.transition("m1", "sending")  # backwards: no change, no entry
    store.transition("m1", "read")
    assert not store.transition("m1", "delivered")  # a late receipt: ignored
    store.fail("m2", "not_on_whatsapp", "+49*********78 has no WhatsApp account")

    stream.ensure_group("api")
    events = stream.read("api", "api-1")
    assert message_entries(events) == [
        ("m1", "queued"),
        ("m1", "sending"),
        ("m1", "sent"),
        ("m1", "read"),
        ("m2", "failed"),
    ]
    sent = events[2].fields
    assert sent[contract.MESSAGE_WHATSAPP_ID] == "W1"
    status = store.get("m1")
    assert status is not None
    assert sent[contract.EVENT_AT] == format_timestamp(status.timestamps["sent"])
    assert events[1].fields[contract.MESSAGE_ATTEMPTS] == "1"
    failed = events[4].fields
    assert failed[contract.MESSAGE_REASON] == "not_on_whatsapp"
    assert "has no WhatsApp account" in failed[contract.MESSAGE_ERROR]
    assert all(PHONE not in str(event.fields) for event in events)  # never the number
    assert redis_client.ttl(KEY) > 0  # the stream expires a week after its last entry


def test_a_receipt_found_through_its_whatsapp_id_is_an_entry_too(
    stream: EventStream, redis_client: redis.Redis, store: MessageStore
) -> None:
    store.transition("m1", "sent", {contract.MESSAGE_WHATSAPP_ID: "W1"})
    redis_client.set(contract.whatsapp_id_key(TENANT, "W1"), "m1")
    moved, message_id = store.transition_referenced(
        contract.whatsapp_id_key(TENANT, "W1"), "delivered"
    )
    assert (moved, message_id) == (True, "m1")
    stream.ensure_group("api")
    assert message_entries(stream.read("api", "api-1")) == [("m1", "sent"), ("m1", "delivered")]


def test_a_consumer_that_stopped_gets_its_unacknowledged_entries_first_then_new_ones(
    stream: EventStream, store: MessageStore
) -> None:
    stream.ensure_group("api")
    for n in range(3):
        store.transition(f"m{n}", "queued")
    first = stream.read("api", "api-1", count=2)
    stream.ack("api", first[0].id)  # handled one, then stopped
    store.transition("m3", "queued")

    again = stream.read("api", "api-1")
    assert [event.id for event in again] == [first[1].id]  # its own pending one, alone
    stream.ack("api", *(event.id for event in again))
    rest = stream.read("api", "api-1")
    assert message_entries(rest) == [("m2", "queued"), ("m3", "queued")]
    stream.ack("api", *(event.id for event in rest))
    assert stream.read("api", "api-1") == []
    assert stream.read("api", "api-2") == []  # another consumer of the group: nothing left


def test_a_new_group_from_now_on_reads_only_what_comes_after(
    stream: EventStream, store: MessageStore
) -> None:
    store.transition("old", "queued")
    stream.ensure_group("live", start="$")
    stream.ensure_group("live", start="0")  # exists: left as it is
    store.transition("new", "queued")
    assert message_entries(stream.read("live", "c")) == [("new", "queued")]


def test_the_client_acknowledges_an_entry_when_asked_for_the_next(
    client: WaspClient,
) -> None:
    ids = [client.send_otp(PHONE, "123456", message_id=f"m{n}") for n in range(3)]
    consumer = client.consume_events("api", "api-1", timeout=0.5)
    assert next(consumer).fields["message_id"] == ids[0]
    assert next(consumer).fields["message_id"] == ids[1]
    consumer.close()  # stopped while handling the second: it comes again
    seen = [
        event.fields["message_id"] for event in client.consume_events("api", "api-1", timeout=0.5)
    ]
    assert seen == ids[1:]
    assert list(client.consume_events("api", "api-1", timeout=0.2)) == []


def test_without_auto_ack_only_what_the_caller_acknowledges_is_done(
    client: WaspClient,
) -> None:
    client.send_otp(PHONE, "123456", message_id="m1")
    client.send_otp(PHONE, "123456", message_id="m2")
    events = list(client.consume_events("api", "c", timeout=0.3, auto_ack=False))
    assert len(events) == 2
    assert client.ack_events("api", events[0].id) == 1
    again = list(client.consume_events("api", "c", timeout=0.3, auto_ack=False))
    assert [event.id for event in again] == [events[1].id]


def three_delivered_never_acknowledged(stream: EventStream, store: MessageStore) -> None:
    """Entries m0..m2, read by consumer ``api-1`` of group ``api`` and never acknowledged."""
    stream.ensure_group("api")
    for n in range(3):
        store.transition(f"m{n}", "queued")
    assert len(stream.read("api", "api-1")) == 3


def test_pending_entries_trimmed_away_are_acknowledged_and_said_once_not_returned_forever(
    stream: EventStream, redis_client: redis.Redis, store: MessageStore
) -> None:
    three_delivered_never_acknowledged(stream, store)
    redis_client.xtrim(
        KEY, maxlen=1, approximate=False
    )  # what MAXLEN does to a stream that grew too long
    store.transition("m3", "queued")

    batch = stream.read_batch("api", "api-1")
    assert batch.lost is not None
    assert batch.lost.count == 2
    assert message_entries(batch.events) == [("m2", "queued")]  # the pending one still there
    stream.ack("api", *(event.id for event in batch.events))
    batch = stream.read_batch("api", "api-1")
    assert batch.lost is None
    assert message_entries(batch.events) == [("m3", "queued")]
    assert redis_client.xpending(KEY, "api")["pending"] == 1  # only m3's, unacknowledged


def test_pending_and_unread_entries_trimmed_together_are_one_loss_with_both_counted(
    stream: EventStream, redis_client: redis.Redis, store: MessageStore
) -> None:
    three_delivered_never_acknowledged(stream, store)
    for n in range(3, 13):
        store.transition(f"m{n}", "queued")
    redis_client.xtrim(KEY, maxlen=4, approximate=False)

    batch = stream.read_batch("api", "api-1")
    assert batch.lost is not None
    assert batch.lost.count == 3 + 6
    assert message_entries(batch.events) == [(f"m{n}", "queued") for n in range(9, 13)]


def test_a_group_that_fell_behind_the_trimmed_start_is_told_how_many_it_missed(
    client: WaspClient,
    redis_client: redis.Redis,
) -> None:
    client.send_otp(PHONE, "123456", message_id="seen")
    assert [e.fields["message_id"] for e in client.consume_events("api", "c", timeout=0.3)] == [
        "seen"
    ]
    for n in range(10):  # while the API was down
        client.send_otp(PHONE, "123456", message_id=f"m{n}")
    redis_client.xtrim(KEY, maxlen=4, approximate=False)  # the stream kept only its newest entries

    with pytest.raises(EventsLostError) as caught:
        next(client.consume_events("api", "c", timeout=0.3))
    assert caught.value.count == 6
    assert "6 entries were trimmed before the group read them" in str(caught.value)
    kept = [e.fields["message_id"] for e in client.consume_events("api", "c", timeout=0.3)]
    assert kept == ["m6", "m7", "m8", "m9"]  # then the rest, and no second report


def test_a_group_made_before_any_entry_has_missed_nothing(client: WaspClient) -> None:
    assert list(client.consume_events("api", "c", timeout=0.1)) == []
    client.send_otp(PHONE, "123456", message_id="m1")
    assert [e.fields["message_id"] for e in client.consume_events("api", "c", timeout=0.3)] == [
        "m1"
    ]


def test_a_stream_that_vanished_under_a_consumer_is_made_again_and_the_loss_said(
    client: WaspClient,
    redis_client: redis.Redis,
) -> None:
    client.send_otp(PHONE, "123456", message_id="m1")
    consumer = client.consume_events("api", "c", timeout=1)
    assert next(consumer).fields["message_id"] == "m1"
    redis_client.delete(KEY)  # as when it expires after a week without entries
    client.send_otp(PHONE, "123456", message_id="m2")  # the stream again, without the group
    with pytest.raises(EventsLostError) as caught:
        next(consumer)
    assert caught.value.count is None
    assert "was made again" in str(caught.value)
    kept = [e.fields["message_id"] for e in client.consume_events("api", "c", timeout=0.3)]
    assert kept == ["m2"]


def test_a_key_that_is_no_stream_does_not_stop_a_message_from_moving(
    stream: EventStream, redis_client: redis.Redis, store: MessageStore
) -> None:
    redis_client.set(KEY, "the tenant's API wrote a string here")
    assert store.transition("m1", "queued")
    assert store.get("m1") is not None
    stream.ensure_group("api")
    assert message_entries(stream.read("api", "c")) == [("m1", "queued")]

    redis_client.set(KEY, "and again")  # under a reader: it is told, and goes on
    batch = stream.read_batch("api", "c")
    assert batch.lost is not None
    assert batch.lost.count is None
    redis_client.set(KEY, "and before a group is made")
    stream.ensure_group("other")
    assert store.transition("m1", "sending")
    assert message_entries(stream.read("other", "c")) == [("m1", "sending")]


_junk = st.binary(max_size=40) | st.text(max_size=40)


@settings(
    max_examples=60,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(entries=st.lists(st.dictionaries(_junk, _junk, min_size=1, max_size=5), max_size=5))
def test_junk_entries_from_the_tenants_api_never_crash_a_reader(
    redis_client: redis.Redis, entries: list[dict[bytes | str, bytes | str]]
) -> None:
    stream = EventStream(redis_client, TENANT)  # a decoding client: the reader must not decode
    group = f"g{next(_groups)}"
    stream.ensure_group(group, start="$")
    for entry in entries:
        redis_client.xadd(KEY, entry)  # type: ignore[arg-type]
    stream.append(contract.EVENT_KIND_INBOUND, {"sender": PHONE, "text": "hi"})
    events = stream.read(group, "c", count=100)
    assert len(events) == len(entries) + 1
    for event in events:
        assert {type(text) for pair in event.fields.items() for text in pair} <= {str}
        assert event.kind == event.fields.get(contract.EVENT_KIND, "")
    assert events[-1].kind == contract.EVENT_KIND_INBOUND
    assert stream.ack(group, *(event.id for event in events)) == len(events)
    stream.close()


_groups = itertools.count()
