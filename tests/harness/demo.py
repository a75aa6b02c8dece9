"""``make demo`` and ``make demo-down``: wasp on one machine, a sandbox tenant paired, one OTP read.

``python -m harness.demo up`` starts, unless one already runs, a detached
supervisor (``python -m harness.demo serve``, its own session, output in
``<demo>/supervisor.log``) that holds a ``harness.wasp_cluster.WaspCluster``
(control plane, real node, admin Redis, the chart installed) until it is sent
SIGTERM. The cluster's servers die with the supervisor (``PR_SET_PDEATHSIG``),
so the supervisor, not ``up``, must outlive the command. Once the supervisor
has written ``<demo>/state.json``, ``up`` plays what a tenant's team does:
apply a ``WhatsAppSession`` in sandbox mode (the simulator transport), show
its QR code, have the simulated phone scan it, wait for ``Connected``, send an
OTP with the tenant API's own credential (``status.apiCredentials``) and wait
until it is ``read``; then it prints ``kubectl get whatsappsessions``, the
message's states and the commands to try next. A second ``up`` reuses the
running cluster and plays the tenant's part again.

``python -m harness.demo down`` sends the supervisor SIGTERM (it stops the
cluster), sweeps what a killed node could leave (``harness.node_cleanup``),
checks that no process, mount or cgroup of the demo is left, removes the
demo folder, and stops ``dockerd`` if wasp's tooling started it
(``harness.image``) and nothing else uses it.

The demo folder is ``.demo/`` at the repository root, or ``$WASP_DEMO_DIR``.
Runs as root (the real node needs it).

This module is the command line and the supervisor; the tenant's part is
``harness.demo_tenant``, what ``down`` removes and checks is
``harness.demo_teardown``, the demo folder's files are ``harness.demo_folder``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import TextIO

import redis
import structlog

from harness.demo_folder import (
    FOLDER_VARIABLE,
    Folder,
    State,
    follow,
    log,
    log_tail,
    supervisor_pid,
)
from harness.demo_teardown import clean, stop_dockerd_if_ours, stop_supervisor
from harness.demo_tenant import (
    Kubectl,
    apply_session,
    next_steps,
    pair,
    send_otp,
)
from harness.processes import start_time
from harness.wasp_cluster import RELEASE_NAMESPACE, ROOT, TENANTS_NAMESPACE, WaspCluster
from wasp import contract

START_TIMEOUT = 900.0  # the cluster, from nothing (binaries and image are built by make first)
# The node's containerd listens on this socket in the cluster's folder (harness.node); containerd
# refuses socket paths longer than 104 bytes.
LONGEST_SOCKET = "node/containerd/containerd.sock.ttrpc"
UNIX_SOCKET_PATH_MAX = 104


# ---------------------------------------------------------------- serve: the supervisor
class Stop(BaseException):
    """SIGTERM (or SIGINT) reached the supervisor: stop the cluster."""


def _stop(signum: int, _frame: FrameType | None) -> None:
    raise Stop(signal.Signals(signum).name)


def serve(folder: Folder) -> None:
    """Start the cluster, install the chart, describe it in the state file; stop on SIGTERM."""
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    cluster: WaspCluster | None = None
    try:
        log("starting a control plane, a real node (containerd, kubelet) and Redis")
        cluster = WaspCluster(folder.cluster)
        log(f"helm install wasp (charts/wasp) in namespace {RELEASE_NAMESPACE}")
        try:
            cluster.install()
        except AssertionError:
            log(f"the operator's log:\n{cluster.operator_logs()}")
            raise
        State(
            pid=os.getpid(),
            kubeconfig=str(cluster.plane.kubeconfig),
            kubectl=str(cluster.binaries["kubectl"]),
            admin_redis_url=cluster.admin_redis.url,
        ).write(folder.state)
        log("ready; waiting for SIGTERM (make demo-down)")
        while True:
            signal.pause()
    except Stop as stop:
        log(f"{stop}: stopping the cluster")
    finally:
        folder.state.unlink(missing_ok=True)
        if cluster is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the stop must not be cut short
            cluster.stop()
        log("stopped")


def start_supervisor(folder: Folder) -> int:
    """Start ``serve`` detached (its own session, output to the log); return its pid."""
    folder.claim()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests"), FOLDER_VARIABLE: str(folder.root)}
    with folder.log.open("ab") as output:
        supervisor = subprocess.Popen(
            [sys.executable, "-m", "harness.demo", "serve"],
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=ROOT,
            env=env,
        )
    record = {"pid": supervisor.pid, "start_time": start_time(supervisor.pid)}
    folder.supervisor.write_text(json.dumps(record), encoding="utf-8")
    return supervisor.pid


def wait_for_state(folder: Folder, pid: int) -> State:
    """Wait for the supervisor's state file, echoing its log; fail if it dies."""
    offset = folder.log.stat().st_size if folder.log.exists() else 0
    deadline = time.monotonic() + START_TIMEOUT
    while (state := State.read(folder.state)) is None:
        offset = follow(folder.log, offset)
        if supervisor_pid(folder) != pid:
            msg = f"the demo's supervisor exited; {folder.log}:\n{log_tail(folder)}"
            raise RuntimeError(msg)
        if time.monotonic() > deadline:
            msg = f"the cluster did not start within {START_TIMEOUT:.0f} s; see {folder.log}"
            raise RuntimeError(msg)
        time.sleep(0.5)
    follow(folder.log, offset)
    return state


