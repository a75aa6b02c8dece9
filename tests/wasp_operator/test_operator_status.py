"""The resource's status follows what the session reports through Redis; deletion cleans up."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.session_reports import events_of, report, status_when
from wasp import contract

pytestmark = pytest.mark.controlplane

POD = contract.session_pod_name("acme")


PAIRING = {
    contract.STATUS_PHASE: "AwaitingPairing",
    contract.STATUS_QR: "2@first-qr",
    contract.STATUS_PAIRING_EXPIRES_AT: "2030-01-01T00:00:00Z",
    contract.STATUS_PAIRING_WINDOW: "1",
    contract.STATUS_POD: POD,
}
CONNECTED = {
    contract.STATUS_PHASE: "Connected",
    contract.STATUS_ACCOUNT_JID: "4915112345678@s.whatsapp.net",
    contract.STATUS_PUSH_NAME: "Acme",
    contract.STATUS_POD: POD,
    contract.STATUS_LEASE_HELD: "1",
}


@pytest.mark.usefixtures("idle_kubelet")
def test_the_status_follows_the_sessions_reports(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "Starting" and s.get("podName") == POD,
        "the pod runs and the session is Starting",
        wasp_operator.log,
    )

    report(redis_client, "acme", PAIRING)
    pairing = status_when(
        control_plane, namespace, lambda s: s.get("phase") == "AwaitingPairing", "pairing shows"
    )
    assert pairing["pairing"] == {
        "qrCode": "2@first-qr",
        "expiresAt": "2030-01-01T00:00:00Z",
        "window": 1,
    }

    report(redis_client, "acme", CONNECTED)
    status = status_when(
        control_plane, namespace, lambda s: s.get("phase") == "Connected", "connected shows"
    )
    generation = (get(control_plane, namespace, "was", "acme") or {})["metadata"]["generation"]
    assert "pairing" not in status
    assert status["account"] == {"jid": "4915112345678@s.whatsapp.net", "pushName": "Acme"}
    assert status["observedGeneration"] == generation
    conditions = {c["type"]: c for c in status["conditions"]}
    assert {k: c["status"] for k, c in conditions.items()} == {
        "Ready": "True",
        "Paired": "True",
        "Connected": "True",
    }
    assert all(c["observedGeneration"] == generation for c in conditions.values())
    listed = control_plane.kubectl("get", "was", "acme", "-n", namespace).stdout
    assert "4915112345678@s.whatsapp.net" in listed

    def reasons() -> set[str] | None:
        seen = {e["reason"] for e in events_of(control_plane, namespace)}
        return seen if {"Starting", "AwaitingPairing", "Connected"} <= seen else None

    eventually(reasons, "an Event for every phase change", log=wasp_operator.log)
    metrics = wasp_operator.metrics()
    assert 'wasp_operator_sessions{phase="Connected"} 1.0' in metrics
    assert 'wasp_operator_phase_changes_total{phase="AwaitingPairing"} 1.0' in metrics
    assert 'wasp_operator_pod_actions_total{action="create",reason="PodMissing"} 1.0' in metrics


@pytest.mark.usefixtures("idle_kubelet")
def test_the_qr_stays_in_redis_when_not_exposed(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    apply(control_plane, namespace, session_body("acme", pairing={"exposeInStatus": False}))
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "Starting",
        "starting",
        wasp_operator.log,
    )
    report(redis_client, "acme", PAIRING)
    status = status_when(
        control_plane, namespace, lambda s: s.get("phase") == "AwaitingPairing", "pairing shows"
    )
    assert "pairing" not in status
    assert "2@first-qr" not in json.dumps(status)


@pytest.mark.usefixtures("idle_kubelet")
def test_a_restarted_operator_catches_up_from_the_status_hash(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "Starting",
        "starting",
        wasp_operator.log,
    )
    wasp_operator.stop()

    report(redis_client, "acme", CONNECTED, publish=False)  # nobody was listening anyway

    again = OperatorProcess(control_plane.kubeconfig, tmp_path / "again", namespace=namespace)
    try:
        status_when(
            control_plane,
            namespace,
            lambda s: s.get("phase") == "Connected",
            "the status caught up",
            again.log,
        )
    finally:
        again.stop()


def test_deleting_a_session_stops_its_pod_and_forgets_the_tenant(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    idle_kubelet: Kubelet,
    redis_client: redis.Redis,
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    eventually(lambda: POD in idle_kubelet.running(), "the pod runs", log=wasp_operator.log)
    redis_client.set(contract.auth_key("acme"), "encrypted-store")
    redis_client.set(contract.lease_key("acme"), "token")
    redis_client.rpush(contract.simulator_outbox_key("acme"), '{"to": "+4915112345678"}')
    report(redis_client, "acme", CONNECTED)
    redis_client.set(contract.auth_key("bystander"), "another tenant's store")

    control_plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")

    eventually(
        lambda: get(control_plane, namespace, "was", "acme") is None,
        "the resource is gone",
        log=wasp_operator.log,
    )
    assert get(control_plane, namespace, "pod", POD) is None
    assert POD not in idle_kubelet.running()
    assert redis_client.exists(contract.auth_key("acme"), contract.lease_key("acme")) == 0
    assert redis_client.exists(contract.status_key("acme")) == 0
    assert redis_client.exists(contract.simulator_outbox_key("acme")) == 0
    assert redis_client.get(contract.auth_key("bystander")) == "another tenant's store"


def pairing_shows(
    control_plane: ControlPlane,
    namespace: str,
    redis_client: redis.Redis,
    operator: OperatorProcess,
) -> None:
    """Apply session ``acme``, report it pairing, wait until its status shows that."""
    apply(control_plane, namespace, session_body("acme"))
    report(redis_client, "acme", PAIRING)
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "AwaitingPairing",
        "pairing shows",
        operator.log,
    )


@pytest.mark.usefixtures("idle_kubelet", "wasp_crd", "redis_secret")
def test_a_status_changed_by_someone_else_is_written_back_at_once(
    control_plane: ControlPlane, namespace: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    """The echo of the operator's own status write wakes nothing; any other change does.

    No resync comes within the test (600 s): only the watch event can bring the truth back.
    """
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "operator", namespace=namespace, resync_seconds=600
    )
    try:
        pairing_shows(control_plane, namespace, redis_client, operator)
        forged = {"status": {"phase": "Connected", "account": {"jid": "1@s.whatsapp.net"}}}
        control_plane.kubectl(
            "patch", "was", "acme", "-n", namespace, "--subresource=status",
            "--type=merge", "-p", json.dumps(forged),
        )  # fmt: skip
        status = status_when(
            control_plane,
            namespace,
            lambda s: s.get("phase") == "AwaitingPairing" and "account" not in s,
            "the operator writes its own status back",
            operator.log,
        )
        assert status["pairing"]["qrCode"] == "2@first-qr"
    finally:
        operator.stop()


@pytest.mark.usefixtures("idle_kubelet")
def test_the_relay_survives_a_dropped_subscription(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    pairing_shows(control_plane, namespace, redis_client, wasp_operator)

    killed = redis_client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    report(redis_client, "acme", CONNECTED, publish=False)  # lost while nobody listens
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "Connected",
        "the status catches up after the relay resubscribes",
        wasp_operator.log,
    )

    eventually(lambda: redis_client.pubsub_numpat() == 1, "one pattern subscription again")
    report(redis_client, "acme", PAIRING)
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "AwaitingPairing",
        "new reports arrive again",
        wasp_operator.log,
    )
