"""wasp installed by its chart on a real node, as a platform team and its tenants see it.

The operator runs as the chart's Deployment and every session pod runs on the
node (containerd, kubelet, scheduler: ``harness.node``), from the image
``wasp:test``, in sandbox mode (the simulator transport). A tenant pairs,
sends OTPs with its own Redis credential (``status.apiCredentials``), loses
its pod and keeps its account, and lives through an upgrade of the chart.
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from harness.image import TEST_IMAGE
from harness.qr_channel import QrChannel
from harness.wasp_cluster import (
    IMAGE_REPOSITORY,
    OPERATOR_DEPLOYMENT,
    RELEASE_NAMESPACE,
    TENANTS_NAMESPACE,
    WaspCluster,
    eventually,
    pod_ready,
)
from wasp import contract
from wasp.client import WaspClient
from wasp_kubectl.cluster import connect
from wasp_kubectl.tunnel import Forward, redis_url_for
from wasp_session.snapshot import Header

pytestmark = pytest.mark.node

PHONE = "+4915112345678"
OPERATOR_LABEL = "app.kubernetes.io/component=operator"
UPGRADE_TAG = "test-upgrade"
# The longest a snapshot's header may be (it is one JSON line of a few fields).
HEADER_BYTES = 1024
# Quiet time after which no debounced checkpoint is pending (the default debounce is 5 s).
CHECKPOINTS_SETTLED_SECONDS = 8.0


# -- small readers ---------------------------------------------------------------
def conditions_of(resource: dict[str, Any]) -> dict[str, str]:
    """A resource's status conditions, type → status."""
    found = resource.get("status", {}).get("conditions") or []
    return {c["type"]: c["status"] for c in found}


def running_image(pod: dict[str, Any], container: str) -> str | None:
    """The image a pod's container runs from, if it is running now."""
    spec: dict[str, str] = {c["name"]: c["image"] for c in pod["spec"]["containers"]}
    for state in pod.get("status", {}).get("containerStatuses") or []:
        if state["name"] == container and "running" in state.get("state", {}):
            return spec[container]
    return None


def restart_count(pod: dict[str, Any], container: str) -> int:
    """How often a pod's container was restarted by the kubelet."""
    for state in pod.get("status", {}).get("containerStatuses") or []:
        if state["name"] == container:
            return int(state["restartCount"])
    msg = f"no container {container} in pod {pod['metadata']['name']}"
    raise AssertionError(msg)


def get_json(cluster: WaspCluster, *args: str) -> dict[str, Any]:
    """``kubectl get ... -o json``."""
    found: dict[str, Any] = json.loads(cluster.kubectl("get", *args, "-o", "json").stdout)
    return found


def the_operator_pod(cluster: WaspCluster) -> dict[str, Any] | None:
    """The operator's one pod, or None while there is not exactly one."""
    pods = [p for p in cluster.operator_pods() if not p["metadata"].get("deletionTimestamp")]
    return pods[0] if len(pods) == 1 else None


def auth_header(raw_admin: redis.Redis, tenant: str) -> Header | None:
    """The header of the tenant's auth snapshot in Redis (generation, fencing token), or None.

    ``raw_admin`` must not decode responses: the header is one line of JSON
    before the encrypted bytes.
    """
    raw = raw_admin.getrange(contract.auth_key(tenant), 0, HEADER_BYTES)
    if not raw:
        return None
    assert isinstance(raw, bytes)
    return Header.decode(raw.partition(b"\n")[0])


def listed_row(cluster: WaspCluster, kind: str, name: str) -> str:
    """The row of ``kubectl get <kind>`` for the resource ``name``."""
    listing = cluster.kubectl("get", kind, "-n", TENANTS_NAMESPACE).stdout
    rows = [line for line in listing.splitlines() if line.split()[:1] == [name]]
    assert rows, f"{name} is not listed by kubectl get {kind}:\n{listing}"
    return rows[0]


def send_and_wait_read(url: str, tenant: str, code: str) -> None:
    """Enqueue an OTP as the tenant's API does, and wait until the phone read it."""
    with WaspClient(redis.Redis.from_url(url), tenant) as client:
        message_id = client.send_otp(PHONE, code)
        status = client.wait_for(message_id, "read", timeout=90)
    assert status.state == "read", f"the OTP ended {status.state}: {status}"


