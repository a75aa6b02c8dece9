"""`make demo`: a sandbox tenant Connected, its OTP read; `make demo-down` leaves nothing.

Runs the commands the Makefile runs (``python -m harness.demo up`` / ``down``)
with the demo folder in a temporary directory (``$WASP_DEMO_DIR``), and reads
what a user reads: the command's output, then the machine.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import node_cleanup
from harness.wasp_cluster import ROOT

pytestmark = pytest.mark.node

COMMAND_TIMEOUT = 600.0


def demo(command: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m harness.demo COMMAND`` as ``make demo`` does, on ``folder``."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), "WASP_DEMO_DIR": str(folder)}
    return subprocess.run(
        [sys.executable, "-m", "harness.demo", command],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def mounts_under(folder: Path) -> list[str]:
    points = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    return [point for point in points if point.startswith(str(folder))]


def test_demo_pairs_a_tenant_sends_an_otp_read_and_demo_down_leaves_nothing(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    folder = tmp_path_factory.mktemp("demo")  # short: containerd's socket paths are limited
    try:
        first = demo("up", folder)
        assert first.returncode == 0, first.stdout + first.stderr
        again = demo("up", folder)
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        down = demo("down", folder)

    table = re.compile(r"^NAME\s+TENANT\s+PHASE.*\n^demo\s+demo\s+Connected\s", re.MULTILINE)
    read = re.compile(r"^\s+read\s+\d{4}-\d\d-\d\dT\S+\s+\+[\d.]+ s$", re.MULTILINE)
    for run in (first, again):
        assert table.search(run.stdout), run.stdout
        assert read.search(run.stdout), run.stdout
        assert "export KUBECONFIG=" in run.stdout
    assert "scans it" in first.stdout, "the first run pairs the tenant"
    assert "reusing the running demo" in again.stdout, "the second run reuses the cluster"
    assert down.returncode == 0, down.stdout + down.stderr
    assert "no process, mount or cgroup of the demo is left" in down.stdout
    assert not folder.exists()
    assert not node_cleanup.processes_naming(folder)
    assert not mounts_under(folder)
