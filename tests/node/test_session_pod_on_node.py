"""A session pod on a real node: locked down, sized, and brought back by the kubelet.

What a platform team relies on once wasp runs on its nodes, checked in the
running container (``kubectl exec``) and against the kubelet's own doing:
the session runs as 65532 with a read-only root, no service-account token
and no secret in its environment, inside the memory and CPU limits it was
given (the cgroup enforces them); a session killed by the kernel's OOM
killer, or wedged so that its liveness probe fails, is restarted by the
kubelet and resumes its account without a new pairing.

Faults are real: the OOM kill is the kernel's (a process in the container
fills the container's memory cgroup up to its limit), the hang is the
simulator's ``hang`` command and the restart is the liveness probe's.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

import pytest

from harness.qr_channel import QrChannel
from harness.wasp_cluster import TENANTS_NAMESPACE, WaspCluster, eventually
from wasp import contract
from wasp.client import WaspClient
from wasp_operator.pods import DEFAULT_RESOURCES, HEALTH_PORT_NAME, RUN_AS_USER
from wasp_session.errors import EXIT_SHUTDOWN_TIMED_OUT

pytestmark = pytest.mark.node

PHONE = "+4915112345678"
MIB = 1024 * 1024
# cgroup v1 (this machine's kernel mounts the v1 memory controller), else v2.
CGROUP_MEMORY_FILES = (
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
)
CGROUP_CPU_FILES = (
    ("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu/cpu.cfs_period_us"),
    ("/sys/fs/cgroup/cpu.max", ""),
)
# The session pod's own limits for the OOM test: what a sandbox session uses
# at its peak (starting, pairing or restoring the store: about 45 MiB in its
# cgroup on this machine; 35 MiB once Connected) plus a margin.
OOM_TEST_RESOURCES = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"cpu": "1", "memory": "128Mi"},
}
# Run in the session container as its own user (the exec inherits it): make the
# session (PID 1) the kernel's first choice, then charge memory to the
# container's cgroup without end (a memfd's pages are charged to the cgroup but
# mapped by no process, so they add nothing to this process's own OOM score).
FILL_CONTAINER_MEMORY = """
import os
with open("/proc/1/oom_score_adj", "w") as adj:
    adj.write("1000")
fd = os.memfd_create("fill")
chunk = b"x" * (1024 * 1024)
while True:
    os.write(fd, chunk)
"""


# -- the cluster's objects -------------------------------------------------------
def pod_name(tenant: str) -> str:
    return contract.session_pod_name(tenant)


def exec_in(
    cluster: WaspCluster, tenant: str, *command: str, check: bool = True
) -> tuple[int, str]:
    """Run ``command`` in the session container; return its exit code and output."""
    result = cluster.kubectl(
        "exec",
        "-n",
        TENANTS_NAMESPACE,
        pod_name(tenant),
        "-c",
        contract.SESSION_CONTAINER,
        "--",
        *command,
        check=check,
    )
    return result.returncode, result.stdout + result.stderr


def session_container(pod: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = next(
        c for c in pod["spec"]["containers"] if c["name"] == contract.SESSION_CONTAINER
    )
    return found


def container_status(cluster: WaspCluster, tenant: str) -> dict[str, Any]:
    pod = cluster.session_pod(tenant) or {}
    for status in pod.get("status", {}).get("containerStatuses") or ():
        if status["name"] == contract.SESSION_CONTAINER:
            found: dict[str, Any] = status
            return found
    return {}


def pod_events(cluster: WaspCluster, tenant: str) -> list[dict[str, Any]]:
    listing = json.loads(
        cluster.kubectl(
            "get",
            "events",
            "-n",
            TENANTS_NAMESPACE,
            "--field-selector",
            f"involvedObject.name={pod_name(tenant)}",
            "-o",
            "json",
        ).stdout
    )
    events: list[dict[str, Any]] = listing["items"]
    return events


def health_port(cluster: WaspCluster, tenant: str) -> int:
    """The session container's health port (its host port: the pod is on the node's network)."""
    pod = cluster.session_pod(tenant)
    assert pod is not None
    port = next(p for p in session_container(pod)["ports"] if p["name"] == HEALTH_PORT_NAME)
    return int(port["containerPort"])


def healthz(port: int) -> tuple[int, str]:
    """``/healthz`` of the session on the node's 127.0.0.1: status code and body."""
    url = f"http://127.0.0.1:{port}{contract.HEALTH_LIVE_PATH}"
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read().decode()
    except OSError as error:
        return 0, str(error)