# -- a tenant's life ---------------------------------------------------------------
def pair(cluster: WaspCluster, admin: redis.Redis, name: str) -> dict[str, Any]:
    """Apply a sandbox session, wait for its QR, scan it; return the Connected status."""
    cluster.apply_session(name)
    eventually(
        lambda: cluster.status(name).get("pairing", {}).get("qrCode"),
        f"a QR in the status of {name}",
        log=lambda: session_logs(cluster, name),
    )
    admin.rpush(contract.simulator_commands_key(name), json.dumps({"command": "scan"}))

    def connected() -> dict[str, Any] | None:
        status = cluster.status(name)
        ready = conditions_of({"status": status}).get("Ready") == "True"
        return status if status.get("phase") == "Connected" and ready else None

    return eventually(
        connected, f"{name} Connected and Ready", log=lambda: session_logs(cluster, name)
    )


def session_logs(cluster: WaspCluster, name: str) -> str:
    """The operator's log, the session pod's log and its description, for failure messages."""
    pod = contract.session_pod_name(name)
    logs = cluster.kubectl("logs", pod, "-n", TENANTS_NAMESPACE, "--tail=40", check=False)
    described = cluster.kubectl("describe", "pod", pod, "-n", TENANTS_NAMESPACE, check=False)
    return (
        f"{cluster.operator_logs()}\n--- {pod}:\n{logs.stdout}{logs.stderr}"
        f"\n--- describe:\n{described.stdout[-3000:]}"
    )


def settled_auth_header(admin: redis.Redis, tenant: str) -> Header:
    """The auth snapshot's header once no checkpoint has been written for a while."""
    last: Header | None = None
    since = time.monotonic()

    def settled() -> Header | None:
        nonlocal last, since
        header = auth_header(admin, tenant)
        if header != last:
            last, since = header, time.monotonic()
            return None
        if header is not None and time.monotonic() - since >= CHECKPOINTS_SETTLED_SECONDS:
            return header
        return None

    return eventually(settled, f"the auth snapshot of {tenant} settled", timeout=60)


class HeaderWatch:
    """Every distinct auth snapshot header of a tenant, read every 20 ms in a thread."""

    def __init__(self, admin: redis.Redis, tenant: str) -> None:
        """Start watching."""
        self.seen: list[Header] = []
        self._admin = admin
        self._tenant = tenant
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            header = auth_header(self._admin, self._tenant)
            if header is not None and (not self.seen or self.seen[-1] != header):
                self.seen.append(header)

    def stop(self) -> list[Header]:
        """Stop; return what was seen."""
        self._stop.set()
        self._thread.join(timeout=5)
        return self.seen


def operator_metric(pod: dict[str, Any], sample: str) -> float:
    """One sample of the operator pod's Prometheus endpoint (on the node's network); 0 if absent."""
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0].get("env", [])}
    port = env[contract.ENV_OPERATOR_METRICS_PORT]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def forget(cluster: WaspCluster, name: str) -> None:
    """Delete a tenant's session (its pod stops in the background), freeing the node."""
    cluster.kubectl(
        "delete", "whatsappsession", name, "-n", TENANTS_NAMESPACE, "--wait=false", check=False
    )


@pytest.fixture
def admin(wasp_cluster: WaspCluster) -> Iterator[redis.Redis]:
    """A client of the admin Redis (the platform's, for the sandbox's fault commands)."""
    client = wasp_cluster.admin_redis.client()
    yield client
    client.close()


@pytest.fixture
def raw_admin(wasp_cluster: WaspCluster) -> Iterator[redis.Redis]:
    """A client of the admin Redis that returns bytes (the auth snapshot is binary)."""
    client = redis.Redis.from_url(wasp_cluster.admin_redis.url)
    yield client
    client.close()


