"""Fixtures every wasp test can use: a private redis-server, the real control plane and node."""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.kubelet import Kubelet
from harness.node import Node
from harness.operator_process import OperatorProcess, create_redis_secret
from harness.processes import wait_for_background_stops
from harness.redis_server import RedisServer
from harness.session_process import FAST_TIMINGS, SessionProcess, session_env


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own: no state shared with any other test."""
    server = RedisServer(tmp_path / "redis")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    """A client of this test's redis-server, decoding replies to ``str``."""
    client = redis_server.client()
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver and kube-controller-manager, shared by the session's tests.

    Tests that use it work in namespaces of their own (``namespace`` fixture).
    """
    plane = ControlPlane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield plane
    finally:
        wait_for_background_stops()  # operators still exiting talk to it until they are gone
        plane.stop()


@pytest.fixture(scope="module")
def node(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A real node (containerd, runc, kube-scheduler, kubelet) joined to ``control_plane``.

    Pods on it use host networking and local images only (``Node.import_image``).
    One per test module, stopped after it: while a real scheduler and kubelet
    run, they (not the kubelet stand-in of the operator's tests, which binds
    pods itself) would take every pod the shared control plane gets.
    """
    real_node = Node(control_plane, tmp_path_factory.mktemp("node"))
    try:
        yield real_node
    finally:
        real_node.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test, deleted after it."""
    label = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower().replace("_", "-"))
    name = f"t-{label[:40].strip('-')}-{secrets.token_hex(2)}"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


# --------------------------------------------------------------------------
# The operator's fixtures: the CRD from its one file, the operator as a
# real `wasp-operator` process, the kubelet stand-in.
# --------------------------------------------------------------------------
@pytest.fixture(scope="session")
def wasp_crd(control_plane: ControlPlane) -> str:
    """The WhatsAppSession CRD (and kopf's peering CRDs), applied from crds/ and established."""
    crds = Path(__file__).resolve().parent.parent / "crds"
    for path in (crds / "whatsappsessions.wasp.dev.yaml", crds / "kopf-peering.yaml"):
        control_plane.kubectl("apply", "-f", str(path))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/whatsappsessions.wasp.dev", "--timeout=60s"
    )
    return "whatsappsessions.wasp.dev"


# --------------------------------------------------------------------------
# The session pod's fixtures: real `wasp-session` processes for one test.
# --------------------------------------------------------------------------
@pytest.fixture
def start_session(
    redis_server: RedisServer, tmp_path: Path
) -> Iterator[Callable[..., SessionProcess]]:
    """Start ``wasp-session`` processes (simulator transport, short timings); all stopped after.

    ``start_session(tenant="acme", name="pod-a", auth_key=None, **env_overrides)``
    returns a ``harness.session_process.SessionProcess``. Pods of one tenant
    that must share the account need the same ``auth_key``.
    """
    started: list[SessionProcess] = []

    def start(
        tenant: str = "acme", name: str = "pod-a", auth_key: str | None = None, **overrides: str
    ) -> SessionProcess:
        env = session_env(
            tenant, redis_server.url, tmp_path / name, auth_key=auth_key, pod_name=name, **overrides
        )
        process = SessionProcess(env, tmp_path / f"{name}.log")
        started.append(process)
        return process

    try:
        yield start
    finally:
        for process in started:
            process.stop()


# --------------------------------------------------------------------------
# The operator running for one test's namespace, its Redis Secret, and the
# kubelet stand-in (harness.kubelet) for that namespace's wasp pods.
# --------------------------------------------------------------------------
@pytest.fixture
def redis_secret(control_plane: ControlPlane, namespace: str, redis_server: RedisServer) -> str:
    """The operator's default Redis Secret (``wasp-redis``) in the test's namespace."""
    return create_redis_secret(control_plane, namespace, redis_server.url)


@pytest.fixture
def start_operator(
    control_plane: ControlPlane,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
    namespace: str,
    redis_secret: str,  # noqa: ARG001 - requested for its effect: the Secret exists
    tmp_path: Path,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start ``wasp-operator`` processes watching the test's namespace (standalone).

    Keyword arguments go to ``OperatorProcess`` (``environment``,
    ``resync_seconds``, ...); every operator started is sent SIGTERM after the
    test; their graceful exits (seconds each) overlap the next tests, and the
    session's end waits for them (``harness.processes``).
    """
    started: list[OperatorProcess] = []

    def start(**options: Any) -> OperatorProcess:  # noqa: ANN401 - OperatorProcess's options
        directory = tmp_path / ("operator" if not started else f"operator-{len(started)}")
        operator = OperatorProcess(
            control_plane.kubeconfig, directory, namespace=namespace, **options
        )
        started.append(operator)
        return operator

    try:
        yield start
    finally:
        for operator in started:  # all signalled at once; none is waited for here
            operator.stop_in_background()


@pytest.fixture
def wasp_operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """``wasp-operator`` watching the test's namespace (standalone), as a real process."""
    return start_operator()


@pytest.fixture
def session_kubelet(
    control_plane: ControlPlane, namespace: str, tmp_path: Path
) -> Iterator[Kubelet]:
    """The kubelet stand-in running the real ``wasp-session``, with quick simulator timings."""
    stand_in = Kubelet(
        control_plane.kubeconfig, namespace, tmp_path / "kubelet", environment=FAST_TIMINGS
    )
    try:
        yield stand_in
    finally:
        stand_in.stop()


@pytest.fixture
def kubelet(control_plane: ControlPlane, namespace: str, tmp_path: Path) -> Iterator[Kubelet]:
    """The kubelet stand-in running the namespace's wasp pods' real container command."""
    stand_in = Kubelet(control_plane.kubeconfig, namespace, tmp_path / "kubelet")
    try:
        yield stand_in
    finally:
        stand_in.stop()
