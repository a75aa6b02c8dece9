"""Isolation as the operator keeps it: owners, the tenant's Redis users, the lease holder's word.

One owner per tenant, recorded in Redis; each tenant's own two Redis users;
a status taken only from the session pod that holds the lease.

The operator runs as a real process against the real API server and a real
redis-server; session pods are an idle stand-in (the kubelet stand-in runs a
sleeping process), and the tests write to Redis what a session pod would.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import (
    OperatorProcess,
    apply,
    create_redis_secret,
    eventually,
    get,
    session_body,
)
from harness.redis_server import RedisServer
from harness.session_reports import status_of, write_status
from wasp import contract, redis_acl

pytestmark = [pytest.mark.controlplane, pytest.mark.isolation]

RESYNC_SECONDS = 2
POD = contract.session_pod_name("acme")
USERS = (contract.session_redis_user("acme"), contract.api_redis_user("acme"))
QUEUE = f"rq:queue:{contract.delivery_queue('acme')}"


def start_operator(plane: ControlPlane, namespace: str, directory: Path) -> OperatorProcess:
    """The operator for one namespace, with a short resync."""
    return OperatorProcess(
        plane.kubeconfig,
        directory,
        namespace=namespace,
        resync_seconds=RESYNC_SECONDS,
    )


@pytest.fixture
def fast_operator(
    control_plane: ControlPlane,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
    namespace: str,
    redis_secret: str,  # noqa: ARG001 - requested for its effect: the admin Secret exists
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    operator = start_operator(control_plane, namespace, tmp_path / "operator")
    try:
        yield operator
    finally:
        operator.stop_in_background()


@pytest.fixture
def second_namespace(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """Another namespace, for a resource its own operator runs."""
    name = f"{namespace[:58]}-b"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def ready_condition(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == "Ready")


def secret_data(plane: ControlPlane, namespace: str, name: str) -> dict[str, str] | None:
    secret = get(plane, namespace, "secret", name)
    if secret is None:
        return None
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def passwords(client: redis.Redis) -> dict[str, list[str]]:
    """The password hashes of the tenant's users (what a re-made user would change)."""
    found = {}
    for user in USERS:
        described = client.acl_getuser(user)
        assert described is not None, f"no Redis user {user}"
        found[user] = [str(p) for p in described["passwords"]]  # type: ignore[union-attr]
    return found


def absent(plane: ControlPlane, namespace: str, *what: str) -> bool:
    return get(plane, namespace, *what) is None


def metric_reaches(operator: OperatorProcess, name: str, at_least: float) -> bool:
    return operator.metric(name) >= at_least