# -- the tests -------------------------------------------------------------------
@pytest.mark.timeout(600)
def test_the_operator_runs_on_the_node_and_is_ready_only_while_it_may_list_sessions(
    wasp_cluster: WaspCluster,
) -> None:
    deployment = get_json(wasp_cluster, "deployment", OPERATOR_DEPLOYMENT, "-n", RELEASE_NAMESPACE)
    assert conditions_of(deployment).get("Available") == "True"
    pod = the_operator_pod(wasp_cluster)
    assert pod is not None, "one operator pod"
    assert pod["spec"]["nodeName"] == wasp_cluster.real_node.name
    assert running_image(pod, "operator") == TEST_IMAGE
    assert pod_ready(pod)

    # Take away what the readiness probe checks: listing WhatsAppSessions in the tenants' namespace.
    bindings = get_json(wasp_cluster, "rolebinding", "-n", TENANTS_NAMESPACE, "-l", OPERATOR_LABEL)
    assert len(bindings["items"]) == 1, "the chart binds the operator's Role in the tenants' one"
    binding = bindings["items"][0]
    wasp_cluster.kubectl(
        "delete", "rolebinding", binding["metadata"]["name"], "-n", TENANTS_NAMESPACE
    )
    forbidden = wasp_cluster.kubectl(
        "auth",
        "can-i",
        "list",
        "whatsappsessions.wasp.dev",
        "-n",
        TENANTS_NAMESPACE,
        f"--as=system:serviceaccount:{RELEASE_NAMESPACE}:{pod['spec']['serviceAccountName']}",
        check=False,
    )
    assert forbidden.stdout.strip() == "no"
    try:
        eventually(
            lambda: (p := the_operator_pod(wasp_cluster)) is not None and not pod_ready(p),
            "the operator pod NotReady once it may not list the sessions",
            timeout=120,
            log=wasp_cluster.operator_logs,
        )
        deployment = get_json(
            wasp_cluster, "deployment", OPERATOR_DEPLOYMENT, "-n", RELEASE_NAMESPACE
        )
        assert not deployment["status"].get("readyReplicas"), "kubectl shows READY 0/1"
    finally:
        # Put it back as the chart made it.
        metadata = binding["metadata"]
        for field in ("resourceVersion", "uid", "creationTimestamp", "managedFields"):
            metadata.pop(field, None)
        wasp_cluster.kubectl("create", "-f", "-", stdin=json.dumps(binding))

    eventually(
        lambda: pod_ready(the_operator_pod(wasp_cluster)),
        "the operator pod Ready again once it may list the sessions",
        timeout=180,
        log=wasp_cluster.operator_logs,
    )
    wasp_cluster.kubectl(
        "rollout",
        "status",
        f"deployment/{OPERATOR_DEPLOYMENT}",
        "-n",
        RELEASE_NAMESPACE,
        "--timeout=120s",
    )


@pytest.mark.timeout(600)
def test_a_tenant_pairs_on_the_node_and_its_otp_is_read(
    wasp_cluster: WaspCluster, admin: redis.Redis
) -> None:
    name = "pairs"
    try:
        cluster = wasp_cluster
        cluster.apply_session(name)
        pairing = eventually(
            lambda: (
                (s := cluster.status(name)).get("phase") == "AwaitingPairing"
                and s.get("pairing", {}).get("qrCode")
                and s
            ),
            "the QR shows in the status",
            log=lambda: session_logs(cluster, name),
        )
        pod = cluster.session_pod(name)
        assert pod is not None
        assert pairing["podName"] == pod["metadata"]["name"]
        assert pod["spec"]["nodeName"] == cluster.real_node.name
        assert running_image(pod, contract.SESSION_CONTAINER) == TEST_IMAGE

        admin.rpush(contract.simulator_commands_key(name), json.dumps({"command": "scan"}))
        connected = cluster.wait_phase(name, "Connected")
        assert "pairing" not in connected
        jid = connected["account"]["jid"]
        for kind in ("whatsappsessions", "was"):
            row = listed_row(cluster, kind, name)
            assert "Connected" in row.split(), row
            assert jid in row, row

        url = cluster.api_redis_url(name)
        assert f"//{contract.api_redis_user(name)}:" in url, "the tenant's own Redis user"
        send_and_wait_read(url, name, "493817")
    finally:
        forget(wasp_cluster, name)


