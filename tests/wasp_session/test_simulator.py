"""The simulator transport itself: outbox, receipts, absent numbers, send faults.

Several ``SimulatorTransport`` objects of one tenant stand for several session
processes: pending receipts live in Redis, so what one leaves behind another plays.
The last test checks the same with real ``wasp-session`` processes and a SIGKILL.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key
from wasp import WaspClient, contract
from wasp_session.transport.base import (
    Connected,
    NotConnectedError,
    PairSucceeded,
    QRCodeIssued,
    ReceiptReceived,
    SendError,
    TimelockedError,
    TransportEvent,
)
from wasp_session.transport.sim_commands import CommandError, parse_command, push_command
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


def connected(
    redis_client: redis.Redis, tmp_path: Path, receipt_delay: float = 0.05
) -> SimulatorTransport:
    """A simulator with a stored device, connected (commands queued before are played first)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    DeviceFile(tmp_path / "simulator.db").store(Device("4915100000000@s.whatsapp.net", "Acme"))
    transport = SimulatorTransport(
        redis_client,
        "acme",
        tmp_path,
        SimulatorSettings(qr_seconds=(5,), receipt_delay=receipt_delay),
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


def pending_receipts(redis_client: redis.Redis) -> dict[tuple[str, str], float]:
    """The receipts waiting in Redis: (WhatsApp id, kind) -> due time."""
    key = contract.simulator_receipts_key("acme")
    members: list[tuple[str, float]] = redis_client.zrange(key, 0, -1, withscores=True)  # type: ignore[assignment]
    pending = {}
    for member, score in members:
        receipt = json.loads(member)
        pending[receipt["whatsapp_id"], receipt["kind"]] = score
    return pending


def receipts_of(transport: SimulatorTransport, count: int) -> list[ReceiptReceived]:
    found: list[ReceiptReceived] = []
    while len(found) < count:
        event = next_event(transport, ReceiptReceived)
        assert isinstance(event, ReceiptReceived)
        found.append(event)
    return found


def test_a_send_leaves_its_receipts_in_redis_for_the_next_process(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    first = connected(redis_client, tmp_path / "first", receipt_delay=0.5)
    sent = first.send_text("4915112345678", "Your code is 123456.")
    first.stop()  # the process is gone before the receipts are due
    at = sent.timestamp
    assert pending_receipts(redis_client) == {
        (sent.whatsapp_id, "delivered"): pytest.approx(at + 0.5),
        (sent.whatsapp_id, "read"): pytest.approx(at + 1.0),
    }
    second = connected(redis_client, tmp_path / "second", receipt_delay=0.5)
    try:
        delivered, read = receipts_of(second, 2)
    finally:
        second.stop()
    assert (delivered.whatsapp_ids, delivered.kind) == ((sent.whatsapp_id,), "delivered")
    assert (read.whatsapp_ids, read.kind) == ((sent.whatsapp_id,), "read")
    assert (delivered.timestamp, read.timestamp) == pytest.approx((at + 0.5, at + 1.0))
    assert time.time() >= at + 1.0
    assert pending_receipts(redis_client) == {}


def test_two_connected_simulators_never_play_one_receipt_twice(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    one = connected(redis_client, tmp_path / "one", receipt_delay=0.02)
    two = connected(redis_client, tmp_path / "two", receipt_delay=0.02)
    try:
        ids = [one.send_text("4915112345678", f"code {n}").whatsapp_id for n in range(40)]
        played: list[tuple[str, str]] = []
        deadline = time.monotonic() + 20
        while len(played) < 2 * len(ids) and time.monotonic() < deadline:
            for transport in (one, two):
                try:
                    event = transport.events.get(timeout=0.01)
                except queue.Empty:
                    continue
                if isinstance(event, ReceiptReceived):
                    played.extend((whatsapp_id, event.kind) for whatsapp_id in event.whatsapp_ids)
        time.sleep(0.3)  # anything played twice would have arrived by now
        for transport in (one, two):
            while not transport.events.empty():
                event = transport.events.get()
                if isinstance(event, ReceiptReceived):
                    played.extend((whatsapp_id, event.kind) for whatsapp_id in event.whatsapp_ids)
    finally:
        one.stop()
        two.stop()
    assert sorted(played) == sorted((i, kind) for i in ids for kind in ("delivered", "read"))
    assert pending_receipts(redis_client) == {}


def test_receipts_due_while_disconnected_arrive_after_the_reconnect(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    online = connected(redis_client, tmp_path, receipt_delay=0.3)
    try:
        sent = online.send_text("4915112345678", "Your code is 123456.")
        push_command(redis_client, "acme", "disconnect", seconds=1.5)
        kinds: list[str] = []
        while "read" not in kinds:
            event = online.events.get(timeout=10)
            if isinstance(event, ReceiptReceived):
                assert event.whatsapp_ids == (sent.whatsapp_id,)
                kinds.append(event.kind)
            else:
                kinds.append(type(event).__name__)
    finally:
        online.stop()
    assert kinds == ["Disconnected", "Connected", "delivered", "read"]


def test_receipts_reported_but_not_yet_read_go_back_to_redis_on_stop(
    redis_client: redis.Redis, tmp_path: Path
) -> None:
    online = connected(redis_client, tmp_path / "first")
    sent = online.send_text("4915112345678", "Your code is 123456.")
    deadline = time.monotonic() + 10
    while online.events.empty() and time.monotonic() < deadline:  # "delivered" reported, unread
        time.sleep(0.01)
    time.sleep(0.3)  # "read" is due too, but waits while "delivered" is unread
    assert list(pending_receipts(redis_client)) == [(sent.whatsapp_id, "read")]
    online.stop()
    assert online.events.empty()
    assert set(pending_receipts(redis_client)) == {
        (sent.whatsapp_id, "delivered"),
        (sent.whatsapp_id, "read"),
    }
    successor = connected(redis_client, tmp_path / "second")
    try:
        kinds = [event.kind for event in receipts_of(successor, 2)]
    finally:
        successor.stop()
    assert kinds == ["delivered", "read"]


def test_a_message_sent_before_a_sigkill_reaches_read_through_the_next_process(
    start_session: Callable[..., SessionProcess], redis_client: redis.Redis
) -> None:
    auth_key = new_auth_key()
    slow = {contract.ENV_SIMULATOR_RECEIPT_DELAY_SECONDS: "5"}
    pod = start_session(name="pod-a", auth_key=auth_key, **slow)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    client = WaspClient(redis_client, "acme")
    message_id = client.send_otp("+4915112345678", "493817")
    assert client.wait_for(message_id, "sent", timeout=30).state == "sent"
    pod.kill()  # a node lost: before the "delivered" receipt is due
    pod.wait_exit()
    assert client.message_status(message_id).state == "sent"

    start_session(name="pod-b", auth_key=auth_key, **slow)
    status = client.wait_for(message_id, "read", timeout=60)
    assert status.state == "read"
    assert status.whatsapp_id
    outbox = redis_client.lrange(contract.simulator_outbox_key("acme"), 0, -1)
    assert [json.loads(x)["whatsapp_id"] for x in outbox] == [status.whatsapp_id]
    assert pending_receipts(redis_client) == {}


# ---------------------------------------------------------------- scan: which account links
def test_a_scan_links_the_account_it_names(redis_client: redis.Redis, tmp_path: Path) -> None:
    transport = SimulatorTransport(
        redis_client, "acme", tmp_path, SimulatorSettings(qr_seconds=(5,))
    )
    push_command(redis_client, "acme", "scan", phone="+4915112345678", push_name="Other")
    transport.connect()  # the scan waits for the first QR code, then pairs
    try:
        paired = next_event(transport, PairSucceeded)
        online = next_event(transport, Connected)
    finally:
        transport.stop()
    assert paired == PairSucceeded("4915112345678@s.whatsapp.net", "Other")
    assert online == Connected("4915112345678@s.whatsapp.net", "Other")


def test_a_scan_with_a_phone_that_is_no_number_is_rejected() -> None:
    with pytest.raises(CommandError, match=r"E\.164"):
        parse_command(json.dumps({"command": "scan", "phone": "+49 ; DROP"}))
    assert parse_command('{"command": "scan", "phone": "4915112345678"}').arguments == {
        "phone": "4915112345678"
    }


def test_wasp_session_simulate_scan_takes_the_phone(redis_server: RedisServer) -> None:
    program = str(Path(sys.executable).with_name("wasp-session"))
    where = ["--tenant", "acme", "--redis-url", redis_server.url]
    result = subprocess.run(
        [program, "simulate", "scan", "--phone", "+4915112345678", *where],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout) == {"command": "scan", "phone": "+4915112345678"}
    queued = redis_server.client().lrange(contract.simulator_commands_key("acme"), 0, -1)
    assert [json.loads(item) for item in queued] == [json.loads(result.stdout)]
