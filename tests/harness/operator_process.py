"""The wasp operator as a real ``wasp-operator`` process against the test control plane.

Started through ``ManagedProcess`` (pidfile, dies with pytest), configured
only as a user would: command-line flags, environment variables and a
kubeconfig. Ready once kopf's liveness endpoint answers.

Also the few helpers the operator's tests share to read the cluster as a user
would (``get``, ``apply``) and to poll for a state (``eventually``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from harness.controlplane import ControlPlane
from harness.processes import ManagedProcess, free_port, wait_until

START_TIMEOUT = 60.0
STOP_GRACE = 20.0  # SIGTERM, then SIGKILL after this long
T = TypeVar("T")
TIMEOUT = 60.0


def program(name: str) -> str:
    """A console script installed beside this Python (the virtualenv's bin/)."""
    return str(Path(sys.executable).parent / name)


class OperatorProcess:
    """One ``wasp-operator``; stop it with ``stop()``."""

    def __init__(  # noqa: PLR0913 - each is a flag a user would pass
        self,
        kubeconfig: Path,
        directory: Path,
        *,
        namespace: str | None = None,
        standalone: bool = True,
        session_image: str = "wasp:test",
        environment: dict[str, str] | None = None,
        resync_seconds: float | None = None,
    ) -> None:
        """Start the operator; return once its liveness endpoint answers.

        ``resync_seconds`` shortens how often each session is looked at anyway
        (``--resync-seconds``), for tests that prove "within one resync".
        """
        directory.mkdir(parents=True, exist_ok=True)
        self.liveness = f"http://127.0.0.1:{free_port()}/healthz"
        metrics_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        scope = ["--namespace", namespace] if namespace else ["--all-namespaces"]
        variables = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", "/"),
            "KUBECONFIG": str(kubeconfig),
            **(environment or {}),
        }
        self.process = ManagedProcess(
            "wasp-operator",
            [
                "/usr/bin/env",
                "-i",
                *(f"{key}={value}" for key, value in variables.items()),
                program("wasp-operator"),
                *scope,
                "--standalone" if standalone else "--peering",
                "--session-image",
                session_image,
                "--liveness",
                self.liveness,
                "--metrics-port",
                str(metrics_port),
                *(["--resync-seconds", str(resync_seconds)] if resync_seconds else []),
            ],
            directory / "wasp-operator.log",
        )
        wait_until(self._alive, "liveness", self.process, START_TIMEOUT)

    def _alive(self) -> bool:
        try:
            with urllib.request.urlopen(self.liveness, timeout=2) as response:  # noqa: S310
                return bool(response.status == 200)
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def metrics(self) -> str:
        """What the operator's /metrics endpoint serves now."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310
            text: str = response.read().decode()
            return text

    def metric(self, name: str) -> float:
        """The value of metric ``name`` (with its labels, if any) in ``/metrics``; 0 if absent."""
        for line in self.metrics().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return 0.0

    def log(self) -> str:
        """Everything the operator logged so far."""
        return self.process.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        """SIGTERM, as Kubernetes stops it; SIGKILL if it lingers."""
        self.process.stop(grace=STOP_GRACE)

    def stop_in_background(self) -> None:
        """As ``stop``, returning at once: for a teardown, which need not see it exit.

        The SIGTERM goes now, so the operator stops watching at once; its
        graceful exit (seconds) overlaps what comes next, and the test session
        waits for it (``harness.processes.wait_for_background_stops``).
        """
        self.process.stop_in_background(grace=STOP_GRACE)

    def kill(self) -> None:
        """SIGKILL, as a crashed node or the OOM killer ends it: no word to its peers."""
        with contextlib.suppress(ProcessLookupError):  # it died on its own meanwhile
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.popen.wait()


def get(plane: ControlPlane, namespace: str, *what: str) -> dict[str, Any] | None:
    """One object as JSON, or None if it does not exist."""
    result = plane.kubectl("get", *what, "-n", namespace, "-o", "json", check=False)
    if result.returncode != 0:
        if "NotFound" in result.stderr:
            return None
        raise AssertionError(result.stderr)
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def eventually(
    probe: Callable[[], T | None], what: str, timeout: float = TIMEOUT, log: Callable[[], str] = str
) -> T:
    """Poll ``probe`` until it returns something truthy; fail saying ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    msg = f"never happened within {timeout} s: {what}\n{log()}"
    raise AssertionError(msg)


def apply(plane: ControlPlane, namespace: str, body: dict[str, Any]) -> None:
    """Apply a manifest given as a dict, with kubectl."""
    plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(body))


def create_redis_secret(plane: ControlPlane, namespace: str, url: str) -> str:
    """The operator's default admin Redis Secret (``wasp-redis``, key ``url``) in ``namespace``."""
    from wasp import contract  # noqa: PLC0415 - only the operator's tests need it

    plane.kubectl(
        "create",
        "secret",
        "generic",
        contract.DEFAULT_REDIS_SECRET,
        "-n",
        namespace,
        f"--from-literal={contract.DEFAULT_REDIS_SECRET_KEY}={url}",
    )
    return contract.DEFAULT_REDIS_SECRET


def session_body(name: str, **spec: Any) -> dict[str, Any]:  # noqa: ANN401 - any spec field
    """A WhatsAppSession manifest."""
    return {
        "apiVersion": "wasp.dev/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": {"name": name},
        "spec": spec,
    }
