"""The neonize transport against the real library, up to its network dial.

This machine cannot reach WhatsApp: neonize opens (and creates) whatsmeow's
database, then fails at the dial. That is enough to prove the start-failure
path of the real program and the auth store's round trip through Redis with
a database that neonize itself created and a new neonize client reads back.
Nothing here loads neonize into the test process: every neonize client runs
in a child process (never a fork).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key, session_env
from wasp import contract
from wasp_session.auth_store import AuthStore
from wasp_session.errors import AuthStoreError
from wasp_session.lease import Lease
from wasp_session.snapshot import unseal

# A child that opens a whatsmeow store with a new neonize client, lets the dial
# fail, and prints what the client loaded from the store.
_OPEN_WITH_NEONIZE = """
import json, sys
from neonize.client import NewClient
client = NewClient(sys.argv[1] + "?_journal_mode=WAL&_busy_timeout=15000&_foreign_keys=on&_x=")
try:
    client.connect()
    error = None
except Exception as exc:
    error = str(exc)
me = client.get_me()
print(json.dumps({"error": error, "user": me.JID.User, "device": me.JID.Device,
                  "push_name": me.PushName}))
"""
# A child that restores the tenant's snapshot from Redis into a path.
_RESTORE = """
import base64, sys
from pathlib import Path
import redis
from wasp_session.auth_store import AuthStore
from wasp_session.lease import Lease
url, key, target = sys.argv[1], base64.b64decode(sys.argv[2]), Path(sys.argv[3])
client = redis.Redis.from_url(url)
lease = Lease(redis.Redis.from_url(url, decode_responses=True), "acme", "restorer", 5)
store = AuthStore(client, tenant="acme", key=key, lease=lease, transport="neonize", database=target)
print(store.restore())
"""
_FAKE_DEVICE = (
    "INSERT INTO whatsmeow_device (jid, registration_id, noise_key, identity_key,"
    " signed_pre_key, signed_pre_key_id, signed_pre_key_sig, adv_key, adv_details,"
    " adv_account_sig, adv_account_sig_key, adv_device_sig, platform, push_name)"
    " VALUES ('4915112345678:7@s.whatsapp.net', 1234, randomblob(32), randomblob(32),"
    " randomblob(32), 1, randomblob(64), randomblob(32), x'00', randomblob(64),"
    " randomblob(32), randomblob(64), 'linux', 'Acme')"
)


def run_child(script: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


def test_failed_dials_back_off_then_fail_with_the_reason(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    env = session_env(
        "acme",
        redis_server.url,
        tmp_path / "data",
        **{contract.ENV_TRANSPORT: "neonize", contract.ENV_MAX_START_FAILURES: "3"},
    )
    pubsub = redis_client.pubsub()  # type: ignore[no-untyped-call]
    pubsub.subscribe(contract.events_channel("acme"))
    with SessionProcess(env, tmp_path / "pod.log") as pod:
        assert pod.wait_exit(timeout=60) == 1
        lines = pod.log_lines()
    status = redis_client.hgetall(contract.status_key("acme"))
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == "StartFailed"
    assert "dial" in status[contract.STATUS_MESSAGE]
    phases: list[str] = []
    while (message := pubsub.get_message(timeout=0.5)) is not None:
        if message["type"] == "message":
            phase = json.loads(message["data"])[contract.STATUS_PHASE]
            if not phases or phases[-1] != phase:
                phases.append(phase)
    pubsub.close()
    assert phases == ["Starting", "Reconnecting", "Failed"]
    retries = [line for line in lines if line["event"] == "start_failed"]
    assert len(retries) == 2  # two retries, the third failure is final
    ceilings = [line["backoff_ceiling"] for line in retries]
    assert ceilings[0] < ceilings[1]  # the delays grow (each drawn below its ceiling)
    assert all(0 <= line["retry_in"] <= line["backoff_ceiling"] for line in retries)
    assert all(line.get("tenant") == "acme" for line in lines)
    # neonize's own stdlib loggers come out through structlog too
    assert any(line.get("logger", "").startswith("neonize") for line in lines)
    assert (tmp_path / "data" / "whatsmeow.db").exists()


@pytest.fixture
def neonize_database(tmp_path: Path) -> Path:
    """A whatsmeow store created by neonize, plus a device row (pairing needs the network)."""
    path = tmp_path / "created" / "whatsmeow.db"
    path.parent.mkdir()
    result = json.loads(run_child(_OPEN_WITH_NEONIZE, str(path)))
    assert "dial" in result["error"]
    assert result["user"] == ""  # a fresh store has no device
    with closing(sqlite3.connect(path)) as connection, connection:  # neonize is not loaded here
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
        assert "whatsmeow_device" in tables
        connection.execute(_FAKE_DEVICE)
    return path


def test_a_neonize_store_survives_a_round_trip_through_redis(
    redis_server: RedisServer, neonize_database: Path, tmp_path: Path
) -> None:
    text = redis_server.client()
    binary = redis.Redis.from_url(redis_server.url)
    key = new_auth_key()
    lease = Lease(text, "acme", "pod-a", ttl=30)
    assert lease.try_acquire()
    store = AuthStore(
        binary,
        tenant="acme",
        key=base64.b64decode(key),
        lease=lease,
        transport="neonize",
        database=neonize_database,
    )
    checkpoint = store.checkpoint()
    assert checkpoint is not None
    assert checkpoint.has_device

    blob = binary.get(contract.auth_key("acme"))
    assert isinstance(blob, bytes)
    for secret in (b"SQLite format 3", b"whatsmeow_device", b"4915112345678", b"Acme"):
        assert secret not in blob
    with pytest.raises(AuthStoreError):
        unseal(blob, b"\x00" * 32)

    restored = tmp_path / "restored" / "whatsmeow.db"
    assert run_child(_RESTORE, redis_server.url, key, str(restored)) == "True"
    result = json.loads(run_child(_OPEN_WITH_NEONIZE, str(restored)))
    assert "dial" in result["error"]
    assert result["user"] == "4915112345678"
    assert result["device"] == 7
    assert result["push_name"] == "Acme"
    text.close()
    binary.close()


# A child that drives NeonizeTransport with neonize's own protobuf messages in
# place of the network: what ``is_on_whatsapp`` answers, what ``send_message``
# returns, the receipt and temporary-ban events as neonize decodes them.
_BOUNDARY = """
import json, queue, sys
from pathlib import Path
from neonize.events import ReceiptEv, TemporaryBanEv
from neonize.proto.Neonize_pb2 import (
    JID, IsOnWhatsAppResponse, Receipt, SendResponse, TemporaryBan,
)
from wasp_session.transport.whatsmeow import NeonizeTransport