# ---------------------------------------------------------------------------------------
# Ownership
# ---------------------------------------------------------------------------------------
def test_the_owner_keeps_its_tenant_whatever_the_order_of_restarts_and_url_spellings(  # noqa: PLR0913, PLR0915, PLR0917 - one story
    control_plane: ControlPlane,
    namespace: str,
    second_namespace: str,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
    redis_secret: str,  # noqa: ARG001 - the owner's namespace: redis://127.0.0.1:PORT/0
    redis_server: RedisServer,
    redis_client: redis.Redis,
    idle_kubelet: Kubelet,
    tmp_path: Path,
) -> None:
    plane, imp_ns = control_plane, second_namespace
    # The impostor's namespace spells the same Redis another way.
    create_redis_secret(plane, imp_ns, f"redis://localhost:{redis_server.port}")
    operators: list[OperatorProcess] = []

    def operator_for(ns: str, label: str) -> OperatorProcess:
        started = start_operator(plane, ns, tmp_path / label)
        operators.append(started)
        return started

    def logs() -> str:
        return "\n".join(f"--- operator:\n{o.log()[-3000:]}" for o in operators)

    try:
        # 1. The owner, run by an operator that watches its namespace only.
        owner_operator = operator_for(namespace, "owner-1")
        apply(plane, namespace, session_body("acme", transport="simulator"))
        eventually(lambda: POD in idle_kubelet.running(), "the owner's pod runs", log=logs)
        owner_uid = (get(plane, namespace, "was", "acme") or {})["metadata"]["uid"]
        owner_pod_uid = (get(plane, namespace, "pod", POD) or {})["metadata"]["uid"]
        assert redis_client.get(contract.owner_key("acme")) == owner_uid
        eventually(
            lambda: status_of(plane, namespace).get("apiCredentials"), "users made", log=logs
        )
        users_before = passwords(redis_client)
        redis_client.set(contract.auth_key("acme"), "the owner's encrypted store")
        redis_client.set(contract.lease_key("acme"), f"1 {POD}")
        redis_client.rpush(QUEUE, contract.job_id("acme", "m1"))
        owner_operator.stop()

        # 2. The impostor, first, under an operator that never saw the owner.
        impostor_operator = operator_for(imp_ns, "impostor-1")
        apply(plane, imp_ns, session_body("acme", tenantId="acme", transport="simulator"))
        failed = eventually(
            lambda: (s := status_of(plane, imp_ns)).get("phase") == "Failed" and s,
            "the impostor is Failed",
            log=logs,
        )
        assert ready_condition(failed)["reason"] == contract.REASON_TENANT_CONFLICT
        assert failed["lastError"]["reason"] == contract.REASON_TENANT_CONFLICT
        assert owner_uid in failed["lastError"]["message"], "it names the owner it found"
        assert "apiCredentials" not in failed

        # 3. The owner's operator again, now the impostor's runs: both orders.
        operator_for(namespace, "owner-2")
        eventually(
            lambda: status_of(plane, namespace).get("phase") == "Starting",
            "the owner runs on",
            log=logs,
        )
        impostor_operator.stop()
        impostor_operator = operator_for(imp_ns, "impostor-2")
        eventually(
            lambda: impostor_operator.metric('wasp_operator_sessions{phase="Failed"}') == 1,
            "the restarted impostor's operator looked again, and failed it again",
            log=logs,
        )
        assert status_of(plane, imp_ns)["phase"] == "Failed"
        assert get(plane, imp_ns, "pod", POD) is None, "the impostor never gets a pod"
        for name in (
            contract.api_redis_secret_name("acme"),
            contract.session_redis_secret_name("acme"),
        ):
            assert get(plane, imp_ns, "secret", name) is None, "nor any Secret"
        owner_pod = get(plane, namespace, "pod", POD) or {}
        assert owner_pod["metadata"]["uid"] == owner_pod_uid, "the owner keeps its pod"
        assert redis_client.get(contract.owner_key("acme")) == owner_uid
        assert passwords(redis_client) == users_before, "nobody re-made the owner's users"
        assert "apiCredentials" in status_of(plane, namespace)

        # 4. Deleting the impostor touches nothing of the tenant.
        plane.kubectl("delete", "was", "acme", "-n", imp_ns, "--wait=false")
        eventually(lambda: get(plane, imp_ns, "was", "acme") is None, "the impostor goes", log=logs)
        assert redis_client.get(contract.auth_key("acme")) == "the owner's encrypted store"
        assert redis_client.get(contract.lease_key("acme")) == f"1 {POD}"
        assert redis_client.lrange(QUEUE, 0, -1) == [contract.job_id("acme", "m1")]
        assert redis_client.get(contract.owner_key("acme")) == owner_uid
        assert passwords(redis_client) == users_before
        assert POD in idle_kubelet.running()
        assert (get(plane, namespace, "pod", POD) or {})["metadata"]["uid"] == owner_pod_uid

        # 5. Deleting the owner forgets the tenant: keys, owner record, users.
        plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")
        eventually(lambda: get(plane, namespace, "was", "acme") is None, "the owner goes", log=logs)
        assert redis_client.exists(*contract.keys_deleted_with_session("acme")) == 0
        assert not set(USERS) & set(redis_client.acl_users())
    finally:
        for started in operators:
            started.stop()


