"""The simulator transport itself: outbox, receipts, absent numbers, send faults."""

from __future__ import annotations

import json
import queue
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from wasp import contract
from wasp_session.transport.base import (
    Connected,
    NotConnectedError,
    QRCodeIssued,
    ReceiptReceived,
    SendError,
    TimelockedError,
    TransportEvent,
)
from wasp_session.transport.sim_commands import push_command
from wasp_session.transport.sim_device import Device, DeviceFile
from wasp_session.transport.simulator import SimulatorSettings, SimulatorTransport


def next_event(transport: SimulatorTransport, kind: type[TransportEvent]) -> TransportEvent:
    while True:
        event = transport.events.get(timeout=10)
        if isinstance(event, kind):
            return event


@pytest.fixture
def online(redis_client: redis.Redis, tmp_path: Path) -> Iterator[SimulatorTransport]:
    transport = connected(redis_client, tmp_path)
    try:
        yield transport
    finally:
        transport.stop()


def connected(redis_client: redis.Redis, tmp_path: Path) -> SimulatorTransport:
    """A simulator with a stored device, connected (commands queued before are played first)."""
    DeviceFile(tmp_path / "simulator.db").store(Device("4915100000000@s.whatsapp.net", "Acme"))
    transport = SimulatorTransport(
        redis_client, "acme", tmp_path, SimulatorSettings(qr_seconds=(5,), receipt_delay=0.05)
    )
    transport.connect()
    assert next_event(transport, Connected) == Connected("4915100000000@s.whatsapp.net", "Acme")
    return transport


def test_sends_are_recorded_and_receipts_follow(
    online: SimulatorTransport, redis_client: redis.Redis
) -> None:
    sent = online.send_text("4915112345678", "Your code is 123456.")
    outbox = [
        json.loads(x) for x in redis_client.lrange(contract.simulator_outbox_key("acme"), 0, -1)
    ]
    assert outbox == [
        {
            "to": "+4915112345678",
            "text": "Your code is 123456.",
            "whatsapp_id": sent.whatsapp_id,
            "at": sent.timestamp,
        }
    ]
    delivered = next_event(online, ReceiptReceived)
    read = next_event(online, ReceiptReceived)
    assert delivered == ReceiptReceived((sent.whatsapp_id,), "delivered", delivered.timestamp)  # type: ignore[union-attr]
    assert isinstance(read, ReceiptReceived)
    assert read.kind == "read"
    online.stop()


def test_absent_numbers_are_not_on_whatsapp(
    online: SimulatorTransport, redis_client: redis.Redis
) -> None:
    redis_client.sadd(contract.simulator_absent_key("acme"), "+4915199999999")
    assert not online.check_number("4915199999999")
    assert online.check_number("4915112345678")
    with pytest.raises(SendError) as caught:
        online.send_text("4915199999999", "x")
    assert not caught.value.transient


def test_send_faults(redis_client: redis.Redis, tmp_path: Path) -> None:
    push_command(redis_client, "acme", "fail_sends", count=1)
    push_command(redis_client, "acme", "timelock")
    online = connected(redis_client, tmp_path)  # plays the queued commands first
    try:
        with pytest.raises(SendError) as caught:
            online.send_text("4915112345678", "x")
        assert caught.value.transient
        with pytest.raises(TimelockedError):
            online.send_text("4915112345678", "x")
    finally:
        online.stop()
    with pytest.raises(NotConnectedError):
        online.send_text("4915112345678", "x")


def test_without_a_device_a_qr_window_starts(redis_client: redis.Redis, tmp_path: Path) -> None:
    transport = SimulatorTransport(
        redis_client, "acme", tmp_path, SimulatorSettings(qr_seconds=(5,), receipt_delay=0.05)
    )
    transport.connect()
    event = transport.events.get(timeout=10)
    assert isinstance(event, QRCodeIssued)
    assert event.valid_seconds == 5
    transport.stop()
    with pytest.raises(queue.Empty):
        transport.events.get(timeout=0.2)
