"""wasp installed by its chart on a real node: what a platform team runs, on one machine.

A control plane of its own (with the ServiceAccount admission plugin, so the
operator's Deployment gets its token as in any cluster), a real node
(``harness.node``), a password-protected redis-server (the admin Redis), and
the image ``wasp:test`` (``harness.image``) imported into the node. ``install``
runs ``helm install`` of ``charts/wasp`` with the values a cluster without a
pod network needs (docs/install.md, "Host networking"): the operator and the
session pods on the node's network, each session pod with its own health
port, and the operator told where the API server listens
(``KUBERNETES_SERVICE_HOST``/``PORT``: there is no kube-proxy to route the
``kubernetes`` Service). Everything else is the chart's default.

Used by the real-node tests (``tests/node``), ``make demo`` (``harness.demo``)
and the benchmarks that read pods' memory.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness import assets, operator_process
from harness.controlplane import ControlPlane
from harness.image import TEST_IMAGE, ensure_image
from harness.node import Node
from harness.processes import free_port
from harness.redis_server import RedisServer
from wasp import contract

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"
RELEASE = "wasp"
RELEASE_NAMESPACE = "wasp-system"
TENANTS_NAMESPACE = "tenants"
OPERATOR_DEPLOYMENT = "wasp-operator"
IMAGE_REPOSITORY, _, IMAGE_TAG = TEST_IMAGE.partition(":")
HEALTH_PORTS_PER_CLUSTER = 100
WAIT_TIMEOUT = 180.0

T = TypeVar("T")


class WaspCluster:
    """Control plane + real node + admin Redis + the image; ``install`` puts wasp on it."""

    def __init__(self, directory: Path) -> None:
        """Start everything in ``directory`` (image built if needed); stop it with ``stop()``."""
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.binaries = assets.ensure()
        ensure_image()
        self.control_plane: ControlPlane | None = None
        self.node: Node | None = None
        self.redis: RedisServer | None = None
        # Session pods' health ports: a range of this cluster's own, so clusters
        # that run at once on the machine (tests, the demo) do not collide.
        first = random.randrange(20000, 60000 - HEALTH_PORTS_PER_CLUSTER, HEALTH_PORTS_PER_CLUSTER)  # noqa: S311
        self.health_ports = f"{first}-{first + HEALTH_PORTS_PER_CLUSTER - 1}"
        try:
            self.control_plane = ControlPlane(
                directory / "controlplane", self.binaries, service_accounts=True
            )
            self.redis = RedisServer(directory / "redis", password=secrets.token_urlsafe(24))
            self.node = Node(self.control_plane, directory / "node", binaries=self.binaries)
            self.node.import_image(TEST_IMAGE)
            for namespace in (RELEASE_NAMESPACE, TENANTS_NAMESPACE):
                self.kubectl("create", "namespace", namespace)
        except BaseException:
            self.stop()
            raise

    # -- clients ---------------------------------------------------------------
    @property
    def plane(self) -> ControlPlane:
        """The control plane (it exists while the cluster runs)."""
        assert self.control_plane is not None
        return self.control_plane

    @property
    def admin_redis(self) -> RedisServer:
        """The admin Redis (it exists while the cluster runs)."""
        assert self.redis is not None
        return self.redis

    @property
    def real_node(self) -> Node:
        """The node (it exists while the cluster runs)."""
        assert self.node is not None
        return self.node

    def kubectl(
        self, *args: str, check: bool = True, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this cluster."""
        return self.plane.kubectl(*args, stdin=stdin, check=check)

    def helm(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the real helm against this cluster, with helm folders of its own."""
        home = self.directory / "helm-home"
        env = {
            **self.plane.env(),
            "HELM_CONFIG_HOME": str(home / "config"),
            "HELM_CACHE_HOME": str(home / "cache"),
            "HELM_DATA_HOME": str(home / "data"),
        }
        result = subprocess.run(
            [str(self.binaries["helm"]), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=WAIT_TIMEOUT + 60,
            check=False,
        )
        if check and result.returncode != 0:
            msg = f"helm {' '.join(args)} failed ({result.returncode}):\n{result.stderr}"
            raise AssertionError(msg)
        return result

    # -- the chart -------------------------------------------------------------
    def chart_values(self, image_tag: str = IMAGE_TAG) -> dict[str, Any]:
        """The values of an install here: the local image, the admin Redis, host networking."""
        api_port = self.plane.server.rsplit(":", 1)[1]
        return {
            "image": {"repository": IMAGE_REPOSITORY, "tag": image_tag, "pullPolicy": "Never"},
            "watchNamespaces": [TENANTS_NAMESPACE],
            "redis": {"url": self.admin_redis.url},
            "operator": {
                "hostNetwork": True,
                "healthPort": free_port(),
                "metricsPort": free_port(),
                "extraEnv": [
                    {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
                    {"name": "KUBERNETES_SERVICE_PORT", "value": api_port},
                ],
            },
            "sessionPods": {"hostNetwork": True, "healthPortRange": self.health_ports},
        }

    def tag_image(self, tag: str) -> str:
        """Tag the test image as ``wasp:<tag>`` too and import it into the node; return the tag."""
        subprocess.run(
            ["docker", "tag", TEST_IMAGE, f"{IMAGE_REPOSITORY}:{tag}"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.real_node.import_image(f"{IMAGE_REPOSITORY}:{tag}")
        return tag

    def install(self, values: dict[str, Any] | None = None, *, image_tag: str = IMAGE_TAG) -> None:
        """``helm install`` the chart; return once the operator's Deployment is Available."""
        self._helm_release("install", values, image_tag)

    def upgrade(self, values: dict[str, Any] | None = None, *, image_tag: str = IMAGE_TAG) -> None:
        """``helm upgrade`` the release; return once the operator's Deployment is Available."""
        self._helm_release("upgrade", values, image_tag)

    def _helm_release(self, verb: str, values: dict[str, Any] | None, image_tag: str) -> None:
        merged = _merge(self.chart_values(image_tag), values or {})
        values_file = self.directory / f"values-{verb}-{time.monotonic_ns()}.json"
        values_file.write_text(json.dumps(merged, indent=2), encoding="utf-8")  # JSON is YAML
        result = self.helm(
            verb,
            RELEASE,
            str(CHART),
            "--namespace",
            RELEASE_NAMESPACE,
            "--values",
            str(values_file),
            "--wait",
            "--timeout",
            f"{int(WAIT_TIMEOUT)}s",
            check=False,
        )
        if result.returncode != 0:
            msg = (
                f"helm {verb} failed ({result.returncode}): {result.stderr}\n{self.release_state()}"
            )
            raise AssertionError(msg)
        self.kubectl(
            "rollout",
            "status",
            f"deployment/{OPERATOR_DEPLOYMENT}",
            "-n",
            RELEASE_NAMESPACE,
            f"--timeout={int(WAIT_TIMEOUT)}s",
        )

    def operator_pods(self) -> list[dict[str, Any]]:
        """The operator's pods (JSON), oldest first."""
        listing = json.loads(
            self.kubectl(
                "get",
                "pods",
                "-n",
                RELEASE_NAMESPACE,
                "-l",
                "app.kubernetes.io/component=operator",
                "-o",
                "json",
            ).stdout
        )
        pods: list[dict[str, Any]] = listing["items"]
        return sorted(pods, key=lambda pod: pod["metadata"]["creationTimestamp"])

    def release_state(self) -> str:
        """The operator's Deployment, its pods and events, and its log: for failure messages."""
        parts = []
        for args in (
            ("get", "pods", "-A", "-o", "wide"),
            ("get", "replicasets", "-n", RELEASE_NAMESPACE),
            ("describe", "deployment", OPERATOR_DEPLOYMENT, "-n", RELEASE_NAMESPACE),
            ("describe", "pods", "-n", RELEASE_NAMESPACE),
            ("get", "events", "-n", RELEASE_NAMESPACE),
        ):
            result = self.kubectl(*args, check=False)
            parts.append(f"--- kubectl {' '.join(args)}:\n{result.stdout[-5000:]}{result.stderr}")
        return "\n".join([*parts, self.operator_logs()])

    def operator_logs(self) -> str:
        """The operator's log (its current pods), for failure messages."""
        result = self.kubectl(
            "logs",
            "-n",
            RELEASE_NAMESPACE,
            f"deployment/{OPERATOR_DEPLOYMENT}",
            "--tail=60",
            check=False,
        )
        return result.stdout + result.stderr

    # -- tenants ---------------------------------------------------------------
    def apply_session(self, name: str, **spec: Any) -> None:  # noqa: ANN401 - any spec field
        """Apply a WhatsAppSession named ``name`` in the tenants' namespace (sandbox by default)."""
        body = {
            "apiVersion": "wasp.dev/v1alpha1",
            "kind": "WhatsAppSession",
            "metadata": {"name": name, "namespace": TENANTS_NAMESPACE},
            "spec": {"transport": "simulator", **spec},
        }
        self.kubectl("apply", "-f", "-", stdin=json.dumps(body))

    def session(self, name: str) -> dict[str, Any] | None:
        """The WhatsAppSession as JSON, or None."""
        return self._get("whatsappsession", name)

    def status(self, name: str) -> dict[str, Any]:
        """The WhatsAppSession's status ({} before the operator writes one)."""
        found = self.session(name)
        status: dict[str, Any] = (found or {}).get("status") or {}
        return status

    def session_pod(self, name: str) -> dict[str, Any] | None:
        """The session's pod as JSON, or None."""
        return self._get("pod", contract.session_pod_name(name))

    def wait_phase(self, name: str, phase: str, timeout: float = WAIT_TIMEOUT) -> dict[str, Any]:
        """Wait until the session's status shows ``phase``; return that status."""
        return eventually(
            lambda: status if (status := self.status(name)).get("phase") == phase else None,
            f"WhatsAppSession {name} in phase {phase} (last status: {self.status(name)})",
            timeout,
            self.operator_logs,
        )

    def secret_value(self, name: str, key: str) -> str:
        """One key of a Secret in the tenants' namespace, decoded."""
        encoded = self.kubectl(
            "get", "secret", name, "-n", TENANTS_NAMESPACE, "-o", f"jsonpath={{.data.{key}}}"
        ).stdout
        return base64.b64decode(encoded).decode()

    def api_redis_url(self, name: str) -> str:
        """The Redis URL the tenant's API uses: the Secret ``status.apiCredentials`` names."""
        credentials = eventually(
            lambda: self.status(name).get("apiCredentials"),
            f"status.apiCredentials of {name}",
            log=self.operator_logs,
        )
        return self.secret_value(credentials["secretName"], contract.REDIS_SECRET_URL_KEY)

    def _get(self, kind: str, name: str) -> dict[str, Any] | None:
        return operator_process.get(self.plane, TENANTS_NAMESPACE, kind, name)

    # -- teardown --------------------------------------------------------------
    def stop(self) -> None:
        """Stop the node, Redis and the control plane; nothing is left behind. Idempotent."""
        if self.control_plane is not None and self.node is not None:
            # Pods go first, with their grace period, so sessions stop as they would in a cluster.
            self.kubectl(
                "delete",
                "whatsappsessions",
                "--all",
                "-n",
                TENANTS_NAMESPACE,
                "--wait=false",
                check=False,
            )
        for part in (self.node, self.redis, self.control_plane):
            if part is not None:
                part.stop()
        self.node = self.redis = self.control_plane = None


def eventually(
    probe: Callable[[], T | None],
    what: str,
    timeout: float = WAIT_TIMEOUT,
    log: Callable[[], str] = str,
) -> T:
    """``operator_process.eventually`` with the real node's longer default wait."""
    return operator_process.eventually(probe, what, timeout, log)


def pod_ready(pod: dict[str, Any] | None) -> bool:
    """Whether a pod exists and its Ready condition is True."""
    conditions = ((pod or {}).get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``override`` merged in, maps recursively (as helm merges values)."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


if __name__ == "__main__":  # pragma: no cover - a manual check: start, install, stop
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="wasp-cluster-") as folder:
        cluster = WaspCluster(Path(folder))
        try:
            cluster.install()
            print(cluster.kubectl("get", "pods", "-A", "-o", "wide").stdout)  # noqa: T201
        finally:
            cluster.stop()
    sys.exit(os.EX_OK)
