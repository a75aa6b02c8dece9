"""The image, run as the session pod runs it: uid 65532, read-only root, only the pod's mounts.

These tests run the repository's image (``harness.image``, as ``make image``
builds it) in Docker, locked down like ``wasp_operator.pods.build_pod``'s
container: no capabilities, no privilege escalation, a read-only root, and
writable only ``/tmp`` and ``/var/lib/wasp`` (the pod's two emptyDirs, here
tmpfs). Containers use the host's network and talk to a redis-server on
127.0.0.1 only. They prove the README's sandbox flow inside the image:
pairing, an OTP to ``read``, SIGTERM → checkpoint → exit 0, and a second
container restoring the account without a scan.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from harness.image import TEST_CONTAINER_LABEL, docker
from harness.processes import free_port
from harness.redis_server import RedisServer
from harness.session_process import new_auth_key, session_env
from wasp import contract
from wasp.client import WaspClient

pytestmark = pytest.mark.image

TENANT = "acme"
RUN_AS = "65532"
# As the session pod's securityContext and volumes (wasp_operator.pods).
LOCKED_DOWN = [
    "--read-only",
    "--cap-drop",
    "ALL",
    "--security-opt",
    "no-new-privileges",
    "--label",
    TEST_CONTAINER_LABEL,
]
POD_MOUNTS = [
    "--tmpfs",
    f"/tmp:rw,size=64m,uid={RUN_AS},gid={RUN_AS}",  # noqa: S108 - the container's own tmpfs
    "--tmpfs",
    f"{contract.SESSION_DATA_DIR}:rw,uid={RUN_AS},gid={RUN_AS},mode=0700",
]


def run(image: str, *command: str) -> str:
    """Run a command in a locked-down throwaway container; its output."""
    return docker("run", "--rm", "--network", "none", *LOCKED_DOWN, image, *command).stdout


def test_image_runs_as_65532_with_a_read_only_root(image: str) -> None:
    assert run(image, "id", "-u").strip() == RUN_AS
    assert run(image, "id", "-g").strip() == RUN_AS
    # Without the pod's mounts, only the data dir (a declared volume) is writable.
    probe = (
        "import pathlib\n"
        "pathlib.Path('/var/lib/wasp/probe').write_text('ok')\n"
        "for path in ('/opt/wasp', '/etc', '/tmp', '/'):\n"
        "    try:\n"
        "        pathlib.Path(path, 'probe').write_text('no')\n"
        "    except OSError:\n"
        "        continue\n"
        "    raise SystemExit(f'{path} is writable')\n"
        "import neonize, magic, wasp_session, wasp_operator\n"
        "print('ok')\n"
    )
    assert run(image, "python", "-c", probe).strip() == "ok"


def test_image_explains_itself_and_holds_both_programs(image: str) -> None:
    assert "usage" in run(image).lower()
    assert "usage" in run(image, contract.OPERATOR_NAME, "--help").lower()


def test_apt_leaves_no_lists_or_packages(image: str) -> None:
    listing = run(image, "find", "/var/lib/apt/lists", "/var/cache/apt", "-type", "f")
    assert listing.split() == []


class SessionContainer:
    """One ``wasp-session`` container, run as its pod would be."""

    def __init__(self, image: str, name: str, env: dict[str, str]) -> None:
        """Start it detached, on the host's network, locked down, with the pod's mounts."""
        self.name = name
        self.health_port = int(env[contract.ENV_HEALTH_PORT])
        args = [f"--env={key}={value}" for key, value in env.items()]
        docker(
            "run",
            "--detach",
            "--name",
            name,
            "--network",
            "host",
            *LOCKED_DOWN,
            *POD_MOUNTS,
            *args,
            image,
            contract.SESSION_COMMAND,
        )

    def healthz(self) -> int:
        """The status of GET /healthz, 0 when it does not answer."""
        url = f"http://127.0.0.1:{self.health_port}/healthz"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return int(response.status)
        except OSError:
            return 0

    def state(self) -> dict[str, object]:
        """``docker inspect``'s State of the container."""
        inspected = docker("inspect", "--format", "{{json .State}}", self.name).stdout
        return dict(json.loads(inspected))

    def logs(self) -> str:
        """What the session logged."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr

    def stop(self, grace: int = 30) -> int:
        """SIGTERM, as the kubelet sends it; the exit code."""
        docker("stop", "--time", str(grace), self.name)
        return int(str(self.state()["ExitCode"]))


def wait_until(
    condition: Callable[[], bool], what: str, box: SessionContainer, timeout: float = 30
) -> None:
    """Poll ``condition``; fail with the container's logs after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline or box.state().get("Running") is False:
            pytest.fail(f"{box.name}: {what} not reached; logs:\n{box.logs()[-4000:]}")
        time.sleep(0.2)


def phase(client: redis.Redis, pod: str) -> str | None:
    """The phase ``pod`` reports (``None`` while the status is another pod's, e.g. a stale one)."""
    status: dict[str, str] = client.hgetall(contract.status_key(TENANT))  # type: ignore[assignment]
    if status.get(contract.STATUS_POD) != pod:
        return None
    return status.get(contract.STATUS_PHASE)


def test_sandbox_flow_in_the_image(image: str, tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    admin = server.client()
    try:
        key = new_auth_key()

        def container(name: str) -> SessionContainer:
            env = session_env(TENANT, server.url, tmp_path / name, auth_key=key, pod_name=name)
            env.pop("PATH")  # the image's own
            env.pop("HOME")
            env[contract.ENV_DATA_DIR] = contract.SESSION_DATA_DIR
            env[contract.ENV_HEALTH_PORT] = str(free_port())
            return SessionContainer(image, f"wasp-image-test-{name}-{time.time_ns()}", env)

        first = container("first")
        wait_until(lambda: first.healthz() == 200, "/healthz 200", first)
        wait_until(lambda: phase(admin, "first") == "AwaitingPairing", "AwaitingPairing", first)
        admin.rpush(contract.simulator_commands_key(TENANT), json.dumps({"command": "scan"}))
        wait_until(lambda: phase(admin, "first") == "Connected", "Connected after the scan", first)

        with WaspClient.from_url(server.url, TENANT) as wasp:
            message_id = wasp.send_otp("+4915112345678", "493817")
            assert wasp.wait_for(message_id, "read", timeout=60).state == "read"

        started = time.monotonic()
        assert first.stop() == 0, first.logs()[-4000:]
        assert time.monotonic() - started < 30
        assert admin.exists(contract.auth_key(TENANT)), "no checkpoint after SIGTERM"

        second = container("second")
        wait_until(
            lambda: phase(admin, "second") == "Connected", "Connected without a scan", second
        )
        assert admin.llen(contract.simulator_commands_key(TENANT)) == 0
        with WaspClient.from_url(server.url, TENANT) as wasp:
            message_id = wasp.send_otp("+4915112345678", "207914")
            assert wasp.wait_for(message_id, "read", timeout=60).state == "read"
        assert second.stop() == 0, second.logs()[-4000:]
    finally:
        admin.close()
        server.stop()
