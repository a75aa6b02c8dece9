"""What ``helm template`` renders: a locked-down operator, least-privilege RBAC, Redis.

The RBAC rules are compared with deploy/operator-rbac*.yaml, the operator
engineer's manifests, so the chart and those files cannot drift apart; the
operator's environment is read back with the operator's own config parser.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import wasp
from wasp import contract
from wasp_operator.config import config_from_env

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CHART = ROOT / "charts" / "wasp"

Helm = Callable[..., subprocess.CompletedProcess[str]]
Render = Callable[..., list[dict[str, Any]]]


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = of_kind(objects, kind)
    assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def operator_container(objects: list[dict[str, Any]]) -> dict[str, Any]:
    deployment = one(objects, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in operator_container(objects)["env"]}


def deploy_objects(name: str) -> list[dict[str, Any]]:
    text = (DEPLOY / name).read_text(encoding="utf-8")
    return [document for document in yaml.safe_load_all(text) if document]


def rules(role: dict[str, Any]) -> list[dict[str, Any]]:
    """A role's rules, comparable whatever the order of lists within a rule."""
    normal = [{key: sorted(value) for key, value in rule.items()} for rule in role["rules"]]
    return sorted(normal, key=repr)


# ---------------------------------------------------------------- the operator
def test_operator_runs_locked_down(render: Render) -> None:
    objects = render()
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    container = operator_container(objects)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi"}
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    assert container["command"] == [contract.OPERATOR_NAME]


