"""Clocks 5 minutes apart between the operator, the session pod and the API server.

The real ``wasp-operator`` runs under libfaketime (``harness.faketime``) with
its wall clock ``+5m`` (or ``-5m``) from the API server's (the test's), and
the session pods the kubelet stand-in runs are skewed the other way, so the
pod and the API are 5 minutes apart and the operator and the pod 10. The
resource must still go through pairing to ``Connected`` and ``Ready``, and
an OTP within its TTL must be read: nothing may compare two machines' clocks
(docs/delivery.md, "Clocks").
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.faketime import skewed_environment
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, session_body
from harness.redis_server import RedisServer
from harness.session_process import FAST_TIMINGS
from harness.session_reports import status_of
from wasp import contract
from wasp.client import WaspClient

pytestmark = [pytest.mark.controlplane, pytest.mark.faults]

TENANT = "acme"
PHONE = "+4915112345678"
SKEWS = {"+5m": ("+5m", "-5m", 300), "-5m": ("-5m", "+5m", -300)}  # operator, pod, operator's s


@pytest.fixture(params=sorted(SKEWS))
def skew(request: pytest.FixtureRequest) -> tuple[str, str, int]:
    operator_offset, pod_offset, seconds = SKEWS[request.param]
    return operator_offset, pod_offset, seconds


@pytest.fixture
def skewed_operator(  # noqa: PLR0913, PLR0917 - pytest fixtures, each distinct
    control_plane: ControlPlane,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
    namespace: str,
    redis_secret: str,  # noqa: ARG001 - requested for its effect: the Secret exists
    skew: tuple[str, str, int],
    tmp_path: Path,
) -> Iterator[OperatorProcess]:
    environment = skewed_environment(skew[0], tmp_path / "faketime-operator")
    operator = OperatorProcess(
        control_plane.kubeconfig,
        tmp_path / "operator",
        namespace=namespace,
        environment=environment,
    )
    try:
        yield operator
    finally:
        operator.stop_in_background()


@pytest.fixture
def skewed_kubelet(
    control_plane: ControlPlane, namespace: str, skew: tuple[str, str, int], tmp_path: Path
) -> Iterator[Kubelet]:
    environment = FAST_TIMINGS | skewed_environment(skew[1], tmp_path / "faketime-pod")
    stand_in = Kubelet(
        control_plane.kubeconfig, namespace, tmp_path / "kubelet", environment=environment
    )
    try:
        yield stand_in
    finally:
        stand_in.stop()


def test_a_session_reaches_connected_with_clocks_five_minutes_apart(  # noqa: PLR0913, PLR0917
    control_plane: ControlPlane,
    namespace: str,
    skewed_operator: OperatorProcess,
    skewed_kubelet: Kubelet,
    redis_server: RedisServer,
    skew: tuple[str, str, int],
) -> None:
    logs = partial(logs_of, skewed_operator, skewed_kubelet, contract.session_pod_name(TENANT))

    apply(control_plane, namespace, session_body(TENANT, transport="simulator"))
    eventually(
        lambda: status_of(control_plane, namespace, TENANT).get("phase") == "AwaitingPairing",
        "the QR shows in the status",
        log=logs,
    )
    client = redis_server.client()
    client.rpush(contract.simulator_commands_key(TENANT), json.dumps({"command": "scan"}))
    connected = eventually(
        lambda: (
            (s := status_of(control_plane, namespace, TENANT)).get("phase") == "Connected"
            and {c["type"]: c["status"] for c in s.get("conditions", [])}.get("Ready") == "True"
            and s
        ),
        "the session is Connected and Ready",
        log=logs,
    )
    # The skew is real: the operator stamps its conditions on its own clock.
    stamp = connected["conditions"][0]["lastTransitionTime"]
    off = (datetime.fromisoformat(stamp) - datetime.now(UTC)).total_seconds()
    assert abs(off - skew[2]) < 60, off

    with WaspClient(redis.Redis.from_url(redis_server.url), TENANT) as wasp:
        message_id = wasp.send_otp(PHONE, "493817", ttl_seconds=60)
        assert wasp.wait_for(message_id, "read", timeout=60).state == "read"
