"""What a test node leaves on the machine outside its folder, and removing it.

The kubelet and containerd keep some state where no flag moves it: the
containerd shims' sockets (``/run/containerd/s``), the links to container
logs (``/var/log/containers``), the device-plugin folder
(``/var/lib/kubelet/device-plugins``), the pods' cgroups and the mounts of
pods and snapshots. ``clean_up`` removes a node's share of these.

A node that dies with its test run (pytest SIGKILLed: the kernel kills the
kubelet and containerd, never the shims or the containers) cannot clean up
after itself, so every running node is recorded in the binary cache, and the
next ``harness.node.Node`` sweeps the records of dead runs first.

This module only removes what it can attribute to one node (its folder, its
cgroup parent, shims of its containerd): never the user's Docker engine's or
another live node's.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

from harness import assets

CGROUP_FS = Path("/sys/fs/cgroup")
# Paths the kubelet uses whatever its --root-dir (pluginapi.DevicePluginPath, the CRI log links).
KUBELET_FIXED_ROOT = Path("/var/lib/kubelet")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
REMOVE_TIMEOUT = 10.0


# -- records of running nodes ----------------------------------------------------------
def _records() -> Path:
    return assets.cache_root() / "node" / "running"


def remember(directory: Path, cgroup_parent: str) -> Path:
    """Record a node started by this process; ``forget`` it once it is cleaned up."""
    record = _records() / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(
        json.dumps({"directory": str(directory), "cgroup_parent": cgroup_parent}),
        encoding="utf-8",
    )
    return record


def forget(record: Path) -> None:
    """Drop a node's record."""
    record.unlink(missing_ok=True)


def stale() -> list[Path]:
    """Records of nodes whose test process is gone: nodes never stopped."""
    if not _records().is_dir():
        return []
    return [
        record
        for record in _records().glob("*.json")
        if not Path(f"/proc/{record.name.split('-', 1)[0]}").exists()
    ]


def sweep() -> None:
    """Clean up after every recorded node whose test process is gone."""
    for record in stale():
        node = json.loads(record.read_text(encoding="utf-8"))
        clean_up(Path(node["directory"]), node["cgroup_parent"])
        forget(record)


# -- the clean-up ---------------------------------------------------------------------------
def clean_up(directory: Path, cgroup_parent: str) -> None:
    """Remove what the node in ``directory`` left outside it; its servers must be stopped."""
    for pid, sockets in shims_of(directory / "containerd" / "containerd.sock").items():
        _kill(pid)
        for path in sockets:
            Path(path).unlink(missing_ok=True)
    remove_cgroups(cgroup_parent)
    unmount_under(directory)
    remove_log_links(directory / "pod-logs")
    if not _kubelets_running():
        shutil.rmtree(KUBELET_FIXED_ROOT, ignore_errors=True)


def hierarchies() -> list[Path]:
    """Every cgroup hierarchy root: each v1 mount (with the hybrid ``unified`` one), or v2's."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [path for path in CGROUP_FS.iterdir() if path.is_dir() and not path.is_symlink()]


def cgroups(cgroup_parent: str) -> list[Path]:
    """A node's cgroup parent in each hierarchy where it exists."""
    paths = (hierarchy / cgroup_parent.lstrip("/") for hierarchy in hierarchies())
    return [path for path in paths if path.is_dir()]


def remove_cgroups(cgroup_parent: str) -> None:
    """Kill what still runs in a node's cgroups, then remove them, leaves first."""
    for root in cgroups(cgroup_parent):
        tree = sorted(
            (root, *(p for p in root.rglob("*") if p.is_dir())),
            key=lambda p: len(p.parts),
            reverse=True,
        )
        for path in tree:
            for pid in (path / "cgroup.procs").read_text(encoding="ascii").split():
                _kill(int(pid))
            deadline = time.monotonic() + REMOVE_TIMEOUT
            while True:
                try:
                    path.rmdir()
                    break
                except OSError:  # busy until the killed processes are reaped
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)


def remove_log_links(pod_logs: Path) -> None:
    """The kubelet links each container's log into /var/log/containers; remove a node's."""
    if not CONTAINER_LOG_LINKS.is_dir():
        return
    for link in CONTAINER_LOG_LINKS.iterdir():
        if link.is_symlink() and link.readlink().is_relative_to(pod_logs):
            link.unlink()
    if not any(CONTAINER_LOG_LINKS.iterdir()):
        CONTAINER_LOG_LINKS.rmdir()


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted at or below ``directory``, deepest first."""
    prefix = str(directory)
    mounts = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
    ]
    for mount in sorted(
        (m for m in mounts if m == prefix or m.startswith(prefix + "/")), key=len, reverse=True
    ):
        if subprocess.run(["umount", mount], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "--lazy", mount], capture_output=True, check=False)


def shims_of(containerd_socket: Path) -> dict[int, list[str]]:
    """Shim processes serving one containerd, with the unix sockets they listen on."""
    shims: dict[int, list[str]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"containerd-shim" in args[0] and str(containerd_socket).encode() in args:
            shims[int(proc.name)] = _listening_sockets(proc)
    return shims


def _listening_sockets(proc: Path) -> list[str]:
    """Paths of the unix sockets a process holds (a shim's is under /run/containerd/s)."""
    inodes = set()
    try:
        for fd in (proc / "fd").iterdir():
            target = str(fd.readlink())
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        return []
    paths = []
    for line in Path("/proc/net/unix").read_text(encoding="utf-8").splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("/"):
            paths.append(fields[7])
    return paths


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + REMOVE_TIMEOUT
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):  # a child of ours goes once reaped
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)


def processes_naming(path: Path) -> list[str]:
    """Command lines of running processes that name ``path`` (a node's shims name its socket)."""
    return [cmdline for _, cmdline in command_lines_naming(path)]


def command_lines_naming(path: Path) -> list[tuple[int, str]]:
    """(pid, command line) of each running process whose command line names ``path``."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            found.append((int(proc.name), cmdline))
    return found


def _kubelets_running() -> bool:
    """Whether any kubelet runs on the machine (then the shared folder stays)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text(encoding="ascii").strip() == "kubelet":
                return True
        except OSError:
            continue
    return False
