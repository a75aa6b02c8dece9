"""What ``make demo-down`` removes, and the check that nothing of the demo is left.

``down`` sends the supervisor SIGTERM (it stops the cluster; SIGKILL after a
timeout, and the cluster's servers die with it), sweeps what a killed node
could leave (``harness.node_cleanup``), fails if a process, mount or cgroup of
the demo remains, removes the demo folder (only one marked as a demo's), and
stops ``dockerd`` if wasp's tooling started it (``harness.image``) and nothing
else uses it. ``up`` uses the same sweep for a demo that stopped without
``make demo-down``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

from harness import image, node_cleanup
from harness.demo_folder import Folder, follow, log, running, supervisor_pid
from harness.processes import start_time

STOP_TIMEOUT = 180.0  # the supervisor stops the session pods, the node, Redis, the control plane
DOCKERD_STOP_TIMEOUT = 60.0


def stop_supervisor(folder: Folder) -> int | None:
    """SIGTERM the supervisor and wait for it (SIGKILL after the timeout); return its pid."""
    pid = supervisor_pid(folder)
    if pid is None:
        return None
    record = json.loads(folder.supervisor.read_text(encoding="utf-8"))
    log(f"stopping the supervisor (pid {pid}): session pods, node, Redis, control plane")
    offset = folder.log.stat().st_size if folder.log.exists() else 0
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    while running(pid, record["start_time"]):
        offset = follow(folder.log, offset)
        if time.monotonic() > deadline:
            log(f"not stopped within {STOP_TIMEOUT:.0f} s: SIGKILL (its servers die with it)")
            os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.2)
    follow(folder.log, offset)
    return pid


def demo_processes(folder: Folder) -> list[str]:
    """Processes that name the demo folder (servers, containerd shims), but this one."""
    return [
        f"{pid} {cmdline.strip()}"
        for pid, cmdline in node_cleanup.command_lines_naming(folder.root)
        if pid != os.getpid()
    ]


def demo_mounts(folder: Folder) -> list[str]:
    """Mount points at or under the demo folder."""
    prefix = str(folder.root)
    mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    points = (line.split()[1] for line in mounts)
    return [point for point in points if point == prefix or point.startswith(prefix + "/")]


def node_cgroups(supervisor: int) -> list[str]:
    """Cgroups of nodes the supervisor started (``/wasp-node-<pid>-<id>``, harness.node)."""
    return [
        str(path)
        for hierarchy in node_cleanup.hierarchies()
        for path in hierarchy.glob(f"wasp-node-{supervisor}-*")
    ]


def leftovers(folder: Folder, supervisor: int | None) -> list[str]:
    """Everything of the demo still on the machine, one line each."""
    found = [f"process {line}" for line in demo_processes(folder)]
    found += [f"mount {point}" for point in demo_mounts(folder)]
    if supervisor is not None:
        found += [f"cgroup {path}" for path in node_cgroups(supervisor)]
    return found


def clean(folder: Folder, supervisor: int | None = None) -> None:
    """Sweep what a stopped (or killed) supervisor's node left, check, remove the folder."""
    if supervisor is None and folder.supervisor.exists():
        supervisor = int(json.loads(folder.supervisor.read_text(encoding="utf-8"))["pid"])
    node_cleanup.sweep()  # nodes whose process is gone: the supervisor's, if it was killed
    left = leftovers(folder, supervisor)
    if left:
        msg = "the demo left these behind:\n  " + "\n  ".join(left)
        raise RuntimeError(msg)
    if not folder.marker.exists():
        msg = f"{folder.root} is not a demo's folder (no {folder.marker.name}): left as it is"
        raise RuntimeError(msg)
    shutil.rmtree(folder.root)
    log(f"removed {folder.root}; no process, mount or cgroup of the demo is left")


def stop_dockerd_if_ours() -> None:
    """Stop dockerd if wasp's tooling started it and nothing uses it now; say which."""
    pid = image.recorded_dockerd()
    if pid is None:
        if image.docker_answers():
            log("dockerd left running: no record that wasp's tooling started it")
        return
    busy = _dockerd_users()
    if busy:
        log(f"dockerd (pid {pid}, started by wasp's tooling) left running: {busy}")
        return
    log(f"stopping dockerd (pid {pid}): wasp's tooling started it, nothing uses it")
    started = start_time(pid)
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + DOCKERD_STOP_TIMEOUT
    while running(pid, started):
        if time.monotonic() > deadline:
            log(f"dockerd did not stop within {DOCKERD_STOP_TIMEOUT:.0f} s; left running")
            return
        time.sleep(0.2)
    image.forget_dockerd()


def _dockerd_users() -> str:
    """Why dockerd is in use (containers, a docker command, another node), or ''."""
    containers = image.docker("ps", "--quiet", check=False).stdout.split()
    if containers:
        return f"{len(containers)} container(s) run"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            name = (proc / "comm").read_text(encoding="ascii").strip()
        except OSError:
            continue
        if name == "docker":
            return "a docker command runs"
        if name == "kubelet":
            return "another wasp node runs (its images come from Docker)"
    return ""