# ---------------------------------------------------------------------------------------
# The tenant's Redis users
# ---------------------------------------------------------------------------------------
@pytest.mark.usefixtures("idle_kubelet")
def test_the_tenants_redis_users_are_made_kept_and_removed(
    control_plane: ControlPlane,
    namespace: str,
    fast_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    plane = control_plane
    apply(plane, namespace, session_body("acme", transport="simulator"))
    status = eventually(
        lambda: (s := status_of(plane, namespace)).get("apiCredentials") and s,
        "the API's credential is named in the status",
        log=fast_operator.log,
    )
    assert status["apiCredentials"] == {
        "secretName": contract.api_redis_secret_name("acme"),
        "username": contract.api_redis_user("acme"),
    }
    resource = get(plane, namespace, "was", "acme") or {}
    rules = {
        contract.session_redis_user("acme"): redis_acl.session_user_rules("acme"),
        contract.api_redis_user("acme"): redis_acl.api_user_rules("acme"),
    }
    secrets = {
        contract.session_redis_user("acme"): contract.session_redis_secret_name("acme"),
        contract.api_redis_user("acme"): contract.api_redis_secret_name("acme"),
    }
    urls = {}
    for user, secret_name in secrets.items():
        described = redis_client.acl_getuser(user)
        assert described is not None, user
        keys: list[str] = described["keys"]  # type: ignore[assignment]
        channels: list[str] = described["channels"]  # type: ignore[assignment]
        assert set(keys) == {r for r in rules[user] if r[0] in "~%"}
        assert set(channels) == {r for r in rules[user] if r.startswith("&")}
        data = secret_data(plane, namespace, secret_name)
        assert data is not None, secret_name
        assert data[contract.REDIS_SECRET_USERNAME_KEY] == user
        with redis.Redis.from_url(
            data[contract.REDIS_SECRET_URL_KEY], decode_responses=True
        ) as tenant:
            assert tenant.acl_whoami() == user, "the Secret's URL logs in as its user"
        urls[user] = data[contract.REDIS_SECRET_URL_KEY]
        secret = get(plane, namespace, "secret", secret_name) or {}
        owner = secret["metadata"]["ownerReferences"][0]
        assert (owner["kind"], owner["uid"]) == (contract.KIND, resource["metadata"]["uid"])
    assert "acme" in plane.kubectl("get", "was", "-n", namespace).stdout, "columns still print"
    policy = get(plane, namespace, "networkpolicy", POD)
    assert policy is not None, "the pod's NetworkPolicy is kept with it"

    # A Redis that lost its users (restarted without an ACL file) gets them back within a resync.
    redis_client.acl_deluser(*USERS)
    started = time.monotonic()
    eventually(
        lambda: set(USERS) <= set(redis_client.acl_users()),
        "the users are made again",
        timeout=RESYNC_SECONDS + 10,
        log=fast_operator.log,
    )
    assert time.monotonic() - started < RESYNC_SECONDS + 5
    for user, url in urls.items():
        with redis.Redis.from_url(url, decode_responses=True) as tenant:
            assert tenant.acl_whoami() == user, "with the password it had"

    plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")
    eventually(
        lambda: get(plane, namespace, "was", "acme") is None,
        "the resource goes",
        log=fast_operator.log,
    )
    assert not set(USERS) & set(redis_client.acl_users()), "its users go with it"
    for secret_name in secrets.values():  # garbage collection follows the owner reference
        eventually(
            functools.partial(absent, plane, namespace, "secret", secret_name),
            f"Secret {secret_name} is collected",
        )


# ---------------------------------------------------------------------------------------
# The relay: only from the lease holder
# ---------------------------------------------------------------------------------------
PAIRING = {
    contract.STATUS_PHASE: "AwaitingPairing",
    contract.STATUS_QR: "2@forged-qr",
    contract.STATUS_PAIRING_EXPIRES_AT: "2030-01-01T00:00:00Z",
    contract.STATUS_PAIRING_WINDOW: "1",
}
CONNECTED = {
    contract.STATUS_PHASE: "Connected",
    contract.STATUS_ACCOUNT_JID: "4915112345678@s.whatsapp.net",
    contract.STATUS_POD: POD,
    contract.STATUS_LEASE_HELD: "1",
}


@pytest.mark.usefixtures("idle_kubelet")
def test_a_status_from_anyone_but_the_lease_holder_never_reaches_the_resource(
    control_plane: ControlPlane,
    namespace: str,
    fast_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    plane = control_plane
    apply(plane, namespace, session_body("acme", transport="simulator"))
    eventually(
        lambda: status_of(plane, namespace).get("phase") == "Starting",
        "the pod runs",
        log=fast_operator.log,
    )
    # The genuine holder: lease "7 <pod>", fencing counter 7, its status carries token 7.
    redis_client.set(contract.lease_fence_key("acme"), "7")
    redis_client.set(contract.lease_key("acme"), f"7 {POD}")
    genuine = CONNECTED | {contract.STATUS_LEASE_TOKEN: "7"}
    write_status(redis_client, "acme", genuine)
    eventually(
        lambda: status_of(plane, namespace).get("phase") == "Connected",
        "the holder's status shows",
        log=fast_operator.log,
    )

    forgeries: list[tuple[str, Callable[[], None]]] = [
        (
            "no token",
            lambda: write_status(redis_client, "acme", PAIRING | {contract.STATUS_POD: POD}),
        ),
        (
            "a wrong token",
            lambda: write_status(
                redis_client,
                "acme",
                PAIRING | {contract.STATUS_POD: POD, contract.STATUS_LEASE_TOKEN: "6"},
            ),
        ),
        (
            "the right token from another pod",
            lambda: write_status(
                redis_client,
                "acme",
                PAIRING
                | {
                    contract.STATUS_POD: contract.session_pod_name("intruder"),
                    contract.STATUS_LEASE_TOKEN: "7",
                },
            ),
        ),
    ]
    ignored = "wasp_operator_status_reports_ignored_total"
    for count, (what, forge) in enumerate(forgeries, start=1):
        forge()
        eventually(
            functools.partial(metric_reaches, fast_operator, ignored, count),
            f"the operator read and ignored a status with {what}",
            log=fast_operator.log,
        )
        time.sleep(RESYNC_SECONDS)  # a resync more: still nothing of it shows
        status = status_of(plane, namespace)
        assert status["phase"] == "Connected", what
        assert "forged-qr" not in json.dumps(status), what

    # A forged event on the channel, the hash being the holder's: only a wake-up.
    write_status(redis_client, "acme", genuine)
    redis_client.publish(
        contract.events_channel("acme"),
        json.dumps(PAIRING | {contract.STATUS_POD: POD, contract.STATUS_LEASE_TOKEN: "7"}),
    )
    time.sleep(2 * RESYNC_SECONDS)
    status = status_of(plane, namespace)
    assert status["phase"] == "Connected"
    assert "forged-qr" not in json.dumps(status)

    # The holder's own QR still flows.
    write_status(
        redis_client,
        "acme",
        PAIRING
        | {
            contract.STATUS_QR: "2@genuine-qr",
            contract.STATUS_POD: POD,
            contract.STATUS_LEASE_TOKEN: "7",
        },
    )
    pairing = eventually(
        lambda: (s := status_of(plane, namespace)).get("phase") == "AwaitingPairing" and s,
        "the holder's pairing shows",
        log=fast_operator.log,
    )
    assert pairing["pairing"]["qrCode"] == "2@genuine-qr"
    assert "status_not_relayed" in fast_operator.log()
    assert "forged-qr" not in fast_operator.log(), "what is ignored is not echoed either"


@pytest.mark.usefixtures("idle_kubelet")
def test_an_image_outside_the_allowlist_gets_nothing_at_all(
    control_plane: ControlPlane,
    namespace: str,
    fast_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    plane = control_plane
    apply(plane, namespace, session_body("acme", podTemplate={"image": "evil.example/wasp:1"}))
    failed = eventually(
        lambda: (s := status_of(plane, namespace)).get("phase") == "Failed" and s,
        "the session is Failed",
        log=fast_operator.log,
    )
    assert ready_condition(failed)["reason"] == contract.REASON_IMAGE_NOT_ALLOWED
    assert "evil.example/wasp:1" in failed["lastError"]["message"]
    time.sleep(RESYNC_SECONDS)
    assert get(plane, namespace, "pod", POD) is None
    assert redis_client.get(contract.owner_key("acme")) is None, "it claims nothing"
    assert not set(USERS) & set(redis_client.acl_users())
    assert get(plane, namespace, "secret", contract.api_redis_secret_name("acme")) is None