def redis_behind_a_service(cluster: WaspCluster, port: int) -> str:
    """A Service ``wasp-redis`` (port 6379, as the chart's) whose pod answers on ``port``.

    The pod runs on the node's network (as every pod of these tests), so a
    port-forward to its ``port`` reaches the admin Redis on 127.0.0.1 through
    the API server, the kubelet and containerd, while the Service's own
    name resolves nowhere outside the cluster. Returns the Service's host name.
    """
    labels = {"app.kubernetes.io/name": "redis-tunnel-test"}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "wasp-redis-0", "labels": labels},
        "spec": {
            "hostNetwork": True,
            "containers": [
                {
                    "name": "redis",
                    "image": TEST_IMAGE,
                    "command": ["python", "-c", "import time; time.sleep(3600)"],
                    "ports": [{"name": "redis", "containerPort": port}],
                }
            ],
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "wasp-redis"},
        "spec": {
            "selector": labels,
            "ports": [{"name": "redis", "port": 6379, "targetPort": "redis"}],
        },
    }
    for body in (pod, service):
        cluster.kubectl("apply", "-n", RELEASE_NAMESPACE, "-f", "-", stdin=json.dumps(body))
    eventually(
        lambda: pod_ready(get_json(cluster, "pod", "wasp-redis-0", "-n", RELEASE_NAMESPACE)),
        "the pod behind the Redis Service Ready",
    )
    return f"wasp-redis.{RELEASE_NAMESPACE}.svc"


@pytest.mark.timeout(600)
def test_kubectl_wasp_reaches_a_redis_only_the_cluster_knows_through_a_real_port_forward(
    wasp_cluster: WaspCluster, admin: redis.Redis
) -> None:
    name = "tunnel"
    try:
        cluster = wasp_cluster
        pair(cluster, admin, name)
        direct = urlsplit(cluster.api_redis_url(name))
        host = redis_behind_a_service(cluster, direct.port or 6379)
        # The tenant's credential as the chart's in-cluster Redis would name it.
        in_cluster = direct._replace(netloc=f"{direct.netloc.rpartition('@')[0]}@{host}:6379")
        forwards: list[Forward] = []
        plugin_view = connect(str(cluster.plane.kubeconfig), None, RELEASE_NAMESPACE)
        try:
            url = redis_url_for(plugin_view, urlunsplit(in_cluster), forwards)
            assert len(forwards) == 1, "the Service's name does not resolve here: forwarded"
            assert forwards[0].pod == "wasp-redis-0"
            with WaspClient(redis.Redis.from_url(url), name) as client:
                assert client.session_status().phase == "Connected"
                message_id = client.send_otp(PHONE, "730291")
                assert client.wait_for(message_id, "read", timeout=90).state == "read"
        finally:
            for forward in forwards:
                forward.close()
            plugin_view.close()
    finally:
        for kind, what in (("service", "wasp-redis"), ("pod", "wasp-redis-0")):
            cluster.kubectl(
                "delete", kind, what, "-n", RELEASE_NAMESPACE, "--wait=false", check=False
            )
        forget(wasp_cluster, name)


