"""What ``helm template`` renders: a locked-down operator, least-privilege RBAC, Redis.

The RBAC rules are compared with deploy/operator-rbac*.yaml, the operator
engineer's manifests, so the chart and those files cannot drift apart; the
operator's environment is read back with the operator's own config parser.
The NetworkPolicies are read as a CNI would: which pods they select, which
ports they open, to whom.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

import wasp
from wasp import contract
from wasp_operator.config import config_from_env
from wasp_operator.runner import PROBE_REQUEST_TIMEOUT

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
    """The operator's env given by value (not those from the pod's fields)."""
    return {
        item["name"]: item["value"]
        for item in operator_container(objects)["env"]
        if "value" in item
    }


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
    assert container["resources"]["limits"] == {"cpu": "1", "memory": "256Mi"}
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


def test_operator_readiness_asks_kopf_health_endpoint_with_the_api_check(render: Render) -> None:
    objects = render("operator.healthPort=9090")
    container = operator_container(objects)
    readiness = container["readinessProbe"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports[readiness["httpGet"]["port"]] == 9090
    # The endpoint kopf serves, fed by the operator's `kubernetes_api` probe handler.
    assert environment(objects)[contract.ENV_OPERATOR_LIVENESS] == (
        f"http://0.0.0.0:9090{readiness['httpGet']['path']}"
    )
    # It answers within its timeout: the handler's API call is bounded below it.
    assert sum(PROBE_REQUEST_TIMEOUT) < readiness["timeoutSeconds"]
    assert readiness["failureThreshold"] >= 1


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
    config = config_from_env(environment(render("watchNamespaces={a,b}", "redis.url=redis://r")))
    assert config.namespaces == ("a", "b")
    assert config.standalone is True
    assert (config.redis_secret, config.redis_secret_key) == (
        contract.DEFAULT_REDIS_SECRET,
        contract.DEFAULT_REDIS_SECRET_KEY,
    )
    assert config.redis_secret_namespace == "wasp-system"  # the release's, only
    assert config.liveness_endpoint == "http://0.0.0.0:8080/healthz"
    assert config.allowed_images == (config.session_image,)
    assert config.scraper_namespaces == ("wasp-system",)
    assert config.scraper_labels == (("wasp.dev/metrics-scraper", "true"),)

    everywhere = config_from_env(
        environment(render("operator.replicas=3", "rbac.clusterWide=true"))
    )
    assert everywhere.namespaces == ()
    assert everywhere.standalone is False


def test_operator_allows_the_listed_session_images_and_no_other(render: Render) -> None:
    objects = render(
        "sessionImage=registry.local/wasp:1",
        "allowedSessionImages={registry.local/wasp:1-debug,mirror.local/wasp:1}",
    )
    config = config_from_env(environment(objects))
    assert config.allowed_images == (
        "registry.local/wasp:1",
        "registry.local/wasp:1-debug",
        "mirror.local/wasp:1",
    )
    assert contract.ENV_OPERATOR_SESSION_IMAGES not in environment(render())


def test_the_scraper_of_session_metrics_is_configurable(render: Render) -> None:
    objects = render(
        "metricsScraper.namespaces={monitoring}",
        "metricsScraper.podLabels.app\\.kubernetes\\.io/name=prometheus",
    )
    config = config_from_env(environment(objects))
    assert config.scraper_namespaces == ("monitoring",)
    assert ("app.kubernetes.io/name", "prometheus") in config.scraper_labels


def pod_spec(objects: list[dict[str, Any]]) -> dict[str, Any]:
    spec: dict[str, Any] = one(objects, "Deployment")["spec"]["template"]["spec"]
    return spec


def test_session_pods_are_on_the_pod_network_unless_asked(render: Render) -> None:
    assert contract.ENV_OPERATOR_SESSION_HOST_PORTS not in environment(render())
    assert config_from_env(environment(render())).session_host_ports is None
    # The range alone changes nothing: it is used only with hostNetwork.
    ranged = render("sessionPods.healthPortRange=31000-31099")
    assert contract.ENV_OPERATOR_SESSION_HOST_PORTS not in environment(ranged)

    on_host = config_from_env(environment(render("sessionPods.hostNetwork=true")))
    assert on_host.session_host_ports == (20000, 29999)
    narrowed = render("sessionPods.hostNetwork=true", "sessionPods.healthPortRange=31000-31099")
    assert config_from_env(environment(narrowed)).session_host_ports == (31000, 31099)
    # Only the session pods move: the operator's own pod stays on the pod network.
    assert "hostNetwork" not in pod_spec(narrowed)


def test_the_operator_pod_joins_the_node_network_only_when_asked(render: Render) -> None:
    assert "hostNetwork" not in pod_spec(render())
    assert "dnsPolicy" not in pod_spec(render())
    spec = pod_spec(render("operator.hostNetwork=true"))
    assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    assert contract.ENV_OPERATOR_SESSION_HOST_PORTS not in environment(
        render("operator.hostNetwork=true")
    )
    # Probed where the kubelet shares its network: on loopback, never the node's address.
    for objects, host in ((render(), None), (render("operator.hostNetwork=true"), "127.0.0.1")):
        container = operator_container(objects)
        for probe in ("livenessProbe", "readinessProbe"):
            assert container[probe]["httpGet"].get("host") == host


def test_each_operator_replica_is_named_by_its_pod(render: Render) -> None:
    # kopf names peers by POD_ID; without it, it asks /etc/passwd for a user the image lacks.
    (entry,) = [e for e in operator_container(render())["env"] if e["name"] == "POD_ID"]
    assert entry["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_extra_env_is_appended_to_the_operators_own(render: Render) -> None:
    chart_env = operator_container(render())["env"]
    objects = render(
        "operator.extraEnv[0].name=KUBERNETES_SERVICE_HOST",
        "operator.extraEnv[0].value=127.0.0.1",
        "operator.extraEnv[1].name=NODE_NAME",
        "operator.extraEnv[1].valueFrom.fieldRef.fieldPath=spec.nodeName",
    )
    assert operator_container(objects)["env"] == [
        *chart_env,
        {"name": "KUBERNETES_SERVICE_HOST", "value": "127.0.0.1"},
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
    ]


def test_single_replica_runs_standalone_and_is_never_doubled(render: Render) -> None:
    objects = render()
    assert environment(objects)[contract.ENV_OPERATOR_STANDALONE] == "1"
    assert one(objects, "Deployment")["spec"]["strategy"]["type"] == "Recreate"
    assert not of_kind(objects, "ClusterKopfPeering")
    assert not of_kind(objects, "KopfPeering")


@pytest.mark.parametrize(
    ("settings", "kind", "namespace"),
    [
        pytest.param(["rbac.clusterWide=true"], "ClusterKopfPeering", None, id="cluster-wide"),
        pytest.param([], "KopfPeering", "tenants", id="one-namespace"),
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


def test_each_watched_namespace_gets_its_own_peering_object(render: Render) -> None:
    objects = render("operator.replicas=2", "watchNamespaces={a,b}")
    peerings = of_kind(objects, "KopfPeering")
    assert sorted(p["metadata"]["namespace"] for p in peerings) == ["a", "b"]
    assert {p["metadata"]["name"] for p in peerings} == {contract.PEERING_NAME}


# ---------------------------------------------------------------- RBAC
def named(objects: list[dict[str, Any]], kind: str, name: str) -> list[dict[str, Any]]:
    return [o for o in of_kind(objects, kind) if o["metadata"]["name"] == name]


def test_namespaced_by_default_a_role_per_watched_namespace_with_the_rules_of_deploy(
    render: Render,
) -> None:
    objects = render("watchNamespaces={tenant-a,tenant-b}")
    deploy = deploy_objects("operator-rbac-namespaced.yaml")
    roles = named(objects, "Role", "wasp-operator")
    assert sorted(role["metadata"]["namespace"] for role in roles) == ["tenant-a", "tenant-b"]
    for role in roles:
        assert rules(role) == rules(one(named(deploy, "Role", "wasp-operator"), "Role"))
    bindings = named(objects, "RoleBinding", "wasp-operator")
    assert sorted(b["metadata"]["namespace"] for b in bindings) == ["tenant-a", "tenant-b"]
    # In the release's namespace, the admin Redis Secret only, by name.
    (secret_role,) = named(objects, "Role", "wasp-operator-redis-secret")
    assert secret_role["metadata"]["namespace"] == "wasp-system"
    assert rules(secret_role) == rules(
        one(named(deploy, "Role", "wasp-operator-redis-secret"), "Role")
    )
    assert secret_role["rules"] == [
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [contract.DEFAULT_REDIS_SECRET],
            "verbs": ["get"],
        }
    ]
    # Cluster-wide, only kopf's read-only view of CRDs and namespaces.
    assert rules(one(objects, "ClusterRole")) == rules(one(deploy, "ClusterRole"))
    assert contract.ENV_OPERATOR_NAMESPACE in environment(objects)


def test_cluster_wide_only_when_asked_with_the_rules_of_deploy(render: Render) -> None:
    objects = render("rbac.clusterWide=true")
    assert contract.ENV_OPERATOR_NAMESPACE not in environment(objects)
    assert not of_kind(objects, "Role")
    assert not of_kind(objects, "RoleBinding")
    expected = one(deploy_objects("operator-rbac.yaml"), "ClusterRole")
    assert rules(one(objects, "ClusterRole")) == rules(expected)


def test_the_operator_may_manage_the_session_pods_network_policies(render: Render) -> None:
    wanted = {"apiGroups": ["networking.k8s.io"], "resources": ["networkpolicies"]}
    for role in [
        *named(render(), "Role", "wasp-operator"),
        one(render("rbac.clusterWide=true"), "ClusterRole"),
    ]:
        (rule,) = [r for r in role["rules"] if all(r[k] == v for k, v in wanted.items())]
        # watched: a resync reads none, an edited one is put back at once; never deleted
        assert sorted(rule["verbs"]) == ["create", "get", "list", "update", "watch"]


def test_the_existing_secret_is_the_one_the_operator_may_read(render: Render) -> None:
    objects = render("redis.existingSecret=shared-redis")
    (secret_role,) = named(objects, "Role", "wasp-operator-redis-secret")
    assert secret_role["rules"][0]["resourceNames"] == ["shared-redis"]


@pytest.mark.parametrize("settings", [["rbac.clusterWide=true"], []], ids=["cluster", "namespace"])
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


# ---------------------------------------------------------------- NetworkPolicies
def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"]["matchLabels"]
    return all(labels.get(key) == value for key, value in wanted.items())


def ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(port["protocol"], port["port"]) for rule in rules for port in rule["ports"]}


def test_the_operator_reaches_only_dns_the_api_server_and_redis(render: Render) -> None:
    objects = render("redis.url=rediss://u:p@redis.example:6380/0")
    operator_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    (policy,) = [p for p in of_kind(objects, "NetworkPolicy") if selects(p, operator_labels)]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert ports(policy["spec"]["egress"]) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 443),
        ("TCP", 6443),
        ("TCP", 6379),
        ("TCP", 6380),  # redis.url's
    }
    (ingress,) = policy["spec"]["ingress"]
    assert ports([ingress]) == {("TCP", 9090)}  # metrics only: probes come from the node
    (scraper,) = ingress["from"]
    assert scraper["podSelector"] == {"matchLabels": {"wasp.dev/metrics-scraper": "true"}}
    assert scraper["namespaceSelector"]["matchExpressions"][0]["values"] == ["wasp-system"]


def test_without_metrics_nothing_reaches_the_operator(render: Render) -> None:
    (policy,) = of_kind(render("operator.metricsPort=0"), "NetworkPolicy")
    assert "Ingress" in policy["spec"]["policyTypes"]
    assert not policy["spec"].get("ingress")


def test_the_api_server_may_be_narrowed_to_its_addresses(render: Render) -> None:
    (policy,) = of_kind(render("networkPolicy.apiServerCIDRs={10.0.0.1/32}"), "NetworkPolicy")
    (api,) = [r for r in policy["spec"]["egress"] if ("TCP", 6443) in ports([r])]
    assert api["to"] == [{"ipBlock": {"cidr": "10.0.0.1/32"}}]


def test_network_policies_can_be_left_to_the_platform(render: Render) -> None:
    assert not of_kind(
        render("networkPolicy.enabled=false", "redis.inChart.enabled=true"), "NetworkPolicy"
    )


# ---------------------------------------------------------------- Redis
def redis_secrets(objects: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The chart's admin Redis Secrets: namespace -> data."""
    return {
        secret["metadata"]["namespace"]: secret["stringData"]
        for secret in of_kind(objects, "Secret")
        if secret["metadata"]["name"] == contract.DEFAULT_REDIS_SECRET
    }


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param([], id="default"),
        pytest.param(["watchNamespaces={tenant-a,tenant-b}"], id="watched-namespaces"),
        pytest.param(["rbac.clusterWide=true"], id="cluster-wide"),
    ],
)
def test_the_admin_redis_secret_lives_in_the_release_namespace_only(
    render: Render, settings: list[str]
) -> None:
    url = "rediss://:s3cret@redis.example:6380/2"
    objects = render(f"redis.url={url}", *settings)
    assert redis_secrets(objects) == {"wasp-system": {contract.DEFAULT_REDIS_SECRET_KEY: url}}
    env = environment(objects)
    assert env[contract.ENV_OPERATOR_REDIS_SECRET] == (
        f"{contract.DEFAULT_REDIS_SECRET}:{contract.DEFAULT_REDIS_SECRET_KEY}"
    )
    assert env[contract.ENV_OPERATOR_REDIS_SECRET_NAMESPACE] == "wasp-system"


