"""Inbound messages, judged and recorded: what a stranger's message may put in the tenant's stream.

Real neonize messages (its protobufs) go through the transport's translation;
``Inbound.received`` writes into a real redis-server. Hostile input is fuzzed:
whatever the text, ids and addresses, recording never raises and the entry
stays within its documented bounds.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.redis_server import RedisServer
from wasp import contract
from wasp.event_stream import EventStream
from wasp_session.auto_reply import AutoReplier
from wasp_session.config import load_config
from wasp_session.errors import ConfigError
from wasp_session.gate import SendGate
from wasp_session.inbound import Inbound, entry_of
from wasp_session.transport.base import MessageReceived
from wasp_session.transport.simulator import SimulatorSettings, SimulatorTransport

pytestmark = pytest.mark.stream

TENANT = "acme"
PERSON = "4915112345678@s.whatsapp.net"
E164 = re.compile(r"^(\+[1-9][0-9]{6,14})?$")


def received(**changes: object) -> MessageReceived:
    fields: dict[str, object] = {
        "chat": PERSON,
        "sender": PERSON,
        "text": "hello",
        "whatsapp_id": "3EB0C0FFEE",
        "sent_at": 1_767_225_600.0,  # 2026-01-01T00:00:00Z
    }
    fields.update(changes)
    return MessageReceived(**fields)  # type: ignore[arg-type]


@pytest.fixture
def stream(redis_client: redis.Redis) -> EventStream:
    return EventStream(redis_client, TENANT)


def entries(stream: EventStream) -> list[dict[str, str]]:
    found: Any = stream._client.xrange(stream.key)  # noqa: SLF001 - the test's own client
    return [dict(fields) for _, fields in found]


# ---------------------------------------------------------------- what is recorded
def test_a_persons_text_is_recorded_with_sender_text_id_type_and_its_time(
    redis_client: redis.Redis, stream: EventStream
) -> None:
    Inbound(redis_client, TENANT, None).received(received(text="Wer ist da? 👋"))
    (entry,) = entries(stream)
    assert entry == {
        contract.EVENT_KIND: contract.EVENT_KIND_INBOUND,
        contract.EVENT_AT: "2026-01-01T00:00:00.000000Z",
        contract.INBOUND_SENDER: "+4915112345678",
        contract.INBOUND_TEXT: "Wer ist da? 👋",
        contract.INBOUND_WHATSAPP_ID: "3EB0C0FFEE",
        contract.INBOUND_TYPE: "text",
        contract.INBOUND_AUTO_REPLY: "none",
    }


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (received(from_me=True), "the account's own message, from its phone"),
        (received(chat="120363021234567890@g.us"), "a group"),
        (received(chat="status@broadcast"), "a status update"),
        (received(chat="1234567890@broadcast"), "a broadcast list"),
        (received(chat="120363000000000000@newsletter"), "a newsletter (channel)"),
        (received(chat="nobody"), "no chat at all"),
        (received(media_type="poll"), "content wasp does not know"),
    ],
)
def test_what_is_not_a_persons_message_is_not_recorded(
    redis_client: redis.Redis, stream: EventStream, event: MessageReceived, reason: str
) -> None:
    assert Inbound(redis_client, TENANT, None).received(event) is None, reason
    assert entries(stream) == []


def test_media_is_recorded_by_its_type_with_its_caption_and_never_its_body() -> None:
    entry = entry_of(received(media_type="image", text="the receipt"))
    assert entry is not None
    assert (entry.type, entry.text) == ("image", "the receipt")


def test_a_sender_known_only_by_lid_is_recorded_without_a_number() -> None:
    entry = entry_of(received(chat="123456789012345@lid", sender="123456789012345@lid"))
    assert entry is not None
    assert entry.sender == ""
    assert entry.phone_digits == ""


def test_a_huge_text_is_cut_to_the_documented_bound() -> None:
    entry = entry_of(received(text="ä" * 1_000_000))
    assert entry is not None
    assert len(entry.text) == contract.INBOUND_TEXT_MAX_CHARS
    assert entry.text.endswith("…")


def test_a_time_that_is_no_moment_becomes_now() -> None:
    now = time.time()
    for sent_at in (float("nan"), float("inf"), -5.0, 0.0, now + 10 * 86400):
        entry = entry_of(received(sent_at=sent_at), now=now)
        assert entry is not None
        assert entry.at == now


# ---------------------------------------------------------------- hostile input, fuzzed
addresses = st.one_of(
    st.text(max_size=40),
    st.builds(
        "{}@{}".format,
        st.text(max_size=20),
        st.sampled_from(["s.whatsapp.net", "lid", "g.us", "broadcast", "newsletter", "x"]),
    ),
)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    chat=addresses,
    sender=addresses,
    text=st.one_of(st.text(), st.text(min_size=5000, max_size=6000)),
    whatsapp_id=st.text(max_size=400),
    sent_at=st.floats(allow_nan=True, allow_infinity=True),
    media_type=st.one_of(st.just(""), st.sampled_from(contract.INBOUND_TYPES), st.text()),
    from_me=st.booleans(),
)
def test_whatever_a_stranger_sends_recording_never_raises_and_entries_stay_bounded(  # noqa: PLR0913, PLR0917 - one argument a field
    redis_client: redis.Redis,
    chat: str,
    sender: str,
    text: str,
    whatsapp_id: str,
    sent_at: float,
    media_type: str,
    from_me: bool,  # noqa: FBT001 - hypothesis passes it by name
) -> None:
    stream = EventStream(redis_client, TENANT)
    redis_client.delete(stream.key)
    event = MessageReceived(chat, sender, text, whatsapp_id, sent_at, media_type, from_me)
    entry_id = Inbound(redis_client, TENANT, None).received(event)
    found = entries(stream)
    if entry_id is None:
        assert found == []
        return
    (entry,) = found
    assert E164.match(entry[contract.INBOUND_SENDER])
    assert len(entry[contract.INBOUND_TEXT]) <= contract.INBOUND_TEXT_MAX_CHARS
    assert len(entry[contract.INBOUND_WHATSAPP_ID]) <= 128
    assert entry[contract.INBOUND_TYPE] in contract.INBOUND_TYPES


# ---------------------------------------------------------------- neonize's messages
# A child builds real neonize messages (its protobufs) and prints what the transport makes of
# them: neonize is never loaded into the test process (see test_neonize.py).
_TRANSLATE_NEONIZE_MESSAGES = """
import dataclasses, json
from neonize.events import MessageEv
from wasp_session.transport.neonize_messages import message_received

