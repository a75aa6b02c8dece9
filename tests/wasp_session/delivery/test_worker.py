"""The worker and the job function in-process, with a tiny stand-in for WhatsApp.

``PhoneNetwork`` implements the transport protocol (it is WhatsApp's stand-in,
not a mock of wasp): it records sends, knows numbers that are not on
WhatsApp, and can fail sends. The worker is wasp's own ``run_delivery`` on a
thread, fed by the real client library through a real redis-server.
"""

from __future__ import annotations

import itertools
import json
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest
import redis
import structlog

from wasp import WaspClient, contract, queueing
from wasp.messages import MessageStatus
from wasp_session.delivery import DeliveryContext, DeliverySettings, run_delivery
from wasp_session.delivery.receipts import apply_receipt
from wasp_session.gate import SendGate
from wasp_session.health import JOB_WAIT_SECONDS
from wasp_session.transport.base import (
    NotConnectedError,
    ReceiptReceived,
    SendError,
    SentMessage,
    TransportEvent,
)

TENANT = "acme"
PHONE = "+4915112345678"


@dataclass
class PhoneNetwork:
    """WhatsApp's stand-in: who is on it, what was sent, which sends fail."""

    absent: set[str] = field(default_factory=set)
    sent: list[tuple[str, str, float]] = field(default_factory=list)
    transient_failures: int = 0
    failure_text: str = "network hiccup"
    connected: bool = True
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    _events: queue.Queue[TransportEvent] = field(default_factory=queue.Queue)

    @property
    def events(self) -> queue.Queue[TransportEvent]:
        """What happened, for the lifecycle (nothing here)."""
        return self._events

    def connect(self) -> None:
        """Come online."""
        self.connected = True

    def pair_phone(self, phone_digits: str) -> None:
        """Not used by delivery."""
        del phone_digits

    def send_text(self, phone_digits: str, text: str) -> SentMessage:
        """Deliver, or fail as told."""
        if not self.connected:
            raise NotConnectedError
        if self.transient_failures:
            self.transient_failures -= 1
            raise SendError(self.failure_text, transient=True)
        self.sent.append((phone_digits, text, time.time()))
        return SentMessage(whatsapp_id=f"WA{next(self._ids)}", timestamp=time.time())

    def check_number(self, phone_digits: str) -> str | None:
        """The number's address (its digits) if it has an account."""
        return None if phone_digits in self.absent else phone_digits

    def logout(self) -> None:
        """Not used by delivery."""

    def stop(self) -> None:
        """Not used by delivery."""


@dataclass
class Delivery:
    """A running delivery and what a test drives it with."""

    network: PhoneNetwork
    gate: SendGate
    client: WaspClient
    redis: redis.Redis

    def wait(self, message_id: str, timeout: float = 20.0) -> MessageStatus:
        """Wait for a final or sent state."""
        return self.client.wait_for(message_id, "sent", timeout=timeout)

    def enqueue_raw(self, **kwargs: object) -> str:
        """Enqueue as a plain-RQ API would, arguments as given."""
        raw = redis.Redis(
            connection_pool=redis.ConnectionPool(
                **{**self.redis.connection_pool.connection_kwargs, "decode_responses": False}
            )
        )
        message_id = str(kwargs.get("message_id", "raw-job"))
        queueing.otp_queue(raw, TENANT).enqueue_call(
            contract.OTP_JOB_FUNCTION, kwargs=kwargs, job_id=contract.job_id(TENANT, message_id)
        )
        return message_id


def start_delivery(
    redis_url: str, redis_client: redis.Redis, **settings: object
) -> tuple[Delivery, Callable[[], None]]:
    network = PhoneNetwork()
    gate = SendGate()
    gate.open()
    stop = threading.Event()
    defaults: dict[str, object] = {"rate_per_minute": 0, "retry_backoff_seconds": 1.0}
    context = DeliveryContext(
        tenant=TENANT,
        redis_url=redis_url,
        settings=DeliverySettings(**{**defaults, **settings}),  # type: ignore[arg-type]
        transport=network,
        gate=gate,
    )
    thread = threading.Thread(target=run_delivery, args=(context, stop), daemon=True)
    thread.start()
    client = WaspClient(redis_client, TENANT)
    deadline = time.monotonic() + 10
    while not client.delivery_settings() and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker has started once it published its settings

    def finish() -> None:
        stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()

    return Delivery(network, gate, client, redis_client), finish


