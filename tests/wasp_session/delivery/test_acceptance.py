"""Delivery end to end: the real ``wasp-session`` process with the simulator transport.

Jobs are enqueued by the client library or by plain RQ into a real
redis-server; what WhatsApp "received" is read from the simulator's outbox.
"""

from __future__ import annotations

import itertools
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.bulk_otps import enqueue_many
from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key, session_env
from wasp import WaspClient, contract, queueing

TENANT = "acme"
PHONE = "+4915112345678"
ROOT = Path(__file__).resolve().parents[3]
SNIPPET_HEADING = "Enqueue an OTP with plain RQ"


class Pod:
    """Starts (and restarts) the tenant's session process, linked once."""

    def __init__(self, server: RedisServer, tmp_path: Path, **env: str) -> None:
        """Prepare runs with ``env`` overrides and one auth key for all of them."""
        self.server = server
        self.tmp_path = tmp_path
        self.auth_key = new_auth_key()
        self.env = env
        self.runs = 0
        self.process: SessionProcess | None = None

    def start(self, *, scan: bool) -> SessionProcess:
        """Start a run; pair it first if ``scan``; return once it is Connected."""
        self.stop()  # a killed run's log file is closed here
        self.runs += 1
        env = session_env(
            TENANT,
            self.server.url,
            self.tmp_path / f"pod-{self.runs}",
            auth_key=self.auth_key,
            **self.env,
        )
        self.process = SessionProcess(env, self.tmp_path / f"pod-{self.runs}.log")
        if scan:
            self.process.wait_for_phase("AwaitingPairing")
            self.process.simulate("scan")
        self.process.wait_for_phase("Connected", timeout=30)
        return self.process

    def stop(self) -> None:
        """Stop the current run."""
        if self.process is not None:
            self.process.stop()


@pytest.fixture
def raw_redis(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_server.url)
    yield client
    client.close()


def outbox(redis_client: redis.Redis) -> list[dict[str, Any]]:
    return [
        json.loads(x) for x in redis_client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)
    ]


def states(redis_client: redis.Redis, ids: list[str]) -> list[str | None]:
    pipe = redis_client.pipeline(transaction=False)
    for message_id in ids:
        pipe.hget(contract.message_key(TENANT, message_id), contract.MESSAGE_STATE)
    return [s.decode() if isinstance(s, bytes) else s for s in pipe.execute()]


def wait_all(
    redis_client: redis.Redis, ids: list[str], final: tuple[str, ...], pod: Pod, timeout: float
) -> list[str | None]:
    deadline = time.monotonic() + timeout
    pending = list(ids)
    while True:
        pending = [
            i for i, s in zip(pending, states(redis_client, pending), strict=True) if s not in final
        ]
        if not pending:
            return states(redis_client, ids)
        if time.monotonic() > deadline:
            counts = Counter(states(redis_client, ids))
            assert pod.process is not None
            msg = f"not all final after {timeout} s: {counts}\n{pod.process.process.log_tail()}"
            raise AssertionError(msg)
        time.sleep(1)


