"""What a resync costs the API server, and a NetworkPolicy changed by someone else.

A full cycle runs for every session at least once per resync interval. With
a thousand sessions every 30 s, reading each session's two credential
Secrets and its NetworkPolicy each time was about a hundred reads a second
against the API server before any tenant did anything. The operator now
remembers the Secrets it read or wrote (``tenancy.SECRET_RECHECK_SECONDS``)
and watches the NetworkPolicies it makes, so a resync reads neither; a
NetworkPolicy someone else deletes or edits is put back at once, not at the
next resync.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.operator_process import (
    OperatorProcess,
    apply,
    create_redis_secret,
    eventually,
    get,
    session_body,
)
from harness.redis_server import RedisServer
from wasp import contract

pytestmark = pytest.mark.controlplane

TENANTS = ("acme", "globex", "initech")
RESYNC_SECONDS = 2.0
WINDOW_SECONDS = 16.0
ADMIN_SECRET_FRESH_SECONDS = 5.0  # supervisor.ADMIN_SECRET_FRESH_SECONDS: its reads are shared


def reads_of(plane: ControlPlane, resource: str) -> int:
    """How many GETs of ``resource`` the API server has answered (its own request counter)."""
    metrics = plane.kubectl("get", "--raw", "/metrics").stdout
    pattern = re.compile(r"^apiserver_request_total\{(?P<labels>[^}]*)\} (?P<count>\d+)$")
    total = 0
    for line in metrics.splitlines():
        match = pattern.match(line)
        if match is None:
            continue
        labels = match["labels"]
        if f'resource="{resource}"' in labels and 'verb="GET"' in labels:
            total += int(match["count"])
    return total


def policy_of(plane: ControlPlane, namespace: str, tenant: str) -> dict[str, object] | None:
    """The tenant's session pod's NetworkPolicy, as the API server has it."""
    return get(plane, namespace, "networkpolicy", contract.session_pod_name(tenant))


def set_up_every_tenant(plane: ControlPlane, namespace: str, operator: OperatorProcess) -> None:
    """Apply the tenants and wait for each one's pod, NetworkPolicy and status."""

    def every_tenant_is_set_up() -> bool:
        return all(
            get(plane, namespace, "pod", contract.session_pod_name(tenant)) is not None
            and policy_of(plane, namespace, tenant) is not None
            and ((get(plane, namespace, "was", tenant) or {}).get("status") or {}).get("phase")
            for tenant in TENANTS
        )

    for tenant in TENANTS:
        apply(plane, namespace, session_body(tenant, transport="simulator"))
    eventually(every_tenant_is_set_up, "every tenant is set up", log=operator.log)
    for tenant in TENANTS:  # no write for kopf's memory of the spec (diffbase.py): none needed
        annotations = (get(plane, namespace, "was", tenant) or {})["metadata"].get("annotations")
        assert not any("last-handled-configuration" in key for key in annotations or {})


