"""How long the test harness's real node takes to start and to run a pod.

Starts the harness's control plane (etcd, kube-apiserver,
kube-controller-manager) and then its node (containerd, kube-scheduler,
kubelet: ``harness.node``), and prints, per round:

1. control plane: etcd started → kube-apiserver ready;
2. node: control plane up (etcd already running) → the Node is Ready;
3. pod: ``kubectl create`` of a host-network pause pod → phase Running;
4. delete: ``kubectl delete`` → the pod object is gone (its containers
   stopped), and → no container left in containerd (the sandbox goes in the
   kubelet's container GC, which runs once a minute).

Run as root: ``.venv/bin/python bench/node_start.py [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.controlplane import ControlPlane
from harness.node import Node
from harness.node_images import pause_pod


def one_round(directory: Path) -> dict[str, float]:
    """Start a control plane and a node in ``directory``, run one pod; the timings in seconds."""
    started = time.monotonic()
    plane = ControlPlane(directory / "controlplane")
    plane_up = time.monotonic()
    try:
        node = Node(plane, directory / "node")
        node_ready = time.monotonic()
        try:
            plane.kubectl("create", "-f", "-", stdin=json.dumps(pause_pod("bench")))
            created = time.monotonic()
            plane.kubectl(
                "wait", "--for=jsonpath={.status.phase}=Running", "pod/bench", "--timeout=120s"
            )
            running = time.monotonic()
            plane.kubectl("delete", "pod", "bench", "--wait=true", "--timeout=120s")
            deleted = time.monotonic()
            while node.containers():
                time.sleep(0.1)
            removed = time.monotonic()
        finally:
            node.stop()
    finally:
        plane.stop()
    return {
        "control plane": plane_up - started,
        "node": node_ready - plane_up,
        "pod running": running - created,
        "pod deleted": deleted - running,
        "containers removed": removed - running,
    }


def main() -> None:
    """Run the rounds and print each one's timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    for number in range(1, rounds + 1):
        with tempfile.TemporaryDirectory(prefix="wasp-node-bench-") as directory:
            timings = one_round(Path(directory))
        print(
            f"round {number}: "
            + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in timings.items())
        )


if __name__ == "__main__":
    main()
