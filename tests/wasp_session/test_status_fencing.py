"""Only the lease holder writes the status, and every write carries its fencing token.

The operator relays a status hash only when its ``lease_token`` is the
lease's current token. These tests check the session's side of that promise
against a real redis-server: first ``StatusBoard`` itself, then real
``wasp-session`` processes (a standby beside a holder, a holder whose lease
is taken away).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis

from harness.session_process import Channels, SessionProcess, new_auth_key
from wasp import contract
from wasp_session.errors import LeaseLostError
from wasp_session.lease import Lease
from wasp_session.status import StatusBoard

StartSession = Callable[..., SessionProcess]


def board(client: redis.Redis, pod: str) -> tuple[StatusBoard, Lease]:
    lease = Lease(client, "acme", pod, ttl=30)
    return StatusBoard(client, "acme", pod, lease), lease


def status(client: redis.Redis) -> dict[str, str]:
    return client.hgetall(contract.status_key("acme"))  # type: ignore[return-value]


# ---------------------------------------------------------------- the status board
@pytest.mark.isolation
def test_a_board_without_the_lease_writes_nothing(redis_client: redis.Redis) -> None:
    writer, _ = board(redis_client, "pod-a")
    with pytest.raises(LeaseLostError):
        writer.set_phase("AwaitingPairing", extra={contract.STATUS_QR: "2@stolen"})
    with pytest.raises(LeaseLostError):
        writer.record_error("X", "y")
    assert status(redis_client) == {}


def test_every_write_of_the_holder_carries_its_token(redis_client: redis.Redis) -> None:
    writer, lease = board(redis_client, "pod-a")
    assert lease.try_acquire()
    written = writer.set_phase("AwaitingPairing", extra={contract.STATUS_QR: "2@abc"})
    assert written[contract.STATUS_LEASE_TOKEN] == str(lease.token)
    assert written[contract.STATUS_POD] == "pod-a"
    assert status(redis_client) == written
    lease.release()
    writer, lease = board(redis_client, "pod-b")
    assert lease.try_acquire()
    written = writer.update({contract.STATUS_TIMELOCKED: "1"})
    assert written[contract.STATUS_LEASE_TOKEN] == str(lease.token) == "2"
    assert written[contract.STATUS_POD] == "pod-b"


@pytest.mark.isolation
def test_a_holder_whose_lease_was_taken_writes_nothing_and_knows_it(
    redis_client: redis.Redis,
) -> None:
    writer, lease = board(redis_client, "pod-a")
    assert lease.try_acquire()
    writer.set_phase("Connected")
    before = status(redis_client)
    redis_client.set(contract.lease_key("acme"), f"{lease.token} pod-b")  # expired, retaken
    with pytest.raises(LeaseLostError):
        writer.set_phase("AwaitingPairing", extra={contract.STATUS_QR: "2@late"})
    assert status(redis_client) == before
    assert not lease.holds()


@pytest.mark.isolation
def test_a_refusal_is_written_only_while_nobody_holds_the_lease_and_never_relayable(
    redis_client: redis.Redis,
) -> None:
    holder, lease = board(redis_client, "pod-a")
    assert lease.try_acquire()
    holder.set_phase("AwaitingPairing", extra={contract.STATUS_QR: "2@abc"})
    live = status(redis_client)
    refuser, _ = board(redis_client, "pod-x")
    assert not refuser.record_refusal(contract.REASON_TENANT_CONFLICT, "not the owner")
    assert status(redis_client) == live  # a live holder's status is left alone

    lease.release()
    assert refuser.record_refusal(contract.REASON_TENANT_CONFLICT, "not the owner")
    after = status(redis_client)
    assert after[contract.STATUS_PHASE] == "Failed"
    assert after[contract.STATUS_REASON] == contract.REASON_TENANT_CONFLICT
    assert after[contract.STATUS_POD] == "pod-x"
    assert contract.STATUS_LEASE_TOKEN not in after  # the operator relays none of it
    assert contract.STATUS_QR not in after


# ---------------------------------------------------------------- real session processes
@pytest.mark.isolation
def test_a_standby_pod_never_writes_the_phase_or_a_lease_token(
    start_session: StartSession, redis_client: redis.Redis, channels: Channels
) -> None:
    key = new_auth_key()
    holder = start_session(name="pod-a", auth_key=key)
    holder.wait_for_phase("AwaitingPairing")
    token = holder.status()[contract.STATUS_LEASE_TOKEN]
    assert token == str(redis_client.get(contract.lease_fence_key("acme")))

    standby = start_session(name="pod-b", auth_key=key)
    standby.wait_for_status(contract.STATUS_STANDBY_POD, "pod-b")
    deadline = time.monotonic() + 3  # pairing windows rotate meanwhile: the holder writes
    while time.monotonic() < deadline:
        now = status(redis_client)
        assert now[contract.STATUS_POD] == "pod-a"
        assert now[contract.STATUS_LEASE_TOKEN] == token
        time.sleep(0.05)
    holder.simulate("scan")
    holder.wait_for_phase("Connected")
    channels.wait_phase("Connected")
    published = channels.statuses
    assert {s[contract.STATUS_POD] for s in published} == {"pod-a"}
    assert {s[contract.STATUS_LEASE_TOKEN] for s in published} == {token}
    events = [line["event"] for line in standby.log_lines()]
    assert "lease_waiting" in events
    assert "session_phase" not in events

    holder.kill()  # the standby takes over: from then on its own token
    standby.wait_for_status(contract.STATUS_POD, "pod-b", timeout=15)
    taken = standby.wait_for_phase("Connected", timeout=15)
    assert int(taken[contract.STATUS_LEASE_TOKEN]) > int(token)
    lease = str(redis_client.get(contract.lease_key("acme")))
    assert lease == f"{taken[contract.STATUS_LEASE_TOKEN]} pod-b"


@pytest.mark.isolation
def test_a_pod_whose_lease_is_taken_stops_without_writing_the_status(
    start_session: StartSession, redis_client: redis.Redis, channels: Channels
) -> None:
    pod = start_session(name="pod-a")  # QR codes rotate every second: it wants to write
    pod.wait_for_phase("AwaitingPairing")
    redis_client.set(contract.lease_key("acme"), "999 thief", px=60_000)
    taken = status(redis_client)
    channels.drain()
    seen = len(channels.statuses)
    assert pod.wait_exit(timeout=15) == 4
    after = status(redis_client)
    for fields in (taken, after):
        fields.pop(contract.STATUS_HEARTBEAT, None)  # a renewal may end just as it is taken
    assert after == taken
    channels.drain()
    assert channels.statuses[seen:] == []
    assert "lease_lost_exiting" in [line["event"] for line in pod.log_lines()]