@pytest.mark.usefixtures("redis_secret")
def test_resyncs_read_no_credential_secret_and_no_network_policy(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    operator = start_operator(resync_seconds=RESYNC_SECONDS)
    set_up_every_tenant(control_plane, namespace, operator)
    time.sleep(2 * RESYNC_SECONDS)  # the first cycles (which read what they make) are over

    secrets_before = reads_of(control_plane, "secrets")
    policies_before = reads_of(control_plane, "networkpolicies")
    time.sleep(WINDOW_SECONDS)  # about eight full cycles of every session
    secret_reads = reads_of(control_plane, "secrets") - secrets_before
    policy_reads = reads_of(control_plane, "networkpolicies") - policies_before

    # Only the admin Redis Secret is read, at most once per its freshness window
    # (shared by every session): before, each full cycle read two Secrets per session.
    admin_reads = WINDOW_SECONDS / ADMIN_SECRET_FRESH_SECONDS + 2
    assert secret_reads <= admin_reads, operator.log()
    assert policy_reads == 0, operator.log()
    assert "session_cycle_failed" not in operator.log()


@pytest.mark.usefixtures("redis_secret")
def test_a_network_policy_deleted_or_edited_by_someone_else_comes_back_at_once(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    """No resync comes within the test (600 s): only the watch can bring the policy back."""
    operator = start_operator(resync_seconds=600)
    set_up_every_tenant(control_plane, namespace, operator)
    name = contract.session_pod_name("acme")
    built = policy_of(control_plane, namespace, "acme")
    assert built is not None

    control_plane.kubectl("delete", "networkpolicy", name, "-n", namespace)
    eventually(
        lambda: policy_of(control_plane, namespace, "acme") is not None,
        "the deleted NetworkPolicy is made again",
        log=operator.log,
    )

    # "anything, anywhere": what an attacker would want
    opened: dict[str, object] = {"spec": {"egress": [{}]}}
    control_plane.kubectl(
        "patch", "networkpolicy", name, "-n", namespace, "--type=merge", "-p", json.dumps(opened)
    )
    eventually(
        lambda: (policy_of(control_plane, namespace, "acme") or {}).get("spec") == built["spec"],
        "the edited NetworkPolicy is put back as built",
        log=operator.log,
    )
    for tenant in ("globex", "initech"):  # the others were left alone
        assert policy_of(control_plane, namespace, tenant) is not None


@pytest.mark.usefixtures("redis_secret")
def test_a_credential_secret_deleted_by_hand_is_made_again_before_the_next_pod(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
) -> None:
    """The remembered Secrets are read again whenever a pod is to be made: it mounts them.

    No resync comes within the test (600 s): the pod's deletion alone brings both back.
    """
    operator = start_operator(resync_seconds=600)
    set_up_every_tenant(control_plane, namespace, operator)
    secret = contract.session_redis_secret_name("acme")
    pod = contract.session_pod_name("acme")
    first_pod = (get(control_plane, namespace, "pod", pod) or {})["metadata"]["uid"]
    password = (get(control_plane, namespace, "secret", secret) or {})["data"]["password"]

    control_plane.kubectl("delete", "secret", secret, "-n", namespace)
    control_plane.kubectl("delete", "pod", pod, "-n", namespace, "--wait=false")

    def new_pod() -> dict[str, Any] | None:
        found = get(control_plane, namespace, "pod", pod)
        return found if found and found["metadata"]["uid"] != first_pod else None

    eventually(new_pod, "a new pod", log=operator.log)
    made_again = get(control_plane, namespace, "secret", secret)
    assert made_again is not None, "the new pod's credential Secret exists when the pod does"
    assert made_again["data"]["password"] != password  # a new password (its user made again)
    assert "session_cycle_failed" not in operator.log()


def test_resyncs_are_capped_over_every_session_yet_each_still_resyncs(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    redis_client: redis.Redis,
) -> None:
    """A 1 s resync, but at most one resync a second in all (``--max-resyncs-per-second``).

    Three sessions would resync three times a second; capped, each resyncs
    every 3-4 s (3 / (1 x 0.75) s, drawn 75-100 %): a thousand sessions do
    not keep the operator busy with resyncs, yet every one is still looked
    at, and a Redis user deleted behind the operator's back is made again.
    """
    operator = start_operator(
        resync_seconds=1, environment={contract.ENV_OPERATOR_MAX_RESYNCS_PER_SECOND: "1"}
    )
    set_up_every_tenant(control_plane, namespace, operator)
    time.sleep(2 * RESYNC_SECONDS)  # the first full cycles are over; every loop knows them all

    before = operator.metric("wasp_operator_resyncs_total")
    time.sleep(WINDOW_SECONDS)
    made = operator.metric("wasp_operator_resyncs_total") - before
    period = len(TENANTS) / (1 * 0.75)
    assert made <= WINDOW_SECONDS * 1 + len(TENANTS), "at most one a second, in all"
    assert made >= len(TENANTS) * (WINDOW_SECONDS // period - 1), "each still resyncs"

    user = contract.session_redis_user("acme")
    redis_client.acl_deluser(user)
    eventually(
        lambda: user in redis_client.acl_users(),
        "the deleted Redis user is made again by a resync",
        timeout=2 * period + 5,
        log=operator.log,
    )
    log = operator.log()
    assert "session_cycle_failed" not in log
    # Nor a line per watch event that says only that its handler ran.
    assert "Handler 'session_changed' succeeded." not in log
    assert "Handler 'pod_changed' succeeded." not in log
    assert "redis_user_made: wasp-session-acme" in log  # the operator's own lines still show


def test_a_session_applied_before_its_redis_secret_starts_soon_after_the_secret_comes(
    control_plane: ControlPlane,
    namespace: str,
    start_operator: Callable[..., OperatorProcess],
    redis_server: RedisServer,
) -> None:
    """A failed cycle is tried again within seconds, not at the next resync (600 s here).

    Nothing the operator watches tells it the admin Secret came: before, the
    session stood without a pod until its resync (minutes at scale).
    """
    operator = start_operator(resync_seconds=600)
    control_plane.kubectl("delete", "secret", contract.DEFAULT_REDIS_SECRET, "-n", namespace)
    apply(control_plane, namespace, session_body("acme", transport="simulator"))

    def missing_secret_shown() -> bool:
        found = (get(control_plane, namespace, "was", "acme") or {}).get("status") or {}
        return bool((found.get("lastError") or {}).get("reason") == "RedisSecretMissing")

    eventually(
        missing_secret_shown, "the status says the Redis Secret is missing", log=operator.log
    )
    time.sleep(5)  # a few failed tries: the next waits longer (2, 4, 8 s, ...)
    create_redis_secret(control_plane, namespace, redis_server.url)
    eventually(
        lambda: get(control_plane, namespace, "pod", contract.session_pod_name("acme")),
        "the pod, within seconds of the Secret",
        timeout=30,
        log=operator.log,
    )