def test_existing_redis_secret_is_referenced_not_created(render: Render) -> None:
    objects = render("redis.existingSecret=shared-redis", "redis.existingSecretKey=uri")
    assert not of_kind(objects, "Secret")
    config = config_from_env(environment(objects))
    assert (config.redis_secret, config.redis_secret_key) == ("shared-redis", "uri")


def test_no_redis_settings_create_no_secret(render: Render) -> None:
    assert not of_kind(render(), "Secret")


def test_a_new_admin_url_restarts_the_operator(render: Render) -> None:
    def checksum(*settings: str) -> str:
        template = one(render(*settings), "Deployment")["spec"]["template"]
        return str(template["metadata"]["annotations"]["checksum/redis"])

    assert checksum("redis.url=redis://a") == checksum("redis.url=redis://a")
    assert checksum("redis.url=redis://a") != checksum("redis.url=redis://b")


def test_in_chart_redis_is_off_by_default_and_marked_for_trials(render: Render) -> None:
    assert not of_kind(render(), "Service")
    objects = render("redis.inChart.enabled=true")
    deployments = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}
    redis = deployments["wasp-redis"]
    assert "not-for-production" in "".join(redis["metadata"]["annotations"])
    assert redis["spec"]["replicas"] == 1
    container = redis["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_in_chart_redis_requires_a_password_and_runs_with_acls(render: Render) -> None:
    objects = render("redis.inChart.enabled=true")
    service = one(objects, "Service")["metadata"]["name"]
    data = redis_secrets(objects)["wasp-system"]
    password = data["password"]
    assert len(password) >= 32
    assert data["url"] == f"redis://default:{password}@{service}.wasp-system.svc:6379/0"
    digest = hashlib.sha256(password.encode()).hexdigest()
    assert data["users.acl"] == f"user default on #{digest} ~* &* +@all\n"
    assert password not in data["users.acl"]
    redis = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}["wasp-redis"]
    pod = redis["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = container["args"]
    acl_file = args[args.index("--aclfile") + 1]
    assert "--protected-mode" not in args
    (volume,) = [v for v in pod["volumes"] if "secret" in v]
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount["readOnly"] is True
    # The Redis pod gets the ACL file alone, never the admin URL or the password.
    assert volume["secret"]["items"] == [{"key": "users.acl", "path": Path(acl_file).name}]
    assert f"{mount['mountPath']}/{Path(acl_file).name}" == acl_file
    assert password not in json.dumps(redis)
    # Other renders pick another password: only an install's lookup keeps one (tests/chart/
    # test_chart_install.py); a given one is used as it is.
    assert (
        redis_secrets(render("redis.inChart.enabled=true"))["wasp-system"]["password"] != password
    )
    given = "trial-password-0123456789"
    chosen = redis_secrets(render("redis.inChart.enabled=true", f"redis.inChart.password={given}"))
    assert chosen["wasp-system"]["url"].startswith(f"redis://default:{given}@")


def test_a_given_trial_password_restarts_the_trial_redis_when_it_changes(render: Render) -> None:
    def checksum(*settings: str) -> str:
        deployments = {d["metadata"]["name"]: d for d in of_kind(render(*settings), "Deployment")}
        annotations = deployments["wasp-redis"]["spec"]["template"]["metadata"]["annotations"]
        return str(annotations["checksum/password"])

    first = ("redis.inChart.enabled=true", "redis.inChart.password=first-password-0123")
    second = ("redis.inChart.enabled=true", "redis.inChart.password=second-password-0123")
    assert checksum(*first) == checksum(*first)
    assert checksum(*first) != checksum(*second)


def test_the_trial_redis_is_reached_on_its_port_only_and_reaches_nothing(render: Render) -> None:
    objects = render("redis.inChart.enabled=true")
    redis = {d["metadata"]["name"]: d for d in of_kind(objects, "Deployment")}["wasp-redis"]
    labels = redis["spec"]["template"]["metadata"]["labels"]
    (policy,) = [p for p in of_kind(objects, "NetworkPolicy") if selects(p, labels)]
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert not policy["spec"].get("egress")
    assert ports(policy["spec"]["ingress"]) == {("TCP", 6379)}
