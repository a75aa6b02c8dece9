"""A real ``wasp-session`` process for tests, with the env a pod would get.

``session_env`` builds a minimal valid environment for one tenant (simulator
transport, short QR windows, a fresh auth key, a data dir of its own, a free
health port); ``with_secret_files`` moves its Redis URL and auth key into files
passed as ``WASP_REDIS_URL_FILE`` / ``WASP_AUTH_KEY_FILE``, as a pod gets them;
``SessionProcess`` starts the program with it through
``harness.processes.ManagedProcess`` (its own process group, killed with the
test run, recorded in ``$WASP_TEST_PIDFILE``) and offers what a test needs:
read the status hash, wait for a phase, push simulator and control commands,
signal the process and collect its exit code.

``Channels`` subscribes to a tenant's events and QR channels (subscribe
before starting the pod, so nothing is missed) and collects what arrives.

Example::

    env = session_env("acme", redis_server.url, tmp_path / "pod-a")
    with SessionProcess(env, tmp_path / "pod-a.log") as pod:
        pod.wait_for_phase("AwaitingPairing")
        pod.simulate("scan")
        pod.wait_for_phase("Connected")
        pod.terminate()
        assert pod.wait_exit() == 0
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Self, cast

import redis

from harness.processes import PIDFILE_VARIABLE, ManagedProcess, free_port, wait_until
from wasp import contract

# Fast but not flaky: three short QR codes per window, quick receipts, a
# lease that a killed holder loses within seconds, quick reconnects.
FAST_TIMINGS: dict[str, str] = {
    contract.ENV_SIMULATOR_QR_SECONDS: "3,1,1",
    contract.ENV_SIMULATOR_RECEIPT_DELAY_SECONDS: "0.2",
    contract.ENV_LEASE_TTL_SECONDS: "3",
    contract.ENV_CHECKPOINT_INTERVAL_SECONDS: "30",
    contract.ENV_CHECKPOINT_DEBOUNCE_SECONDS: "0.5",
    contract.ENV_RECONNECT_BASE_SECONDS: "0.2",
    contract.ENV_RECONNECT_MAX_SECONDS: "1",
    contract.ENV_SHUTDOWN_TIMEOUT_SECONDS: "10",
}


def new_auth_key() -> str:
    """A fresh WASP_AUTH_KEY: base64 of 32 random bytes."""
    return base64.b64encode(os.urandom(32)).decode("ascii")


def session_command() -> list[str]:
    """How to start the session program: the venv's script, else ``python -m``."""
    script = Path(sys.executable).with_name("wasp-session")
    if script.exists():
        return [str(script)]
    found = shutil.which("wasp-session")
    return [found] if found else [sys.executable, "-m", "wasp_session"]


def session_env(
    tenant: str,
    redis_url: str,
    data_dir: Path,
    *,
    auth_key: str | None = None,
    pod_name: str | None = None,
    **overrides: str,
) -> dict[str, str]:
    """A minimal valid environment for ``tenant``'s session pod (simulator transport).

    Pods of one tenant that should share the account must share ``auth_key``.
    ``overrides`` are env var names (``contract.ENV_*``) to values; a value of
    ``""`` removes the variable (to test a missing one).
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - only a fallback for a bare env
        contract.ENV_TENANT: tenant,
        contract.ENV_REDIS_URL: redis_url,
        contract.ENV_AUTH_KEY: auth_key or new_auth_key(),
        contract.ENV_TRANSPORT: "simulator",
        contract.ENV_PAIRING_METHOD: "QR",
        contract.ENV_PAIRING_MAX_WINDOWS: "3",
        contract.ENV_DATA_DIR: str(data_dir),
        contract.ENV_HEALTH_PORT: str(free_port()),
        contract.ENV_MAX_START_FAILURES: "3",
        contract.ENV_LOG_FORMAT: "json",
        contract.ENV_POD_NAME: pod_name or f"wasp-session-{tenant}-{data_dir.name}",
        **FAST_TIMINGS,
    }
    for name, value in overrides.items():
        if value == "":
            env.pop(name, None)
        else:
            env[name] = value
    return env


def with_secret_files(env: dict[str, str], folder: Path) -> dict[str, str]:
    """``env`` with its Redis URL and auth key in files under ``folder`` (as Secret volumes).

    The plain ``WASP_REDIS_URL`` / ``WASP_AUTH_KEY`` are replaced by
    ``WASP_REDIS_URL_FILE`` / ``WASP_AUTH_KEY_FILE`` naming the files
    (``url`` and ``key``, each ending with a newline, as ``kubectl`` writes them).
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    moved = dict(env)
    for plain, file_variable, name in (
        (contract.ENV_REDIS_URL, contract.ENV_REDIS_URL_FILE, contract.REDIS_SECRET_URL_KEY),
        (contract.ENV_AUTH_KEY, contract.ENV_AUTH_KEY_FILE, contract.AUTH_SECRET_KEY),
    ):
        path = folder / name
        path.write_text(moved.pop(plain) + "\n", encoding="utf-8")
        moved[file_variable] = str(path)
    return moved


