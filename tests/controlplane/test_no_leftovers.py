"""No server of the harness outlives the process that started it, however it ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from harness.leftovers import alive_from

TESTS = Path(__file__).resolve().parent.parent

START_AND_HANG = """
import sys, time
from pathlib import Path
from harness.controlplane import ControlPlane
from harness.redis_server import RedisServer
directory = Path(sys.argv[1])
RedisServer(directory / "redis")
ControlPlane(directory / "controlplane")
print("up", flush=True)
time.sleep(600)
"""


def test_servers_die_when_their_test_process_is_killed(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    child = subprocess.Popen(
        [sys.executable, "-c", START_AND_HANG, str(tmp_path)],
        env={**os.environ, "PYTHONPATH": str(TESTS), "WASP_TEST_PIDFILE": str(pidfile)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "up"
        started = {line.split()[2] for line in pidfile.read_text(encoding="utf-8").splitlines()}
        assert started == {"redis-server", "etcd", "kube-apiserver", "kube-controller-manager"}
        assert len(alive_from(pidfile)) == 4
    finally:
        child.send_signal(signal.SIGKILL)  # no teardown runs: only the kernel can clean up
        child.wait()
        if child.stdout is not None:
            child.stdout.close()

    deadline = time.monotonic() + 20
    while alive_from(pidfile) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert alive_from(pidfile) == []
