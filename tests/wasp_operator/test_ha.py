"""Two operator replicas: one reconciles, the other stands by and takes over when it dies.

Both are real ``wasp-operator`` processes peering through the namespace's
``KopfPeering`` against the real API server. The active one is SIGKILLed (it
never says goodbye: the other waits out its record's lifetime), or frozen
with SIGSTOP and thawed (both then act for a moment, until the younger one
sees the older one's fresh record and yields). A watch of the session pods
runs throughout: never two pods for one session at once.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.pod_watch import PodWatch
from harness.session_reports import report, status_of
from wasp import contract
from wasp_operator.peering import PEERING_LIFETIME_SECONDS

FAILOVER_GOAL = 30.0  # seconds from SIGKILL of the active replica to the other's reconcile
RESUMED = "Resuming operations after the pause"  # kopf's log line of a replica taking over
TIED = "Possibly conflicting operators with the same priority"  # kopf's, pausing every twin
PAUSED = "Pausing operations in favour of"  # kopf's, of an active replica that sees an older one
JOINED = re.compile(r"peering_joined: \S+ as (?P<identity>\S+), priority (?P<priority>[0-9]+)")

pytestmark = pytest.mark.ha


def test_a_record_expires_well_inside_the_failover_goal() -> None:
    assert PEERING_LIFETIME_SECONDS + 5 <= FAILOVER_GOAL  # 5 s: re-list and the first cycle


@pytest.fixture
def peering(control_plane: ControlPlane, wasp_crd: str, namespace: str) -> str:  # noqa: ARG001 - the CRDs
    """The namespace's peering object, as the chart makes it for more than one replica."""
    body = {
        "apiVersion": f"{contract.PEERING_GROUP}/{contract.PEERING_VERSION}",
        "kind": "KopfPeering",
        "metadata": {"name": contract.PEERING_NAME},
    }
    apply(control_plane, namespace, body)
    return contract.PEERING_NAME


@pytest.fixture
def replicas(
    control_plane: ControlPlane,
    peering: str,  # noqa: ARG001 - requested for its effect: the peering object exists
    namespace: str,
    redis_secret: str,  # noqa: ARG001 - requested for its effect: the Secret exists
    tmp_path: Path,
) -> Iterator[list[OperatorProcess]]:
    """Two peering replicas watching the test's namespace, the first started first."""
    started: list[OperatorProcess] = []

    def start(name: str) -> None:
        directory = tmp_path / name
        started.append(
            OperatorProcess(
                control_plane.kubeconfig, directory, namespace=namespace, standalone=False
            )
        )

    try:
        start("first")
        start("second")
        yield started
    finally:
        for operator in started:  # both signalled at once; the session's end waits for them
            operator.stop_in_background()


def peers(plane: ControlPlane, namespace: str) -> dict[str, dict[str, Any]]:
    """The replicas' records in the peering object: identity -> priority, lifetime, lastseen."""
    found = get(plane, namespace, "kopfpeering", contract.PEERING_NAME) or {}
    records: dict[str, dict[str, Any]] = found.get("status") or {}
    return records


def joined(operator: OperatorProcess) -> tuple[str, int]:
    """The name the replica peers as and its priority, from its ``peering_joined`` log line."""
    found = JOINED.search(operator.log())
    assert found is not None, "the replica says whom it peers as"
    return found["identity"], int(found["priority"])


def patches(operator: OperatorProcess) -> float:
    """How many status patches the replica wrote, from its /metrics."""
    return operator.metric("wasp_operator_status_patches_total")


def leads(
    plane: ControlPlane, namespace: str, active: OperatorProcess, standby: OperatorProcess
) -> None:
    """Both replicas are in the peering object with distinct priorities, ``active``'s higher."""
    records = dict(joined(operator) for operator in (active, standby))

    def both_recorded() -> dict[str, int] | None:
        found = {key: int(value["priority"]) for key, value in peers(plane, namespace).items()}
        return found if found == records else None

    eventually(both_recorded, "both replicas are in the peering object, with their priorities")
    assert joined(active)[1] > joined(standby)[1], "the older replica leads"


def starts(
    plane: ControlPlane, namespace: str, name: str, operator: OperatorProcess, timeout: float = 60
) -> None:
    """Wait until session ``name``'s pod runs and its status says so (``Starting``)."""
    eventually(
        lambda: status_of(plane, namespace, name).get("phase") == "Starting",
        f"{name}'s pod runs and its status says so",
        timeout=timeout,
        log=operator.log,
    )


def ttl_in_pod(plane: ControlPlane, namespace: str, name: str) -> str | None:
    """The OTP TTL the session's pod was given (from the spec's delivery.ttlSeconds)."""
    found = get(plane, namespace, "pod", contract.session_pod_name(name)) or {}
    containers = found.get("spec", {}).get("containers") or [{}]
    env = {e["name"]: e.get("value") for e in containers[0].get("env", [])}
    return env.get(contract.ENV_TTL_SECONDS)


