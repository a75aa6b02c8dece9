"""The real node runs pods as a cluster's node does, and leaves nothing behind.

The session's node (``node`` fixture) serves the pod tests; the teardown test
starts a control plane and node of its own, so stopping them cannot disturb
the session's.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness import node_cleanup
from harness.controlplane import ControlPlane
from harness.node import Node
from harness.node_cleanup import CONTAINER_LOG_LINKS
from harness.node_images import pause_pod

pytestmark = pytest.mark.node

# The kubelet removes a deleted pod's sandbox in its container GC, which runs
# once a minute (kubelet.ContainerGCPeriod, not configurable).
SANDBOX_GC_BOUND = 75.0


def wait_for(condition: object, timeout: float) -> bool:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.2)
    return bool(condition())


def create_pod(
    control_plane: ControlPlane, namespace: str, name: str, node: str | None = None
) -> str:
    """Create a pause pod and return its uid."""
    control_plane.kubectl(
        "create", "-n", namespace, "-f", "-", stdin=json.dumps(pause_pod(name, node))
    )
    return control_plane.kubectl(
        "get", "pod", name, "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout


def pod_cgroups(node: Node, uid: str) -> list[Path]:
    return [path for root in node.cgroups() for path in root.rglob(f"pod{uid}")]


def test_node_is_ready_on_containerd_at_the_pinned_kubernetes_version(
    node: Node, control_plane: ControlPlane
) -> None:
    found = json.loads(control_plane.kubectl("get", "node", node.name, "-o", "json").stdout)

    conditions = {c["type"]: c["status"] for c in found["status"]["conditions"]}
    assert conditions["Ready"] == "True"
    assert found["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert found["status"]["nodeInfo"]["kubeletVersion"] == "v1.34.4"


def test_a_pod_runs_and_deleting_it_removes_its_containers_and_cgroup(
    node: Node, control_plane: ControlPlane, namespace: str
) -> None:
    uid = create_pod(control_plane, namespace, "pause")

    control_plane.kubectl(
        "wait",
        "-n",
        namespace,
        "--for=jsonpath={.status.phase}=Running",
        "pod/pause",
        "--timeout=60s",
    )
    assert node.containers(uid), "the pod runs in containerd"
    assert pod_cgroups(node, uid), "the pod has its cgroup under the node's kubepods"
    # The API server reaches the kubelet (logs, exec) with the test CA's credentials.
    control_plane.kubectl("logs", "-n", namespace, "pause")

    control_plane.kubectl("delete", "pod", "pause", "-n", namespace, "--timeout=60s")

    assert wait_for(lambda: not node.containers(uid), SANDBOX_GC_BOUND), node.containers(uid)
    assert wait_for(lambda: not pod_cgroups(node, uid), 10), pod_cgroups(node, uid)


def test_a_stopped_node_leaves_no_process_mount_cgroup_or_log_link(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "controlplane")
    try:
        own = Node(plane, tmp_path / "node", name="wasp-teardown-node")
        try:
            create_pod(plane, "default", "left-running", node=own.name)
            plane.kubectl(
                "wait",
                "--for=jsonpath={.status.phase}=Running",
                "pod/left-running",
                "--timeout=60s",
            )
            assert own.cgroups()
        finally:
            own.stop()  # with the pod still running: the teardown must remove it
    finally:
        plane.stop()

    assert not any(process.alive() for process in own.processes)
    assert node_cleanup.processes_naming(tmp_path / "node") == []  # the shims included
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8")
    assert str(tmp_path / "node") not in mounts
    assert own.cgroups() == []
    links = list(CONTAINER_LOG_LINKS.iterdir()) if CONTAINER_LOG_LINKS.is_dir() else []
    assert not [link for link in links if str(own.pod_logs) in str(link.readlink())]
