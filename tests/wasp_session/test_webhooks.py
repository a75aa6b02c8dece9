"""Webhooks end to end: a real session process POSTs its tenant's stream to a real receiver.

The receiver (``harness.webhook_receiver``) is an HTTP server on 127.0.0.1
that checks every signature with ``wasp.webhook_signature.verify``. 127.0.0.1
is a private address, so each session is told to allow it
(``WASP_WEBHOOK_ALLOWED_NETWORKS``), as the operator's
``webhooks.allowedNetworks`` would; one test leaves it out and sees it refused.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from harness.session_process import SessionProcess
from harness.webhook_receiver import WebhookReceiver
from wasp import WaspClient, contract
from wasp.event_stream import EventStream

pytestmark = pytest.mark.stream

TENANT = "acme"
PHONE = "+4915112345678"
SECRET = b"s3cret-webhook-key"
OUTAGE_SECONDS = 60.0  # the receiver answers 500 this long: what the acceptance asks


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver(SECRET) as running:
        yield running


def webhook_env(
    tmp_path: Path, url: str, *, secret: bytes | None = SECRET, allow: str = "127.0.0.1/32"
) -> dict[str, str]:
    """The env the operator gives a pod with ``spec.webhook`` (the Secret as a file)."""
    secret_file = tmp_path / "webhook-secret"
    if secret is not None:
        secret_file.write_bytes(secret + b"\n")
    return {
        contract.ENV_WEBHOOK_URL: url,
        contract.ENV_WEBHOOK_SECRET_FILE: str(secret_file),
        contract.ENV_WEBHOOK_SECRET_REF: "acme-hooks/secret",
        contract.ENV_WEBHOOK_ALLOWED_NETWORKS: allow,
        contract.ENV_WEBHOOK_BACKOFF_MAX_SECONDS: "5",
    }


def connected(start_session: Callable[..., SessionProcess], env: dict[str, str]) -> SessionProcess:
    pod = start_session(tenant=TENANT, **env)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    return pod


def stream_end(client: redis.Redis) -> str:
    """The id of the stream's last entry so far (the webhook's group exists, so the stream)."""
    key = contract.event_stream_key(TENANT)
    groups = client.xinfo_groups(key)
    assert [g["name"] for g in groups] == [contract.WEBHOOK_GROUP]
    return str(client.xinfo_stream(key)["last-generated-id"])


def entry_ids_after(client: redis.Redis, mark: str) -> list[str]:
    """Every entry after ``mark``, in the stream's order."""
    entries = client.xrange(contract.event_stream_key(TENANT), min=f"({mark}") or []
    return [str(entry_id) for entry_id, _ in entries]