def replaced_for_new_spec(
    plane: ControlPlane, namespace: str, name: str, operator: OperatorProcess
) -> None:
    """Change session ``name``'s spec (a 60 s OTP TTL); wait until a pod of the new spec runs."""
    apply(plane, namespace, session_body(name, transport="simulator", delivery={"ttlSeconds": 60}))
    eventually(
        lambda: ttl_in_pod(plane, namespace, name) == "60",
        "the spec change replaces the pod",
        log=operator.log,
    )


@pytest.mark.controlplane
@pytest.mark.faults
@pytest.mark.usefixtures("idle_kubelet")
def test_one_replica_reconciles_and_the_other_takes_over_when_it_is_killed(
    control_plane: ControlPlane,
    namespace: str,
    replicas: list[OperatorProcess],
    redis_client: redis.Redis,
    pod_watch: PodWatch,
) -> None:
    active, standby = replicas
    leads(control_plane, namespace, active, standby)
    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    starts(control_plane, namespace, "acme", active)
    assert patches(active) >= 1
    assert patches(standby) == 0, "the standby wrote a status"
    assert RESUMED not in standby.log()

    active.kill()
    killed = time.monotonic()
    # Reported while no replica is active: the next one relays it when it takes over.
    report(redis_client, "acme", {contract.STATUS_PHASE: "AwaitingPairing"})
    apply(control_plane, namespace, session_body("globex", transport="simulator"))
    starts(control_plane, namespace, "globex", standby, timeout=FAILOVER_GOAL + 10)
    failover = time.monotonic() - killed
    assert failover <= FAILOVER_GOAL, f"failover took {failover:.1f} s"
    assert RESUMED in standby.log()
    eventually(
        lambda: status_of(control_plane, namespace, "acme").get("phase") == "AwaitingPairing",
        "what the session reported meanwhile is in its status",
        log=standby.log,
    )

    replaced_for_new_spec(control_plane, namespace, "acme", standby)
    resource = get(control_plane, namespace, "was", "acme") or {}
    eventually(
        lambda: (
            status_of(control_plane, namespace, "acme").get("observedGeneration")
            == resource["metadata"]["generation"]
        ),
        "the status observes the new generation",
        log=standby.log,
    )
    assert pod_watch.most_at_once() == {"acme": 1, "globex": 1}, "never two pods for one session"


@pytest.mark.controlplane
@pytest.mark.faults
@pytest.mark.usefixtures("idle_kubelet")
def test_a_frozen_replica_is_replaced_and_leads_again_when_it_thaws(
    control_plane: ControlPlane,
    namespace: str,
    replicas: list[OperatorProcess],
    pod_watch: PodWatch,
) -> None:
    active, standby = replicas
    leads(control_plane, namespace, active, standby)
    apply(control_plane, namespace, session_body("acme", transport="simulator"))
    starts(control_plane, namespace, "acme", active)

    os.killpg(active.process.pid, signal.SIGSTOP)  # a frozen node: no keep-alive, no goodbye
    try:
        apply(control_plane, namespace, session_body("globex", transport="simulator"))
        starts(control_plane, namespace, "globex", standby, timeout=FAILOVER_GOAL + 10)
    finally:
        os.killpg(active.process.pid, signal.SIGCONT)
    eventually(
        lambda: PAUSED in standby.log(),
        "the standby yields to the older replica again",
        log=standby.log,
    )

    apply(control_plane, namespace, session_body("initech", transport="simulator"))
    starts(control_plane, namespace, "initech", active)
    replaced_for_new_spec(control_plane, namespace, "globex", active)
    assert pod_watch.most_at_once() == {"acme": 1, "globex": 1, "initech": 1}, (
        "never two pods for one session"
    )


@pytest.mark.controlplane
@pytest.mark.usefixtures("peering", "redis_secret")
def test_a_replica_that_shares_its_priority_with_another_draws_a_new_one(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> None:
    operator = OperatorProcess(
        control_plane.kubeconfig, tmp_path / "operator", namespace=namespace, standalone=False
    )
    try:
        identity, priority = joined(operator)
        eventually(lambda: identity in peers(control_plane, namespace), "the replica's record")
        lastseen = dt.datetime.now(dt.UTC).isoformat()
        twin = {"priority": priority, "lifetime": 60, "lastseen": lastseen}
        control_plane.kubectl(
            "patch",
            "kopfpeering",
            contract.PEERING_NAME,
            "-n",
            namespace,
            "--type=merge",
            "-p",
            json.dumps({"status": {"twin": twin}}),
        )
        eventually(lambda: TIED in operator.log(), "kopf pauses both twins", log=operator.log)
        eventually(
            lambda: "peering_tie_broken" in operator.log(), "the tie is seen", log=operator.log
        )
        eventually(
            lambda: peers(control_plane, namespace)[identity]["priority"] != priority,
            "the replica announces another priority",
            log=operator.log,
        )
    finally:
        operator.stop_in_background()