class SessionProcess:
    """One running ``wasp-session`` with helpers to observe and drive it."""

    def __init__(self, env: dict[str, str], log_path: Path, args: list[str] | None = None) -> None:
        """Start the program with exactly ``env`` (plus ``args``), output to ``log_path``."""
        self.env = env
        self.tenant = env.get(contract.ENV_TENANT, "")
        self._redis_url = env.get(contract.ENV_REDIS_URL, "")
        if not self._redis_url and contract.ENV_REDIS_URL_FILE in env:
            self._redis_url = Path(env[contract.ENV_REDIS_URL_FILE]).read_text().strip()
        self._redis: redis.Redis | None = None
        saved = dict(os.environ)
        try:  # ManagedProcess takes no env: hand ours over through os.environ
            os.environ.clear()
            os.environ.update(env)
            if PIDFILE_VARIABLE in saved:  # keep the pidfile registration working
                os.environ[PIDFILE_VARIABLE] = saved[PIDFILE_VARIABLE]
            self.process = ManagedProcess(
                f"wasp-session[{self.tenant}]", [*session_command(), *(args or [])], log_path
            )
        finally:
            os.environ.clear()
            os.environ.update(saved)

    # ------------------------------------------------------------ observing
    @property
    def redis(self) -> redis.Redis:
        """A client of the pod's Redis (decoding to ``str``), made on first use."""
        if self._redis is None:
            self._redis = redis.Redis.from_url(self._redis_url, decode_responses=True)
        return self._redis

    def status(self) -> dict[str, str]:
        """The tenant's status hash now."""
        return cast("dict[str, str]", self.redis.hgetall(contract.status_key(self.tenant)))

    def phase(self) -> str | None:
        """The phase in the status hash, if any."""
        value = self.redis.hget(contract.status_key(self.tenant), contract.STATUS_PHASE)
        return cast("str | None", value)

    def wait_for(self, condition: Any, what: str, timeout: float = 20.0) -> None:  # noqa: ANN401 - any callable
        """Poll ``condition()`` until true; fail with the log if the process dies."""
        wait_until(condition, what, self.process, timeout)

    def wait_for_phase(self, phase: str, timeout: float = 20.0) -> dict[str, str]:
        """Wait until the status says ``phase`` (and this pod wrote it); return the status."""
        self.wait_for(lambda: self.phase() == phase, f"phase {phase}", timeout)
        return self.status()

    def wait_for_status(
        self, field: str, value: str | None, timeout: float = 20.0
    ) -> dict[str, str]:
        """Wait until status ``field`` equals ``value`` (``None``: absent)."""
        key = contract.status_key(self.tenant)
        self.wait_for(
            lambda: self.redis.hget(key, field) == value, f"status {field}={value!r}", timeout
        )
        return self.status()

    def health(self, path: str = "/readyz") -> int:
        """HTTP status of the pod's health endpoint ``path`` (0 if it does not answer)."""
        url = f"http://127.0.0.1:{self.env[contract.ENV_HEALTH_PORT]}{path}"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                code: int = response.status
                return code
        except urllib.error.HTTPError as error:
            return error.code
        except OSError:
            return 0

    def metrics(self) -> str:
        """The text of ``/metrics``."""
        url = f"http://127.0.0.1:{self.env[contract.ENV_HEALTH_PORT]}/metrics"
        with urllib.request.urlopen(url, timeout=2) as response:
            text: str = response.read().decode("utf-8")
            return text

    def metric(self, name: str) -> float:
        """The value of metric ``name`` (with its labels, if any) in ``/metrics``; 0 if absent."""
        for line in self.metrics().splitlines():
            if line.startswith(f"{name} "):
                return float(line.split()[1])
        return 0.0

    def log_lines(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far (non-JSON lines skipped)."""
        lines: list[dict[str, Any]] = []
        for line in self.process.log_path.read_text(
            encoding="utf-8", errors="replace"
        ).splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                lines.append(record)
        return lines

    # ------------------------------------------------------------ driving
    def simulate(self, command: str, **arguments: object) -> None:
        """Push a simulator command, e.g. ``simulate("ban", seconds=2)``."""
        payload = json.dumps({"command": command, **arguments})
        self.redis.rpush(contract.simulator_commands_key(self.tenant), payload)

    def control(self, command: str) -> None:
        """Push a control command (e.g. ``contract.CONTROL_PAIR``)."""
        self.redis.rpush(contract.control_key(self.tenant), json.dumps({"command": command}))

    def terminate(self) -> None:
        """Send SIGTERM (a pod being stopped)."""
        self.process.popen.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Send SIGKILL to the whole process group (a node lost)."""
        os.killpg(self.process.pid, signal.SIGKILL)

    def wait_exit(self, timeout: float = 30.0) -> int:
        """Wait for the process to end; return its exit code."""
        deadline = time.monotonic() + timeout
        while self.process.alive():
            if time.monotonic() > deadline:
                msg = f"wasp-session did not exit in {timeout} s:\n{self.process.log_tail()}"
                raise TimeoutError(msg)
            time.sleep(0.05)
        code = self.process.popen.returncode
        assert code is not None
        return code

    def stop(self) -> None:
        """Stop the process if it runs (SIGTERM, then SIGKILL) and close the client."""
        self.process.stop()
        if self._redis is not None:
            self._redis.close()

    def __enter__(self) -> Self:
        """Use as a context manager: stopped on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the process."""
        self.stop()


class Channels:
    """Collects every message of the events and QR channels from subscription on."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Subscribe now (before the pod starts, so nothing is missed)."""
        self._pubsub: Any = client.pubsub()  # type: ignore[no-untyped-call]
        self._events = contract.events_channel(tenant)
        self._qr = contract.qr_channel(tenant)
        self._pubsub.subscribe(self._events, self._qr)
        self.statuses: list[dict[str, str]] = []
        self.codes: list[str] = []

    def drain(self) -> None:
        """Read what has arrived."""
        while True:
            message: Any = self._pubsub.get_message(timeout=0.01)
            if message is None:
                return
            if message["type"] != "message":
                continue
            if message["channel"] == self._events:
                self.statuses.append(json.loads(message["data"]))
            else:
                self.codes.append(str(message["data"]))

    def published_codes(self) -> list[str]:
        """QR strings and pairing codes published so far."""
        self.drain()
        return list(self.codes)

    def phases(self) -> list[str]:
        """Phases announced so far, consecutive repeats collapsed."""
        self.drain()
        seen: list[str] = []
        for status in self.statuses:
            phase = status.get(contract.STATUS_PHASE, "")
            if not seen or seen[-1] != phase:
                seen.append(phase)
        return seen

    def wait_phase(self, phase: str, timeout: float = 20.0) -> dict[str, str]:
        """Wait until a status with ``phase`` was published; return the last such status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.drain()
            for status in reversed(self.statuses):
                if status.get(contract.STATUS_PHASE) == phase:
                    return status
            time.sleep(0.02)
        msg = f"no {phase} on the events channel; saw {self.phases()}"
        raise TimeoutError(msg)

    def close(self) -> None:
        """Unsubscribe."""
        self._pubsub.close()
