"""Session phase changes in the durable event stream: one entry per change, only when written.

``StatusBoard`` against a real redis-server: the entry is appended by the same
script that writes the status, so a write the lease refuses appends nothing.
"""

from __future__ import annotations

import redis

from wasp import contract
from wasp.event_stream import EventStream
from wasp_session.lease import Lease
from wasp_session.status import StatusBoard


def phase_entries(client: redis.Redis) -> list[dict[str, str]]:
    """The entries not read before (a consumer group that acknowledges what it read)."""
    stream = EventStream(client, "acme")
    stream.ensure_group("api")
    events = stream.read("api", "c")
    stream.ack("api", *(event.id for event in events))
    stream.close()
    entries = [dict(event.fields) for event in events]
    assert {entry[contract.EVENT_KIND] for entry in entries} <= {contract.EVENT_KIND_SESSION}
    return entries


def test_each_phase_change_is_one_entry_with_its_reason_and_time(
    redis_client: redis.Redis,
) -> None:
    lease = Lease(redis_client, "acme", "pod-a", ttl=30)
    board = StatusBoard(redis_client, "acme", "pod-a", lease)
    assert lease.try_acquire()
    board.set_phase("AwaitingPairing", extra={contract.STATUS_QR: "2@abc"})
    board.update({contract.STATUS_QR: "2@def"})  # a new QR code: no phase change
    board.record_error("SendFailed", "one send failed")  # no phase change either
    written = board.set_phase("Reconnecting", reason="StreamError", message="the socket closed")
    board.set_phase("Reconnecting", reason="StreamError", message="again")  # same phase

    entries = phase_entries(redis_client)
    assert [entry["phase"] for entry in entries] == ["AwaitingPairing", "Reconnecting"]
    assert entries[1]["reason"] == "StreamError"
    assert entries[1]["message"] == "the socket closed"
    assert entries[1][contract.EVENT_AT] == written[contract.STATUS_UPDATED_AT]
    assert "2@abc" not in str(entries)  # a QR code is no phase: never in the stream


def test_a_refusal_is_an_entry_and_a_write_without_the_lease_is_none(
    redis_client: redis.Redis,
) -> None:
    lease = Lease(redis_client, "acme", "pod-a", ttl=30)
    board = StatusBoard(redis_client, "acme", "pod-a", lease)
    assert board.record_refusal("OwnedElsewhere", "another resource owns tenant acme")
    entries = phase_entries(redis_client)
    assert [(e["phase"], e["reason"]) for e in entries] == [("Failed", "OwnedElsewhere")]

    holder = Lease(redis_client, "acme", "pod-b", ttl=30)
    assert holder.try_acquire()
    assert not board.record_refusal("Other", "refused while pod-b holds the lease")
    assert phase_entries(redis_client) == []  # nothing new