def message(chat=("4915112345678", "s.whatsapp.net"), sender=None, **source):
    event = MessageEv()
    event.Info.ID = "3EB0AABBCC"
    event.Info.Timestamp = 1767225600
    s = event.Info.MessageSource
    s.Chat.User, s.Chat.Server = chat
    s.Sender.User, s.Sender.Server = sender or chat
    for name, value in source.items():
        setattr(s, name, value)
    return event

cases = {}
e = message(); e.Message.conversation = "hi there"; cases["text"] = e
e = message(); e.Message.extendedTextMessage.text = "see https://example.com"; cases["extended"] = e
e = message(); e.Message.imageMessage.caption = "my receipt"
e.Message.imageMessage.mediaKey = bytes(32); cases["image"] = e
e = message(); e.Message.audioMessage.seconds = 3; cases["voice"] = e
e = message(chat=("123456789012345", "lid"))
e.Info.MessageSource.SenderAlt.User = "4915112345678"
e.Info.MessageSource.SenderAlt.Server = "s.whatsapp.net"
e.Message.conversation = "hi"; cases["lid"] = e
e = message(); e.Message.reactionMessage.text = "x"; cases["reaction"] = e
e = message(); e.Message.protocolMessage.type = 0; cases["revoke"] = e
e = message(IsFromMe=True); e.Message.conversation = "from my phone"; cases["own"] = e
e = message(chat=("120363021234567890", "g.us"), sender=("4915112345678", "s.whatsapp.net"),
            IsGroup=True)
e.Message.conversation = "hello group"; cases["group"] = e
e = message(); e.Info.Timestamp = 1767225600123; e.Message.conversation = "ms"; cases["millis"] = e
out = {}
for name, event in cases.items():
    got = message_received(event)
    out[name] = None if got is None else dataclasses.asdict(got)
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def from_neonize() -> dict[str, MessageReceived | None]:
    """Each case's ``MessageReceived`` (or None), read from real neonize messages in a child."""
    done = subprocess.run(
        [sys.executable, "-c", _TRANSLATE_NEONIZE_MESSAGES],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    cases = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: None if got is None else MessageReceived(**got) for name, got in cases.items()}


