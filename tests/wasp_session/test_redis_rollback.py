"""Redis rolled back to an older snapshot: detected, reported, never restored over newer state.

The fault is real: a ``SAVE`` of a real redis-server is copied aside (a
backup), the session goes on writing newer checkpoints, then the server is
stopped and started again on the same port from the old RDB file. A live
session writes its newer auth state back and says so; a session process
started again on the same data dir (the pod's emptyDir survives a container
restart) keeps its newer local copy instead of restoring the older one. The
control: a local copy older than Redis's is restored over, as always. What
is asserted is what a user sees: the status hash (relayable: its lease token
is the lease's), the metric, the log, the stored generation, OTPs delivered.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, new_auth_key
from wasp import WaspClient, contract
from wasp_session.auth_store import AuthStore, Rollback
from wasp_session.errors import SnapshotRejectedError
from wasp_session.lease import Lease
from wasp_session.snapshot import Header, seal
from wasp_session.transport.sim_device import Device, DeviceFile

pytestmark = pytest.mark.faults

TENANT = "acme"
PHONE = "+4915112345678"
ROLLED_BACK = contract.REASON_REDIS_ROLLED_BACK
StartSession = Callable[..., SessionProcess]
# Within a few lease renewals (each writes the heartbeat that notices), well
# before the periodic checkpoint (FAST_TIMINGS: 30 s) could find it.
DETECTED_WITHIN = 10.0


def stored_generation(server: RedisServer) -> int | None:
    """The generation of the auth snapshot in Redis (its readable header), if any."""
    with redis.Redis.from_url(server.url) as client:
        blob = client.get(contract.auth_key(TENANT))
    if blob is None:
        return None
    assert isinstance(blob, bytes)
    return int(json.loads(blob.partition(b"\n")[0])["generation"])


def logged(pod: SessionProcess, event: str) -> list[dict[str, Any]]:
    return [line for line in pod.log_lines() if line.get("event") == event]


def wait_logged(pod: SessionProcess, event: str, timeout: float = 30.0) -> dict[str, Any]:
    pod.wait_for(lambda: logged(pod, event), event, timeout)
    return logged(pod, event)[-1]


def rollbacks_metric(pod: SessionProcess) -> float:
    for line in pod.metrics().splitlines():
        if line.startswith("wasp_session_redis_rollbacks_total "):
            return float(line.split()[1])
    msg = "no wasp_session_redis_rollbacks_total"
    raise AssertionError(msg)


def send_otp(server: RedisServer, code: str) -> str:
    """One OTP through the client library (a fresh connection); its final state."""
    with server.client() as client:
        wasp = WaspClient(client, TENANT)
        message_id = wasp.send_otp(PHONE, code)
        return wasp.wait_for(message_id, "delivered", timeout=30).state


def paired(start_session: StartSession, key: str, name: str = "pod-a") -> SessionProcess:
    pod = start_session(TENANT, name=name, auth_key=key)
    pod.wait_for_phase("AwaitingPairing")
    pod.simulate("scan", push_name="Acme")
    pod.wait_for_phase("Connected")
    wait_logged(pod, "session_connected")
    pod.wait_for(
        lambda: any(line.get("why") == "connected" for line in logged(pod, "checkpoint_written")),
        "the checkpoint on Connected",
    )
    return pod


def settled_generation(server: RedisServer, at_least: int, pod: SessionProcess) -> int:
    """Wait until the stored generation reaches ``at_least`` and stops moving; return it."""
    pod.wait_for(lambda: (stored_generation(server) or 0) >= at_least, f"generation {at_least}", 30)
    while True:
        before = stored_generation(server)
        time.sleep(1.5)  # three debounce delays: any checkpoint under way has landed
        if stored_generation(server) == before:
            assert before is not None
            return before


def snapshot(server: RedisServer, tmp_path: Path) -> tuple[Path, int | None]:
    """A backup of the server now, and the auth generation it holds."""
    generation = stored_generation(server)
    backup = server.save_snapshot(tmp_path / "backup.rdb")
    assert stored_generation(server) == generation, "a checkpoint raced the backup"
    return backup, generation


def relayable(server: RedisServer, status: dict[str, str]) -> bool:
    """Whether the operator would relay ``status``: its lease token is the current one."""
    with server.client() as client:
        fence = client.get(contract.lease_fence_key(TENANT))
    return fence is not None and status.get(contract.STATUS_LEASE_TOKEN) == str(fence)


def test_a_live_session_writes_its_newer_state_back_over_an_older_snapshot(
    start_session: StartSession, redis_server: RedisServer, tmp_path: Path
) -> None:
    pod = paired(start_session, new_auth_key())
    backup, old = snapshot(redis_server, tmp_path)
    assert old is not None
    for code in ("111111", "222222"):  # receipts: newer checkpoints
        assert send_otp(redis_server, code) in ("delivered", "read")
    written = settled_generation(redis_server, old + 2, pod)

    redis_server.roll_back(backup)
    assert stored_generation(redis_server) == old  # Redis lost the newer writes

    status = pod.wait_for_status(contract.STATUS_REASON, ROLLED_BACK, timeout=DETECTED_WITHIN)
    assert logged(pod, "redis_lost_writes")  # the heartbeat noticed: no OTP needed
    line = wait_logged(pod, "redis_rolled_back")
    assert line["stored_generation"] == old
    assert line["our_generation"] >= written
    message = (
        f"Redis lost recent writes: the stored auth state was generation {old}, this session "
        f"had written generation {line['our_generation']}; rewritten from the live session "
        f"as generation {line['written_generation']}."
    )
    assert status[contract.STATUS_MESSAGE] == message
    assert status[contract.STATUS_LAST_ERROR_REASON] == ROLLED_BACK
    assert status[contract.STATUS_LAST_ERROR_MESSAGE] == message
    assert status[contract.STATUS_PHASE] == "Connected"
    assert relayable(redis_server, status)
    assert (stored_generation(redis_server) or 0) >= line["written_generation"] > written
    assert rollbacks_metric(pod) == 1.0
    assert pod.health("/readyz") == 200
    assert send_otp(redis_server, "333333") in ("delivered", "read")  # the session goes on
    assert send_otp(redis_server, "444444") in ("delivered", "read")
    assert rollbacks_metric(pod) == 1.0  # said once, not at every checkpoint after
    assert pod.process.alive()


def test_a_rollback_to_before_pairing_shows_the_live_status_again_not_the_old_qr(
    start_session: StartSession, redis_server: RedisServer, tmp_path: Path
) -> None:
    pod = start_session(TENANT, auth_key=new_auth_key())
    pod.wait_for_phase("AwaitingPairing")
    pod.wait_for(lambda: pod.redis.exists(contract.pairing_key(TENANT)), "window 1 recorded")
    backup, old = snapshot(redis_server, tmp_path)  # no auth yet; a QR in the status
    assert old is None
    pod.simulate("scan", push_name="Acme")
    pod.wait_for_phase("Connected")
    written = settled_generation(redis_server, 2, pod)

    redis_server.roll_back(backup)
    with redis_server.client() as client:
        assert client.hget(contract.status_key(TENANT), contract.STATUS_PHASE) == "AwaitingPairing"
        assert client.exists(contract.pairing_key(TENANT))  # window 1 was recorded

    status = pod.wait_for_status(contract.STATUS_REASON, ROLLED_BACK, timeout=DETECTED_WITHIN)
    assert status[contract.STATUS_PHASE] == "Connected"
    assert contract.STATUS_QR not in status
    assert contract.STATUS_PAIRING_WINDOW not in status
    assert status[contract.STATUS_PUSH_NAME] == "Acme"
    assert status[contract.STATUS_MESSAGE].startswith(
        "Redis lost recent writes: the stored auth state was missing, this session had "
        f"written generation {written};"
    )
    assert relayable(redis_server, status)
    with redis_server.client() as client:
        assert not client.exists(contract.pairing_key(TENANT))  # no stale window count
    assert (stored_generation(redis_server) or 0) > written
    assert rollbacks_metric(pod) == 1.0
    assert send_otp(redis_server, "555555") in ("delivered", "read")


def test_a_restarted_session_keeps_its_newer_local_state_over_an_older_snapshot(
    start_session: StartSession, redis_server: RedisServer, tmp_path: Path
) -> None:
    key = new_auth_key()
    pod = paired(start_session, key)
    backup, old = snapshot(redis_server, tmp_path)
    assert old is not None
    for code in ("111111", "222222"):
        assert send_otp(redis_server, code) in ("delivered", "read")
    local = settled_generation(redis_server, old + 2, pod)
    pod.kill()  # the container dies; its data dir (an emptyDir) stays
    pod.wait_exit()

    redis_server.roll_back(backup)
    again = start_session(  # the restarted container: same pod, same data dir
        TENANT,
        name="pod-a-restarted",
        auth_key=key,
        **{contract.ENV_DATA_DIR: pod.env[contract.ENV_DATA_DIR], contract.ENV_POD_NAME: "pod-a"},
    )
    wait_logged(again, "session_connected")
    kept = wait_logged(again, "auth_local_newer_kept")
    assert kept["local_generation"] == local
    assert kept["stored_generation"] == old
    status = again.wait_for_status(contract.STATUS_REASON, ROLLED_BACK)
    assert status[contract.STATUS_PHASE] == "Connected"
    assert wait_logged(again, "redis_rolled_back")["from_local_copy"] is True
    message = (
        f"Redis lost recent writes: the stored auth state was generation {old}, this pod's "
        f"local copy was generation {local}; kept the local copy and wrote it back as "
        f"generation {local + 1}."
    )
    assert status[contract.STATUS_MESSAGE] == message
    assert status[contract.STATUS_LAST_ERROR_REASON] == ROLLED_BACK
    assert status[contract.STATUS_LAST_ERROR_MESSAGE] == message
    assert relayable(redis_server, status)
    assert (stored_generation(redis_server) or 0) > local
    assert rollbacks_metric(again) == 1.0
    assert not logged(again, "pairing_code_issued")  # no new scan
    assert send_otp(redis_server, "333333") in ("delivered", "read")


def test_a_restarted_session_older_than_redis_restores_from_redis(
    start_session: StartSession, redis_server: RedisServer
) -> None:
    key = new_auth_key()
    first = paired(start_session, key, "pod-a")
    local = settled_generation(redis_server, 1, first)
    first.kill()
    first.wait_exit()
    second = start_session(TENANT, name="pod-b", auth_key=key)  # another node takes over
    wait_logged(second, "session_connected")
    assert send_otp(redis_server, "111111") in ("delivered", "read")
    newer = settled_generation(redis_server, local + 2, second)
    second.kill()
    second.wait_exit()

    again = start_session(
        TENANT,
        name="pod-a-restarted",
        auth_key=key,
        **{contract.ENV_DATA_DIR: first.env[contract.ENV_DATA_DIR], contract.ENV_POD_NAME: "pod-a"},
    )
    wait_logged(again, "session_connected")
    assert logged(again, "auth_restored")
    assert not logged(again, "auth_local_newer_kept")
    assert not logged(again, "redis_rolled_back")
    wait_logged(again, "checkpoint_written")
    first_write = logged(again, "checkpoint_written")[0]
    assert first_write["generation"] == newer + 1  # went on from Redis's, not its own
    status = again.wait_for_phase("Connected")
    assert status.get(contract.STATUS_LAST_ERROR_REASON) != ROLLED_BACK
    assert rollbacks_metric(again) == 0.0
    assert send_otp(redis_server, "222222") in ("delivered", "read")


# --------------------------------------------------------------------------
# The rules, against the real redis-server with the auth store alone: what is
# a rollback, and what stays another writer's newer state.
# --------------------------------------------------------------------------
KEY = os.urandom(32)


def make_store(server: RedisServer, pod: str, path: Path) -> tuple[AuthStore, Lease]:
    lease = Lease(server.client(), TENANT, pod, ttl=30)
    store = AuthStore(
        redis.Redis.from_url(server.url),
        tenant=TENANT,
        key=KEY,
        lease=lease,
        transport="simulator",
        database=path,
    )
    return store, lease


def device_db(path: Path) -> Path:
    DeviceFile(path).store(Device("4915112345678@s.whatsapp.net", "Acme"))
    return path


def test_an_older_generation_under_a_newer_fence_is_another_writers_and_kept(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", device_db(tmp_path / "a" / "s.db"))
    assert lease.try_acquire()
    for _ in range(3):
        assert store.checkpoint() is not None
    # Another pod, under a newer lease, logged out and paired again: generation 1.
    theirs = device_db(tmp_path / "b" / "s.db").read_bytes()
    header = Header(1, 99, has_device=True, transport="simulator", tenant=TENANT, size=0, at="x")
    header = dataclasses.replace(header, size=len(theirs))
    redis_client.set(contract.auth_key(TENANT), seal(header, theirs, KEY))

    with pytest.raises(SnapshotRejectedError) as caught:
        store.checkpoint()  # generation 1 < its 3, but written under a newer lease
    assert caught.value.verdict == "stale_fence"
    assert store.stored_header() == header
    restarted, _ = make_store(redis_server, "pod-a", store.database)  # same data dir
    assert restarted.restore()
    assert not restarted.kept_local  # the newer writer's state is restored over the local
    assert restarted.generation == 1
    assert restarted.database.read_bytes() == theirs


def test_a_missing_snapshot_is_a_rollback_only_for_a_session_that_wrote_one(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", device_db(tmp_path / "a" / "s.db"))
    assert lease.try_acquire()
    first = store.checkpoint()
    assert first is not None
    assert first.rollback is None  # the first write ever
    redis_client.delete(contract.auth_key(TENANT))  # as a Redis that came back empty
    again = store.checkpoint()
    assert again is not None
    assert again.rollback == Rollback(
        stored_generation=None, ours=1, written=2, from_local_copy=False
    )
    redis_client.delete(contract.auth_key(TENANT))
    assert store.restore()  # a restart now: the local copy (generation 2) is kept
    assert store.kept_local
    kept = store.checkpoint()
    assert kept is not None
    assert kept.rollback == Rollback(
        stored_generation=None, ours=2, written=3, from_local_copy=True
    )


def test_a_snapshot_another_pod_deleted_since_is_no_rollback(
    redis_server: RedisServer, redis_client: redis.Redis, tmp_path: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", device_db(tmp_path / "a" / "s.db"))
    assert lease.try_acquire()
    assert store.checkpoint() is not None
    lease.release()
    other = Lease(redis_server.client(), TENANT, "pod-b", ttl=30)
    assert other.try_acquire()  # pod-b took over, was logged out: it deleted the snapshot
    redis_client.delete(contract.auth_key(TENANT))
    other.release()

    restarted, restarted_lease = make_store(redis_server, "pod-a", store.database)
    assert restarted_lease.try_acquire()
    assert not restarted.restore()  # nothing stored, and the local copy is not called newer
    assert not restarted.kept_local
    assert restarted.generation == 0
