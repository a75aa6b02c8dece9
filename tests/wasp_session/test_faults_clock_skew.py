"""A session pod whose clock is 5 minutes off: it still pairs, and OTP TTLs hold.

The real ``wasp-session`` runs under libfaketime (Debian package ``faketime``,
``make faketime``): its wall clock is ``+5m`` or ``-5m`` from the test's (the
API's, which enqueues) and Redis's; its monotonic clock is left alone. (With
a faked monotonic clock libfaketime 0.9.10 makes every timed thread wait hang;
without one, its ``clock_nanosleep`` fails ``time.sleep`` with EINVAL: a
``sitecustomize`` of the test's makes ``time.sleep`` wait in ``select``.) A TTL
counts from the job's creation on the enqueuer's clock, and the pod reads the
present from Redis (docs/delivery.md, "Clocks"): a pod 5 minutes ahead must
not drop a valid OTP as expired, one 5 minutes behind must not send one whose
TTL has passed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import cast

import pytest
import redis

from harness.faketime import skewed_environment
from harness.session_process import SessionProcess
from wasp import WaspClient, contract

pytestmark = pytest.mark.faults

TENANT = "acme"
PHONE = "+4915112345678"
SKEW_SECONDS = {"+5m": 300, "-5m": -300}

StartSession = Callable[..., SessionProcess]


def _outbox_texts(client: redis.Redis) -> list[str]:
    entries = client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)
    return [json.loads(entry)["text"] for entry in entries]


def _pod_state(pod: SessionProcess, message_id: str) -> tuple[str | None, str | None]:
    """The message's state and reason as the pod wrote them (not the client's view)."""
    key = contract.message_key(TENANT, message_id)
    state, reason = pod.redis.hmget(key, [contract.MESSAGE_STATE, contract.MESSAGE_REASON])
    return cast("str | None", state), cast("str | None", reason)


@pytest.mark.parametrize("offset", sorted(SKEW_SECONDS))
def test_a_pod_five_minutes_off_pairs_and_keeps_otp_ttls(
    start_session: StartSession, redis_client: redis.Redis, offset: str, tmp_path: Path
) -> None:
    pod = start_session(TENANT, **skewed_environment(offset, tmp_path / "faketime"))
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected", timeout=30)
    # The skew is real: the pod's own log timestamps are 5 minutes off.
    stamp = pod.log_lines()[-1]["timestamp"]
    off = (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()
    assert abs(off - SKEW_SECONDS[offset]) < 30, off

    client = WaspClient(redis_client, TENANT)
    valid = client.send_otp(PHONE, "111111", ttl_seconds=20)
    pod.wait_for(
        lambda: _pod_state(pod, valid)[0] in ("sent", "delivered", "read"),
        "the OTP within its TTL sent",
        timeout=15,
    )

    pod.simulate("disconnect", seconds=6)
    pod.wait_for(lambda: pod.phase() != "Connected", "disconnected", timeout=10)
    late = client.send_otp(PHONE, "222222", ttl_seconds=2)
    pod.wait_for_phase("Connected", timeout=30)
    pod.wait_for(
        lambda: _pod_state(pod, late)[0] == "failed", "the OTP past its TTL failed", timeout=15
    )
    assert _pod_state(pod, late) == ("failed", "expired")
    time.sleep(1)
    texts = _outbox_texts(redis_client)
    assert len(texts) == 1, texts
    assert "111111" in texts[0]