def stuck_report(port: int) -> str | None:
    """The body of a 503 from ``/healthz`` (a stuck loop named), else None."""
    code, body = healthz(port)
    return body if code == 503 else None


# -- a session's life ------------------------------------------------------------
def simulate(cluster: WaspCluster, tenant: str, command: str, **arguments: object) -> None:
    """Push a sandbox command for the tenant's session (as the platform's admin)."""
    with cluster.admin_redis.client() as client:
        client.rpush(
            contract.simulator_commands_key(tenant),
            json.dumps({"command": command, **arguments}),
        )


def paired_session(cluster: WaspCluster, tenant: str, **spec: Any) -> dict[str, Any]:  # noqa: ANN401
    """Apply a sandbox session, scan its QR; return its Connected status."""
    cluster.apply_session(tenant, **spec)
    cluster.wait_phase(tenant, "AwaitingPairing")
    simulate(cluster, tenant, "scan", phone=PHONE)
    return cluster.wait_phase(tenant, "Connected")


def wait_ready(cluster: WaspCluster, tenant: str, timeout: float = 180) -> None:
    """Wait until the session's container is ready (Connected, holding its lease)."""
    eventually(
        lambda: container_status(cluster, tenant).get("ready"),
        f"the session container of {tenant} is ready",
        timeout,
        lambda: describe(cluster, tenant),
    )


def describe(cluster: WaspCluster, tenant: str) -> str:
    pod = cluster.kubectl("describe", "pod", pod_name(tenant), "-n", TENANTS_NAMESPACE, check=False)
    logs = cluster.kubectl(
        "logs", pod_name(tenant), "-n", TENANTS_NAMESPACE, "--tail=30", check=False
    )
    operator = cluster.operator_logs()
    return f"{pod.stdout}\n--- logs:\n{logs.stdout}{logs.stderr}\n--- operator:\n{operator}"


def assert_resumed_without_pairing(
    cluster: WaspCluster, tenant: str, jid: str, qr: QrChannel
) -> None:
    """The restarted container is Connected with ``jid``, and showed no QR."""
    wait_ready(cluster, tenant)
    again = eventually(
        lambda: (
            (status := cluster.status(tenant)).get("phase") == "Connected"
            and {c["type"]: c["status"] for c in status.get("conditions", [])}.get("Ready")
            == "True"
            and status
        ),
        f"{tenant} Connected again",
        log=lambda: describe(cluster, tenant),
    )
    assert again["account"]["jid"] == jid
    assert qr.drain() == [], "the restarted session asked to pair again"


def assert_otp_is_read(cluster: WaspCluster, tenant: str) -> None:
    """An OTP enqueued with the tenant API's own credential reaches "read"."""
    url = cluster.api_redis_url(tenant)
    with WaspClient.from_url(url, tenant) as client:
        message_id = client.send_otp(PHONE, "493817")
        assert client.wait_for(message_id, "read", timeout=60).state == "read"


# -- the container's cgroup ------------------------------------------------------
def read_first(cluster: WaspCluster, tenant: str, paths: tuple[str, ...]) -> str:
    """The content of the first of ``paths`` that exists in the container."""
    code, output = exec_in(
        cluster,
        tenant,
        "sh",
        "-c",
        'for f in "$@"; do [ -n "$f" ] && [ -e "$f" ] && exec cat "$f"; done; exit 1',
        "sh",
        *paths,
        check=False,
    )
    assert code == 0, f"none of {paths} in the container: {output}"
    return output.strip()


def cgroup_memory_limit(cluster: WaspCluster, tenant: str) -> int:
    """The memory limit the kernel enforces on the container, in bytes."""
    return int(read_first(cluster, tenant, tuple(limit for limit, _ in CGROUP_MEMORY_FILES)))


def cgroup_memory_usage(cluster: WaspCluster, tenant: str) -> int:
    """What the container's cgroup counts as used now, in bytes."""
    return int(read_first(cluster, tenant, tuple(usage for _, usage in CGROUP_MEMORY_FILES)))


