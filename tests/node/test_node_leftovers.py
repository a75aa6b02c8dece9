"""A node whose test process is SIGKILLed is cleaned up by the next one.

The kernel kills the kubelet, scheduler and containerd with their parent
(``harness.processes``), but the shims and the pods' containers outlive it,
with their cgroups and mounts: ``harness.node_cleanup.sweep``, which every
new ``Node`` runs first, must remove them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import node_cleanup
from harness.leftovers import alive_from

pytestmark = pytest.mark.node

TESTS = Path(__file__).resolve().parent.parent

START_POD_AND_HANG = """
import json, sys, time
from pathlib import Path
from harness.controlplane import ControlPlane
from harness.node import Node
from harness.node_images import pause_pod
directory = Path(sys.argv[1])
plane = ControlPlane(directory / "controlplane")
node = Node(plane, directory / "node", name="wasp-killed-node")
plane.kubectl("create", "-f", "-", stdin=json.dumps(pause_pod("orphan", node.name)))
plane.kubectl("wait", "--for=jsonpath={.status.phase}=Running", "pod/orphan", "--timeout=60s")
print(node.cgroup_parent, flush=True)
time.sleep(600)
"""


def test_the_next_node_removes_what_a_killed_test_run_left(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    child = subprocess.Popen(
        [sys.executable, "-c", START_POD_AND_HANG, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(TESTS), "WASP_TEST_PIDFILE": str(pidfile)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        cgroup_parent = child.stdout.readline().strip()
        assert cgroup_parent.startswith("/wasp-node-"), "the child's node did not start"
    finally:
        child.send_signal(signal.SIGKILL)  # no teardown runs
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
    deadline = time.monotonic() + 20
    while alive_from(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive_from(pidfile) == []
    assert node_cleanup.processes_naming(tmp_path / "node"), "the shims outlive the test process"
    assert node_cleanup.cgroups(cgroup_parent), "so do the pod's cgroups"

    node_cleanup.sweep()

    assert node_cleanup.processes_naming(tmp_path / "node") == []
    assert node_cleanup.cgroups(cgroup_parent) == []
    assert str(tmp_path / "node") not in Path("/proc/self/mounts").read_text(encoding="utf-8")
