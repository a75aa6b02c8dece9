"""Inbound messages end to end: a real ``wasp-session`` process with the simulator transport.

Someone writes to the tenant's number (the simulator's ``inbound`` command);
the message appears in the tenant's event stream, and the auto-reply of the
spec reaches the sender at most once a day: what the simulated WhatsApp
"received" is read from its outbox. Commands are played in order and events
handled in order, so a message that must leave no trace is followed by one
that must: once that one is recorded, the first had its chance.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from harness.session_process import SessionProcess
from wasp import WaspClient, contract

pytestmark = pytest.mark.stream

TENANT = "acme"
REPLY = "This number only sends codes. 🔐"
ALICE, BOB, CAROL = "+4915111111111", "+4915122222222", "+4915133333333"


def inbound_entries(client: redis.Redis) -> list[dict[str, str]]:
    found: Any = client.xrange(contract.event_stream_key(TENANT))
    return [
        dict(fields)
        for _, fields in found
        if fields.get(contract.EVENT_KIND) == contract.EVENT_KIND_INBOUND
    ]


def replies_to(client: redis.Redis, phone: str) -> list[str]:
    sent = [json.loads(x) for x in client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)]
    return [m["text"] for m in sent if m["to"] == phone and m["text"] == REPLY]


class Phone:
    """People writing to the tenant's number, and what the session made of it."""

    def __init__(self, process: SessionProcess, client: redis.Redis) -> None:
        """Write to ``process``'s tenant; read its stream and outbox through ``client``."""
        self.process = process
        self.client = client

    def write(self, phone: str, text: str, **more: object) -> None:
        """``phone`` sends ``text`` (``more``: the ``inbound`` command's other arguments)."""
        self.process.simulate("inbound", phone=phone, text=text, **more)

    def recorded(self, count: int) -> list[dict[str, str]]:
        """Wait until ``count`` inbound entries are in the stream; return them."""
        self.process.wait_for(
            lambda: len(inbound_entries(self.client)) >= count, f"{count} inbound entries"
        )
        return inbound_entries(self.client)

    def replied(self, phone: str, count: int) -> None:
        """Wait until ``phone`` got the auto-reply ``count`` times."""
        self.process.wait_for(
            lambda: len(replies_to(self.client, phone)) >= count, f"{count} replies to {phone}"
        )


@pytest.fixture
def phone(start_session: Callable[..., SessionProcess], redis_client: redis.Redis) -> Phone:
    process = start_session(
        **{contract.ENV_AUTO_REPLY_TEXT: REPLY, contract.ENV_RATE_PER_MINUTE: "6000"}
    )
    process.wait_for_phase("AwaitingPairing")
    process.simulate("scan")
    process.wait_for_phase("Connected")
    return Phone(process, redis_client)


def test_an_inbound_message_reaches_the_stream_and_the_sender_gets_the_auto_reply_once(
    phone: Phone, redis_client: redis.Redis
) -> None:
    phone.write(ALICE, "Hallo, wer ist da?")
    (first,) = phone.recorded(1)
    assert first[contract.INBOUND_SENDER] == ALICE
    assert first[contract.INBOUND_TEXT] == "Hallo, wer ist da?"
    assert first[contract.INBOUND_TYPE] == "text"
    assert first[contract.INBOUND_WHATSAPP_ID]
    assert first[contract.INBOUND_AUTO_REPLY] == "queued"
    phone.replied(ALICE, 1)

    phone.write(ALICE, "Hallo?")  # the same sender, the same day: no second reply
    phone.write(BOB, "Is this the bank?")  # another sender: a reply
    entries = phone.recorded(3)
    assert [e[contract.INBOUND_AUTO_REPLY] for e in entries] == ["queued", "already_sent", "queued"]
    phone.replied(BOB, 1)
    assert replies_to(redis_client, ALICE) == [REPLY]
    assert phone.process.metric('wasp_session_auto_replies_total{result="sent"}') == 2
    assert phone.process.metric('wasp_session_inbound_messages_total{type="text"}') == 3

    key = contract.auto_reply_key(TENANT, ALICE.removeprefix("+"))
    ttl = redis_client.ttl(key)
    assert isinstance(ttl, int)
    assert contract.AUTO_REPLY_PERIOD_SECONDS - 60 < ttl <= contract.AUTO_REPLY_PERIOD_SECONDS
    redis_client.delete(key)  # a day passes: the marker expires
    phone.write(ALICE, "Me again, a day later")
    assert phone.recorded(4)[-1][contract.INBOUND_AUTO_REPLY] == "queued"
    phone.replied(ALICE, 2)


def test_group_broadcast_and_own_messages_are_neither_recorded_nor_answered(
    phone: Phone, redis_client: redis.Redis
) -> None:
    phone.write(ALICE, "hello group", jid="120363021234567890@g.us")
    phone.write(ALICE, "my status", jid="status@broadcast")
    phone.write(ALICE, "sent from my phone", from_me=True)
    phone.write(CAROL, "a photo", media="image")  # the sentinel: recorded after the others
    (entry,) = phone.recorded(1)
    assert (entry[contract.INBOUND_SENDER], entry[contract.INBOUND_TYPE]) == (CAROL, "image")
    assert entry[contract.INBOUND_TEXT] == "a photo"
    phone.replied(CAROL, 1)
    assert replies_to(redis_client, ALICE) == []
    assert not redis_client.exists(contract.auto_reply_key(TENANT, ALICE.removeprefix("+")))


def test_a_flood_of_huge_messages_neither_stops_the_session_nor_delays_an_otp_for_ever(
    phone: Phone, redis_client: redis.Redis
) -> None:
    huge = (
        "\u0000\u202e\ud800" + "\U0001d54f" * 10_000
    )  # NUL, right-to-left override, a lone surrogate
    for number in range(200):
        phone.write(f"+49151{number:08d}", huge)
    message_id = WaspClient(redis_client, TENANT).send_otp(ALICE, "424242")
    entries = phone.recorded(200)
    assert all(len(e[contract.INBOUND_TEXT]) == contract.INBOUND_TEXT_MAX_CHARS for e in entries)
    status = WaspClient(redis_client, TENANT).wait_for(message_id, "sent", timeout=30)
    assert status.state in ("sent", "delivered", "read")
    assert phone.process.phase() == "Connected"
    assert phone.process.health("/healthz") == 200
