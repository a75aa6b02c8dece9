"""How long the wasp operator's replicas take to fail over when the active one dies.

Starts the test harness's control plane (etcd, kube-apiserver,
kube-controller-manager), a redis-server, and two ``wasp-operator``
processes peering through a ``KopfPeering`` in one namespace (as the chart
runs ``operator.replicas: 2``). Each round:

1. waits a random moment of the keep-alive cycle, then SIGKILLs the active
   replica (the oldest: it never says goodbye, so the other waits for its
   record in the peering object to expire);
2. applies a new WhatsAppSession right away;
3. measures the time until its status is written (by the other replica:
   the next status change), and how much of it the dead record's remaining
   lifetime explains;
4. starts a fresh replica, which stands by for the next round.

``--graceful N`` rounds then stop the active replica with SIGTERM instead,
as a rollout or a node drain does: kopf removes its record on the way out.
Prints each round and the min / median / max.

Run: ``.venv/bin/python bench/failover.py [--rounds 5] [--graceful 2]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.controlplane import ControlPlane
from harness.operator_process import (
    OperatorProcess,
    apply,
    create_redis_secret,
    get,
    session_body,
)
from harness.redis_server import RedisServer
from wasp import contract
from wasp_operator.peering import PEERING_LIFETIME_SECONDS

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "bench-failover"
TIMEOUT = 120.0


class Replicas:
    """The operator replicas of one namespace, oldest first."""

    def __init__(self, plane: ControlPlane, directory: Path) -> None:
        """No replica yet: ``start()`` adds one."""
        self.plane = plane
        self.directory = directory
        self.running: list[OperatorProcess] = []
        self.leaving: list[OperatorProcess] = []  # sent SIGTERM, perhaps still shutting down
        self._started = 0

    def start(self) -> OperatorProcess:
        """A new replica; returns once it is in the peering object (standing by, or active)."""
        self._started += 1
        before = set(self.records())
        operator = OperatorProcess(
            self.plane.kubeconfig,
            self.directory / f"operator-{self._started}",
            namespace=NAMESPACE,
            standalone=False,
        )
        self.running.append(operator)
        wait_for(lambda: len(set(self.records()) - before) == 1, "the replica joins the peering")
        return operator

    def records(self) -> dict[str, dict[str, Any]]:
        """The peering object's records: identity -> priority, lifetime, lastseen."""
        found = get(self.plane, NAMESPACE, "kopfpeering", contract.PEERING_NAME) or {}
        records: dict[str, dict[str, Any]] = found.get("status") or {}
        return records

    def stop_all(self) -> None:
        """Stop every replica still running."""
        for operator in self.leaving + self.running:
            operator.stop()


def wait_for(condition: Callable[[], object], what: str) -> None:
    """Poll ``condition()`` until true."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            msg = f"never happened within {TIMEOUT} s: {what}"
            raise RuntimeError(msg)
        time.sleep(0.05)


def remaining_lifetime(record: dict[str, Any]) -> float:
    """Seconds until a peering record expires, by this machine's clock."""
    last = dt.datetime.fromisoformat(record["lastseen"])
    deadline = last + dt.timedelta(seconds=int(record["lifetime"]))
    return (deadline - dt.datetime.now(dt.UTC)).total_seconds()


def one_round(
    plane: ControlPlane, replicas: Replicas, name: str, *, graceful: bool
) -> tuple[float, float]:
    """Stop the active replica, apply ``name``: (seconds to its status, dead record's remainder)."""
    active = replicas.running[0]  # the oldest live replica leads
    if not graceful:  # anywhere in its keep-alive cycle (renewed every lifetime - 5..10 s)
        time.sleep(random.uniform(0, PEERING_LIFETIME_SECONDS - 5))  # noqa: S311 - not a secret
    records = replicas.records()
    highest = max(records.values(), key=lambda record: int(record["priority"]))
    remainder = remaining_lifetime(highest)
    stopped = time.monotonic()
    replicas.running.remove(active)
    if graceful:
        active.process.popen.terminate()  # SIGTERM; it removes its record on the way out
        replicas.leaving.append(active)
        remainder = 0.0
    else:
        active.kill()
    apply(plane, NAMESPACE, session_body(name, transport="simulator"))
    wait_for(
        lambda: ((get(plane, NAMESPACE, "was", name) or {}).get("status") or {}).get("phase"),
        f"the status of {name} is written",
    )
    return time.monotonic() - stopped, remainder


def prepare(plane: ControlPlane, redis_url: str) -> None:
    """The CRDs, the namespace, its admin Redis Secret and its peering object."""
    for crd in ("whatsappsessions.wasp.dev.yaml", "kopf-peering.yaml"):
        plane.kubectl("apply", "-f", str(ROOT / "crds" / crd))
    plane.kubectl("wait", "--for=condition=Established", "crd/whatsappsessions.wasp.dev")
    plane.kubectl("create", "namespace", NAMESPACE)
    create_redis_secret(plane, NAMESPACE, redis_url)
    peering = {
        "apiVersion": "zalando.org/v1",
        "kind": "KopfPeering",
        "metadata": {"name": contract.PEERING_NAME},
    }
    apply(plane, NAMESPACE, peering)


def summary(label: str, figures: list[float]) -> str:
    """The minimum, median and maximum of a list of seconds."""
    return (
        f"{label}: min {min(figures):.1f} s, median {statistics.median(figures):.1f} s, "
        f"max {max(figures):.1f} s ({len(figures)} rounds)"
    )


def main() -> None:
    """Run the rounds and print each, then the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="SIGKILL rounds")
    parser.add_argument("--graceful", type=int, default=2, help="SIGTERM rounds after them")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wasp-failover-bench-") as temporary:
        directory = Path(temporary)
        plane = ControlPlane(directory / "controlplane")
        redis_server = RedisServer(directory / "redis")
        replicas = Replicas(plane, directory)
        try:
            prepare(plane, redis_server.url)
            replicas.start()
            replicas.start()
            killed: list[float] = []
            waited: list[float] = []
            graceful: list[float] = []
            for number in range(1, options.rounds + options.graceful + 1):
                gentle = number > options.rounds
                seconds, remainder = one_round(plane, replicas, f"round-{number}", graceful=gentle)
                how = "SIGTERM" if gentle else "SIGKILL"
                print(
                    f"round {number} ({how}): stopped → the other wrote a status in {seconds:.1f} s"
                    + ("" if gentle else f" (the dead record had {remainder:.1f} s to live)"),
                    flush=True,
                )
                if gentle:
                    graceful.append(seconds)
                else:
                    killed.append(seconds)
                    waited.append(seconds - remainder)
                replicas.start()
            if killed:
                print(summary("failover after SIGKILL", killed))
                print(summary("  of which after the dead record expired", waited))
            if graceful:
                print(summary("handover after SIGTERM", graceful))
        finally:
            replicas.stop_all()
            redis_server.stop()
            plane.stop()


if __name__ == "__main__":
    main()
