"""A kubelet stand-in for wasp's pods: runs their container command as a local process.

The test control plane has no kubelet, so nothing would run a pod and a
deleted pod bound to a node would stay Terminating forever. This stand-in
does, for wasp's session pods in one namespace only, what a kubelet does:

- registers a Node (and keeps its heartbeat fresh) and binds each new pod to
  it, so deletion is graceful, as in a cluster;
- resolves the container's env (values, ``secretKeyRef`` read from the API,
  ``fieldRef`` of the pod's name and namespace), maps each volume mount to a
  directory of its own (and env values naming a path under a mount to that
  directory), and gives the health port a free local port (the pod's own
  "network namespace");
- materialises each ``secret`` volume as files: the Secret read from the API,
  only its ``items`` when listed, each file with its mode (``defaultMode``,
  else 0644), written atomically before every start of the container, so a
  restart sees a changed Secret, as with a kubelet. A Secret that does not
  exist (and is not ``optional``) holds the pod back, as a kubelet's
  ContainerCreating does, until it appears;
- runs the container's command (found in this virtualenv's ``bin/``) with
  that env and nothing else, reports the pod Running, and Ready while the
  readiness probe's path answers 200;
- restarts a process that exits (``restartPolicy: Always``);
- on deletion sends SIGTERM, waits up to the pod's grace period, SIGKILLs,
  then removes the object (a delete with grace 0, as the kubelet does).

``command`` replaces every container's command (e.g. a stub in tests that
need no real session). Processes go through ``ManagedProcess``: they are in
the pidfile and die with pytest.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from harness.operator_process import program
from harness.processes import ManagedProcess, free_port

NODE_NAME = "wasp-test-node"
WASP_PODS = "app.kubernetes.io/managed-by=wasp-operator"
POLL_SECONDS = 0.2
HEARTBEAT_SECONDS = 10.0
HEALTH_PORT_VARIABLE = "WASP_HEALTH_PORT"
DEFAULT_SECRET_MODE = 0o644  # a Secret volume's defaultMode when the pod names none


class SecretVolumeMissingError(Exception):
    """A pod's Secret volume names a Secret (or key) that does not exist yet."""


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass
class _Container:
    """One running pod: its process, its port, what it has reported."""

    name: str
    uid: str
    args: list[str]
    log_dir: Path
    ready_url: str | None
    grace: float
    secret_volumes: list[tuple[Any, Path]] = field(default_factory=list)  # (source, directory)
    process: ManagedProcess | None = None
    restarts: int = 0
    ready: bool = False
    stopping: bool = False
    history: list[str] = field(default_factory=list)