def test_operator_is_probed_at_kopf_liveness_endpoint(render: Render) -> None:
    objects = render("operator.healthPort=9090")
    container = operator_container(objects)
    probe = container["livenessProbe"]["httpGet"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports[probe["port"]] == 9090
    assert environment(objects)[contract.ENV_OPERATOR_LIVENESS] == (
        f"http://0.0.0.0:9090{probe['path']}"
    )


def test_operator_serves_prometheus_metrics_unless_turned_off(render: Render, helm: Helm) -> None:
    objects = render()
    ports = {port["name"]: port["containerPort"] for port in operator_container(objects)["ports"]}
    assert ports["metrics"] == 9090
    assert config_from_env(environment(objects)).metrics_port == 9090

    privileged = helm(
        "template", "wasp", str(CHART), "--set", "operator.metricsPort=80", check=False
    )
    assert privileged.returncode != 0
    assert "operator.metricsPort must be 0 (off) or 1024-65535" in privileged.stderr

    off = render("operator.metricsPort=0")
    assert "metrics" not in {port["name"] for port in operator_container(off)["ports"]}
    assert config_from_env(environment(off)).metrics_port is None


def test_operator_image_defaults_to_package_version_and_serves_sessions_too(
    render: Render,
) -> None:
    objects = render()
    image = operator_container(objects)["image"]
    assert image == f"ghcr.io/wasp-dev/wasp:{wasp.__version__}"
    assert environment(objects)[contract.ENV_OPERATOR_SESSION_IMAGE] == image

    pinned = render(f"image.digest=sha256:{'a' * 64}", "sessionImage=registry.local/wasp:1")
    assert operator_container(pinned)["image"] == f"ghcr.io/wasp-dev/wasp@sha256:{'a' * 64}"
    assert environment(pinned)[contract.ENV_OPERATOR_SESSION_IMAGE] == "registry.local/wasp:1"


def test_operator_understands_the_environment_the_chart_gives_it(render: Render) -> None:
    config = config_from_env(environment(render("watchNamespace=tenants", "redis.url=redis://r")))
    assert config.namespace == "tenants"
    assert config.standalone is True
    assert (config.redis_secret, config.redis_secret_key) == (
        contract.DEFAULT_REDIS_SECRET,
        contract.DEFAULT_REDIS_SECRET_KEY,
    )
    assert config.liveness_endpoint == "http://0.0.0.0:8080/healthz"

    everywhere = config_from_env(environment(render("operator.replicas=3")))
    assert everywhere.namespace is None
    assert everywhere.standalone is False


def test_single_replica_runs_standalone_and_is_never_doubled(render: Render) -> None:
    objects = render()
    assert environment(objects)[contract.ENV_OPERATOR_STANDALONE] == "1"
    assert one(objects, "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert not of_kind(objects, "ClusterKopfPeering")
    assert not of_kind(objects, "KopfPeering")


@pytest.mark.parametrize(
    ("settings", "kind", "namespace"),
    [
        pytest.param([], "ClusterKopfPeering", None, id="cluster-wide"),
        pytest.param(["watchNamespace=tenants"], "KopfPeering", "tenants", id="one-namespace"),
    ],
)
def test_several_replicas_peer_through_the_operator_peering_object(
    render: Render, settings: list[str], kind: str, namespace: str | None
) -> None:
    objects = render("operator.replicas=2", *settings)
    assert one(objects, "Deployment")["spec"]["replicas"] == 2
    assert environment(objects)[contract.ENV_OPERATOR_STANDALONE] == "0"
    peering = one(objects, kind)
    assert peering["metadata"]["name"] == contract.PEERING_NAME
    assert peering["metadata"].get("namespace") == namespace
    assert one(objects, "PodDisruptionBudget")["spec"]["minAvailable"] == 1


# ---------------------------------------------------------------- RBAC
def test_cluster_wide_by_default_with_the_rules_of_deploy(render: Render) -> None:
    objects = render()
    assert contract.ENV_OPERATOR_NAMESPACE not in environment(objects)
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    expected = one(deploy_objects("operator-rbac.yaml"), "ClusterRole")
    assert rules(one(objects, "ClusterRole")) == rules(expected)


def test_watch_namespace_gets_a_role_with_the_rules_of_deploy(render: Render) -> None:
    objects = render("watchNamespace=tenants")
    deploy = deploy_objects("operator-rbac-namespaced.yaml")
    role = one(objects, "Role")
    assert role["metadata"]["namespace"] == "tenants"
    assert rules(role) == rules(one(deploy, "Role"))
    # Cluster-wide, only kopf's read-only view of CRDs and namespaces.
    assert rules(one(objects, "ClusterRole")) == rules(one(deploy, "ClusterRole"))
    assert one(objects, "RoleBinding")["metadata"]["namespace"] == "tenants"


@pytest.mark.parametrize("settings", [[], ["watchNamespace=tenants"]], ids=["cluster", "namespace"])
def test_rbac_is_bound_to_the_operator_service_account(render: Render, settings: list[str]) -> None:
    objects = render("serviceAccount.name=wasp-robot", *settings, namespace="ops")
    account = one(objects, "ServiceAccount")
    assert (account["metadata"]["name"], account["metadata"]["namespace"]) == ("wasp-robot", "ops")
    pod = one(objects, "Deployment")["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "wasp-robot"
    bindings = of_kind(objects, "ClusterRoleBinding") + of_kind(objects, "RoleBinding")
    assert bindings
    for binding in bindings:
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "wasp-robot", "namespace": "ops"}
        ]


# ---------------------------------------------------------------- Redis
def redis_secrets(objects: list[dict[str, Any]]) -> dict[str, str]:
    """The chart's default Redis Secrets: namespace -> URL."""
    return {
        secret["metadata"]["namespace"]: secret["stringData"][contract.DEFAULT_REDIS_SECRET_KEY]
        for secret in of_kind(objects, "Secret")
        if secret["metadata"]["name"] == contract.DEFAULT_REDIS_SECRET
    }


@pytest.mark.parametrize(
    ("settings", "namespaces"),
    [
        pytest.param([], ["wasp-system"], id="release-namespace"),
        pytest.param(["watchNamespace=tenants"], ["tenants"], id="watched-namespace"),
        pytest.param(["redis.secretNamespaces={a,b}"], ["a", "b"], id="listed-namespaces"),
    ],
)
def test_default_redis_secret_is_created_from_the_url(
    render: Render, settings: list[str], namespaces: list[str]
) -> None:
    url = "rediss://:s3cret@redis.example:6380/2"
    objects = render(f"redis.url={url}", *settings)
    assert redis_secrets(objects) == dict.fromkeys(namespaces, url)
    assert environment(objects)[contract.ENV_OPERATOR_REDIS_SECRET] == (
        f"{contract.DEFAULT_REDIS_SECRET}:{contract.DEFAULT_REDIS_SECRET_KEY}"
    )


def test_existing_redis_secret_is_referenced_not_created(render: Render) -> None:
    objects = render("redis.existingSecret=shared-redis", "redis.existingSecretKey=uri")
    assert not of_kind(objects, "Secret")
    config = config_from_env(environment(objects))
    assert (config.redis_secret, config.redis_secret_key) == ("shared-redis", "uri")


def test_no_redis_settings_create_no_secret(render: Render) -> None:
    assert not of_kind(render(), "Secret")


def test_in_chart_redis_is_off_by_default_and_marked_for_trials(render: Render) -> None:
    assert not of_kind(render(), "Service")
    objects = render("redis.inChart.enabled=true")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    redis = deployments["wasp-redis"]
    assert "not-for-production" in "".join(redis["metadata"]["annotations"])
    assert redis["spec"]["replicas"] == 1
    service = one(objects, "Service")
    assert redis_secrets(objects) == {
        "wasp-system": f"redis://{service['metadata']['name']}.wasp-system.svc:6379/0"
    }
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
