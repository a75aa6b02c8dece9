"""The operator runs one locked-down pod per session and keeps it matching the spec."""

from __future__ import annotations

import base64
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.pod_watch import PodWatch
from wasp import contract

pytestmark = pytest.mark.controlplane

EXAMPLES = Path(__file__).resolve().parents[2] / "crds" / "examples"
# Stands in for wasp-session where only the pod's lifecycle matters: runs until
# SIGTERM, then takes a moment to "checkpoint" before it exits.
STUB_PROGRAM = """
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1), sys.exit(0)))
while True:
    time.sleep(1)
"""
STUB = [sys.executable, "-c", STUB_PROGRAM]


@pytest.fixture
def stub_kubelet(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Kubelet]:
    """The kubelet stand-in running ``STUB`` in every pod: it exits a second after SIGTERM."""
    stand_in = Kubelet(control_plane.kubeconfig, namespace, tmp_path / "kubelet", command=STUB)
    try:
        yield stand_in
    finally:
        stand_in.stop()


def pod_of(plane: ControlPlane, namespace: str, session: str) -> dict[str, Any] | None:
    return get(plane, namespace, "pod", contract.session_pod_name(session))


def test_applying_an_example_runs_a_locked_down_pod(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    control_plane.kubectl("apply", "-n", namespace, "-f", str(EXAMPLES / "sandbox.yaml"))

    pod = eventually(
        lambda: pod_of(control_plane, namespace, "sandbox"), "the pod exists", log=wasp_operator.log
    )
    spec = pod["spec"]
    (container,) = spec["containers"]
    assert spec["automountServiceAccountToken"] is False
    assert not [v for v in spec.get("volumes", []) if "projected" in v], "a token is mounted"
    assert not [m for m in container["volumeMounts"] if "serviceaccount" in m["mountPath"]]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["command"] == ["wasp-session"]
    assert container["image"] == "wasp:test"
    env = {e["name"]: e for e in container["env"]}
    assert env[contract.ENV_TRANSPORT]["value"] == "simulator"
    assert contract.ENV_AUTH_KEY not in env  # secrets only as files: the env names them
    assert contract.ENV_REDIS_URL not in env
    assert env[contract.ENV_AUTH_KEY_FILE]["value"].startswith(contract.SESSION_AUTH_SECRET_DIR)
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == (
        "WhatsAppSession",
        "sandbox",
        True,
    )

    auth = get(control_plane, namespace, "secret", contract.auth_secret_name("sandbox"))
    assert auth is not None
    key = base64.b64decode(auth["data"][contract.AUTH_SECRET_KEY])
    assert len(base64.b64decode(key)) == 32

    def listed() -> list[str] | None:
        rows = control_plane.kubectl("get", "was", "-n", namespace).stdout.splitlines()
        columns = rows[1].split() if len(rows) > 1 else []
        return columns if len(columns) >= 3 and columns[2] == "Pending" else None

    name, tenant, phase = eventually(listed, "kubectl get was shows the session")[:3]
    assert (name, tenant, phase) == ("sandbox", "sandbox", "Pending")

    resource = get(control_plane, namespace, "was", "sandbox") or {}
    assert resource["metadata"]["finalizers"] == [contract.FINALIZER]
    annotations = resource["metadata"].get("annotations") or {}
    # kopf's bookkeeping (a deletion's retries) goes under wasp's prefix; it keeps no copy
    # of the spec (diffbase.py), so a session that runs carries none of kopf's at all.
    assert not [key for key in annotations if "kopf" in key or "last-handled" in key]
    assert set(resource["status"]) <= {
        "tenantId",
        "phase",
        "podName",
        "conditions",
        "observedGeneration",
        "apiCredentials",
    }, "kopf keeps its bookkeeping out of the status"


@pytest.mark.usefixtures("stub_kubelet")
def test_a_spec_change_replaces_the_pod_only_after_the_old_one_is_gone(
    control_plane: ControlPlane,
    namespace: str,
    wasp_operator: OperatorProcess,
    pod_watch: PodWatch,
) -> None:
    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    old = eventually(
        lambda: (
            (p := pod_of(control_plane, namespace, "acme"))
            and p.get("status", {}).get("phase") == "Running"
            and p
        ),
        "the first pod runs",
        log=wasp_operator.log,
    )
    apply(
        control_plane,
        namespace,
        session_body("acme", transport="simulator", delivery={"ttlSeconds": 60}),
    )
    new = eventually(
        lambda: (
            (p := pod_of(control_plane, namespace, "acme"))
            and p["metadata"]["uid"] != old["metadata"]["uid"]
            and p
        ),
        "a new pod replaces the old one",
        log=wasp_operator.log,
    )
    eventually(lambda: ("ADDED", new["metadata"]["uid"]) in pod_watch.events, "the watch saw it")
    old_uid, new_uid = old["metadata"]["uid"], new["metadata"]["uid"]
    sequence = [
        e for e in pod_watch.events if e[1] in {old_uid, new_uid} and e != ("ADDED", old_uid)
    ]
    assert sequence == [("DELETED", old_uid), ("ADDED", new_uid)]
    env = {e["name"]: e.get("value") for e in new["spec"]["containers"][0]["env"]}
    assert env[contract.ENV_TTL_SECONDS] == "60"


@pytest.mark.usefixtures("stub_kubelet")
def test_a_deleted_pod_is_replaced(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    first = eventually(
        lambda: pod_of(control_plane, namespace, "acme"), "the pod exists", log=wasp_operator.log
    )
    control_plane.kubectl(
        "delete", "pod", contract.session_pod_name("acme"), "-n", namespace, "--wait=false"
    )
    eventually(
        lambda: (
            (p := pod_of(control_plane, namespace, "acme"))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
        ),
        "a new pod replaces the deleted one",
        log=wasp_operator.log,
    )


def test_a_pod_made_before_tenant_isolation_is_replaced_by_the_upgraded_operator(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    first = eventually(
        lambda: pod_of(control_plane, namespace, "acme"), "the pod exists", log=wasp_operator.log
    )
    assert (
        first["metadata"]["annotations"][contract.ANNOTATION_POD_CONTRACT]
        == contract.POD_CONTRACT_VERSION
    )
    # A pod of the older contract (secrets in its env) carries no such annotation.
    control_plane.kubectl(
        "annotate", "pod", contract.session_pod_name("acme"), "-n", namespace,
        f"{contract.ANNOTATION_POD_CONTRACT}-",
    )  # fmt: skip
    replaced = eventually(
        lambda: (
            (p := pod_of(control_plane, namespace, "acme"))
            and p["metadata"]["uid"] != first["metadata"]["uid"]
            and p
        ),
        "a pod of the current contract replaces it",
        log=wasp_operator.log,
    )
    annotations = replaced["metadata"]["annotations"]
    assert annotations[contract.ANNOTATION_POD_CONTRACT] == contract.POD_CONTRACT_VERSION
    assert (
        annotations[contract.ANNOTATION_SPEC_HASH]
        == first["metadata"]["annotations"][contract.ANNOTATION_SPEC_HASH]
    )


@pytest.mark.usefixtures("stub_kubelet")
def test_suspending_removes_the_pod_and_resuming_brings_it_back(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    eventually(
        lambda: pod_of(control_plane, namespace, "acme"), "the pod exists", log=wasp_operator.log
    )

    apply(control_plane, namespace, session_body("acme", suspend=True))
    eventually(lambda: pod_of(control_plane, namespace, "acme") is None, "the pod is gone")
    suspended = eventually(
        lambda: (
            (s := get(control_plane, namespace, "was", "acme"))
            and s.get("status", {}).get("phase") == "Suspended"
            and s
        ),
        "the phase is Suspended",
        log=wasp_operator.log,
    )
    ready = {c["type"]: c for c in suspended["status"]["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "Suspended")

    apply(control_plane, namespace, session_body("acme", suspend=False))
    eventually(lambda: pod_of(control_plane, namespace, "acme"), "the pod is back")


def test_a_second_session_for_the_same_tenant_fails_and_gets_no_pod(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    apply(control_plane, namespace, session_body("acme"))
    eventually(
        lambda: pod_of(control_plane, namespace, "acme"),
        "the first pod exists",
        log=wasp_operator.log,
    )

    apply(control_plane, namespace, session_body("acme-again", tenantId="acme"))
    twin = eventually(
        lambda: (
            (s := get(control_plane, namespace, "was", "acme-again"))
            and s.get("status", {}).get("phase") == "Failed"
            and s
        ),
        "the twin is Failed",
        log=wasp_operator.log,
    )
    ready = {c["type"]: c for c in twin["status"]["conditions"]}["Ready"]
    assert ready["reason"] == "TenantConflict"
    assert f"{namespace}/acme" in ready["message"]
    assert pod_of(control_plane, namespace, "acme-again") is None