def snippet_from_docs() -> str:
    """The plain-RQ snippet, exactly as README.md shows it under its heading."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    heading = re.search(rf"^#+ {re.escape(SNIPPET_HEADING)}\s*$", text, re.MULTILINE)
    assert heading is not None, f"no '{SNIPPET_HEADING}' section in README.md"
    block = re.search(r"```python\n(.*?)```", text[heading.end() :], re.DOTALL)
    assert block is not None, f"no ```python block under '{SNIPPET_HEADING}' in README.md"
    return block.group(1)


@pytest.fixture
def pod(redis_server: RedisServer, tmp_path: Path) -> Iterator[Pod]:
    running = Pod(redis_server, tmp_path)
    yield running
    running.stop()


def test_the_documented_plain_rq_snippet_delivers_an_otp_to_read(
    pod: Pod, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    pod.start(scan=True)
    result = subprocess.run(
        [sys.executable, "-c", snippet_from_docs()],
        env={"WASP_REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    message_id = result.stdout.strip().splitlines()[-1]
    client = WaspClient(redis_client, TENANT)
    status = client.wait_for(message_id, "read", timeout=30)
    assert status.state == "read"
    assert [m["to"] for m in outbox(redis_client)] == [PHONE]
    assert "493817" in outbox(redis_client)[0]["text"]
    assert pod.process is not None
    metrics = pod.process.metrics()
    assert f'wasp_otp_messages_total{{reason="",state="read",tenant="{TENANT}"}} 1.0' in metrics
    assert f'wasp_otp_enqueue_to_sent_seconds_count{{tenant="{TENANT}"}} 1.0' in metrics
    assert f'wasp_otp_queue_depth{{tenant="{TENANT}"}}' in metrics


BULK = 10_000
FINAL = contract.FINAL_MESSAGE_STATES
# Sends as fast as the worker goes; checkpoints of the auth state less often than
# the harness's test default (each one is a child process: CPU the run needs).
BULK_ENV = {
    contract.ENV_RATE_PER_MINUTE: "10000000",
    contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS: "10",
}


def test_ten_thousand_otps_all_reach_a_final_state_none_lost_none_twice(
    redis_server: RedisServer, raw_redis: redis.Redis, tmp_path: Path
) -> None:
    pod = Pod(redis_server, tmp_path, **BULK_ENV)
    try:
        pod.start(scan=True)
        ids = enqueue_many(raw_redis, TENANT, PHONE, BULK)
        seen = wait_all(raw_redis, ids, FINAL, pod, timeout=170)
    finally:
        pod.stop()
    assert Counter(seen)["failed"] == 0
    texts = [m["text"] for m in outbox(raw_redis)]
    assert len(texts) == BULK
    assert len(set(texts)) == BULK


def test_ten_thousand_otps_survive_two_sigkills_with_at_most_one_duplicate_per_crash(
    redis_server: RedisServer, raw_redis: redis.Redis, tmp_path: Path
) -> None:
    pod = Pod(redis_server, tmp_path, **BULK_ENV)
    kills = 2
    try:
        pod.start(scan=True)
        ids = enqueue_many(raw_redis, TENANT, PHONE, BULK)
        for kill in range(1, kills + 1):
            target = BULK * kill // (kills + 1)
            deadline = time.monotonic() + 120
            key = contract.simulator_outbox_key(TENANT)
            while raw_redis.llen(key) < target and time.monotonic() < deadline:
                time.sleep(0.05)
            assert pod.process is not None
            pod.process.kill()
            pod.process.wait_exit()
            pod.start(scan=False)
        # Pending receipts live in Redis (as on WhatsApp's servers): the messages sent
        # just before a SIGKILL get theirs from the next process, so every one ends final.
        seen = wait_all(raw_redis, ids, FINAL, pod, timeout=170)
    finally:
        pod.stop()
    assert set(seen) <= set(FINAL)  # none left "sent": no receipt died with a process
    assert Counter(seen)["failed"] == 0
    print(f"states after {kills} SIGKILLs: {Counter(seen)}")  # noqa: T201
    texts = Counter(m["text"] for m in outbox(raw_redis))
    assert len(texts) == BULK  # every OTP went out: none lost
    duplicates = sum(n - 1 for n in texts.values())
    print(f"duplicates after {kills} SIGKILLs: {duplicates}")  # noqa: T201 - the measured window
    assert duplicates <= kills


def test_jobs_wait_while_disconnected_and_expire_if_their_ttl_passes(
    pod: Pod, redis_client: redis.Redis
) -> None:
    process = pod.start(scan=True)
    client = WaspClient(redis_client, TENANT)
    process.simulate("disconnect", seconds=5)
    process.wait_for(lambda: process.phase() != "Connected", "disconnected", timeout=10)
    short = client.send_otp(PHONE, "111111", ttl_seconds=2)
    long = client.send_otp(PHONE, "222222", ttl_seconds=300)
    time.sleep(1)
    assert client.message_status(long).state == "queued"
    assert outbox(redis_client) == []
    process.wait_for_phase("Connected", timeout=30)
    assert client.wait_for(long, "sent", timeout=30).state in ("sent", "delivered", "read")
    status = client.wait_for(short, "sent", timeout=30)
    assert (status.state, status.reason) == ("failed", "expired")
    assert [m["text"] for m in outbox(redis_client)] == [
        "Your code is 222222. It expires in 5 minutes."
    ]


BAD_JOBS: list[tuple[dict[str, object], str]] = [
    ({"phone": "12", "code": "1234"}, "invalid_number"),
    ({"phone": "+4915199999999", "code": "1234"}, "not_on_whatsapp"),
    ({"phone": PHONE, "code": ""}, "invalid_job"),
    ({"phone": PHONE, "code": "12345678901"}, "invalid_job"),
    ({"phone": PHONE, "code": "1234", "template": "{code.__class__}"}, "invalid_job"),
    ({"phone": PHONE, "code": "1234", "template": "{code.__init__.__globals__}"}, "invalid_job"),
    ({"phone": PHONE}, "invalid_job"),
    ({"phone": PHONE, "code": "1234", "priority": "high"}, "invalid_job"),
]


def test_bad_jobs_end_with_their_reason_and_the_worker_serves_the_next(
    pod: Pod, redis_client: redis.Redis, raw_redis: redis.Redis
) -> None:
    pod.start(scan=True)
    redis_client.sadd(contract.simulator_absent_key(TENANT), "+4915199999999")
    queue = queueing.otp_queue(raw_redis, TENANT)
    client = WaspClient(redis_client, TENANT)
    good_ids = []
    for number, (arguments, _reason) in enumerate(BAD_JOBS):
        message_id = f"bad-{number}"
        queue.enqueue_call(
            contract.OTP_JOB_FUNCTION,
            kwargs={"message_id": message_id, "ttl_seconds": 60, **arguments},
            job_id=contract.job_id(TENANT, message_id),
        )
        good_ids.append(client.send_otp(PHONE, f"{9000 + number}"))
    for number, (_arguments, reason) in enumerate(BAD_JOBS):
        status = client.wait_for(f"bad-{number}", "sent", timeout=30)
        assert (status.state, status.reason) == ("failed", reason), status
        assert status.error
    for message_id in good_ids:
        assert client.wait_for(message_id, "sent", timeout=30).state != "failed"
    texts = [m["text"] for m in outbox(redis_client)]
    assert sorted(texts) == sorted(
        f"Your code is {9000 + n}. It expires in 5 minutes." for n in range(len(BAD_JOBS))
    )


def test_the_rate_limit_holds_on_the_outbox_timestamps(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    rate = 240  # a minute: one send every 0.25 s at most
    pod = Pod(redis_server, tmp_path, **{contract.ENV_RATE_PER_MINUTE: str(rate)})
    try:
        pod.start(scan=True)
        client = WaspClient(redis_client, TENANT)
        ids = [client.send_otp(PHONE, f"{5000 + i}") for i in range(30)]
        for message_id in ids:
            assert client.wait_for(message_id, "sent", timeout=60).state != "failed"
    finally:
        pod.stop()
    times = sorted(float(m["at"]) for m in outbox(redis_client))
    assert len(times) == 30
    # Consecutive sends at least 60/rate s apart, which is what makes any window of
    # 60 s hold at most `rate` sends; checked on every window of the run, scaled.
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 60 / rate, min(gaps)
    window = 60 / rate * 10
    for start in times:
        assert sum(start <= t < start + window for t in times) <= 10