def test_a_neonize_text_message_becomes_a_message_received(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    assert from_neonize["text"] == MessageReceived(
        chat=PERSON,
        sender=PERSON,
        text="hi there",
        whatsapp_id="3EB0AABBCC",
        sent_at=1_767_225_600.0,
    )
    extended = from_neonize["extended"]
    assert extended is not None
    assert extended.text == "see https://example.com"


def test_neonize_media_is_read_as_its_type_and_caption_never_its_body(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    image, voice = from_neonize["image"], from_neonize["voice"]
    assert image is not None
    assert voice is not None
    assert (image.media_type, image.text) == ("image", "my receipt")
    assert (voice.media_type, voice.text) == ("audio", "")


def test_a_lid_sender_is_named_by_the_phone_number_whatsapp_gives_beside_it(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    got = from_neonize["lid"]
    assert got is not None
    assert got.sender == PERSON
    entry = entry_of(got)
    assert entry is not None
    assert entry.sender == "+4915112345678"


def test_neonize_messages_without_a_persons_content_give_nothing(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    assert from_neonize["reaction"] is None
    assert from_neonize["revoke"] is None


def test_the_accounts_own_and_group_messages_are_reported_and_skipped_by_the_session(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    for name in ("own", "group"):
        got = from_neonize[name]
        assert got is not None
        assert entry_of(got) is None, name


def test_a_neonize_time_in_milliseconds_is_read_as_that_moment(
    from_neonize: dict[str, MessageReceived | None],
) -> None:
    got = from_neonize["millis"]
    assert got is not None
    assert got.sent_at == pytest.approx(1_767_225_600.123)


# ---------------------------------------------------------------- the auto-reply's claim
@pytest.fixture
def simulator(redis_server: RedisServer, tmp_path: Path) -> Iterator[SimulatorTransport]:
    client = redis_server.client()
    transport = SimulatorTransport(client, TENANT, tmp_path, SimulatorSettings())
    yield transport
    transport.stop()
    client.close()


def codes_only_replier(
    redis_client: redis.Redis, simulator: SimulatorTransport, **options: int
) -> AutoReplier:
    """The auto-replier of a number that only sends codes, 30 replies a minute, gate closed."""
    return AutoReplier(
        redis_client,
        TENANT,
        "This number only sends codes.",
        transport=simulator,
        gate=SendGate(),  # closed: not connected
        rate_per_minute=30,
        **options,
    )


def test_a_full_reply_queue_drops_the_reply_and_records_that_it_did(
    redis_client: redis.Redis, stream: EventStream, simulator: SimulatorTransport
) -> None:
    # never started: the one reply queued stays there
    replier = codes_only_replier(redis_client, simulator, capacity=1)
    inbound = Inbound(redis_client, TENANT, replier)
    inbound.received(
        received(sender="4915111111111@s.whatsapp.net", chat="4915111111111@s.whatsapp.net")
    )
    inbound.received(
        received(sender="4915122222222@s.whatsapp.net", chat="4915122222222@s.whatsapp.net")
    )
    decisions = [entry[contract.INBOUND_AUTO_REPLY] for entry in entries(stream)]
    assert decisions == ["queued", "dropped"]
    assert redis_client.exists(contract.auto_reply_key(TENANT, "4915111111111"))
    assert not redis_client.exists(contract.auto_reply_key(TENANT, "4915122222222"))


def test_a_reply_that_cannot_go_now_gives_the_claim_back(
    redis_client: redis.Redis, stream: EventStream, simulator: SimulatorTransport
) -> None:
    replier = codes_only_replier(redis_client, simulator)  # its gate closed: not connected
    inbound = Inbound(redis_client, TENANT, replier)
    inbound.start()
    try:
        inbound.received(received())
        key = contract.auto_reply_key(TENANT, "4915112345678")
        deadline = time.monotonic() + 10
        while redis_client.exists(key) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not redis_client.exists(key)  # the sender's next message may get the reply
    finally:
        inbound.stop()
    assert redis_client.llen(contract.simulator_outbox_key(TENANT)) == 0
    assert [e[contract.INBOUND_AUTO_REPLY] for e in entries(stream)] == ["queued"]


# ---------------------------------------------------------------- the pod's setting
def test_the_auto_reply_text_is_read_from_the_env_and_bounded() -> None:
    base = {
        contract.ENV_TENANT: TENANT,
        contract.ENV_REDIS_URL: "redis://127.0.0.1:6379/0",
        contract.ENV_AUTH_KEY: base64.b64encode(bytes(32)).decode(),
    }
    assert load_config(base).auto_reply_text is None
    assert load_config({**base, contract.ENV_AUTO_REPLY_TEXT: " \n"}).auto_reply_text is None
    assert load_config({**base, contract.ENV_AUTO_REPLY_TEXT: "Nur Codes."}).auto_reply_text == (
        "Nur Codes."
    )
    too_long = {**base, contract.ENV_AUTO_REPLY_TEXT: "x" * (contract.AUTO_REPLY_MAX_CHARS + 1)}
    with pytest.raises(ConfigError, match=contract.ENV_AUTO_REPLY_TEXT):
        load_config(too_long)


def test_wasp_session_simulate_inbound_queues_the_message_for_the_simulator(
    redis_server: RedisServer,
) -> None:
    program = str(Path(sys.executable).with_name("wasp-session"))
    where = ["--tenant", TENANT, "--redis-url", redis_server.url]
    words = ["--phone", "+4915112345678", "--text", "wer ist da?", "--from-me"]
    result = subprocess.run(
        [program, "simulate", "inbound", *words, *where],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert json.loads(result.stdout) == {
        "command": "inbound",
        "phone": "+4915112345678",
        "text": "wer ist da?",
        "from_me": True,
    }
    queued = redis_server.client().lrange(contract.simulator_commands_key(TENANT), 0, -1)
    assert [json.loads(item) for item in queued] == [json.loads(result.stdout)]
