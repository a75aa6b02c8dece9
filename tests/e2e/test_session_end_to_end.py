"""End to end with the simulator: kubectl apply → pod → QR → scan → OTP read → delete.

Everything is real but the kubelet (``harness.kubelet`` runs the pod's own
container command, ``wasp-session``, with the pod's own env) and WhatsApp
(the simulator transport, a product feature: ``spec.transport: simulator``).
"""

from __future__ import annotations

import json
from functools import partial

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.qr_channel import QrChannel
from harness.redis_server import RedisServer
from harness.session_reports import status_of
from wasp import contract
from wasp.client import WaspClient

pytestmark = pytest.mark.controlplane

POD = contract.session_pod_name("acme")
PHONE = "+4915112345678"


def test_a_session_pairs_delivers_survives_its_pod_and_is_cleaned_up(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
) -> None:
    redis_client = redis_server.client()
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    qr = QrChannel(redis_client, "acme")
    try:
        apply(control_plane, namespace, session_body("acme", transport="simulator"))

        # The live QR shows in the resource's status and on the QR channel.
        pairing = eventually(
            lambda: (
                (s := status_of(control_plane, namespace)).get("phase") == "AwaitingPairing"
                and s.get("pairing", {}).get("qrCode")
                and s
            ),
            "the QR shows in the status",
            log=logs,
        )
        assert pairing["podName"] == POD
        eventually(qr.drain, "a QR on whatsapp:qr:acme", log=logs)

        # A simulated scan links the account; the QR leaves the status.
        redis_client.rpush(contract.simulator_commands_key("acme"), json.dumps({"command": "scan"}))
        connected = eventually(
            lambda: (s := status_of(control_plane, namespace)).get("phase") == "Connected" and s,
            "the session is Connected",
            log=logs,
        )
        assert "pairing" not in connected
        jid = connected["account"]["jid"]
        conditions = {c["type"]: c["status"] for c in connected["conditions"]}
        assert conditions == {"Ready": "True", "Paired": "True", "Connected": "True"}
        listed = control_plane.kubectl("get", "was", "-n", namespace).stdout
        assert "Connected" in listed
        assert jid in listed

        # An OTP enqueued through the client reaches "read".
        with WaspClient(redis.Redis.from_url(redis_server.url), "acme") as client:
            message_id = client.send_otp(PHONE, "493817")
            assert client.wait_for(message_id, "read", timeout=60).state == "read"

        # The pod goes away: a new pod, the same account, no new pairing.
        codes_before = len(qr.drain())
        old_uid = (get(control_plane, namespace, "pod", POD) or {})["metadata"]["uid"]
        control_plane.kubectl("delete", "pod", POD, "-n", namespace, "--wait=false")
        eventually(
            lambda: (
                (p := get(control_plane, namespace, "pod", POD))
                and p["metadata"]["uid"] != old_uid
                and any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in p.get("status", {}).get("conditions", [])
                )
            ),
            "a new pod is Ready (connected, holding the lease)",
            timeout=90,
            log=logs,
        )
        again = eventually(
            lambda: (
                (s := status_of(control_plane, namespace)).get("phase") == "Connected"
                and s.get("conditions")
                and {c["type"]: c["status"] for c in s["conditions"]}["Ready"] == "True"
                and s
            ),
            "the new pod is Connected",
            timeout=90,
            log=logs,
        )
        assert again["account"]["jid"] == jid
        assert len(qr.drain()) == codes_before, "the new pod asked to pair again"

        # Deleting the resource removes the pod and the tenant's auth state.
        assert redis_client.exists(contract.auth_key("acme")) == 1
        control_plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")
        eventually(
            lambda: get(control_plane, namespace, "was", "acme") is None,
            "the resource is gone",
            timeout=90,
            log=logs,
        )
        assert get(control_plane, namespace, "pod", POD) is None
        assert POD not in session_kubelet.running()
        assert redis_client.exists(contract.auth_key("acme"), contract.lease_key("acme")) == 0
    finally:
        qr.close()
        redis_client.close()