class Kubelet:
    """Runs wasp's pods of one namespace as local processes, until ``stop()``."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str,
        directory: Path,
        *,
        command: list[str] | None = None,
        environment: dict[str, str] | None = None,
    ) -> None:
        """Register the node and start following the namespace's wasp pods."""
        self.namespace = namespace
        self.directory = directory
        self.command = command
        self.environment = environment or {}
        self.api = kubernetes.client.CoreV1Api(
            kubernetes.config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
        )
        self._containers: dict[str, _Container] = {}
        self.errors: list[str] = []  # what went wrong talking to the API, for failure messages
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._heartbeat = 0.0
        self._register_node()
        self._thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)
        self._thread.start()

    # -- the node ------------------------------------------------------------------
    def _register_node(self) -> None:
        node = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": NODE_NAME, "labels": {"kubernetes.io/hostname": NODE_NAME}},
        }
        try:
            self.api.create_node(node)  # type: ignore[arg-type]
        except ApiException as error:
            if error.status != 409:  # HTTP Conflict: registered already
                raise
        self._beat()

    def _beat(self) -> None:
        now = _now()
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "the wasp test kubelet stand-in is running",
            "lastHeartbeatTime": now,
            "lastTransitionTime": now,
        }
        self.api.patch_node_status(NODE_NAME, {"status": {"conditions": [ready]}})
        self._heartbeat = time.monotonic()

    # -- the loop ------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                if time.monotonic() - self._heartbeat > HEARTBEAT_SECONDS:
                    self._beat()
                pods = self.api.list_namespaced_pod(self.namespace, label_selector=WASP_PODS).items
                self._sync(pods)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                self.errors.append(repr(error))  # the API server is busy or stopping: again

            self._stop.wait(POLL_SECONDS)

    def _sync(self, pods: list[Any]) -> None:
        seen = set()
        for pod in pods:
            uid = pod.metadata.uid
            seen.add(uid)
            if pod.metadata.deletion_timestamp is not None:
                self._terminate(pod)
            elif not pod.spec.node_name:
                self._bind(pod)
            elif pod.spec.node_name == NODE_NAME:
                self._run(pod)
        with self._lock:
            gone = [c for uid, c in self._containers.items() if uid not in seen]
        for container in gone:  # removed behind our back: stop what ran it
            self._stop_process(container)
            with self._lock:
                self._containers.pop(container.uid, None)

    def _bind(self, pod: Any) -> None:  # noqa: ANN401 - the client's model objects
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": pod.metadata.name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME},
        }
        self.api.create_namespaced_pod_binding(
            pod.metadata.name,
            self.namespace,
            binding,  # type: ignore[arg-type]
            _preload_content=False,  # the client cannot read the Status the API returns
        )

    def _run(self, pod: Any) -> None:  # noqa: ANN401 - the client's model objects
        uid = pod.metadata.uid
        with self._lock:
            container = self._containers.get(uid)
        if container is None:
            container = self._prepare(pod)
            with self._lock:
                self._containers[uid] = container
        if container.stopping:
            return
        if container.process is None or not container.process.alive():
            try:
                self._write_secret_volumes(container)
            except SecretVolumeMissingError as error:
                self.errors.append(str(error))  # ContainerCreating: try again on the next pass
                return
            if container.process is not None:
                container.process.stop()  # it exited: close its log before the next one
                container.restarts += 1
            container.process = ManagedProcess(
                f"pod {container.name}",
                container.args,
                container.log_dir / f"container-{container.restarts}.log",
            )
            container.ready = False
            self._report(pod, container)
        ready = self._probe(container)
        if ready != container.ready:
            container.ready = ready
            self._report(pod, container)

    def _probe(self, container: _Container) -> bool:
        if container.ready_url is None:
            return True
        try:
            with urllib.request.urlopen(container.ready_url, timeout=1) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            return False

    def _report(self, pod: Any, container: _Container) -> None:  # noqa: ANN401
        now = _now()
        ready = "True" if container.ready else "False"
        status = {
            "phase": "Running",
            "hostIP": "127.0.0.1",
            "podIP": "127.0.0.1",
            "startTime": now,
            "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": ready, "lastTransitionTime": now},
                {"type": "Ready", "status": ready, "lastTransitionTime": now},
            ],
            "containerStatuses": [
                {
                    "name": c.name,
                    "image": c.image,
                    "imageID": "",
                    "ready": container.ready,
                    "started": True,
                    "restartCount": container.restarts,
                    "state": {"running": {"startedAt": now}},
                }
                for c in pod.spec.containers
            ],
        }
        try:
            self.api.patch_namespaced_pod_status(
                pod.metadata.name, self.namespace, {"status": status}
            )
        except ApiException as error:
            if error.status != 404:  # deleted meanwhile
                raise

    # -- the container's environment -------------------------------------------------
    def _prepare(self, pod: Any) -> _Container:  # noqa: ANN401 - the client's model objects
        (spec,) = pod.spec.containers  # wasp's session pods have one container
        root = self.directory / pod.metadata.name / pod.metadata.uid
        mounts = {}
        for mount in spec.volume_mounts or []:
            host = root / "volumes" / mount.name
            host.mkdir(parents=True, exist_ok=True)
            mounts[mount.mount_path] = str(host)
        secret_volumes = [
            (volume.secret, root / "volumes" / volume.name)
            for volume in pod.spec.volumes or []
            if volume.secret is not None
        ]
        env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root), "HOSTNAME": pod.metadata.name}
        for variable in spec.env or []:
            env[variable.name] = self._resolve(pod, variable)
        for name, value in list(env.items()):
            for mount_path, host in mounts.items():
                if value == mount_path or value.startswith(mount_path + "/"):
                    env[name] = host + value[len(mount_path) :]
        ready_url = None
        if HEALTH_PORT_VARIABLE in env:
            env[HEALTH_PORT_VARIABLE] = str(free_port())
            probe = spec.readiness_probe
            if probe is not None and probe.http_get is not None:
                ready_url = f"http://127.0.0.1:{env[HEALTH_PORT_VARIABLE]}{probe.http_get.path}"
        env.update(self.environment)
        command = self.command or [program(spec.command[0]), *spec.command[1:]]
        args = ["/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *command]
        (root / "logs").mkdir(parents=True, exist_ok=True)
        return _Container(
            name=pod.metadata.name,
            uid=pod.metadata.uid,
            args=[*args, *(spec.args or [])],
            log_dir=root / "logs",
            ready_url=ready_url if self.command is None else None,
            grace=float(pod.spec.termination_grace_period_seconds or 30),
            secret_volumes=secret_volumes,
        )

    def _write_secret_volumes(self, container: _Container) -> None:
        """Write each Secret volume's files, as the kubelet does before a container starts."""
        for source, directory in container.secret_volumes:
            try:
                secret = self.api.read_namespaced_secret(source.secret_name, self.namespace)
            except ApiException as error:
                if error.status != 404:  # HTTP Not Found
                    raise
                if source.optional:
                    continue
                msg = f"pod {container.name}: Secret {source.secret_name} not found"
                raise SecretVolumeMissingError(msg) from error
            data = secret.data or {}
            default_mode = (
                DEFAULT_SECRET_MODE if source.default_mode is None else source.default_mode
            )
            items = source.items or [
                kubernetes.client.V1KeyToPath(key=key, path=key) for key in sorted(data)
            ]
            directory.mkdir(parents=True, exist_ok=True)
            for item in items:
                if item.key not in data:
                    if source.optional:
                        continue
                    msg = f"pod {container.name}: Secret {source.secret_name} has no {item.key}"
                    raise SecretVolumeMissingError(msg)
                target = directory / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                staged = target.with_name(f".{target.name}.staged")
                staged.unlink(missing_ok=True)
                staged.write_bytes(base64.b64decode(data[item.key]))
                staged.chmod(default_mode if item.mode is None else item.mode)
                staged.replace(target)

    def _resolve(self, pod: Any, variable: Any) -> str:  # noqa: ANN401 - client models
        if variable.value_from is None:
            return str(variable.value or "")
        source = variable.value_from
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            secret = self.api.read_namespaced_secret(ref.name, self.namespace)
            return base64.b64decode((secret.data or {})[ref.key]).decode()
        if source.field_ref is not None:
            fields = {"metadata.name": pod.metadata.name, "metadata.namespace": self.namespace}
            return str(fields[source.field_ref.field_path])
        msg = f"the kubelet stand-in cannot resolve env {variable.name}"
        raise NotImplementedError(msg)

    # -- deletion ----------------------------------------------------------------------
    def _terminate(self, pod: Any) -> None:  # noqa: ANN401 - the client's model objects
        uid = pod.metadata.uid
        with self._lock:
            container = self._containers.get(uid)
            if container is not None and container.stopping:
                return
            if container is not None:
                container.stopping = True
        if container is None and not pod.spec.node_name:
            return  # never bound: the API server removes it by itself
        threading.Thread(
            target=self._finish, args=(pod, container), name=f"stop {uid}", daemon=True
        ).start()

    def _finish(self, pod: Any, container: _Container | None) -> None:  # noqa: ANN401
        try:
            self._remove(pod, container)
        except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
            self.errors.append(repr(error))
            with self._lock:
                if container is not None:
                    container.stopping = False  # the next pass tries again

    def _remove(self, pod: Any, container: _Container | None) -> None:  # noqa: ANN401
        if container is not None:
            self._stop_process(container)
        try:
            self.api.delete_namespaced_pod(
                pod.metadata.name,
                self.namespace,
                grace_period_seconds=0,
                body=kubernetes.client.V1DeleteOptions(
                    grace_period_seconds=0,
                    preconditions=kubernetes.client.V1Preconditions(uid=pod.metadata.uid),
                ),
            )
        except ApiException as error:
            if error.status not in {404, 409}:
                raise
        with self._lock:
            self._containers.pop(pod.metadata.uid, None)

    @staticmethod
    def _stop_process(container: _Container) -> None:
        process = container.process
        if process is None:
            return
        if not process.alive():
            process.stop()  # closes the log
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.popen.wait(container.grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.popen.wait()
        except ProcessLookupError:
            process.popen.wait()
        process.stop()  # closes the log

    # -- for tests -----------------------------------------------------------------------
    def running(self) -> dict[str, int]:
        """Pods with a live process, by name: their process ids."""
        with self._lock:
            return {
                c.name: c.process.pid
                for c in self._containers.values()
                if c.process is not None and c.process.alive()
            }

    def health_url(self, pod_name: str, path: str = "/healthz") -> str | None:
        """``path`` on the health port of a pod's current process (None: it has none)."""
        with self._lock:
            for c in self._containers.values():
                if c.name == pod_name and c.ready_url is not None:
                    base = c.ready_url.split("/", 3)[:3]  # http://127.0.0.1:<port>
                    return "/".join(base) + path
        return None

    def log_of(self, pod_name: str) -> str:
        """The output of a pod's current process, for failure messages."""
        with self._lock:
            for c in self._containers.values():
                if c.name == pod_name and c.process is not None:
                    return c.process.log_tail(60)
        return ""

    def stop(self) -> None:
        """Stop following pods and stop every process (the pod objects stay)."""
        self._stop.set()
        self._thread.join(10)
        with self._lock:
            containers = list(self._containers.values())
        for container in containers:
            self._stop_process(container)
