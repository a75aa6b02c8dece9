"""What wasp's pods cost on a real node: start times and memory as the kubelet sees it.

Starts ``harness.wasp_cluster.WaspCluster`` (its own control plane, a real
node, an admin Redis, the image ``wasp:test``), installs the chart, and
prints:

1. ``helm install`` → the operator's Deployment Available;
2. for a new sandbox tenant: ``kubectl apply`` → its pod Running → a QR in
   the status (AwaitingPairing); simulated scan →
   Connected and the pod Ready;
3. for the paired tenant's pod deleted (SIGTERM, checkpoint): the new pod
   created → Ready (restored, no scan), the time a tenant is without a pod;
4. memory, as the kubelet reports it (its ``/stats/summary``: the
   container's cgroup working set, the figure the kubelet evicts on) and
   its RSS: the session pod while pairing, Connected and idle, and after
   ``--otps`` OTPs; the operator's pod.

Run as root: ``.venv/bin/python bench/pods_on_node.py [--rounds 2] [--otps 200]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
import structlog

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from harness.wasp_cluster import (
    RELEASE_NAMESPACE,
    TENANTS_NAMESPACE,
    WaspCluster,
    eventually,
    pod_ready,
)
from wasp import contract
from wasp.client import WaspClient

MIB = 1024 * 1024
PHONE = "+14155550123"


def memory_of(cluster: WaspCluster, namespace: str, pod_name: str) -> dict[str, float]:
    """The pod's containers' working set and RSS in MiB, from the kubelet's summary API."""
    summary = cluster.real_node.stats_summary()
    for pod in summary.get("pods", []):
        reference = pod["podRef"]
        if reference["namespace"] == namespace and reference["name"] == pod_name:
            containers = pod.get("containers") or []
            return {
                "working set": sum(c["memory"]["workingSetBytes"] for c in containers) / MIB,
                "rss": sum(c["memory"].get("rssBytes", 0) for c in containers) / MIB,
            }
    msg = f"no stats for pod {namespace}/{pod_name} yet"
    raise LookupError(msg)


def settled_memory(cluster: WaspCluster, namespace: str, pod_name: str) -> dict[str, float]:
    """The pod's memory once the kubelet has stats for it (they lag a few seconds)."""

    def probe() -> dict[str, float] | None:
        try:
            return memory_of(cluster, namespace, pod_name)
        except LookupError:
            return None

    return eventually(probe, f"kubelet stats of {pod_name}", 120)


def one_round(directory: Path, otps: int) -> dict[str, float]:
    """One fresh cluster: install, a tenant paired and restored; timings (s) and memory (MiB)."""
    figures: dict[str, float] = {}
    cluster = WaspCluster(directory)
    try:
        started = time.monotonic()
        cluster.install()
        figures["install → operator Available (s)"] = time.monotonic() - started
        operator = cluster.operator_pods()[-1]["metadata"]["name"]

        tenant = "bench"
        pod_name = contract.session_pod_name(tenant)
        started = time.monotonic()
        cluster.apply_session(tenant, delivery={"rateLimit": {"perMinute": 1000}})
        eventually(
            lambda: (
                ((cluster.session_pod(tenant) or {}).get("status") or {}).get("phase") == "Running"
            ),
            "session pod Running",
        )
        figures["apply → pod Running (s)"] = time.monotonic() - started
        eventually(lambda: cluster.status(tenant).get("phase") == "AwaitingPairing", "a QR")
        figures["apply → AwaitingPairing (a QR) (s)"] = time.monotonic() - started
        pairing = settled_memory(cluster, TENANTS_NAMESPACE, pod_name)

        admin = cluster.admin_redis.client()
        started = time.monotonic()
        admin.rpush(contract.simulator_commands_key(tenant), json.dumps({"command": "scan"}))
        eventually(lambda: pod_ready(cluster.session_pod(tenant)), "session pod Ready")
        figures["scan → pod Ready (Connected) (s)"] = time.monotonic() - started
        time.sleep(15)  # idle: let the first checkpoint and the start's garbage settle
        connected = settled_memory(cluster, TENANTS_NAMESPACE, pod_name)

        with WaspClient(redis.Redis.from_url(cluster.api_redis_url(tenant)), tenant) as client:
            ids = [client.send_otp(PHONE, f"{n:06d}") for n in range(otps)]
            for message_id in ids:
                client.wait_for(message_id, "read", timeout=300)
        time.sleep(10)
        after_otps = settled_memory(cluster, TENANTS_NAMESPACE, pod_name)

        old_uid = (cluster.session_pod(tenant) or {})["metadata"]["uid"]
        started = time.monotonic()
        cluster.kubectl("delete", "pod", pod_name, "-n", TENANTS_NAMESPACE, "--wait=false")
        new_pod = eventually(
            lambda: (
                pod
                if (pod := cluster.session_pod(tenant)) and pod["metadata"]["uid"] != old_uid
                else None
            ),
            "a new session pod",
        )
        created = time.monotonic()
        figures["delete → new pod created (s)"] = created - started
        eventually(
            lambda: (
                (pod := cluster.session_pod(tenant)) is not None
                and pod["metadata"]["uid"] == new_pod["metadata"]["uid"]
                and pod_ready(pod)
            ),
            "the new pod Ready (restored)",
        )
        figures["new pod created → Ready, restored (s)"] = time.monotonic() - created
        operator_memory = settled_memory(cluster, RELEASE_NAMESPACE, operator)
        admin.close()

        for label, memory in (
            ("session pairing", pairing),
            ("session Connected, idle", connected),
            (f"session after {otps} OTPs", after_otps),
            ("operator", operator_memory),
        ):
            figures[f"{label}: working set (MiB)"] = memory["working set"]
            figures[f"{label}: rss (MiB)"] = memory["rss"]
    finally:
        cluster.stop()
    return figures


def main() -> None:
    """Run the rounds; print each round's figures, then the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--otps", type=int, default=200)
    arguments = parser.parse_args()
    # The client logs each OTP it enqueues: only the figures are printed here.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    rounds: list[dict[str, float]] = []
    for number in range(1, arguments.rounds + 1):
        with tempfile.TemporaryDirectory(prefix="wasp-pods-bench-") as directory:
            figures = one_round(Path(directory), arguments.otps)
        rounds.append(figures)
        print(f"round {number}:")
        for name, value in figures.items():
            print(f"  {name}: {value:.1f}")
    print("median:")
    for name in rounds[0]:
        print(f"  {name}: {statistics.median(r[name] for r in rounds):.1f}")


if __name__ == "__main__":
    main()