def first_arrivals(ids: list[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def test_a_receiver_gets_every_entry_signed_and_after_a_minute_of_500s_gets_them_all(
    start_session: Callable[..., SessionProcess],
    redis_client: redis.Redis,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    pod = connected(start_session, webhook_env(tmp_path, receiver.url))
    pod.wait_for_status(contract.STATUS_WEBHOOK_STATE, "Delivering")
    mark = stream_end(pod.redis)  # the group exists: every entry after this must arrive
    stream = EventStream(pod.redis, TENANT)
    client = WaspClient(redis_client, TENANT)

    before = [stream.append(contract.EVENT_KIND_SESSION, {"n": str(i)}) for i in range(5)]
    first = client.send_otp(PHONE, "111111")
    assert client.wait_for(first, "read", timeout=30).state == "read"
    receiver.wait_for_ids(before)
    assert receiver.bad_signatures == 0

    receiver.failing = True
    outage_started = time.monotonic()
    during: list[str] = []
    otps: list[str] = []
    while time.monotonic() - outage_started < OUTAGE_SECONDS:
        during.append(stream.append(contract.EVENT_KIND_SESSION, {"phase": "Connected"}))
        message_id = client.send_otp(PHONE, f"{len(otps) + 200000}")
        otps.append(message_id)
        # OTP delivery goes on while every webhook POST fails.
        assert client.wait_for(message_id, "read", timeout=30).state == "read"
        time.sleep(8)
    status = pod.status()
    assert status[contract.STATUS_WEBHOOK_STATE] == "Failing"
    assert "HTTP 500" in status[contract.STATUS_WEBHOOK_LAST_ERROR]
    assert contract.STATUS_WEBHOOK_FAILING_SINCE in status
    assert receiver.refused > 0
    assert pod.metric('wasp_session_webhook_deliveries_total{result="http_error"}') > 0
    assert pod.health("/healthz") == 200  # a dead receiver is not the pod's fault
    assert len(otps) >= 6

    receiver.failing = False
    everything = entry_ids_after(pod.redis, mark)
    receiver.wait_for_ids(everything, timeout=60)
    assert set(before) | set(during) <= set(receiver.ids())
    # In the stream's order, none lost, none signed wrong.
    assert first_arrivals(receiver.ids()) == [i for i in everything if i in set(receiver.ids())]
    assert receiver.bad_signatures == 0
    # The OTPs' own state changes (appended by wasp in the same script as each change)
    # arrive too: each OTP sent while the receiver failed reaches it as read.
    read = {
        document["fields"].get("message_id")
        for document in receiver.documents()
        if document["kind"] == contract.EVENT_KIND_MESSAGE
        and document["fields"].get("state") == "read"
    }
    assert {first, *otps} <= read
    pod.wait_for_status(contract.STATUS_WEBHOOK_LAST_ERROR, None)
    assert pod.status()[contract.STATUS_WEBHOOK_STATE] == "Delivering"
    assert contract.STATUS_WEBHOOK_DELIVERED_AT in pod.status()


# Entries a tenant's API could XADD to its own stream: no kind, unknown kinds, odd bytes,
# many fields, a huge value. Each must reach the receiver (as strings) and none stop the sender.
JUNK: list[dict[bytes | str, bytes | str]] = [
    {"no-kind": "x"},
    {contract.EVENT_KIND: "not-a-kind", contract.EVENT_AT: "yesterday"},
    {contract.EVENT_KIND: b"\xff\xfe\x00", "text": b"\x00\x01\x80\xc3("},
    {contract.EVENT_KIND: contract.EVENT_KIND_MESSAGE, "message_id": '{"json": [1]}'},
    {f"field{i}": str(i) for i in range(500)},
    {contract.EVENT_KIND: contract.EVENT_KIND_INBOUND, "text": "x" * 1_000_000},
    {"\u202e\u0000": "\ud7ff\U0010ffff"},
]


def test_junk_the_tenant_writes_to_its_stream_is_delivered_and_never_stops_the_sender(
    start_session: Callable[..., SessionProcess],
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    pod = connected(start_session, webhook_env(tmp_path, receiver.url))
    pod.wait_for_status(contract.STATUS_WEBHOOK_STATE, "Delivering")
    key = contract.event_stream_key(TENANT)
    ids = [str(pod.redis.xadd(key, fields)) for fields in JUNK]  # type: ignore[arg-type]
    ids.append(EventStream(pod.redis, TENANT).append(contract.EVENT_KIND_SESSION, {"after": "1"}))
    receiver.wait_for_ids(ids)
    by_id = {document["id"]: document for document in receiver.documents()}
    assert by_id[ids[0]]["kind"] == ""
    assert by_id[ids[0]]["fields"] == {"no-kind": "x"}
    assert len(by_id[ids[4]]["fields"]) == 500
    assert by_id[ids[5]]["truncated"] is True  # too big to send whole: its id still arrives
    assert by_id[ids[-1]]["fields"] == {"after": "1"}
    assert receiver.bad_signatures == 0
    # The tenant's API may even drop the webhook's group: the sender makes it again.
    pod.redis.xgroup_destroy(key, contract.WEBHOOK_GROUP)
    pod.wait_for(lambda: pod.redis.xinfo_groups(key), "the group made again")
    again = EventStream(pod.redis, TENANT).append(contract.EVENT_KIND_SESSION, {"again": "1"})
    receiver.wait_for_ids([again])
    assert pod.process.alive()


def test_a_missing_webhook_secret_is_a_clear_status_otps_flow_and_entries_wait_for_it(
    start_session: Callable[..., SessionProcess],
    redis_client: redis.Redis,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    pod = connected(start_session, webhook_env(tmp_path, receiver.url, secret=None))
    status = pod.wait_for_status(contract.STATUS_WEBHOOK_STATE, "Misconfigured")
    assert "acme-hooks/secret" in status[contract.STATUS_WEBHOOK_LAST_ERROR]
    assert "missing" in status[contract.STATUS_WEBHOOK_LAST_ERROR]
    client = WaspClient(redis_client, TENANT)
    message_id = client.send_otp(PHONE, "424242")
    assert client.wait_for(message_id, "read", timeout=30).state == "read"
    waiting = EventStream(pod.redis, TENANT).append(contract.EVENT_KIND_SESSION, {"n": "1"})
    assert receiver.ids() == []
    assert pod.health("/healthz") == 200
    # The Secret is created: the kubelet writes the file, and what waited arrives.
    (tmp_path / "webhook-secret").write_bytes(SECRET)
    receiver.wait_for_ids([waiting])
    pod.wait_for_status(contract.STATUS_WEBHOOK_STATE, "Delivering")


def test_a_webhook_to_a_private_address_is_refused_unless_the_platform_allows_it(
    start_session: Callable[..., SessionProcess],
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    pod = connected(start_session, webhook_env(tmp_path, receiver.url, allow=""))
    pod.wait_for(lambda: contract.STATUS_WEBHOOK_STATE in pod.status(), "a webhook state")
    EventStream(pod.redis, TENANT).append(contract.EVENT_KIND_SESSION, {"n": "1"})
    status = pod.wait_for_status(contract.STATUS_WEBHOOK_STATE, "Failing")
    assert "127.0.0.1" in status[contract.STATUS_WEBHOOK_LAST_ERROR]
    assert "may not reach" in status[contract.STATUS_WEBHOOK_LAST_ERROR]
    assert pod.metric('wasp_session_webhook_deliveries_total{result="refused_error"}') > 0
    assert receiver.ids() == []
