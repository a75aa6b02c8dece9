"""A real Kubernetes node for tests: containerd, runc, kube-scheduler and a kubelet.

Modelled on Kubernetes' own ``hack/local-up-cluster.sh``: a kubelet on a
remote CRI runtime (containerd with runc) and a scheduler, joined to the
test control plane (``harness.controlplane``). Nothing is pulled from a
registry: the sandbox ("pause") image is Kubernetes' own ``pause.c``,
compiled statically with gcc and imported, and images under test are
imported from the local Docker engine (``Node.import_image``).

The node shares the machine with the user's own containers and with other
nodes, so everything it makes is its own: containerd runs with its own root,
state, sockets and runc root; the kubelet with its own root, pod-log folder,
ports and cgroup parent (``/wasp-node-<id>``, under which it makes its
``kubepods`` tree). Pods in tests use host networking: tests send traffic to
127.0.0.1 only, so the CNI configuration is loopback-only and exists just so
the runtime reports its network ready.

``Node.stop()`` removes everything, as local-up-cluster's trap does, and also
what the kubelet and containerd keep outside their root folders: pods'
containers and shims, the ``/var/log/containers`` links to this node's pods,
mounts under the node's folder, its cgroups, and the kubelet's hard-coded
device-plugin folder. This module must not touch anything another node or
the user's Docker engine owns.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

from harness import assets, node_cleanup
from harness.controlplane import ControlPlane
from harness.node_images import PAUSE_IMAGE, pause_archive
from harness.processes import ManagedProcess, free_port, wait_until

READY_TIMEOUT = 120.0
CNI_PLUGINS = Path("/usr/lib/cni")
CRI_NAMESPACE = "k8s.io"  # containerd's namespace for everything the CRI plugin makes
IMAGE_ID_LABEL = "wasp.dev/docker-image-id"


class Node:
    """containerd + kube-scheduler + kubelet, registered as a Ready Node of ``control_plane``."""

    def __init__(
        self,
        control_plane: ControlPlane,
        directory: Path,
        name: str | None = None,
        binaries: dict[str, Path] | None = None,
    ) -> None:
        """Start the node in ``directory`` and wait until it is Ready; stop it with ``stop()``.

        ``name`` is the Node's name, by default the machine's hostname (which
        must resolve to 127.0.0.1: the API server reaches the kubelet, for
        ``kubectl logs`` and ``exec``, by that name).
        """
        self.control_plane = control_plane
        self.directory = directory
        self.name = name or socket.gethostname()
        self.binaries = binaries if binaries is not None else assets.ensure()
        self.cgroup_parent = f"/wasp-node-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.socket = directory / "containerd" / "containerd.sock"
        self.pod_logs = directory / "pod-logs"
        self.processes: list[ManagedProcess] = []
        directory.mkdir(parents=True, exist_ok=True)
        node_cleanup.sweep()  # what nodes of killed test runs left behind
        self._record = node_cleanup.remember(directory, self.cgroup_parent)
        try:
            self._start_containerd()
            self._import_archive(pause_archive(), PAUSE_IMAGE)
            self._start_scheduler()
            self._start_kubelet()
            wait_until(self._ready, "Node Ready", self.kubelet, READY_TIMEOUT)
        except BaseException:
            self.stop()
            raise

    # -- containerd ------------------------------------------------------------
    def _start_containerd(self) -> None:
        folder = self.directory / "containerd"
        for sub in ("root", "state", "opt", "runc"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        cni = self.directory / "cni"
        cni.mkdir(exist_ok=True)
        # Loopback only: host-network pods never call CNI; this only makes NetworkReady true.
        (cni / "10-loopback.conflist").write_text(
            json.dumps({"cniVersion": "1.0.0", "name": "lo", "plugins": [{"type": "loopback"}]}),
            encoding="utf-8",
        )
        config = folder / "config.toml"
        config.write_text(
            f"""version = 2
root = "{folder / "root"}"
state = "{folder / "state"}"
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[debug]
  address = "{folder / "debug.sock"}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{folder / "opt"}"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # Without CAP_SYS_RESOURCE (some VMs and containers) runc cannot give a
  # sandbox the kubelet's oom_score_adj of -998; clamp it to containerd's own.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        # The kubelet's cgroupfs driver: no systemd is asked for anything.
        SystemdCgroup = false
        Root = "{folder / "runc"}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni}"
