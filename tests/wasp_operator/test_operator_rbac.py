"""The shipped RBAC is enough for the operator, and no more: it runs under it, with peering."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from harness.controlplane import ControlPlane
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from harness.redis_server import RedisServer
from wasp import contract

pytestmark = pytest.mark.controlplane

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
ACCOUNT = "wasp-operator"


Installer = Callable[[str, dict[str, str]], None]


@pytest.fixture
def install(control_plane: ControlPlane) -> Iterator[Installer]:
    """Apply deploy/ manifests for one test; delete them after, cluster-scoped objects too.

    ``install(manifest, {placeholder: namespace, ...})`` puts the test's
    namespaces in place of the manifest's (wasp-system, wasp-tenants). A
    ClusterRole left behind would clash with a later ``helm install`` of the chart.
    """
    applied: list[str] = []

    def apply_manifest(manifest: str, namespaces: dict[str, str]) -> None:
        text = (DEPLOY / manifest).read_text(encoding="utf-8")
        for placeholder, namespace in namespaces.items():
            text = text.replace(placeholder, namespace)
        control_plane.kubectl("apply", "-f", "-", stdin=text)
        applied.append(text)

    try:
        yield apply_manifest
    finally:
        for text in reversed(applied):
            control_plane.kubectl(
                "delete", "-f", "-", "--ignore-not-found", "--wait=false", stdin=text, check=False
            )


def service_account_kubeconfig(plane: ControlPlane, namespace: str, directory: Path) -> Path:
    """A kubeconfig that authenticates as the operator's ServiceAccount (a real token)."""
    token = plane.kubectl("create", "token", ACCOUNT, "-n", namespace).stdout.strip()
    config = json.loads(plane.kubeconfig.read_text(encoding="utf-8"))
    config["users"] = [{"name": ACCOUNT, "user": {"token": token}}]
    config["contexts"][0]["context"]["user"] = ACCOUNT
    path = directory / "operator-kubeconfig"
    path.write_text(json.dumps(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def can(plane: ControlPlane, namespace: str, *what: str, account_in: str | None = None) -> bool:
    """Whether the operator's ServiceAccount (in ``account_in``, default ``namespace``) may."""
    result = plane.kubectl(
        "auth",
        "can-i",
        *what,
        "-n",
        namespace,
        "--as",
        f"system:serviceaccount:{account_in or namespace}:{ACCOUNT}",
        check=False,
    )
    return result.stdout.strip() == "yes"


@pytest.fixture
def operator_namespace(
    control_plane: ControlPlane, namespace: str, redis_server: RedisServer
) -> Iterator[str]:
    """The operator's own namespace, beside the tenants' (``namespace``), with the admin Secret.

    The admin Redis Secret lives there only, as the chart puts it.
    """
    name = f"{namespace[:50]}-ops"
    control_plane.kubectl("create", "namespace", name)
    control_plane.kubectl(
        "create", "secret", "generic", contract.DEFAULT_REDIS_SECRET, "-n", name,
        f"--from-literal={contract.DEFAULT_REDIS_SECRET_KEY}={redis_server.url}",
    )  # fmt: skip
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def run_a_session_through_its_life(
    plane: ControlPlane, namespace: str, operator: OperatorProcess, client: redis.Redis
) -> None:
    """Create, run and delete a session; the operator must never be refused."""
    apply(plane, namespace, session_body("acme"))
    eventually(
        lambda: get(plane, namespace, "pod", contract.session_pod_name("acme")),
        "the operator creates the pod",
        log=operator.log,
    )
    eventually(
        lambda: ((get(plane, namespace, "was", "acme") or {}).get("status") or {}).get("phase"),
        "the operator writes the status",
        log=operator.log,
    )
    client.set(contract.auth_key("acme"), "store")
    plane.kubectl("delete", "was", "acme", "-n", namespace, "--wait=false")
    eventually(
        lambda: get(plane, namespace, "was", "acme") is None,
        "the operator lets the resource go",
        log=operator.log,
    )
    assert client.exists(contract.auth_key("acme")) == 0
    refusals = re.findall(r"cannot \w+ resource [^,]*", operator.log())
    assert refusals == [], "RBAC refused the operator"


@pytest.mark.usefixtures("wasp_crd", "redis_secret")
def test_the_operator_runs_cluster_wide_under_its_cluster_role_with_peering(
    control_plane: ControlPlane,
    namespace: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    install: Installer,
) -> None:
    install("operator-rbac.yaml", {"wasp-system": namespace})
    install("peering-cluster.yaml", {"wasp-system": namespace})
    assert can(control_plane, namespace, "create", "pods")
    assert can(
        control_plane, namespace, "patch", "whatsappsessions.wasp.dev", "--subresource=status"
    )
    assert can(control_plane, namespace, "create", "networkpolicies.networking.k8s.io")
    assert can(control_plane, namespace, "update", "networkpolicies.networking.k8s.io")
    assert not can(control_plane, namespace, "delete", "networkpolicies.networking.k8s.io")
    assert not can(control_plane, namespace, "list", "secrets")
    assert not can(control_plane, namespace, "delete", "secrets")
    assert not can(control_plane, namespace, "update", "pods")
    assert not can(control_plane, namespace, "create", "pods", "--subresource=exec")
    assert not can(control_plane, namespace, "get", "nodes")

    kubeconfig = service_account_kubeconfig(control_plane, namespace, tmp_path)
    operator = OperatorProcess(kubeconfig, tmp_path / "operator", standalone=False)
    try:
        eventually(
            lambda: (get(control_plane, namespace, "clusterkopfpeering", ACCOUNT) or {}).get(
                "status"
            ),
            "the operator announces itself in the peering object",
            log=operator.log,
        )
        run_a_session_through_its_life(control_plane, namespace, operator, redis_client)
    finally:
        operator.stop()


@pytest.mark.usefixtures("wasp_crd")
def test_the_operator_runs_in_one_namespace_under_its_role_with_peering(  # noqa: PLR0913, PLR0917 - fixtures
    control_plane: ControlPlane,
    namespace: str,
    operator_namespace: str,
    redis_client: redis.Redis,
    tmp_path: Path,
    install: Installer,
) -> None:
    ops = operator_namespace
    install("operator-rbac-namespaced.yaml", {"wasp-system": ops, "wasp-tenants": namespace})
    install("peering-namespaced.yaml", {"wasp-tenants": namespace})
    assert can(control_plane, namespace, "create", "pods", account_in=ops)
    assert can(
        control_plane, namespace, "create", "networkpolicies.networking.k8s.io", account_in=ops
    )
    assert not can(control_plane, "default", "create", "pods", account_in=ops)
    assert not can(control_plane, ops, "create", "pods", account_in=ops)
    assert not can(control_plane, namespace, "list", "secrets", account_in=ops)
    admin_secret = f"secrets/{contract.DEFAULT_REDIS_SECRET}"
    assert can(control_plane, ops, "get", admin_secret, account_in=ops)
    assert not can(control_plane, ops, "get", "secrets/another", account_in=ops)
    assert not can(control_plane, ops, "list", "secrets", account_in=ops)

    kubeconfig = service_account_kubeconfig(control_plane, ops, tmp_path)
    operator = OperatorProcess(
        kubeconfig,
        tmp_path / "operator",
        namespace=namespace,
        standalone=False,
        environment={contract.ENV_OPERATOR_REDIS_SECRET_NAMESPACE: ops},
    )
    try:
        eventually(
            lambda: (get(control_plane, namespace, "kopfpeering", ACCOUNT) or {}).get("status"),
            "the operator announces itself in the peering object",
            log=operator.log,
        )
        run_a_session_through_its_life(control_plane, namespace, operator, redis_client)
    finally:
        operator.stop()