def cgroup_cpu_limit(cluster: WaspCluster, tenant: str) -> float:
    """The CPU limit the kernel enforces on the container, in cores."""
    quota_v1, period_v1 = CGROUP_CPU_FILES[0]
    code, output = exec_in(cluster, tenant, "cat", quota_v1, period_v1, check=False)
    if code == 0:
        quota, period = output.split()
    else:
        quota, period = read_first(cluster, tenant, (CGROUP_CPU_FILES[1][0],)).split()
    return int(quota) / int(period)


def quantity_bytes(quantity: str) -> int:
    units = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


def quantity_cores(quantity: str) -> float:
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


# -- the tests -------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_the_session_container_is_locked_down_and_held_to_its_limits(
    wasp_cluster: WaspCluster,
) -> None:
    tenant = "locked"
    paired_session(wasp_cluster, tenant)
    wait_ready(wasp_cluster, tenant)

    # It runs as 65532:65532.
    _, status = exec_in(wasp_cluster, tenant, "cat", "/proc/1/status")
    ids = {
        line.split(":")[0]: line.split()[1:]
        for line in status.splitlines()
        if line.startswith(("Uid:", "Gid:"))
    }
    assert ids == {"Uid": [str(RUN_AS_USER)] * 4, "Gid": [str(RUN_AS_USER)] * 4}

    # The root filesystem is read-only; its data dir and /tmp are writable.
    code, output = exec_in(wasp_cluster, tenant, "sh", "-c", "echo x > /written", check=False)
    assert code != 0
    assert "Read-only file system" in output
    for directory in (contract.SESSION_DATA_DIR, "/tmp"):  # noqa: S108 - the container's own
        code, output = exec_in(
            wasp_cluster,
            tenant,
            "sh",
            "-c",
            f"echo x > {directory}/written && rm {directory}/written",
            check=False,
        )
        assert code == 0, f"{directory} is not writable: {output}"

    # No service-account token, no secret in its environment.
    code, _ = exec_in(
        wasp_cluster, tenant, "test", "-e", "/var/run/secrets/kubernetes.io", check=False
    )
    assert code == 1, "a service-account token is mounted"
    _, environ = exec_in(wasp_cluster, tenant, "cat", "/proc/1/environ")
    own_url = wasp_cluster.secret_value(
        contract.session_redis_secret_name(tenant), contract.REDIS_SECRET_URL_KEY
    )
    own_password = urlsplit(own_url).password
    auth_key = wasp_cluster.secret_value(
        contract.auth_secret_name(tenant), contract.AUTH_SECRET_KEY
    )
    assert own_password
    assert wasp_cluster.admin_redis.password
    for secret in (wasp_cluster.admin_redis.password, own_password, auth_key):
        assert secret not in environ
    assert "redis://" not in environ

    # The default resources, enforced by the kernel.
    pod = wasp_cluster.session_pod(tenant)
    assert pod is not None
    assert session_container(pod)["resources"] == {
        kind: dict(quantities) for kind, quantities in DEFAULT_RESOURCES.items()
    }
    limits = DEFAULT_RESOURCES["limits"]
    assert cgroup_memory_limit(wasp_cluster, tenant) == quantity_bytes(limits["memory"])
    assert cgroup_cpu_limit(wasp_cluster, tenant) == quantity_cores(limits["cpu"])
    used = cgroup_memory_usage(wasp_cluster, tenant)
    print(f"\n{tenant}: Connected, memory cgroup usage {used / MIB:.1f} MiB")  # noqa: T201

    # A session's own podTemplate.resources replace them, in the pod and the cgroup.
    sized = "sized"
    own = {
        "requests": {"cpu": "20m", "memory": "96Mi"},
        "limits": {"cpu": "500m", "memory": "320Mi"},
    }
    paired_session(wasp_cluster, sized, podTemplate={"resources": own})
    pod = wasp_cluster.session_pod(sized)
    assert pod is not None
    assert session_container(pod)["resources"] == own
    assert cgroup_memory_limit(wasp_cluster, sized) == 320 * MIB
    assert cgroup_cpu_limit(wasp_cluster, sized) == 0.5