""",
            encoding="utf-8",
        )
        containerd = ManagedProcess(
            "containerd",
            [_which("containerd"), "--config", str(config), "--log-level", "warn"],
            self.directory / "containerd.log",
        )
        self.processes.append(containerd)
        self.containerd = containerd
        wait_until(
            lambda: self.ctr("version", check=False).returncode == 0,
            "serving",
            containerd,
            READY_TIMEOUT,
        )

    def ctr(
        self, *args: str, check: bool = True, stdin: bytes | IO[bytes] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``ctr`` against this node's containerd, in the CRI's namespace.

        ``stdin`` is bytes, or a stream (a pipe from ``docker save``) read as it comes.
        """
        data: bytes | None = None
        stream: int | IO[bytes] | None = subprocess.DEVNULL
        if isinstance(stdin, bytes):
            data, stream = stdin, None
        elif stdin is not None:
            stream = stdin
        result = subprocess.run(
            [_which("ctr"), "--address", str(self.socket), "--namespace", CRI_NAMESPACE, *args],
            input=data,
            stdin=stream,
            capture_output=True,
            timeout=300,
            check=False,
        )
        if check and result.returncode != 0:
            msg = f"ctr {' '.join(args)} failed ({result.returncode}):\n{result.stderr.decode()}"
            raise RuntimeError(msg)
        return result

    def containers(self, pod_uid: str | None = None) -> list[str]:
        """The ids of the containers containerd holds (sandboxes included), or one pod's."""
        filters = [f'labels."io.kubernetes.pod.uid"=={pod_uid}'] if pod_uid else []
        return self.ctr("containers", "list", "--quiet", *filters).stdout.decode().split()

    def cgroups(self) -> list[Path]:
        """The node's cgroup parent in each hierarchy where it exists (``kubepods`` is inside)."""
        return node_cleanup.cgroups(self.cgroup_parent)

    def _image_label(self, name: str) -> str | None:
        listing = self.ctr("images", "list", f"name=={name}").stdout.decode()
        for label in listing.replace(",", " ").split():  # the LABELS column: a=b,c=d
            if label.startswith(f"{IMAGE_ID_LABEL}="):
                return label.split("=", 1)[1]
        return None

    def _import_archive(
        self, archive: bytes | IO[bytes], name: str, image_id: str | None = None
    ) -> None:
        self.ctr("images", "import", "-", stdin=archive)
        if image_id is not None:
            self.ctr("images", "label", name, f"{IMAGE_ID_LABEL}={image_id}")

    def import_image(self, name: str) -> None:
        """Copy image ``name`` from the local Docker engine into this node (no registry).

        Skipped when the node already holds the same image id, so a large
        image is imported once per change.
        """
        docker = _which("docker")
        reference = normalized_reference(name)
        image_id = subprocess.run(
            [docker, "image", "inspect", "--format", "{{.Id}}", name],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()
        if self._image_label(reference) == image_id:
            return
        # Streamed: an image of hundreds of MB never sits in this process's memory.
        with subprocess.Popen([docker, "save", name], stdout=subprocess.PIPE) as save:
            assert save.stdout is not None
            self._import_archive(save.stdout, reference, image_id)
        if save.returncode != 0:
            msg = f"docker save {name} failed ({save.returncode})"
            raise RuntimeError(msg)

    # -- scheduler and kubelet ---------------------------------------------------
    def _start_scheduler(self) -> None:
        kubeconfig = str(self.control_plane.kubeconfig)
        scheduler = ManagedProcess(
            "kube-scheduler",
            [
                str(self.binaries["kube-scheduler"]),
                "--kubeconfig",
                kubeconfig,
                "--authentication-kubeconfig",
                kubeconfig,
                "--authorization-kubeconfig",
                kubeconfig,
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(free_port()),
                "--cert-dir",
                str(self.directory / "scheduler-certs"),
                "--leader-elect=false",
                "--v",
                "1",
            ],
            self.directory / "kube-scheduler.log",
        )
        self.processes.append(scheduler)

    def _make_cgroup_parent(self) -> None:
        """The kubelet's --cgroup-root must exist in every hierarchy before it starts."""
        for hierarchy in node_cleanup.hierarchies():
            path = hierarchy / self.cgroup_parent.lstrip("/")
            path.mkdir(exist_ok=True)
            for key in ("cpuset.cpus", "cpuset.mems"):  # cgroup v1 cpuset: empty means unusable
                if (hierarchy / key).is_file():
                    (path / key).write_text((hierarchy / key).read_text())

    def _start_kubelet(self) -> None:
        self._make_cgroup_parent()
        self.pod_logs.mkdir(exist_ok=True)
        self.port = free_port()
        config = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            # cgroupfs: containerd 1.6 cannot tell the kubelet its driver, and no systemd is used.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_parent,
            "failCgroupV1": False,  # machines of this kind still run cgroup v1
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "address": "127.0.0.1",
            "port": self.port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": free_port(),
            # The API server calls the kubelet with a client certificate of the test CA.
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": False},
                "x509": {"clientCAFile": str(self.control_plane.pki.ca_cert)},
            },
            "authorization": {"mode": "AlwaysAllow"},
            "podLogsDir": str(self.pod_logs),
            "failSwapOn": False,
            "resolvConf": "/etc/resolv.conf",
            # Test machines' disks run nearly full: evict and collect images only when desperate.
            "evictionHard": {
                "memory.available": "100Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "imageGCHighThresholdPercent": 99,
            "imageGCLowThresholdPercent": 98,
        }
        config_path = self.directory / "kubelet-config.json"  # JSON is YAML
        config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
        kubelet = ManagedProcess(
            "kubelet",
            [
                str(self.binaries["kubelet"]),
                "--config",
                str(config_path),
                # The admin credentials: the test API server authorizes with RBAC only.
                "--kubeconfig",
                str(self.control_plane.kubeconfig),
                "--hostname-override",
                self.name,
                "--root-dir",
                str(self.directory / "kubelet"),
                "--cert-dir",
                str(self.directory / "kubelet-pki"),
                "--v",
                "1",
            ],
            self.directory / "kubelet.log",
        )
        self.processes.append(kubelet)
        self.kubelet = kubelet

    def _ready(self) -> bool:
        result = self.control_plane.kubectl(
            "get",
            "node",
            self.name,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            check=False,
        )
        return result.stdout.strip() == "True"

    def stats_summary(self) -> dict[str, Any]:
        """The kubelet's ``/stats/summary``: each pod's and container's CPU and memory.

        Asked of the kubelet directly, with the test CA's admin certificate:
        the API server's node proxy refuses the node's loopback address.
        """
        context = ssl.create_default_context(
            cafile=str(self.directory / "kubelet-pki" / "kubelet.crt")
        )
        context.check_hostname = (
            False  # the kubelet's own certificate names the host, not 127.0.0.1
        )
        pki = self.control_plane.pki
        context.load_cert_chain(str(pki.admin_cert), str(pki.admin_key))
        url = f"https://127.0.0.1:{self.port}/stats/summary"
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            summary: dict[str, Any] = json.load(response)
        return summary

    # -- teardown -----------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything the node started and remove what it left outside its folder."""
        for process in reversed(self.processes):  # kubelet, scheduler; containerd comes last
            if process is not getattr(self, "containerd", None):
                process.stop()
        self.control_plane.kubectl("delete", "node", self.name, "--ignore-not-found", check=False)
        if getattr(self, "containerd", None) is not None and self.containerd.alive():
            self._remove_containers()
            self.containerd.stop()
        node_cleanup.clean_up(self.directory, self.cgroup_parent)
        node_cleanup.forget(self._record)

    def _remove_containers(self) -> None:
        """Kill and delete every task and container (pods' and sandboxes'); their shims exit."""
        tasks = self.ctr("tasks", "list", "--quiet", check=False).stdout.decode().split()
        if tasks:
            self.ctr("tasks", "delete", "--force", *tasks, check=False)
        containers = self.containers()
        if containers:
            self.ctr("containers", "delete", *containers, check=False)


def normalized_reference(name: str) -> str:
    """``name`` as containerd and the kubelet spell it: ``docker.io/library/wasp:test``."""
    first, slash, _ = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def _which(program: str) -> str:
    path = shutil.which(program)
    if path is None:
        msg = f"{program} not found on PATH (`make node-deps` installs it)"
        raise RuntimeError(msg)
    return path
