"""A Redis rolled back under a rescheduled pod is reported by the operator, once.

A pod with newer state finds a rollback itself (tests/wasp_session/
test_redis_rollback.py). A new pod, without its predecessor's data dir,
restores whatever Redis holds; only the operator, whose high-water mark of
the auth generation is in etcd, can tell it went back: first with reports
played as the session pod writes them (the status hash with
``auth_generation``), then end to end, with a real session pod on a node
that freezes while redis-server is put back to an older dump.rdb.
"""

from __future__ import annotations

import json
import os
import signal
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.failure_logs import logs_of
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.redis_server import RedisServer
from harness.session_reports import events_of, report, status_when
from wasp import contract
from wasp.client import WaspClient

pytestmark = [pytest.mark.controlplane, pytest.mark.faults]

POD = contract.session_pod_name("acme")
JID = "4915112345678@s.whatsapp.net"


def connected(generation: int) -> dict[str, str]:
    return {
        contract.STATUS_PHASE: "Connected",
        contract.STATUS_ACCOUNT_JID: JID,
        contract.STATUS_LEASE_HELD: "1",
        contract.STATUS_AUTH_GENERATION: str(generation),
    }


def running_pod_uid(plane: ControlPlane, namespace: str, not_uid: str = "") -> str:
    def probe() -> str | None:
        pod = get(plane, namespace, "pod", POD) or {}
        uid = str((pod.get("metadata") or {}).get("uid") or "")
        running = (pod.get("status") or {}).get("phase") == "Running"
        deleting = bool((pod.get("metadata") or {}).get("deletionTimestamp"))
        return uid if running and not deleting and uid != not_uid else None

    return eventually(probe, "the session's pod runs")


def rollback_events(plane: ControlPlane, namespace: str) -> list[dict[str, Any]]:
    """The session's Events that report a Redis rollback."""
    events = events_of(plane, namespace)
    return [e for e in events if e["reason"] == contract.REASON_REDIS_ROLLED_BACK]


@pytest.mark.usefixtures("idle_kubelet")
def test_an_older_generation_from_a_new_pod_is_reported_once_and_a_new_pairing_is_not(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    redis_client: redis.Redis,
) -> None:
    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    first = running_pod_uid(control_plane, namespace)
    report(redis_client, "acme", connected(7))
    status = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("auth") or {}).get("generation") == 7,
        "the mark is 7",
        wasp_operator.log,
    )
    token = redis_client.get(contract.lease_fence_key("acme"))
    assert status["auth"] == {
        "generation": 7,
        "accountJID": JID,
        "podUID": first,
        "leaseToken": token,
    }

    # The pod is rescheduled; Redis was rolled back meanwhile: the new pod restores generation 3.
    control_plane.kubectl("delete", "pod", POD, "-n", namespace, "--wait=false")
    second = running_pod_uid(control_plane, namespace, not_uid=first)
    report(redis_client, "acme", connected(3))
    status = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("lastError") or {}).get("reason") == contract.REASON_REDIS_ROLLED_BACK,
        "the rollback shows in the status",
        wasp_operator.log,
    )
    message = status["lastError"]["message"]
    assert "restored from generation 3, the session had reached 7" in message
    assert "pair again" in message
    assert status["auth"]["generation"] == 3
    assert status["auth"]["podUID"] == second
    assert status["auth"]["rollback"]["reachedGeneration"] == 7
    assert status["phase"] == "Connected"  # the session goes on; the user decides

    # The session goes on from there: reported once, not at every report.
    report(redis_client, "acme", connected(4))
    status_when(
        control_plane,
        namespace,
        lambda s: (s.get("auth") or {}).get("generation") == 4,
        "the mark follows the session",
    )
    events = eventually(lambda: rollback_events(control_plane, namespace), "a Warning Event")
    assert len(events) == 1
    assert events[0]["type"] == "Warning"
    assert events[0].get("count") in (None, 1)
    assert "wasp_operator_redis_rollbacks_total 1.0" in wasp_operator.metrics()

    # A logout wipes the auth state; pairing again starts at generation 1: no rollback.
    logged_out = {contract.STATUS_PHASE: "LoggedOut", contract.STATUS_AUTH_GENERATION: "4"}
    report(redis_client, "acme", logged_out)
    status_when(control_plane, namespace, lambda s: "auth" not in s, "the mark is reset")
    report(redis_client, "acme", {contract.STATUS_PHASE: "AwaitingPairing"})
    report(redis_client, "acme", connected(1))
    status = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("auth") or {}).get("generation") == 1 and s.get("phase") == "Connected",
        "the new pairing is the new mark",
    )
    assert "rollback" not in status["auth"]
    assert len(rollback_events(control_plane, namespace)) == 1
    assert "wasp_operator_redis_rollbacks_total 1.0" in wasp_operator.metrics()


def sigterm_pending(pid: int) -> bool:
    """Whether a SIGTERM waits on the (stopped) process: the kubelet has begun to stop it."""
    for line in Path(f"/proc/{pid}/status").read_text(encoding="utf-8").splitlines():
        if line.startswith("ShdPnd:"):
            return bool(int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)))
    return False


def test_a_pod_rescheduled_onto_a_rolled_back_redis_is_reported(  # noqa: PLR0913, PLR0917
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    session_kubelet: Kubelet,
    redis_server: RedisServer,
    redis_client: redis.Redis,
    tmp_path: Path,
) -> None:
    logs = partial(logs_of, wasp_operator, session_kubelet, POD)

    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    status_when(control_plane, namespace, lambda s: s.get("phase") == "AwaitingPairing", "QR", logs)
    redis_client.rpush(contract.simulator_commands_key("acme"), json.dumps({"command": "scan"}))
    status_when(
        control_plane,
        namespace,
        lambda s: s.get("phase") == "Connected" and "auth" in s,
        "connected, with a mark",
        logs,
    )
    older = int(redis_client.hget(contract.status_key("acme"), "auth_generation") or 0)
    snapshot = redis_server.save_snapshot(tmp_path / "older.rdb")
    with WaspClient(redis.Redis.from_url(redis_server.url), "acme") as wasp:
        for code in ("493817", "118204"):  # read receipts change the auth state: checkpoints
            message_id = wasp.send_otp("+4915112345678", code, ttl_seconds=60)
            assert wasp.wait_for(message_id, "read", timeout=60).state == "read"
    reached = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("auth") or {}).get("generation", 0) > older,
        "the session checkpoints past the snapshot",
        logs,
    )["auth"]["generation"]

    # The node freezes; Redis is put back to the older dump; the pod is rescheduled.
    pid = session_kubelet.running()[POD]
    os.killpg(pid, signal.SIGSTOP)
    redis_server.roll_back(snapshot)
    control_plane.kubectl("delete", "pod", POD, "-n", namespace, "--wait=false")
    eventually(lambda: sigterm_pending(pid), "the kubelet stops the frozen pod")
    os.killpg(pid, signal.SIGKILL)  # the node is gone, with the pod's data dir

    status = status_when(
        control_plane,
        namespace,
        lambda s: (s.get("lastError") or {}).get("reason") == contract.REASON_REDIS_ROLLED_BACK,
        "the rollback shows in the status",
        logs,
    )
    assert (
        f"restored from generation {older}, the session had reached {reached}"
        in status["lastError"]["message"]
    )
    assert len(rollback_events(control_plane, namespace)) == 1
    assert "wasp_operator_redis_rollbacks_total 1.0" in wasp_operator.metrics()
