"""Faults a tenant's Redis brings to the operator: an unsent queue, an evicting policy.

A suspended tenant's OTPs wait past their TTL: RQ drops each job (its
``ttl`` is the OTP's TTL + 10 s), a user reads ``failed``/``expired``, and
deleting the resource deletes the tenant's queue and every job key it still
had, even a job enqueued without a ``ttl``. A Redis switched to an evicting
``maxmemory-policy`` makes the real session pod refuse to start, and the
operator shows why in the resource's status.
"""

from __future__ import annotations

import json
import uuid
from functools import partial

import pytest
import redis
from rq import Queue
from rq.job import Job

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.redis_server import RedisServer
from harness.session_reports import status_when
from wasp import contract, queueing
from wasp.client import WaspClient

pytestmark = [pytest.mark.faults, pytest.mark.controlplane]

POD = contract.session_pod_name("acme")
PHONE = "+4915112345678"
TTL = 1  # seconds: the OTP's TTL, so its job lives TTL + 10 s


def tenant_rq_keys(client: redis.Redis, tenant: str) -> list[str]:
    """Every RQ key of the tenant's queue and jobs (the patterns the ACL grants)."""
    queue = contract.delivery_queue(tenant)
    return sorted(
        str(key)
        for key in client.scan_iter(match="rq:*", count=1000)
        if queue in str(key) or f":{contract.job_id(tenant, '')}" in str(key)
    )


def plain_rq_job_without_ttl(rq_client: redis.Redis, tenant: str) -> str:
    """A job as an old API enqueues it: no ``ttl``, so its hash never expires by itself."""
    message_id = uuid.uuid4().hex
    queueing.otp_queue(rq_client, tenant).enqueue(
        contract.OTP_JOB_FUNCTION,
        job_id=contract.job_id(tenant, message_id),
        kwargs={"phone": PHONE, "code": "493817", "message_id": message_id, "ttl_seconds": 300},
    )
    return message_id


def test_a_suspended_tenants_otps_expire_unsent_and_its_queue_goes_with_it(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
) -> None:
    redis_client = redis_server.client()
    apply(control_plane, namespace, session_body("acme", transport="simulator", suspend=True))
    eventually(
        lambda: redis_client.get(contract.owner_key("acme")),
        "the operator claims the tenant",
        log=wasp_operator.log,
    )
    binary = redis.Redis.from_url(redis_server.url)  # RQ's jobs are bytes
    client = WaspClient(redis_client, "acme")
    message_id = client.send_otp(PHONE, "493817", ttl_seconds=TTL)
    old_api_job = plain_rq_job_without_ttl(binary, "acme")
    bystander = plain_rq_job_without_ttl(binary, "globex")

    # The job carries its TTL at enqueue: the OTP's TTL + 10 s.
    job_key = Job.key_for(contract.job_id("acme", message_id))
    lifetime = queueing.job_lifetime_seconds(TTL)
    job = Job.fetch(
        contract.job_id("acme", message_id), connection=binary, serializer=queueing.JOB_SERIALIZER
    )
    assert job.ttl == lifetime
    assert 0 < redis_client.ttl(job_key) <= lifetime
    assert redis_client.ttl(Job.key_for(contract.job_id("acme", old_api_job))) == -1

    # Suspended: no pod takes it. Past the TTL it expires unsent, and says so.
    assert client.message_status(message_id).state == "queued"
    status = client.wait_for(message_id, "sent", timeout=lifetime + 5)
    assert (status.state, status.reason) == ("failed", "expired"), status
    assert not redis_client.exists(job_key), "RQ dropped the job"
    assert POD not in session_kubelet.running()
    assert not redis_client.lrange(contract.simulator_outbox_key("acme"), 0, -1)
    assert tenant_rq_keys(redis_client, "acme"), "the queue and the TTL-less job are still there"

    control_plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")
    eventually(
        lambda: get(control_plane, namespace, "was", "acme") is None,
        "the resource is gone",
        log=wasp_operator.log,
    )

    assert tenant_rq_keys(redis_client, "acme") == []
    queue_key = f"rq:queue:{contract.delivery_queue('acme')}"
    assert queue_key not in redis_client.smembers("rq:queues")
    assert not Job.exists(contract.job_id("acme", old_api_job), connection=binary)
    # What the user reads stays true: the message expired unsent.
    status = WaspClient(redis_client, "acme").message_status(message_id)
    assert (status.state, status.reason) == ("failed", "expired")
    # Another tenant's queue and job are untouched.
    assert Job.exists(contract.job_id("globex", bystander), connection=binary)
    globex = Queue(contract.delivery_queue("globex"), connection=binary)
    assert globex.job_ids == [contract.job_id("globex", bystander)]


def test_an_evicting_redis_stops_the_pod_and_the_resource_says_why(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    redis_client.config_set("maxmemory-policy", "allkeys-lru")  # as a careless admin might

    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body("acme", transport="simulator"))

    status = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("lastError") or {}).get("reason") == contract.REASON_REDIS_EVICTION_POLICY,
        "the resource shows the refusal",
        logs,
    )
    assert status["phase"] == "Failed", json.dumps(status)
    assert "allkeys-lru" in status["lastError"]["message"]
    assert "noeviction" in status["lastError"]["message"]
    assert not redis_client.exists(contract.auth_key("acme")), "the pod took nothing"