@pytest.mark.timeout(600)
def test_a_deleted_pod_checkpoints_on_sigterm_and_its_successor_resumes_without_a_scan(
    wasp_cluster: WaspCluster, admin: redis.Redis, raw_admin: redis.Redis
) -> None:
    name = "resumes"
    cluster = wasp_cluster
    qr: QrChannel | None = None
    try:
        jid = pair(cluster, admin, name)["account"]["jid"]
        url = cluster.api_redis_url(name)
        send_and_wait_read(url, name, "111222")

        old_pod = cluster.session_pod(name)
        assert old_pod is not None
        grace = int(old_pod["spec"]["terminationGracePeriodSeconds"])
        old_token = int(admin.hget(contract.status_key(name), contract.STATUS_LEASE_TOKEN) or 0)
        before = settled_auth_header(raw_admin, name)
        assert before.has_device
        assert before.fence == old_token

        qr = QrChannel(admin, name)
        watch = HeaderWatch(raw_admin, name)
        deleted_at = time.time()
        cluster.kubectl(
            "delete", "pod", old_pod["metadata"]["name"], "-n", TENANTS_NAMESPACE, "--wait=false"
        )
        phases_seen: set[str] = set()

        def resumed() -> dict[str, Any] | None:
            status = cluster.status(name)
            phases_seen.add(str(status.get("phase")))
            assert "pairing" not in status, f"the new pod asked to pair again: {status}"
            pod = cluster.session_pod(name)
            token = admin.hget(contract.status_key(name), contract.STATUS_LEASE_TOKEN)
            if (
                pod_ready(pod)
                and pod is not None
                and pod["metadata"]["uid"] != old_pod["metadata"]["uid"]
                and int(token or 0) > old_token
                and status.get("phase") == "Connected"
                and conditions_of({"status": status}).get("Ready") == "True"
                and status.get("podName") == pod["metadata"]["name"]
            ):
                return status
            return None

        try:
            again = eventually(
                resumed,
                "a new pod Connected with a lease of its own",
                timeout=180,
                log=lambda: session_logs(cluster, name),
            )
        finally:
            seen = watch.stop()
        shutdown = [h for h in seen if h.fence == old_token and h.generation > before.generation]
        assert shutdown, (
            f"the old pod wrote no checkpoint after SIGTERM (before: {before}; seen: {seen})"
        )
        written_at = datetime.fromisoformat(shutdown[0].at).timestamp()
        assert written_at <= deleted_at + grace, "checkpointed within the grace period"
        assert shutdown[0].has_device

        pod = cluster.session_pod(name)
        assert pod is not None
        assert pod["spec"]["nodeName"] == cluster.real_node.name
        assert again["account"]["jid"] == jid, "the same account"
        assert "AwaitingPairing" not in phases_seen
        assert qr.drain() == [], "no QR was published for the new pod"
        assert admin.hget(contract.status_key(name), contract.STATUS_QR) is None

        # The new pod continued from the shutdown checkpoint: its own follow it.
        eventually(
            lambda: (
                (h := auth_header(raw_admin, name)) is not None
                and h.fence > old_token
                and h.generation > shutdown[-1].generation
            ),
            "the new pod checkpoints on top of the old pod's last snapshot",
            timeout=60,
        )
        send_and_wait_read(url, name, "333444")
    finally:
        if qr is not None:
            qr.close()
        forget(wasp_cluster, name)


@pytest.mark.timeout(600)
def test_a_chart_upgrade_with_a_new_image_restarts_the_operator_and_no_tenant(
    wasp_cluster: WaspCluster, admin: redis.Redis
) -> None:
    name = "upgrades"
    cluster = wasp_cluster
    try:
        pair(cluster, admin, name)
        url = cluster.api_redis_url(name)
        session_pod = cluster.session_pod(name)
        operator_pod = the_operator_pod(cluster)
        assert session_pod is not None
        assert operator_pod is not None

        cluster.tag_image(UPGRADE_TAG)
        cluster.upgrade(image_tag=UPGRADE_TAG)  # a failure shows the release's state

        new_operator = eventually(
            lambda: (
                (p := the_operator_pod(cluster)) is not None
                and p["metadata"]["uid"] != operator_pod["metadata"]["uid"]
                and pod_ready(p)
                and p
            ),
            "a new operator pod Ready",
            log=cluster.operator_logs,
        )
        assert running_image(new_operator, "operator") == f"{IMAGE_REPOSITORY}:{UPGRADE_TAG}"
        # The new operator has taken the session on: it counts it Connected.
        connected_sample = 'wasp_operator_sessions{phase="Connected"}'
        eventually(
            lambda: operator_metric(new_operator, connected_sample) >= 1,
            "the new operator sees the session Connected",
            log=cluster.operator_logs,
        )
        send_and_wait_read(url, name, "555666")

        after = cluster.session_pod(name)
        assert after is not None
        assert after["metadata"]["uid"] == session_pod["metadata"]["uid"], "the tenant's pod stays"
        assert restart_count(after, contract.SESSION_CONTAINER) == 0
        assert running_image(after, contract.SESSION_CONTAINER) == TEST_IMAGE
        status = cluster.status(name)
        assert status["phase"] == "Connected"
        assert conditions_of({"status": status}).get("Ready") == "True"
    finally:
        forget(wasp_cluster, name)
