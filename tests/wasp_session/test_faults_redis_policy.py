"""A Redis that may evict keys: the session refuses to start and says why.

A real ``redis-server`` started with an evicting ``--maxmemory-policy``; the
real ``wasp-session`` reads it with ``INFO memory`` (through its own ACL
user's rights: ``CONFIG`` is not among them), writes phase ``Failed``,
reason ``RedisEvictionPolicy`` under a lease it gives back (so the operator
relays it), and exits with the configuration exit code.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess, session_env
from wasp import contract, redis_acl

pytestmark = pytest.mark.faults

EXIT_CONFIG = 2  # wasp_session.errors.EXIT_CONFIG


@pytest.fixture(params=["allkeys-lru", "volatile-lru"])
def evicting_redis(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path / "redis", password="admin-pass", extra_args=("--maxmemory-policy", request.param)
    )
    try:
        yield server
    finally:
        server.stop()


def session_user_url(server: RedisServer, tenant: str) -> str:
    """The tenant's session ACL user, with exactly the operator's rules (no CONFIG)."""
    username = contract.session_redis_user(tenant)
    with server.client() as admin:
        admin.execute_command(
            "ACL",
            "SETUSER",
            username,
            *redis_acl.setuser_arguments(redis_acl.session_user_rules(tenant), "session-pass"),
        )
    return f"redis://{username}:session-pass@127.0.0.1:{server.port}/0"


def test_an_evicting_redis_stops_the_session_with_the_reason(
    evicting_redis: RedisServer, tmp_path: Path
) -> None:
    policy = evicting_redis.extra_args[-1]
    env = session_env("acme", session_user_url(evicting_redis, "acme"), tmp_path / "pod-a")
    with SessionProcess(env, tmp_path / "pod-a.log") as pod:
        assert pod.wait_exit() == EXIT_CONFIG
        records = [json.loads(line) for line in pod.process.log_path.read_text().splitlines()]
    refused = [r for r in records if r.get("event") == "redis_eviction_policy_refused"]
    assert refused, records
    assert refused[0]["policy"] == policy
    assert refused[0]["status_written"] is True
    with evicting_redis.client() as admin:
        status = admin.hgetall(contract.status_key("acme"))
        # Written under the lease, so the operator relays it; the lease is given back.
        assert status[contract.STATUS_LEASE_TOKEN] == admin.get(contract.lease_fence_key("acme"))
        assert not admin.exists(contract.lease_key("acme"))
        # It took nothing: no auth state, no worker, nothing from the queue.
        assert not admin.exists(contract.auth_key("acme"))
        assert not admin.smembers("rq:workers")
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == contract.REASON_REDIS_EVICTION_POLICY
    assert policy in status[contract.STATUS_MESSAGE]
    assert "noeviction" in status[contract.STATUS_MESSAGE]


def test_the_session_user_cannot_read_config_but_sees_the_policy(
    evicting_redis: RedisServer,
) -> None:
    with redis.Redis.from_url(session_user_url(evicting_redis, "acme")) as session:
        with pytest.raises(redis.exceptions.NoPermissionError):
            session.config_get("maxmemory-policy")
        assert session.info("memory")["maxmemory_policy"] == evicting_redis.extra_args[-1]


def test_a_noeviction_redis_is_accepted(redis_server: RedisServer, tmp_path: Path) -> None:
    env = session_env("acme", redis_server.url, tmp_path / "pod-a")
    with SessionProcess(env, tmp_path / "pod-a.log") as pod:
        pod.wait_for_phase("AwaitingPairing")
        records = pod.process.log_path.read_text()
    assert "redis_eviction_policy_refused" not in records
