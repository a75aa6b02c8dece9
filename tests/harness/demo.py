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
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

import redis
import segno
import structlog

from harness import image, node_cleanup
from harness.processes import start_time
from harness.wasp_cluster import RELEASE_NAMESPACE, ROOT, TENANTS_NAMESPACE, WaspCluster
from wasp import contract
from wasp.client import WaspClient

FOLDER_VARIABLE = "WASP_DEMO_DIR"
DEFAULT_FOLDER = ROOT / ".demo"
TENANT = "demo"
SANDBOX_PHONE = "+4915112345678"  # the OTP's recipient: any number is on WhatsApp in the sandbox
DEMO_ACCOUNT = "+4915100000000"  # the WhatsApp account the simulated phone links
START_TIMEOUT = 900.0  # the cluster, from nothing (binaries and image are built by make first)
TENANT_TIMEOUT = 180.0
STOP_TIMEOUT = 180.0  # the supervisor stops the session pods, the node, Redis, the control plane
DOCKERD_STOP_TIMEOUT = 60.0
# The node's containerd listens on this socket in the cluster's folder (harness.node); containerd
# refuses socket paths longer than 104 bytes.
LONGEST_SOCKET = "node/containerd/containerd.sock.ttrpc"
UNIX_SOCKET_PATH_MAX = 104


def log(message: str) -> None:
    """One line of progress, flushed (the supervisor's go to its log, ``up`` follows it)."""
    print(f"demo: {message}", flush=True)  # noqa: T201 - the command's output