# ---------------------------------------------------------------- up
def up(folder: Folder) -> None:
    """Start the demo's cluster unless it runs, then pair the tenant and send it an OTP."""
    if os.geteuid() != 0:
        msg = "make demo runs a real node (containerd, kubelet, cgroups): run it as root"
        raise SystemExit(msg)
    longest = folder.cluster / LONGEST_SOCKET
    if len(str(longest)) > UNIX_SOCKET_PATH_MAX:
        msg = (
            f"{longest} is longer than a unix socket path may be ({UNIX_SOCKET_PATH_MAX}): "
            f"set {FOLDER_VARIABLE} to a shorter folder"
        )
        raise SystemExit(msg)
    if not structlog.is_configured():  # the client library's logs: warnings only, as `wasp` does
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    started = time.monotonic()
    pid = supervisor_pid(folder)
    if pid is None and folder.supervisor.exists():
        log(f"a previous demo stopped without make demo-down; its log:\n{log_tail(folder, 15)}")
        clean(folder)
    if pid is None:
        pid = start_supervisor(folder)
        log(f"supervisor started (pid {pid}, log {folder.log})")
    else:
        log(f"reusing the running demo (supervisor pid {pid})")
    state = wait_for_state(folder, pid)
    log(f"cluster ready after {time.monotonic() - started:.0f} s")
    kubectl = Kubectl(state)
    apply_session(kubectl)
    pair(kubectl, state)
    timeline = send_otp(kubectl)
    print(f"\n$ kubectl get {contract.PLURAL} -n {TENANTS_NAMESPACE}")  # noqa: T201
    print(kubectl("get", contract.PLURAL, "-n", TENANTS_NAMESPACE), end="")  # noqa: T201
    print(f"\n{timeline}\n")  # noqa: T201
    print(next_steps(state, kubectl))  # noqa: T201
    log(f"done in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- down
def down(folder: Folder) -> None:
    """Stop the demo and remove everything it made."""
    started = time.monotonic()
    if not folder.root.exists():
        log(f"no demo in {folder.root}")
    else:
        pid = stop_supervisor(folder)
        if pid is None:
            log("the supervisor was not running")
        clean(folder, pid)
    stop_dockerd_if_ours()
    log(f"down in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- command line
def main(argv: list[str] | None = None, out: TextIO = sys.stderr) -> None:
    """``up``, ``down`` or ``serve`` (the supervisor ``up`` starts)."""
    parser = argparse.ArgumentParser(prog="python -m harness.demo", description=__doc__)
    parser.add_argument("command", choices=["up", "down", "serve"])
    args = parser.parse_args(argv)
    folder = Folder.chosen()
    commands = {"up": up, "down": down, "serve": serve}
    try:
        commands[args.command](folder)
    except (RuntimeError, AssertionError, redis.RedisError) as error:
        out.write(f"demo: {error}\n")
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        out.write("demo: interrupted; the demo runs on (make demo-down stops it)\n")
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