@pytest.mark.timeout(600)
def test_an_oom_killed_session_comes_back_with_its_account(wasp_cluster: WaspCluster) -> None:
    tenant = "oom"
    connected = paired_session(wasp_cluster, tenant, podTemplate={"resources": OOM_TEST_RESOURCES})
    jid = connected["account"]["jid"]
    wait_ready(wasp_cluster, tenant)
    limit = cgroup_memory_limit(wasp_cluster, tenant)
    assert limit == quantity_bytes(OOM_TEST_RESOURCES["limits"]["memory"])
    used = cgroup_memory_usage(wasp_cluster, tenant)
    print(f"\n{tenant}: Connected, memory cgroup usage {used / MIB:.1f} MiB of {limit / MIB:.0f}")  # noqa: T201
    assert container_status(wasp_cluster, tenant)["restartCount"] == 0

    with wasp_cluster.admin_redis.client() as admin:
        qr = QrChannel(admin, tenant)
        try:
            # The kernel kills the session when its container's cgroup is full.
            exec_in(wasp_cluster, tenant, "python", "-c", FILL_CONTAINER_MEMORY, check=False)
            restarted = eventually(
                lambda: (
                    (status := container_status(wasp_cluster, tenant)).get("restartCount", 0) >= 1
                    and status.get("lastState", {}).get("terminated")
                    and status
                ),
                f"the kubelet restarts {tenant}'s container",
                log=lambda: describe(wasp_cluster, tenant),
            )
            terminated = restarted["lastState"]["terminated"]
            print(f"{tenant}: {terminated['reason']}, exit code {terminated['exitCode']}")  # noqa: T201
            assert terminated["reason"] == "OOMKilled", terminated
            assert terminated["exitCode"] == 137

            assert_resumed_without_pairing(wasp_cluster, tenant, jid, qr)
        finally:
            qr.close()
    assert_otp_is_read(wasp_cluster, tenant)


@pytest.mark.timeout(600)
def test_a_hung_session_fails_liveness_and_the_kubelet_restarts_it(
    wasp_cluster: WaspCluster,
) -> None:
    tenant = "hung"
    jid = paired_session(wasp_cluster, tenant)["account"]["jid"]
    wait_ready(wasp_cluster, tenant)
    port = health_port(wasp_cluster, tenant)
    assert healthz(port)[0] == 200
    assert container_status(wasp_cluster, tenant)["restartCount"] == 0

    with wasp_cluster.admin_redis.client() as admin:
        qr = QrChannel(admin, tenant)
        try:
            wedged_at = time.monotonic()
            simulate(wasp_cluster, tenant, "hang", seconds=600)

            # /healthz names the stuck loop.
            stuck = eventually(
                lambda: stuck_report(port),
                f"{tenant}'s /healthz answers 503",
                log=lambda: describe(wasp_cluster, tenant),
            )
            assert json.loads(stuck)["loop"] == contract.LOOP_LIFECYCLE
            failing_after = time.monotonic() - wedged_at

            # The kubelet's liveness probe fails and it restarts the container.
            eventually(
                lambda: any(
                    event["reason"] == "Unhealthy" and "Liveness probe failed" in event["message"]
                    for event in pod_events(wasp_cluster, tenant)
                ),
                f"a failed liveness probe of {tenant} in its pod's events",
                log=lambda: describe(wasp_cluster, tenant),
            )
            restarted = eventually(
                lambda: (
                    (status := container_status(wasp_cluster, tenant)).get("restartCount", 0) >= 1
                    and status
                ),
                f"the kubelet restarts {tenant}'s container",
                log=lambda: describe(wasp_cluster, tenant),
            )
            restarted_after = time.monotonic() - wedged_at
            before_restart = restarted["lastState"]["terminated"]
            print(  # noqa: T201
                f"\n{tenant}: /healthz 503 after {failing_after:.0f} s, restarted after "
                f"{restarted_after:.0f} s, {before_restart['reason']}, "
                f"exit code {before_restart['exitCode']}"
            )
            # Stopped while wedged: it says so (5), it does not claim to need a human (1).
            assert before_restart["exitCode"] in {EXIT_SHUTDOWN_TIMED_OUT, 137}

            assert_resumed_without_pairing(wasp_cluster, tenant, jid, qr)
            assert healthz(port)[0] == 200
        finally:
            qr.close()
