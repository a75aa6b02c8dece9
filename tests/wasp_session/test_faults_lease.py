"""Faults of the lease: past its deadline a session sends nothing.

The lease holds until the monotonic time its last successful acquire or renew
was sent, plus the TTL (minus a margin), and the send gate is fenced by that
deadline (``Lease.surely_held``, ``SendGate.check_lease``). The faults are
real: the redis-server process is SIGSTOPped (Redis unreachable while the
session is Connected), and a ``wasp-session`` process is SIGSTOPped while a
standby waits. What is asserted is what a user sees: ``/readyz``, the
metrics, the log, the simulator's outbox, the message states and the exit
code. The lease TTL is ``FAST_TIMINGS``' 3 s.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import FAST_TIMINGS, SessionProcess, new_auth_key
from wasp import WaspClient, contract
from wasp_session.errors import EXIT_LEASE_LOST
from wasp_session.gate import LeaseDeadlinePassedError, SendGate
from wasp_session.lease import Lease

pytestmark = pytest.mark.faults

TENANT = "acme"
PHONE = "+4915112345678"
TTL = float(FAST_TIMINGS[contract.ENV_LEASE_TTL_SECONDS])
StartSession = Callable[..., SessionProcess]


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_deadline_counts_from_when_the_renew_was_sent_and_fences_the_gate(
    redis_server: RedisServer,
) -> None:
    clock = _Clock()
    lease = Lease(redis_server.client(), TENANT, "pod-a", ttl=10, clock=clock)
    gate = SendGate()
    gate.fence_with(lease.surely_held)
    gate.open()
    assert not lease.surely_held()
    assert lease.try_acquire()
    assert lease.surely_held()
    assert gate.wait_open(0)
    gate.check_lease()

    clock.now += 8.9  # the margin is 10 % of the TTL: 1 s
    assert lease.surely_held()
    clock.now += 0.2  # as after a SIGSTOP: the time ran on, no renew came
    assert not lease.surely_held()
    assert lease.holds(), "not lost, only no longer sure"
    assert not gate.is_open
    assert not gate.wait_open(0.1)
    with pytest.raises(LeaseDeadlinePassedError):
        gate.check_lease()

    assert lease.renew()  # the key is still ours in Redis: renewed
    assert lease.surely_held()
    assert gate.wait_open(0)
    gate.check_lease()


def test_an_expired_lease_nobody_took_is_claimed_again_by_its_holder(
    redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    lease = Lease(redis_server.client(), TENANT, "pod-a", ttl=10)
    assert lease.try_acquire()
    value = redis_client.get(contract.lease_key(TENANT))
    redis_client.delete(contract.lease_key(TENANT))  # as if it expired during an outage
    assert lease.renew()
    assert redis_client.get(contract.lease_key(TENANT)) == value  # same token, same holder
    assert lease.surely_held()

    redis_client.delete(contract.lease_key(TENANT))
    other = Lease(redis_server.client(), TENANT, "pod-b", ttl=10)
    assert other.try_acquire()  # someone else took it meanwhile
    assert not lease.renew()
    assert not lease.holds()
    assert redis_client.get(contract.lease_key(TENANT)) == other.value

    other.release()  # free again, but the fencing counter moved on: never ours again
    assert not lease.renew()


def _events(pod: SessionProcess) -> list[str]:
    return [str(line.get("event")) for line in pod.log_lines()]


def _metric(pod: SessionProcess, name: str) -> float:
    for line in pod.metrics().splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    msg = f"no metric {name}"
    raise AssertionError(msg)


def _outbox_texts(client: redis.Redis) -> list[str]:
    raw = client.lrange(contract.simulator_outbox_key(TENANT), 0, -1)
    return [str(json.loads(entry)["text"]) for entry in raw]


def test_redis_unreachable_past_the_ttl_closes_the_gate_and_the_session_recovers(
    start_session: StartSession, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    pod = start_session(
        **{contract.ENV_RETRY_BACKOFF_SECONDS: "3", contract.ENV_LIVENESS_STALL_SECONDS: "60"}
    )
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan")
    pod.wait_for_phase("Connected")
    pod.wait_for(lambda: pod.health(contract.HEALTH_READY_PATH) == 200, "/readyz 200")
    lease_value = redis_client.get(contract.lease_key(TENANT))
    client = WaspClient(redis_client, TENANT)
    first = client.send_otp(PHONE, "111111")
    assert client.wait_for(first, "read", timeout=30).state == "read"

    # A send pending across the outage: its first attempt fails, the retry is due in 3 s.
    pod.simulate("fail_sends", count=1)
    pending = client.send_otp(PHONE, "222222")
    pod.wait_for(lambda: "otp_retry_scheduled" in _events(pod), "a retry in backoff")

    redis_pid = redis_server.process.pid
    os.kill(redis_pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        # Nobody can reach Redis: once the lease's TTL is over the session is not ready,
        # and says why; nothing below touches Redis.
        pod.wait_for(
            lambda: pod.health(contract.HEALTH_READY_PATH) == 503, "/readyz 503", timeout=TTL + 5
        )
        closed_after = time.monotonic() - stopped
        assert _metric(pod, "wasp_session_lease_valid") == 0
        assert _metric(pod, "wasp_session_lease_deadline_passed_total") == 1
        time.sleep(max(0.0, 2 * TTL - (time.monotonic() - stopped)))  # well past the TTL
    finally:
        os.kill(redis_pid, signal.SIGCONT)
    assert closed_after <= TTL + 1.5, "the gate closed by the lease's deadline"
    assert closed_after >= TTL / 2, "not before the lease could have run out"

    # Redis is back: the lease (expired meanwhile, nobody took it) is claimed again,
    # the gate reopens, the pending OTP goes out; no restart, no new scan.
    assert client.wait_for(pending, "read", timeout=30).state == "read"
    pod.wait_for(lambda: pod.health(contract.HEALTH_READY_PATH) == 200, "/readyz 200 again")
    assert pod.process.alive()
    assert pod.phase() == "Connected"
    assert redis_client.get(contract.lease_key(TENANT)) == lease_value, "same holder and token"
    assert _metric(pod, "wasp_session_lease_valid") == 1
    events = _events(pod)
    passed = events.index("lease_deadline_passed")
    restored = events.index("lease_deadline_restored")
    assert passed < restored
    assert "otp_sent" not in events[passed:restored], "nothing sent past the deadline"
    assert "otp_sent" in events[restored:], "the pending OTP went out once renewed"
    assert "lease_lost" not in events
    assert _outbox_texts(redis_client).count(_outbox_texts(redis_client)[-1]) == 1

    later = client.send_otp(PHONE, "333333")
    assert client.wait_for(later, "read", timeout=30).state == "read"
    pod.terminate()
    assert pod.wait_exit() == 0


def test_a_session_stopped_past_its_lease_sends_nothing_after_it_resumes(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    key = new_auth_key()
    # One send per 15 s: the second OTP waits in the first pod's hands, paced.
    slow = {contract.ENV_RATE_PER_MINUTE: "4", contract.ENV_LIVENESS_STALL_SECONDS: "60"}
    first = start_session(name="pod-a", auth_key=key, **slow)
    first.wait_for_phase("AwaitingPairing")
    first.simulate("scan")
    first.wait_for_phase("Connected")
    first.wait_for(lambda: redis_client.exists(contract.auth_key(TENANT)), "auth checkpoint")
    standby = start_session(name="pod-b", auth_key=key, **slow)
    standby.wait_for_status(contract.STATUS_STANDBY_POD, "pod-b")

    client = WaspClient(redis_client, TENANT)
    sent_first = client.send_otp(PHONE, "111111")
    client.wait_for(sent_first, "sent", timeout=30)
    held = client.send_otp(PHONE, "222222")
    first.wait_for(lambda: client.message_status(held).state == "sending", "the second OTP in hand")
    paused_at = time.monotonic()
    os.killpg(first.process.pid, signal.SIGSTOP)
    try:
        standby.wait_for_status(contract.STATUS_POD, "pod-b", timeout=15)
        standby.wait_for_phase("Connected", timeout=15)
        # The lease was renewed a moment before the pause: the standby can take it
        # a little under a TTL after it. Resume only once a whole TTL has passed.
        time.sleep(max(0.0, TTL + 0.5 - (time.monotonic() - paused_at)))
    finally:
        os.killpg(first.process.pid, signal.SIGCONT)
    resumed_after = time.monotonic() - paused_at
    assert resumed_after > TTL
    assert resumed_after < 15, "resumed while its send was still paced"
    sent_before = _events(first).count("otp_sent")

    # The resumed pod is past its deadline at once: it sends nothing, finds the lease
    # taken and exits; the standby delivers the OTP it had in hand, once.
    assert first.wait_exit(timeout=20) == EXIT_LEASE_LOST
    assert client.wait_for(held, "read", timeout=40).state == "read"
    events = _events(first)
    assert events.count("otp_sent") == sent_before == 1
    assert events.index("lease_deadline_passed") < events.index("lease_lost")
    assert "otp_sent" in _events(standby)
    assert _outbox_texts(redis_client).count(_outbox_texts(redis_client)[-1]) == 1
    assert len(_outbox_texts(redis_client)) == 2
    assert standby.health(contract.HEALTH_READY_PATH) == 200
