"""The operator's tests' own fixtures: a kubelet stand-in whose pods only idle, a pod watch.

Where the tests write to Redis what a session pod would
(``harness.session_reports``), the pods need only exist and run: each runs a
sleeping process instead of ``wasp-session``, which would write its own
status over the test's. ``pod_watch`` records every wasp pod the test's
namespace gets and loses (``harness.pod_watch``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.pod_watch import PodWatch

IDLE = [sys.executable, "-c", "import time\nwhile True: time.sleep(1)"]


@pytest.fixture
def idle_kubelet(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Kubelet]:
    """The kubelet stand-in for the test's namespace, running a sleeping process in every pod."""
    stand_in = Kubelet(control_plane.kubeconfig, namespace, tmp_path / "kubelet", command=IDLE)
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def pod_watch(control_plane: ControlPlane, namespace: str) -> Iterator[PodWatch]:
    """A watch of the test's namespace's wasp pods, from before the test makes any."""
    watch = PodWatch(control_plane, namespace)
    try:
        yield watch
    finally:
        watch.stop()