# ---------------------------------------------------------------- the demo folder
@dataclass(frozen=True)
class Folder:
    """The files of one demo."""

    root: Path

    @classmethod
    def chosen(cls) -> Folder:
        """``$WASP_DEMO_DIR``, else ``.demo/`` in the repository."""
        configured = os.environ.get(FOLDER_VARIABLE)
        return cls(Path(configured).resolve() if configured else DEFAULT_FOLDER)

    @property
    def cluster(self) -> Path:
        """Where the cluster's servers keep their folders (control plane, node, Redis)."""
        return self.root

    @property
    def supervisor(self) -> Path:
        """``{"pid", "start_time"}`` of the supervisor, written by ``up`` when it starts it."""
        return self.root / "supervisor.json"

    @property
    def state(self) -> Path:
        """What ``up`` needs, written by the supervisor once the chart is installed."""
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        """The supervisor's output."""
        return self.root / "supervisor.log"

    @property
    def marker(self) -> Path:
        """Says the folder is a demo's, all of it: ``down`` removes only such a folder."""
        return self.root / ".wasp-demo"

    def claim(self) -> None:
        """Make the folder a demo's; refuse a folder with other files in it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists() and any(self.root.iterdir()):
            msg = f"{self.root} has files of its own: point {FOLDER_VARIABLE} at a new folder"
            raise RuntimeError(msg)
        self.marker.touch()


@dataclass(frozen=True)
class State:
    """The running cluster, as the supervisor describes it."""

    pid: int
    kubeconfig: str
    kubectl: str
    admin_redis_url: str

    def write(self, path: Path) -> None:
        """Write atomically (``up`` polls for it), readable by root only: it holds a password."""
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(self)), encoding="utf-8")
        scratch.chmod(0o600)
        scratch.replace(path)

    @classmethod
    def read(cls, path: Path) -> State | None:
        """The state, or None if the supervisor has not written it."""
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None


def running(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` started at ``started`` still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and start_time(pid) == started


def supervisor_pid(folder: Folder) -> int | None:
    """The supervisor's pid if it runs."""
    try:
        record = json.loads(folder.supervisor.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    pid = int(record["pid"])
    return pid if running(pid, record["start_time"]) else None


def log_tail(folder: Folder, lines: int = 40) -> str:
    """The supervisor's last lines of output."""
    try:
        text = folder.log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


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


# ---------------------------------------------------------------- up
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


def follow(path: Path, offset: int) -> int:
    """Print what was appended to ``path`` since ``offset``; return the new offset."""
    with suppress(FileNotFoundError), path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        return offset + len(chunk)
    return offset


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


class Kubectl:
    """The real kubectl, on the demo's cluster."""

    def __init__(self, state: State) -> None:
        """Use the binary and kubeconfig the supervisor named."""
        self.binary = state.kubectl
        self.env = {**os.environ, "KUBECONFIG": state.kubeconfig}

    def __call__(self, *args: str, stdin: str | None = None) -> str:
        """Run kubectl; return its output; fail with its error."""
        result = subprocess.run(
            [self.binary, *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            msg = f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}"
            raise RuntimeError(msg)
        return result.stdout

    def status(self, name: str) -> dict[str, Any]:
        """A WhatsAppSession's status ({} before the operator writes one)."""
        found = json.loads(
            self("get", contract.PLURAL, name, "-n", TENANTS_NAMESPACE, "-o", "json")
        )
        status: dict[str, Any] = found.get("status") or {}
        return status

    def secret_value(self, name: str, key: str) -> str:
        """One key of a Secret in the tenants' namespace."""
        encoded = self(
            "get", "secret", name, "-n", TENANTS_NAMESPACE, "-o", f"jsonpath={{.data.{key}}}"
        )
        return base64.b64decode(encoded).decode()


def watch_status(
    kubectl: Kubectl, until: Callable[[dict[str, Any]], bool], what: str, *, quiet: bool = False
) -> dict[str, Any]:
    """Poll the tenant's status, printing each new phase (unless quiet), until ``until(status)``."""
    started = time.monotonic()
    seen = None
    while time.monotonic() - started < TENANT_TIMEOUT:
        status = kubectl.status(TENANT)
        phase = status.get("phase", "(no status yet)")
        if phase != seen and not quiet:
            log(f"  {time.monotonic() - started:5.1f} s  phase {phase}")
            seen = phase
        if until(status):
            return status
        time.sleep(0.5)
    msg = f"{what}: not within {TENANT_TIMEOUT:.0f} s (status: {kubectl.status(TENANT)})"
    raise RuntimeError(msg)


def pair(kubectl: Kubectl, state: State) -> None:
    """Wait for the QR code, show it, and have the simulated phone scan it."""
    status = watch_status(
        kubectl,
        lambda s: s.get("phase") == "Connected" or bool((s.get("pairing") or {}).get("qrCode")),
        "a QR code in the status",
    )
    if status.get("phase") == "Connected":
        log("already paired: the account is linked (its auth state is in Redis)")
        return
    log(f"the QR code (status.pairing.qrCode, window {status['pairing'].get('window', 1)}):")
    segno.make(status["pairing"]["qrCode"], error="l").terminal(out=sys.stdout, compact=True)
    tenant = status.get("tenantId", TENANT)
    with redis.Redis.from_url(state.admin_redis_url) as admin:
        scan = {"command": "scan", "phone": DEMO_ACCOUNT}
        admin.rpush(contract.simulator_commands_key(tenant), json.dumps(scan))
    log(f"the simulated phone of {DEMO_ACCOUNT} scans it (simulator command `scan`)")
    watch_status(kubectl, lambda s: s.get("phase") == "Connected", "phase Connected")


def send_otp(kubectl: Kubectl) -> str:
    """Send an OTP as the tenant's API does, wait until it is read; return the timeline."""
    status = watch_status(
        kubectl, lambda s: bool(s.get("apiCredentials")), "status.apiCredentials", quiet=True
    )
    secret = status["apiCredentials"]["secretName"]
    url = kubectl.secret_value(secret, "url")
    code = f"{secrets.randbelow(10**6):06d}"
    with WaspClient.from_url(url, status.get("tenantId", TENANT)) as client:
        message_id = client.send_otp(SANDBOX_PHONE, code)
        log(f"OTP {code} to {SANDBOX_PHONE} enqueued (message {message_id}), waiting for `read`")
        message = client.wait_for(message_id, "read", timeout=TENANT_TIMEOUT)
    if message.state != "read":
        msg = f"message {message_id} ended {message.state}: {message.reason} {message.error}"
        raise RuntimeError(msg)
    created = message.created_at or min(message.timestamps.values())
    lines = [f"message {message_id} (credential of Secret {secret}):"]
    for state_name, moment in sorted(message.timestamps.items(), key=lambda item: item[1]):
        offset = (moment - created).total_seconds()
        lines.append(
            f"  {state_name:<10} {moment.isoformat(timespec='milliseconds')}  +{offset:.2f} s"
        )
    return "\n".join(lines)


def next_steps(state: State, kubectl: Kubectl) -> str:
    """What to try next, with this demo's paths."""
    status = kubectl.status(TENANT)
    secret = status.get("apiCredentials", {}).get("secretName", "SECRET")
    pod = contract.session_pod_name(TENANT)
    kubectl_dir = str(Path(state.kubectl).parent)
    path_line = (
        "" if shutil.which("kubectl") == state.kubectl else f"export PATH={kubectl_dir}:$PATH\n"
    )
    wasp = ROOT / ".venv" / "bin" / "wasp"
    return (
        f"The demo keeps running. Kubeconfig: {state.kubeconfig}\n"
        "Try:\n"
        f"  export KUBECONFIG={state.kubeconfig}\n"
        + (f"  {path_line}" if path_line else "")
        + f"  kubectl get {contract.SHORT_NAME} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl describe {contract.SHORT_NAME} {TENANT} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl logs {pod} -n {TENANTS_NAMESPACE}\n"
        f"  kubectl get pods -A -o wide\n"
        f"  URL=$(kubectl get secret {secret} -n {TENANTS_NAMESPACE} "
        "-o jsonpath='{.data.url}' | base64 -d)\n"
        f'  {wasp} send {TENANT} {SANDBOX_PHONE} 123456 --wait read --redis-url "$URL"\n'
        f'  {wasp} status {TENANT} --redis-url "$URL"\n'
        "  make demo         # again: the tenant's part on the running cluster\n"
        "  make demo-down    # stop it and remove everything\n"
    )


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
    log(f"kubectl apply: WhatsAppSession {TENANT} in {TENANTS_NAMESPACE}, transport simulator")
    body = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": contract.KIND,
        "metadata": {"name": TENANT, "namespace": TENANTS_NAMESPACE},
        "spec": {"transport": "simulator"},
    }
    sys.stdout.write(kubectl("apply", "-f", "-", stdin=json.dumps(body)))
    pair(kubectl, state)
    timeline = send_otp(kubectl)
    print(f"\n$ kubectl get {contract.PLURAL} -n {TENANTS_NAMESPACE}")  # noqa: T201
    print(kubectl("get", contract.PLURAL, "-n", TENANTS_NAMESPACE), end="")  # noqa: T201
    print(f"\n{timeline}\n")  # noqa: T201
    print(next_steps(state, kubectl))  # noqa: T201
    log(f"done in {time.monotonic() - started:.0f} s")


# ---------------------------------------------------------------- down
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
    own = f"{os.getpid()} "
    return [line for line in _processes_naming(folder.root) if not line.startswith(own)]


def _processes_naming(path: Path) -> Iterator[str]:
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(path) in cmdline:
            yield f"{proc.name} {cmdline.strip()}"


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
