"""The auth store's guarantees in Redis: sealed, fenced, generation-checked, device-preserving."""

from __future__ import annotations

import os
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from wasp import contract
from wasp_session.auth_store import AuthStore
from wasp_session.errors import AuthStoreError, LeaseLostError, SnapshotRejectedError
from wasp_session.lease import Lease
from wasp_session.snapshot import Header, seal, split, unseal
from wasp_session.transport.sim_device import Device, DeviceFile

KEY = os.urandom(32)


def make_store(server: RedisServer, pod: str, path: Path) -> tuple[AuthStore, Lease]:
    lease = Lease(server.client(), "acme", pod, ttl=30)
    store = AuthStore(
        redis.Redis.from_url(server.url),
        tenant="acme",
        key=KEY,
        lease=lease,
        transport="simulator",
        database=path,
    )
    return store, lease


@pytest.fixture
def paired_db(tmp_path: Path) -> Path:
    path = tmp_path / "a" / "simulator.db"
    DeviceFile(path).store(Device("4915112345678@s.whatsapp.net", "Acme"))
    return path


def test_seal_hides_the_database_and_authenticates_the_header() -> None:
    header = Header(1, 1, has_device=True, transport="simulator", tenant="acme", size=5, at="x")
    blob = seal(header, b"hello", KEY)
    assert b"hello" not in blob
    assert unseal(blob, KEY) == (header, b"hello")
    assert split(blob)[0] == header
    tampered = blob.replace(b'"generation": 1', b'"generation": 9')
    with pytest.raises(AuthStoreError):
        unseal(tampered, KEY)
    with pytest.raises(AuthStoreError):
        unseal(blob, os.urandom(32))


def test_checkpoint_and_restore_round_trip(
    redis_server: RedisServer, paired_db: Path, tmp_path: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", paired_db)
    assert lease.try_acquire()
    first = store.checkpoint()
    assert first is not None
    assert first.has_device
    assert first.generation == 1
    second = store.checkpoint()
    assert second is not None
    assert second.generation == 2

    other, _ = make_store(redis_server, "pod-b", tmp_path / "b" / "simulator.db")
    assert other.restore()
    assert DeviceFile(other.database).load() == Device("4915112345678@s.whatsapp.net", "Acme")
    assert other.generation == 2


def test_only_the_lease_holder_writes(
    redis_server: RedisServer, redis_client: redis.Redis, paired_db: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", paired_db)
    with pytest.raises(LeaseLostError):
        store.checkpoint()  # never acquired
    assert lease.try_acquire()
    redis_client.delete(contract.lease_key("acme"))
    thief = Lease(redis_server.client(), "acme", "pod-b", ttl=30)
    assert thief.try_acquire()
    with pytest.raises(LeaseLostError):
        store.checkpoint()
    assert not lease.holds()
    assert not redis_client.exists(contract.auth_key("acme"))


def test_a_stale_generation_is_refused(redis_server: RedisServer, paired_db: Path) -> None:
    store, lease = make_store(redis_server, "pod-a", paired_db)
    assert lease.try_acquire()
    assert store.checkpoint() is not None
    store.generation = 0  # as a pod that never saw the write
    with pytest.raises(SnapshotRejectedError) as caught:
        store.checkpoint()
    assert caught.value.verdict == "stale_generation"


def test_a_snapshot_without_a_device_never_replaces_one_with(
    redis_server: RedisServer, paired_db: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", paired_db)
    assert lease.try_acquire()
    assert store.checkpoint() is not None
    with closing(sqlite3.connect(paired_db)) as connection, connection:
        connection.execute("DELETE FROM sim_device")
    with pytest.raises(SnapshotRejectedError) as caught:
        store.checkpoint()
    assert caught.value.verdict == "would_drop_device"
    header = store.stored_header()
    assert header is not None
    assert header.has_device


def test_delete_needs_the_lease(
    redis_server: RedisServer, redis_client: redis.Redis, paired_db: Path
) -> None:
    store, lease = make_store(redis_server, "pod-a", paired_db)
    assert lease.try_acquire()
    assert store.checkpoint() is not None
    store.delete()
    assert not redis_client.exists(contract.auth_key("acme"))


def test_lease_is_exclusive_and_tokens_grow(redis_server: RedisServer) -> None:
    first = Lease(redis_server.client(), "acme", "pod-a", ttl=30)
    second = Lease(redis_server.client(), "acme", "pod-b", ttl=30)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert first.renew()
    first.release()
    assert second.try_acquire()
    assert second.token is not None
    assert first.token is not None
    assert second.token > first.token
    assert not first.renew()
