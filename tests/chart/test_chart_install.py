"""``helm install`` into the real API server: CRD, operator, least-privilege RBAC.

No kubelet runs, so the operator's pods never start; these tests look at what
the install leaves in the cluster, and ask the API server's own authorizer
(``kubectl auth can-i --as``) what the operator's ServiceAccount may do.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.controlplane import ControlPlane
from wasp import contract

pytestmark = pytest.mark.controlplane

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"
EXAMPLES = ROOT / "crds" / "examples"
REDIS_URL = "redis://redis.example:6379/0"

Helm = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def tenants(control_plane: ControlPlane, namespace: str) -> Iterator[str]:
    """A second namespace: the one a namespaced operator watches."""
    name = f"{namespace[:50]}-tenants"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def install(helm: Helm, plane: ControlPlane, release: str, namespace: str, *settings: str) -> str:
    """Install the chart; return what helm prints (its NOTES)."""
    args = ["install", release, str(CHART), "--namespace", namespace]
    for setting in settings:
        args += ["--set", setting]
    return helm(*args, "--kubeconfig", str(plane.kubeconfig)).stdout


def uninstall(helm: Helm, plane: ControlPlane, release: str, namespace: str) -> None:
    helm(
        "uninstall",
        release,
        "--namespace",
        namespace,
        "--wait",
        "--timeout",
        "120s",
        "--kubeconfig",
        str(plane.kubeconfig),
    )


def exists(plane: ControlPlane, kind: str, name: str, namespace: str | None = None) -> bool:
    scope = ["-n", namespace] if namespace else []
    result = plane.kubectl("get", kind, name, *scope, "-o", "name", check=False)
    if result.returncode != 0 and "NotFound" not in result.stderr:
        raise AssertionError(result.stderr)
    return result.returncode == 0


def can(plane: ControlPlane, account: str, verb: str, resource: str, *scope: str) -> bool:
    """Whether the API server lets ``account`` (namespace:name) do it."""
    result = plane.kubectl(
        "auth",
        "can-i",
        verb,
        resource,
        *scope,
        f"--as=system:serviceaccount:{account}",
        check=False,
    )
    answer = result.stdout.strip()
    assert answer in {"yes", "no"}, result.stderr
    return answer == "yes"


def test_cluster_wide_install_serves_sessions_and_uninstalls_cleanly(
    helm: Helm, control_plane: ControlPlane, namespace: str, tenants: str
) -> None:
    plane = control_plane
    notes = install(
        helm, plane, "wasp", namespace, f"redis.url={REDIS_URL}", "rbac.clusterWide=true"
    )
    assert "watches WhatsAppSessions in every namespace" in notes
    assert f"the chart created Secret wasp-redis (key url) in {namespace}" in notes

    plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{contract.CRD_NAME}", "--timeout=60s"
    )
    assert exists(plane, "crd", "clusterkopfpeerings.zalando.org")
    plane.kubectl("apply", "-n", tenants, "-f", str(EXAMPLES / "sandbox.yaml"))
    listing = plane.kubectl("get", contract.SHORT_NAME, "-n", tenants).stdout
    assert listing.split()[:5] == ["NAME", "TENANT", "PHASE", "ACCOUNT", "AGE"]
    assert "sandbox" in listing

    assert exists(plane, "deployment", "wasp-operator", namespace)
    assert exists(plane, "serviceaccount", "wasp-operator", namespace)
    assert exists(plane, "clusterrole", "wasp-operator")
    assert exists(plane, "clusterrolebinding", "wasp-operator")
    url = plane.kubectl(
        "get", "secret", contract.DEFAULT_REDIS_SECRET, "-n", namespace,
        "-o", "go-template={{.data.url | base64decode}}",
    ).stdout  # fmt: skip
    assert url == REDIS_URL

    account = f"{namespace}:wasp-operator"
    anywhere = ["-n", tenants]
    assert can(plane, account, "create", "pods", *anywhere)
    assert can(plane, account, "delete", "pods", *anywhere)
    assert can(
        plane, account, "patch", "whatsappsessions.wasp.dev", "--subresource=status", *anywhere
    )
    assert can(plane, account, "get", "secrets", *anywhere)
    assert can(plane, account, "create", "events", *anywhere)
    assert can(plane, account, "create", "networkpolicies.networking.k8s.io", *anywhere)
    assert can(plane, account, "update", "networkpolicies.networking.k8s.io", *anywhere)
    assert can(plane, account, "watch", "networkpolicies.networking.k8s.io", *anywhere)
    assert not can(plane, account, "delete", "networkpolicies.networking.k8s.io", *anywhere)
    # Least privilege: no Secret listing, no pod updates, no deleting tenants' resources.
    assert not can(plane, account, "list", "secrets", *anywhere)
    assert not can(plane, account, "update", "pods", *anywhere)
    assert not can(plane, account, "delete", "whatsappsessions.wasp.dev", *anywhere)
    assert not can(plane, account, "update", "whatsappsessions.wasp.dev", *anywhere)

    uninstall(helm, plane, "wasp", namespace)
    assert not exists(plane, "deployment", "wasp-operator", namespace)
    assert not exists(plane, "serviceaccount", "wasp-operator", namespace)
    assert not exists(plane, "clusterrole", "wasp-operator")
    assert not exists(plane, "clusterrolebinding", "wasp-operator")
    assert not exists(plane, "secret", contract.DEFAULT_REDIS_SECRET, namespace)
    # Helm never deletes a CRD: the tenants' sessions outlive the operator.
    assert exists(plane, "crd", contract.CRD_NAME)
    assert exists(plane, contract.SHORT_NAME, "sandbox", tenants)


def test_namespaced_install_grants_only_the_watched_namespace(
    helm: Helm, control_plane: ControlPlane, namespace: str, tenants: str
) -> None:
    plane = control_plane
    notes = install(
        helm,
        plane,
        "wasp-ns",
        namespace,
        f"watchNamespaces={{{tenants}}}",
        "operator.replicas=2",
        f"redis.url={REDIS_URL}",
    )
    assert f"2 replicas, peering) watches WhatsAppSessions in namespace {tenants} only" in notes
    operator = "wasp-ns-operator"
    discovery = f"{operator}-discovery-{namespace}"

    plane.kubectl(
        "wait", "--for=condition=Established", f"crd/{contract.CRD_NAME}", "--timeout=60s"
    )
    assert exists(plane, "deployment", operator, namespace)
    assert exists(plane, "role", operator, tenants)
    assert exists(plane, "rolebinding", operator, tenants)
    assert exists(plane, "clusterrole", discovery)
    assert exists(plane, "kopfpeering", contract.PEERING_NAME, tenants)
    # The admin Redis Secret stays in the release's namespace: never in a tenant's.
    assert exists(plane, "secret", contract.DEFAULT_REDIS_SECRET, namespace)
    assert not exists(plane, "secret", contract.DEFAULT_REDIS_SECRET, tenants)
    assert exists(plane, "networkpolicy", operator, namespace)
    assert not exists(plane, "clusterrole", operator)
    plane.kubectl("get", contract.SHORT_NAME, "-n", tenants)

    account = f"{namespace}:{operator}"
    watched = ["-n", tenants]
    assert can(plane, account, "create", "pods", *watched)
    assert can(
        plane, account, "patch", "whatsappsessions.wasp.dev", "--subresource=status", *watched
    )
    assert can(plane, account, "get", "secrets", *watched)
    assert can(plane, account, "patch", "kopfpeerings.zalando.org", *watched)
    assert can(plane, account, "create", "networkpolicies.networking.k8s.io", *watched)
    assert can(plane, account, "list", "namespaces")  # kopf's read-only discovery
    # In its own namespace, the admin Redis Secret only, by name.
    secret = f"secrets/{contract.DEFAULT_REDIS_SECRET}"
    assert can(plane, account, "get", secret, "-n", namespace)
    assert not can(plane, account, "get", "secrets/another", "-n", namespace)
    assert not can(plane, account, "get", secret, "-n", "default")
    # Nothing outside the watched namespace, and no Secret anywhere but by name there.
    assert not can(plane, account, "create", "pods", "-n", namespace)
    assert not can(plane, account, "create", "pods", "-n", "default")
    assert not can(plane, account, "get", "secrets", "-n", namespace)
    assert not can(plane, account, "get", "secrets", "--all-namespaces")
    assert not can(plane, account, "list", "secrets", *watched)
    assert not can(plane, account, "patch", "whatsappsessions.wasp.dev", "--all-namespaces")

    uninstall(helm, plane, "wasp-ns", namespace)
    assert not exists(plane, "deployment", operator, namespace)
    assert not exists(plane, "role", operator, tenants)
    assert not exists(plane, "rolebinding", operator, tenants)
    assert not exists(plane, "clusterrole", discovery)
    assert not exists(plane, "clusterrolebinding", discovery)
    assert not exists(plane, "kopfpeering", contract.PEERING_NAME, tenants)
    assert not exists(plane, "secret", contract.DEFAULT_REDIS_SECRET, namespace)


def trial_password(plane: ControlPlane, namespace: str) -> str:
    return plane.kubectl(
        "get", "secret", contract.DEFAULT_REDIS_SECRET, "-n", namespace,
        "-o", "go-template={{.data.password | base64decode}}",
    ).stdout  # fmt: skip


def test_trial_redis_password_is_generated_once_and_kept_across_upgrades(
    helm: Helm, control_plane: ControlPlane, namespace: str, tenants: str
) -> None:
    plane = control_plane
    settings = [f"watchNamespaces={{{tenants}}}", "redis.inChart.enabled=true"]
    install(helm, plane, "wasp-trial", namespace, *settings)
    password = trial_password(plane, namespace)
    assert len(password) == 32
    kubeconfig = ["--kubeconfig", str(plane.kubeconfig)]
    upgrade = ["upgrade", "wasp-trial", str(CHART), "--namespace", namespace, *kubeconfig]
    helm(*upgrade, "--reuse-values", "--set", "operator.verbose=true")
    assert trial_password(plane, namespace) == password
    given = "a-password-given-in-values-0123"
    helm(*upgrade, "--reuse-values", "--set", f"redis.inChart.password={given}")
    assert trial_password(plane, namespace) == given
    url = plane.kubectl(
        "get", "secret", contract.DEFAULT_REDIS_SECRET, "-n", namespace,
        "-o", "go-template={{.data.url | base64decode}}",
    ).stdout  # fmt: skip
    assert url.startswith(f"redis://default:{given}@wasp-trial-redis.{namespace}.svc:6379/")
    uninstall(helm, plane, "wasp-trial", namespace)