@pytest.fixture
def delivery(redis_server: object, redis_client: redis.Redis) -> Iterator[Delivery]:
    running, finish = start_delivery(redis_server.url, redis_client)  # type: ignore[attr-defined]
    yield running
    finish()


def test_an_otp_is_sent_once_with_the_tenants_template(delivery: Delivery) -> None:
    message_id = delivery.client.send_otp("0151 12345678", "493817", ttl_seconds=300)
    status = delivery.wait(message_id)
    assert status.state == "sent"
    assert status.whatsapp_id == "WA1"
    assert delivery.network.sent[0][:2] == (
        "4915112345678",
        "Your code is 493817. It expires in 5 minutes.",
    )


def test_the_worker_is_named_for_its_tenant(delivery: Delivery) -> None:
    key = f"rq:workers:{contract.delivery_queue(TENANT)}"
    deadline = time.monotonic() + 10  # the worker registers itself as its thread starts
    while not (workers := delivery.redis.smembers(key)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert workers
    assert all(str(key).startswith(f"rq:worker:{TENANT}.") for key in workers), workers


def test_the_same_message_id_enqueued_twice_is_sent_once(delivery: Delivery) -> None:
    delivery.gate.close()
    for _ in range(3):
        delivery.enqueue_raw(phone=PHONE, code="1234", message_id="twice", ttl_seconds=60)
    delivery.gate.open()
    assert delivery.wait("twice").state == "sent"
    marker = delivery.client.send_otp(PHONE, "5678")
    delivery.wait(marker)
    assert [text for _, text, _ in delivery.network.sent].count(
        "Your code is 1234. It expires in 1 minutes."
    ) == 1


def test_receipts_move_the_message_to_delivered_and_read_never_back(delivery: Delivery) -> None:
    message_id = delivery.client.send_otp(PHONE, "1234")
    status = delivery.wait(message_id)
    assert status.whatsapp_id is not None
    for kind in ("read", "delivered"):
        apply_receipt(delivery.redis, TENANT, ReceiptReceived((status.whatsapp_id,), kind, 0))
    assert delivery.client.message_status(message_id).state == "read"


@pytest.mark.parametrize(
    ("arguments", "reason", "says"),
    [
        ({"phone": "12", "code": "1234"}, "invalid_number", "not a valid number"),
        ({"phone": "+4915199999999", "code": "1234"}, "not_on_whatsapp", "no WhatsApp"),
        ({"phone": PHONE, "code": ""}, "invalid_job", "empty"),
        ({"phone": PHONE, "code": "12345678901"}, "invalid_job", "4 to 10"),
        (
            {"phone": PHONE, "code": "1234", "template": "{code.__class__}"},
            "invalid_job",
            "code.__class__",
        ),
        ({"phone": PHONE}, "invalid_job", "missing argument"),
        ({"phone": PHONE, "code": "1234", "sender": "x"}, "invalid_job", "unknown argument"),
        ({"phone": PHONE, "code": 1234}, "invalid_job", "code must be a string"),
    ],
)
def test_bad_jobs_fail_with_their_reason_and_the_worker_goes_on(
    delivery: Delivery, arguments: dict[str, object], reason: str, says: str
) -> None:
    delivery.network.absent.add("4915199999999")
    bad = delivery.enqueue_raw(message_id="bad", ttl_seconds=60, **arguments)
    good = delivery.client.send_otp(PHONE, "4321")
    status = delivery.wait(bad)
    assert (status.state, status.reason) == ("failed", reason)
    assert status.error is not None
    assert says in status.error
    assert delivery.wait(good).state == "sent"
    assert [text for _, text, _ in delivery.network.sent] == [
        "Your code is 4321. It expires in 5 minutes."
    ]


def test_transient_failures_are_retried_with_backoff(delivery: Delivery) -> None:
    delivery.network.transient_failures = 2
    message_id = delivery.client.send_otp(PHONE, "1234")
    status = delivery.wait(message_id, timeout=30)
    assert status.state == "sent"
    assert status.attempts == 3
    assert len(delivery.network.sent) == 1


def test_a_send_that_keeps_failing_ends_send_error_after_the_attempts(delivery: Delivery) -> None:
    delivery.network.transient_failures = 10
    message_id = delivery.client.send_otp(PHONE, "1234")
    status = delivery.wait(message_id, timeout=30)
    assert (status.state, status.reason, status.attempts) == ("failed", "send_error", 3)
    assert delivery.network.sent == []


def test_jobs_wait_while_the_gate_is_closed_and_expire_if_their_ttl_passes(
    delivery: Delivery,
) -> None:
    delivery.gate.close()
    short = delivery.client.send_otp(PHONE, "1111", ttl_seconds=1)
    long = delivery.client.send_otp(PHONE, "2222", ttl_seconds=300)
    time.sleep(2)
    assert delivery.client.message_status(long).state == "queued"
    delivery.gate.open()
    assert delivery.wait(long).state == "sent"
    status = delivery.wait(short)
    assert (status.state, status.reason) == ("failed", "expired")
    assert [text for _, text, _ in delivery.network.sent] == [
        "Your code is 2222. It expires in 5 minutes."
    ]


def test_the_rate_limit_spaces_sends(redis_server: object, redis_client: redis.Redis) -> None:
    running, finish = start_delivery(
        redis_server.url,  # type: ignore[attr-defined]
        redis_client,
        rate_per_minute=600,
    )
    try:
        ids = [running.client.send_otp(PHONE, f"{1000 + i}") for i in range(12)]
        for message_id in ids:
            assert running.wait(message_id).state == "sent"
    finally:
        finish()
    times = sorted(at for _, _, at in running.network.sent)
    # 600 a minute: no window of 1 s (a tenth of the rule's minute) holds more than 10.
    assert all(b - a >= 0.1 for a, b in itertools.pairwise(times))


# --------------------------------------------------------------------------
# Data hygiene: RQ's keys live as long as the OTP, logs never hold a number.
# --------------------------------------------------------------------------
def rq_keys_of(redis_client: redis.Redis, message_id: str) -> list[str]:
    """Every RQ key that names the message's job (job hash, results, executions, ...)."""
    job_id = contract.job_id(TENANT, message_id)
    keys = [str(key) for key in redis_client.keys("rq:*")]  # the client decodes: str
    return sorted(key for key in keys if job_id in key)


@pytest.mark.isolation
def test_the_job_and_its_result_expire_with_the_otp_not_after_rqs_defaults(
    delivery: Delivery,
) -> None:
    ttl = 2
    lifetime = queueing.job_lifetime_seconds(ttl)
    delivery.gate.close()
    time.sleep(1.2)  # a wait for a job already under way (1 s) ends; the worker waits at the gate
    by_client = delivery.client.send_otp(PHONE, "1111", ttl_seconds=ttl)
    by_plain_rq = delivery.enqueue_raw(phone=PHONE, code="2222", message_id="raw", ttl_seconds=ttl)
    job_key = f"rq:job:{contract.job_id(TENANT, by_client)}"
    assert 0 < delivery.redis.ttl(job_key) <= lifetime  # waiting: RQ's ttl, not for ever
    delivery.gate.open()
    for message_id in (by_client, by_plain_rq):
        assert delivery.wait(message_id).state == "sent"
        job_id = contract.job_id(TENANT, message_id)
        deadline = time.monotonic() + 10
        while delivery.redis.hget(f"rq:job:{job_id}", "status") != "finished":
            assert time.monotonic() < deadline  # RQ records the end just after the send
            time.sleep(0.05)
        keys = rq_keys_of(delivery.redis, message_id)
        assert {f"rq:job:{job_id}", f"rq:results:{job_id}"} <= set(keys)
        # Finished: kept for the OTP's ttl plus the margin, not RQ's 500 s / one year.
        assert all(0 < delivery.redis.ttl(key) <= lifetime for key in keys), keys
    deadline = time.monotonic() + lifetime + 5
    while any(rq_keys_of(delivery.redis, m) for m in (by_client, by_plain_rq)):
        assert time.monotonic() < deadline, [rq_keys_of(delivery.redis, by_client)]
        time.sleep(0.5)
    assert delivery.client.message_status(by_client).state == "sent"  # the message hash stays


@pytest.mark.isolation
def test_a_job_that_outlived_its_rq_ttl_unseen_ends_its_message_expired(
    delivery: Delivery,
) -> None:
    delivery.gate.close()
    time.sleep(1.2)  # as above: no job is taken until the gate opens
    message_id = delivery.client.send_otp(PHONE, "3333", ttl_seconds=1)
    delivery.redis.delete(f"rq:job:{contract.job_id(TENANT, message_id)}")  # as RQ's ttl would
    time.sleep(1.2)
    delivery.gate.open()
    status = delivery.wait(message_id)
    assert (status.state, status.reason) == ("failed", "expired")
    assert delivery.network.sent == []


@pytest.mark.isolation
def test_no_log_line_of_the_client_or_the_worker_holds_a_full_phone_number(
    redis_server: object, redis_client: redis.Redis
) -> None:
    absent, invalid = "+4915199999999", "+49151"
    with structlog.testing.capture_logs() as logs:
        running, finish = start_delivery(redis_server.url, redis_client)  # type: ignore[attr-defined]
        try:
            running.network.absent.add(absent.removeprefix("+"))
            running.network.transient_failures = 1
            running.network.failure_text = f"could not reach {PHONE} just now"
            ids = [
                running.client.send_otp(PHONE, "1234"),
                running.client.send_otp(absent, "1234"),
                running.enqueue_raw(phone=invalid, code="1234", message_id="bad", ttl_seconds=60),
            ]
            states = [running.wait(message_id).reason for message_id in ids]
        finally:
            finish()
    assert states == [None, "not_on_whatsapp", "invalid_number"]
    text = json.dumps(logs, default=str)
    for number in (PHONE, absent):
        assert number.removeprefix("+") not in text
    events = {entry["event"] for entry in logs}
    assert {"otp_enqueued", "otp_retry_scheduled", "otp_sent", "otp_failed"} <= events


def _blocked_in(client: redis.Redis, command: str) -> bool:
    """Whether some client of the server is blocked in ``command`` (CLIENT LIST)."""
    return any(
        entry.get("cmd") == command and "b" in str(entry.get("flags", ""))
        for entry in client.client_list()
    )


def test_a_job_enqueued_while_the_idle_worker_waits_is_handed_over_at_once(
    delivery: Delivery,
) -> None:
    deadline = time.monotonic() + 10
    while not _blocked_in(delivery.redis, "blmove"):  # idle: a blocking wait, not a poll
        assert time.monotonic() < deadline, "the worker never waited for a job"
        time.sleep(0.05)
    message_id = delivery.client.send_otp(PHONE, "1234")
    # Sent within half of one wait: Redis handed the job over, no poll found it.
    status = delivery.wait(message_id, timeout=JOB_WAIT_SECONDS / 2)
    assert status.state == "sent"


def test_an_idle_worker_told_to_stop_stops_without_waiting_out_its_wait(
    redis_server: object, redis_client: redis.Redis
) -> None:
    running, finish = start_delivery(redis_server.url, redis_client)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not _blocked_in(running.redis, "blmove"):
        assert time.monotonic() < deadline, "the worker never waited for a job"
        time.sleep(0.05)
    started = time.monotonic()
    finish()  # asserts the worker's thread ended
    assert time.monotonic() - started < JOB_WAIT_SECONDS / 2
    assert not _blocked_in(running.redis, "blmove")  # its wait ended with it