class Events:
    def __init__(self):
        self.handlers = {}
    def qr(self, handler):
        self.handlers["qr"] = handler
    def __call__(self, kind):
        return lambda handler: self.handlers.__setitem__(kind, handler)

class Client:
    def __init__(self):
        self.event = Events()
        self.sent_to = []
    def is_on_whatsapp(self, *numbers):
        answers = {
            # a ported number: WhatsApp's JID is not the digits that were asked
            "4915112345678": IsOnWhatsAppResponse(
                Query="+4915112345678", IsIn=True,
                JID=JID(User="4915187654321", Server="s.whatsapp.net")),
            "4915199999999": IsOnWhatsAppResponse(Query="+4915199999999", IsIn=False, JID=JID()),
        }
        return [answers[n] for n in numbers]
    def send_message(self, jid, text):
        self.sent_to.append({"user": jid.User, "server": jid.Server, "device": jid.Device})
        return SendResponse(ID="3EB0C0FFEE", Timestamp=1764215000)

transport = NeonizeTransport(Path(sys.argv[1]))
client = Client()
transport._client = client
transport._register(client)
address = transport.check_number("4915112345678")
absent = transport.check_number("4915199999999")
sent = transport.send_text(address, "Your code is 123456.")
handlers = client.event.handlers
handlers[ReceiptEv](client, Receipt(
    MessageIDs=["3EB0C0FFEE"], Type=Receipt.ReceiptType.READ, Timestamp=1764215042))
handlers[TemporaryBanEv](client, TemporaryBan(
    Code=TemporaryBan.TempBanReason.SEND_TO_TOO_MANY_PEOPLE, Expire=3600))
events = []
while True:
    try:
        events.append(transport.events.get_nowait())
    except queue.Empty:
        break
receipt = next(e for e in events if type(e).__name__ == "ReceiptReceived")
ban = next(e for e in events if type(e).__name__ == "TemporarilyBanned")
print(json.dumps({
    "address": address, "absent": absent, "sent_to": client.sent_to,
    "sent": [sent.whatsapp_id, sent.timestamp],
    "receipt": [list(receipt.whatsapp_ids), receipt.kind, receipt.timestamp],
    "ban": [ban.code, ban.expires_in_seconds],
}))
"""


def test_sends_go_to_the_jid_whatsapp_returned_and_times_are_read_in_their_units(
    tmp_path: Path,
) -> None:
    """Neonize's types, read from its Go encoder (goneonize/utils/encoder.go).

    ``IsOnWhatsAppResponse.JID`` is the account's JID (a ported number's need
    not be its digits): the send goes to it. ``SendResponse.Timestamp`` and
    ``Receipt.Timestamp`` are ``time.Time.Unix()``: epoch seconds.
    ``TemporaryBan.Expire`` is ``int64(time.Duration.Seconds())``: seconds from now.
    """
    seen = json.loads(run_child(_BOUNDARY, str(tmp_path)))
    assert seen["address"] == "4915187654321@s.whatsapp.net"
    assert seen["absent"] is None
    assert seen["sent_to"] == [{"user": "4915187654321", "server": "s.whatsapp.net", "device": 0}]
    assert seen["sent"] == ["3EB0C0FFEE", 1764215000.0]
    assert seen["receipt"] == [["3EB0C0FFEE"], "read", 1764215042.0]
    assert seen["ban"] == [1, 3600.0]
