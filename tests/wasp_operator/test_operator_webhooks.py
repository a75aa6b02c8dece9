"""``spec.webhook`` from the resource to the pod, its NetworkPolicy and back into the status.

The real operator against the real API server, the kubelet stand-in running
the real ``wasp-session`` (simulator transport), and a webhook receiver on
127.0.0.1, which the operator is told to allow
(``WASP_OPERATOR_WEBHOOK_ALLOWED_NETWORKS``, the chart's
``webhooks.allowedNetworks``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.webhook_receiver import WebhookReceiver
from wasp import contract
from wasp.event_stream import EventStream

pytestmark = [pytest.mark.controlplane, pytest.mark.stream]

SECRET = b"tenant-chosen-hmac-key"
POD = contract.session_pod_name("acme")


@pytest.fixture
def operator_allowing_loopback(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """The operator, letting webhooks reach 127.0.0.1 (the test's receiver)."""
    return start_operator(
        environment={contract.ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS: "127.0.0.1/32"}
    )


def webhook_status(plane: ControlPlane, namespace: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        found = get(plane, namespace, contract.PLURAL, "acme")
        return None if found is None else (found.get("status") or {}).get("webhook")

    return probe


def test_a_webhook_reaches_the_pod_as_a_file_and_its_failures_show_in_the_status(
    control_plane: ControlPlane,
    namespace: str,
    operator_allowing_loopback: OperatorProcess,
    session_kubelet: Kubelet,  # noqa: ARG001 - requested for its effect: pods run
    redis_client: redis.Redis,
) -> None:
    secret = base64.b64encode(SECRET).decode()
    manifest = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "acme-hooks"},
        "data": {"hmac": secret},
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(manifest))
    with WebhookReceiver(SECRET) as receiver:
        webhook = {"url": receiver.url, "secretRef": {"name": "acme-hooks", "key": "hmac"}}
        apply(
            control_plane, namespace, session_body("acme", transport="simulator", webhook=webhook)
        )
        log = operator_allowing_loopback.log

        pod = eventually(lambda: get(control_plane, namespace, "pod", POD), "the pod", log=log)
        (container,) = pod["spec"]["containers"]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env[contract.ENV_WEBHOOK_URL] == receiver.url
        assert (
            env[contract.ENV_WEBHOOK_SECRET_FILE] == f"{contract.SESSION_WEBHOOK_SECRET_DIR}/hmac"
        )
        assert env[contract.ENV_WEBHOOK_ALLOWED_NETWORKS] == "127.0.0.1/32"
        assert not [v for v in env.values() if v and (secret in v or SECRET.decode() in v)]
        (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == "webhook-secret"]
        assert volume["secret"]["secretName"] == "acme-hooks"
        assert volume["secret"]["items"] == [{"key": "hmac", "path": "hmac"}]
        assert volume["secret"]["optional"] is True  # a missing Secret never holds OTPs back
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "webhook-secret"]
        assert mount == {
            "name": "webhook-secret",
            "mountPath": contract.SESSION_WEBHOOK_SECRET_DIR,
            "readOnly": True,
        }
        policy = get(control_plane, namespace, "networkpolicy", POD)
        assert policy is not None
        port = int(receiver.url.split(":")[2].split("/")[0])
        reachable = [
            block["ipBlock"]["cidr"]
            for rule in policy["spec"]["egress"]
            if {"protocol": "TCP", "port": port} in rule.get("ports", [])
            for block in rule.get("to", [])
        ]
        assert "127.0.0.1/32" in reachable  # the allowed network, on the webhook's port
        assert "0.0.0.0/0" in reachable  # and public addresses on that port

        first = eventually(webhook_status(control_plane, namespace), "status.webhook", log=log)
        assert first["state"] == "Delivering"
        stream = EventStream(redis_client, "acme")
        entry = stream.append(contract.EVENT_KIND_SESSION, {"phase": "Test"})
        receiver.wait_for_ids([entry])
        assert receiver.bad_signatures == 0

        receiver.failing = True
        stream.append(contract.EVENT_KIND_SESSION, {"phase": "Test"})
        failing = eventually(
            lambda: (
                (s := webhook_status(control_plane, namespace)()) and s["state"] == "Failing" and s
            ),
            "status.webhook says Failing",
            log=log,
        )
        assert failing["lastError"] == "the receiver answered HTTP 500"
        assert failing["failingSince"]
