"""The client library against a real redis-server: what an API calling it sees."""

import json
import threading
import time
import zlib

import pytest
import redis
from rq import Queue

from wasp import (
    InvalidCodeError,
    InvalidNumberError,
    InvalidTemplateError,
    MessageNotFoundError,
    SessionNotFoundError,
    WaitTimeoutError,
    WaspClient,
    contract,
    queueing,
)
from wasp.messages import MessageStore

TENANT = "acme"


@pytest.fixture
def client(redis_client: redis.Redis) -> WaspClient:
    return WaspClient(redis_client, TENANT, default_region="DE")


def _queue(redis_client: redis.Redis) -> Queue:
    kwargs = {**redis_client.connection_pool.connection_kwargs, "decode_responses": False}
    raw = redis.Redis(connection_pool=redis.ConnectionPool(**kwargs))
    return queueing.otp_queue(raw, TENANT)


def test_send_enqueues_the_job_by_its_dotted_name_as_json_with_the_tenants_job_id(
    client: WaspClient, redis_client: redis.Redis
) -> None:
    message_id = client.send_otp("0151 1234 5678", "493817", ttl_seconds=120)
    queue = _queue(redis_client)
    job_id = contract.job_id(TENANT, message_id)
    assert queue.job_ids == [job_id]
    job = queue.fetch_job(job_id)
    assert job is not None
    stored = queue.connection.hget(job.key, "data")
    assert isinstance(stored, bytes)
    assert json.loads(zlib.decompress(stored))[0] == contract.OTP_JOB_FUNCTION  # JSON, not pickle
    assert job.func_name == contract.OTP_JOB_FUNCTION
    assert job.kwargs == {
        "phone": "+4915112345678",
        "code": "493817",
        "message_id": message_id,
        "ttl_seconds": 120,
    }
    assert client.message_status(message_id).state == "queued"
    assert client.message_status(message_id).phone == "+4915112345678"


def test_sending_the_same_message_id_twice_enqueues_once(
    client: WaspClient, redis_client: redis.Redis
) -> None:
    first = client.send_otp("+4915112345678", "1234", message_id="order-17")
    second = client.send_otp("+4915112345678", "1234", message_id="order-17")
    assert first == second == "order-17"
    assert _queue(redis_client).job_ids == [contract.job_id(TENANT, "order-17")]


def test_a_message_already_sent_is_not_enqueued_again(
    client: WaspClient, redis_client: redis.Redis
) -> None:
    client.send_otp("+4915112345678", "1234", message_id="m1")
    _queue(redis_client).empty()  # type: ignore[no-untyped-call]
    MessageStore(redis_client, TENANT).transition("m1", "sent")
    client.send_otp("+4915112345678", "1234", message_id="m1")
    assert _queue(redis_client).job_ids == []


@pytest.mark.parametrize(
    "case",
    [
        ("12", "1234", None, InvalidNumberError),
        ("+4915112345678", "", None, InvalidCodeError),
        ("+4915112345678", "12345678901", None, InvalidCodeError),
        ("+4915112345678", "1234", "{code.__class__}", InvalidTemplateError),
    ],
)
def test_invalid_input_is_refused_at_once_and_nothing_is_enqueued(
    client: WaspClient,
    redis_client: redis.Redis,
    case: tuple[str, str, str | None, type[Exception]],
) -> None:
    phone, code, template, error = case
    with pytest.raises(error):
        client.send_otp(phone, code, template=template)
    assert _queue(redis_client).count == 0
    assert redis_client.keys(contract.message_key(TENANT, "*")) == []


def test_the_default_region_comes_from_the_session_when_not_given(
    redis_client: redis.Redis,
) -> None:
    client = WaspClient(redis_client, TENANT)
    with pytest.raises(InvalidNumberError, match="no country code"):
        client.send_otp("015112345678", "1234")
    redis_client.hset(
        contract.delivery_settings_key(TENANT),
        mapping={contract.DELIVERY_DEFAULT_REGION: "DE", contract.DELIVERY_TTL_SECONDS: "90"},
    )
    message_id = client.send_otp("015112345678", "1234")
    job = _queue(redis_client).fetch_job(contract.job_id(TENANT, message_id))
    assert job is not None
    assert job.kwargs["phone"] == "+4915112345678"
    assert job.kwargs["ttl_seconds"] == 90


def test_unknown_messages_and_sessions_say_so(client: WaspClient) -> None:
    with pytest.raises(MessageNotFoundError, match="nope"):
        client.message_status("nope")
    with pytest.raises(SessionNotFoundError, match="acme"):
        client.session_status()


def test_wait_for_returns_when_the_state_is_reached_or_passed(
    client: WaspClient, redis_client: redis.Redis
) -> None:
    message_id = client.send_otp("+4915112345678", "1234")
    store = MessageStore(redis_client, TENANT)

    def progress() -> None:
        time.sleep(0.3)
        store.transition(message_id, "sent")
        store.transition(message_id, "read")

    threading.Thread(target=progress).start()
    status = client.wait_for(message_id, "delivered", timeout=10)
    assert status.state == "read"
    with pytest.raises(WaitTimeoutError, match="did not reach"):
        client.wait_for(client.send_otp("+4915112345678", "1234"), "sent", timeout=0.5)


def test_session_status_and_live_qr_codes(client: WaspClient, redis_client: redis.Redis) -> None:
    status_key = contract.status_key(TENANT)
    redis_client.hset(status_key, mapping={"phase": "AwaitingPairing", "qr": "QR-1"})
    assert client.session_status().phase == "AwaitingPairing"

    def rotate() -> None:
        time.sleep(0.5)
        redis_client.publish(contract.qr_channel(TENANT), "QR-2")
        time.sleep(0.2)
        redis_client.hset(status_key, "phase", "Connected")
        event = json.dumps({"phase": "Connected"})
        redis_client.publish(contract.events_channel(TENANT), event)

    threading.Thread(target=rotate).start()
    assert list(client.qr_codes(timeout=10)) == ["QR-1", "QR-2"]
    assert client.session_status().connected


def test_pair_pushes_the_pair_command(client: WaspClient, redis_client: redis.Redis) -> None:
    client.request_pairing()
    assert redis_client.lrange(contract.control_key(TENANT), 0, -1) == [contract.CONTROL_PAIR]
