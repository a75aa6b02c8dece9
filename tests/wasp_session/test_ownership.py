"""A session pod runs its tenant only if its WhatsAppSession owns the tenant on this Redis.

The operator records the owner's uid (``contract.owner_key``) and passes each
pod its resource's uid (``WASP_OWNER_UID``). Real ``wasp-session`` processes
against a real redis-server: a pod of another resource stops at once with
``TenantConflict`` and exit code 2, and the owner's auth state, lease, queue
and status are exactly as they were.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import redis

from harness.redis_server import RedisServer
from harness.session_process import SessionProcess
from wasp import WaspClient, contract

StartSession = Callable[..., SessionProcess]
OWNER = "0b6f3c1e-4d2a-4c8e-9f10-7a5b3c2d1e0f"
IMPOSTOR = "9e8d7c6b-5a49-4382-b1a0-f9e8d7c6b5a4"

pytestmark = pytest.mark.isolation


def tenant_keys(server: RedisServer) -> dict[str, object]:
    """Everything of the tenant an impostor must not touch, as stored."""
    with redis.Redis.from_url(server.url) as client:
        return {
            "auth": client.get(contract.auth_key("acme")),
            "lease": client.get(contract.lease_key("acme")),
            "fence": client.get(contract.lease_fence_key("acme")),
            "queue": client.lrange(f"rq:queue:{contract.delivery_queue('acme')}", 0, -1),
            "delivery": client.hgetall(contract.delivery_settings_key("acme")),
            "account": client.get(contract.account_key("acme")),
            "owner": client.get(contract.owner_key("acme")),
        }


def test_a_pod_of_another_resource_stops_with_tenant_conflict_and_touches_nothing(
    start_session: StartSession, redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    redis_client.set(contract.owner_key("acme"), OWNER)
    owner = start_session(name="pod-a", **{contract.ENV_OWNER_UID: OWNER})
    owner.wait_for_phase("AwaitingPairing")
    owner.simulate("scan", phone="+4915187654312")
    owner.wait_for_phase("Connected")
    owner.wait_for(lambda: redis_client.exists(contract.auth_key("acme")), "auth checkpoint")
    owner.terminate()
    assert owner.wait_exit() == 0
    message_id = WaspClient(redis_client, "acme").send_otp("+4917612345699", "493817")
    before = tenant_keys(redis_server)

    impostor = start_session(name="pod-x", **{contract.ENV_OWNER_UID: IMPOSTOR})
    assert impostor.wait_exit() == 2
    status = impostor.status()
    assert status[contract.STATUS_PHASE] == "Failed"
    assert status[contract.STATUS_REASON] == contract.REASON_TENANT_CONFLICT
    assert OWNER in status[contract.STATUS_MESSAGE]
    assert IMPOSTOR in status[contract.STATUS_MESSAGE]
    assert contract.STATUS_LEASE_TOKEN not in status  # never relayed by the operator
    assert tenant_keys(redis_server) == before
    assert WaspClient(redis_client, "acme").message_status(message_id).state == "queued"
    logged = [line["event"] for line in impostor.log_lines()]
    assert "tenant_owned_by_another_resource" in logged
    assert "lease_acquired" not in logged
    assert "delivery_started" not in logged


def test_the_owner_runs_and_a_pod_without_an_owner_record_runs_too(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    unowned = start_session(name="pod-a", **{contract.ENV_OWNER_UID: OWNER})
    unowned.wait_for_phase("AwaitingPairing")  # sandbox: no operator, no record
    assert redis_client.get(contract.owner_key("acme")) is None  # the pod never writes it
    unowned.terminate()
    assert unowned.wait_exit() == 0
    redis_client.set(contract.owner_key("acme"), OWNER)
    owner = start_session(name="pod-b", **{contract.ENV_OWNER_UID: OWNER})
    owner.wait_for_status(contract.STATUS_POD, "pod-b")
    owner.wait_for_phase("AwaitingPairing")


def test_an_impostor_leaves_a_live_owners_status_alone(
    start_session: StartSession, redis_client: redis.Redis
) -> None:
    redis_client.set(contract.owner_key("acme"), OWNER)
    owner = start_session(name="pod-a", **{contract.ENV_OWNER_UID: OWNER})
    owner.wait_for_phase("AwaitingPairing")
    owner.simulate("scan")
    live = owner.wait_for_phase("Connected")
    impostor = start_session(name="pod-x", **{contract.ENV_OWNER_UID: IMPOSTOR})
    assert impostor.wait_exit() == 2
    after = owner.status()
    for field in (contract.STATUS_PHASE, contract.STATUS_POD, contract.STATUS_LEASE_TOKEN):
        assert after[field] == live[field]
    assert owner.health("/readyz") == 200
