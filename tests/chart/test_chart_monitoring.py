"""Monitoring with the Prometheus Operator and Grafana: the chart's PodMonitors and dashboard.

The PodMonitors must select exactly the pods that exist: the session pods
as ``pods.build_pod`` makes them and the operator's pods as the chart's
Deployment makes them, on ports those pods really name. The dashboard's
queries must name only series that wasp's code exports (read from the
metric objects themselves), so a renamed metric fails here, not on a
platform team's empty panel. On the real API server, with the Prometheus
Operator's own CRDs (from its Go module), the objects must be accepted.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import wasp_operator.metrics
import wasp_session.delivery.metrics
import wasp_session.metrics
from harness.controlplane import ControlPlane
from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.pods import build_pod
from wasp_operator.sessions import Session, session_from_body
from wasp_session.delivery.metrics import MESSAGES

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"
DASHBOARD = json.loads((CHART / "dashboards" / "wasp.json").read_text(encoding="utf-8"))
PODMONITOR_API = "monitoring.coreos.com/v1/PodMonitor"
# The Prometheus Operator whose CRDs the API server validates against (a Go module).
PROMETHEUS_OPERATOR = "github.com/prometheus-operator/prometheus-operator@v0.79.2"
CONFIG = OperatorConfig(session_image="registry.example/wasp:1.2.3")
# Labels Prometheus itself puts on series: the PodMonitor's target labels
# (the session pods' "tenant" among them) and a histogram bucket's bound.
TARGET_LABELS = frozenset({"namespace", "pod", "container", "job", "instance", "endpoint"})
SERIES_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "stateset": ("",),
    "info": ("_info",),
    "summary": ("", "_count", "_sum", "_created"),
}

Helm = Callable[..., subprocess.CompletedProcess[str]]


def render(helm: Helm, *settings: str, monitors_served: bool = True) -> list[dict[str, Any]]:
    """The chart's objects as ``helm template`` renders them (for a cluster serving PodMonitors)."""
    args = ["template", "wasp", str(CHART), "--namespace", "wasp-system"]
    if monitors_served:
        args += ["--api-versions", PODMONITOR_API]
    for setting in settings:
        args += ["--set", setting]
    return [document for document in yaml.safe_load_all(helm(*args).stdout) if document]


def monitors(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The rendered PodMonitors, by their component label (operator, session)."""
    return {
        each["metadata"]["labels"][contract.LABEL_COMPONENT]: each
        for each in objects
        if each["kind"] == "PodMonitor"
    }


def session(namespace: str = "tenants", tenant: str = "acme-tenant") -> Session:
    body = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": contract.KIND,
        "metadata": {"name": "acme", "namespace": namespace, "uid": "u-1", "generation": 1},
        "spec": {"tenantId": tenant, "delivery": {"defaultRegion": "DE"}},
    }
    return session_from_body(body)


def operator_pod_template(objects: list[dict[str, Any]]) -> dict[str, Any]:
    (deployment,) = [
        each
        for each in objects
        if each["kind"] == "Deployment"
        and each["metadata"]["labels"][contract.LABEL_COMPONENT] == "operator"
    ]
    template: dict[str, Any] = deployment["spec"]["template"]
    return template


def selects(monitor: dict[str, Any], namespace: str, pod: dict[str, Any]) -> bool:
    """Whether ``monitor`` scrapes ``pod`` (in ``namespace``): namespace, labels and port."""
    spec = monitor["spec"]
    where = spec["namespaceSelector"]
    if not where.get("any") and namespace not in where.get("matchNames", []):
        return False
    labels = pod["metadata"].get("labels", {})
    if any(labels.get(key) != value for key, value in spec["selector"]["matchLabels"].items()):
        return False
    ports = {port.get("name") for each in pod["spec"]["containers"] for port in each["ports"]}
    return all(endpoint["port"] in ports for endpoint in spec["podMetricsEndpoints"])


def test_monitoring_objects_are_off_by_default(helm: Helm) -> None:
    objects = render(helm)
    assert not monitors(objects)
    assert not [each for each in objects if each["kind"] == "ConfigMap"]


def test_pod_monitors_without_the_prometheus_operator_are_refused_saying_why(helm: Helm) -> None:
    args = ["template", "wasp", str(CHART), "--set", "metrics.podMonitor.enabled=true"]
    result = helm(*args, check=False)
    assert result.returncode != 0
    assert "Prometheus Operator" in result.stderr
    assert f"--api-versions {PODMONITOR_API}" in result.stderr


def test_the_session_monitor_scrapes_the_pods_the_operator_makes_and_names_their_tenant(
    helm: Helm,
) -> None:
    objects = render(helm, "metrics.podMonitor.enabled=true", "watchNamespaces={tenants,shop}")
    sessions = monitors(objects)["session"]
    for namespace in ("tenants", "shop"):
        pod = build_pod(session(namespace), CONFIG)
        assert selects(sessions, namespace, pod)
    on_node = OperatorConfig(
        session_image="registry.example/wasp:1.2.3", session_host_ports=(20000, 20010)
    )
    assert selects(sessions, "tenants", build_pod(session(), on_node))
    assert not selects(sessions, "unwatched", build_pod(session("unwatched"), CONFIG))
    assert not selects(sessions, "tenants", operator_pod_template(objects))  # labels differ

    (endpoint,) = sessions["spec"]["podMetricsEndpoints"]
    assert endpoint["path"] == "/metrics"
    pod_label = re.sub(r"[^a-zA-Z0-9_]", "_", contract.LABEL_TENANT)
    (tenant_rule,) = endpoint["relabelings"]
    assert tenant_rule["sourceLabels"] == [f"__meta_kubernetes_pod_label_{pod_label}"]
    assert tenant_rule["targetLabel"] == "tenant"
    pod = build_pod(session(tenant="acme-tenant"), CONFIG)
    assert pod["metadata"]["labels"][contract.LABEL_TENANT] == "acme-tenant"
    # The OTP series name the tenant themselves, with the same label the scrape adds.
    assert "tenant" in MESSAGES._labelnames  # noqa: SLF001 - what the code really exports
    assert endpoint["metricRelabelings"] == [{"action": "labeldrop", "regex": "exported_tenant"}]


def test_a_cluster_wide_operators_sessions_are_scraped_in_every_namespace(helm: Helm) -> None:
    objects = render(helm, "metrics.podMonitor.enabled=true", "rbac.clusterWide=true")
    sessions = monitors(objects)["session"]
    assert sessions["spec"]["namespaceSelector"] == {"any": True}
    assert selects(sessions, "anywhere", build_pod(session("anywhere"), CONFIG))


def test_the_operator_monitor_scrapes_the_operator_pods_only_while_they_serve_metrics(
    helm: Helm,
) -> None:
    objects = render(helm, "metrics.podMonitor.enabled=true")
    operator = monitors(objects)["operator"]
    assert selects(operator, "wasp-system", operator_pod_template(objects))
    assert not selects(operator, "wasp-system", build_pod(session("wasp-system"), CONFIG))
    assert not selects(operator, "tenants", operator_pod_template(objects))

    unserved = render(helm, "metrics.podMonitor.enabled=true", "operator.metricsPort=0")
    assert set(monitors(unserved)) == {"session"}


def test_monitors_take_the_namespace_labels_and_timing_the_prometheus_expects(
    helm: Helm,
) -> None:
    objects = render(
        helm,
        "metrics.podMonitor.enabled=true",
        "metrics.podMonitor.namespace=monitoring",
        "metrics.podMonitor.labels.release=kube-prometheus-stack",
        "metrics.podMonitor.interval=15s",
        "metrics.podMonitor.scrapeTimeout=10s",
    )
    for monitor in monitors(objects).values():
        assert monitor["metadata"]["namespace"] == "monitoring"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "10s")
    assert monitors(objects)["operator"]["spec"]["namespaceSelector"] == {
        "matchNames": ["wasp-system"]
    }

    defaults = render(helm, "metrics.podMonitor.enabled=true", "metrics.podMonitor.interval=")
    for monitor in monitors(defaults).values():
        assert monitor["metadata"]["namespace"] == "wasp-system"
        (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
        assert "interval" not in endpoint
        assert "scrapeTimeout" not in endpoint


def test_the_dashboard_is_a_configmap_the_grafana_sidecar_loads(helm: Helm) -> None:
    objects = render(
        helm,
        "metrics.grafanaDashboard.enabled=true",
        "metrics.grafanaDashboard.namespace=grafana",
        "metrics.grafanaDashboard.annotations.grafana_folder=wasp",
        monitors_served=False,  # a dashboard needs no Prometheus Operator
    )
    (config_map,) = [each for each in objects if each["kind"] == "ConfigMap"]
    assert config_map["metadata"]["namespace"] == "grafana"
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "wasp"}
    assert json.loads(config_map["data"]["wasp.json"]) == DASHBOARD


def exported_series(*modules: ModuleType, target_labels: frozenset[str]) -> dict[str, set[str]]:
    """Every series name the modules' metric objects expose, with the labels each may carry."""
    series: dict[str, set[str]] = {}
    for module in modules:
        for metric in vars(module).values():
            if not isinstance(metric, MetricWrapperBase):
                continue
            labels = set(metric._labelnames) | target_labels  # noqa: SLF001 - the real labels
            for family in metric.describe():
                extra = {"le"} if family.type == "histogram" else set()
                extra |= {family.name} if family.type == "stateset" else set()
                for suffix in SERIES_SUFFIXES[family.type]:
                    series[family.name + suffix] = labels | extra
    return series


EXPORTED = {
    **exported_series(wasp_operator.metrics, target_labels=TARGET_LABELS),
    **exported_series(
        wasp_session.metrics,
        wasp_session.delivery.metrics,
        target_labels=TARGET_LABELS | {"tenant"},  # the session PodMonitor's target label
    ),
}
# PromQL words that look like names: functions, aggregations, keywords, Grafana variables.
PROMQL_WORDS = frozenset(
    {"sum", "max", "min", "count", "by", "without", "rate", "increase", "histogram_quantile"}
    | {"and", "or", "unless", "on", "ignoring", "offset"}
)
NAME = re.compile(r"(?<![\w$\"])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w\"])")
MATCHERS = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)\{([^}]*)\}")
LABEL_VALUES = re.compile(r"^label_values\((.+),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")


def queries() -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and query variable of the dashboard."""
    for panel in DASHBOARD["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in DASHBOARD["templating"]["list"]:
        if variable["type"] == "query":  # Grafana's label_values(series, label): as PromQL
            query = LABEL_VALUES.sub(r"count by (\2) (\1)", variable["query"]["query"])
            yield f"${variable['name']}", query


def names_in(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (not its labels, functions or strings)."""
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    without_ranges = re.sub(r"\[[^\]]*\]", "", without_strings)
    without_labels = re.sub(r"\{[^}]*\}", "", without_ranges)
    without_groupings = GROUPING.sub("", without_labels)
    found = {match.group(1) for match in NAME.finditer(without_groupings)}
    return {name for name in found if name not in PROMQL_WORDS and not name.startswith("$")}


def problems_in(where: str, expr: str) -> list[str]:
    """What in one query names a series, or a label of one, that wasp does not export."""
    names = names_in(expr)
    problems = [f"{where}: reads no metric: {expr}"] if not names else []
    problems += [f"{where}: {name} is not exported" for name in sorted(names - EXPORTED.keys())]
    known = set().union(*(EXPORTED.get(name, set()) for name in names))
    problems += [
        f"{where}: {metric} has no label {label}"
        for metric, matchers in MATCHERS.findall(expr)
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*[=!]~?", matchers)
        if metric in EXPORTED and label not in EXPORTED[metric]
    ]
    problems += [
        f"{where}: no series of {sorted(names)} has label {label}"
        for grouping in GROUPING.findall(expr)
        for label in filter(None, (part.strip() for part in grouping.split(",")))
        if label not in known
    ]
    return problems


def test_every_dashboard_query_reads_only_series_wasp_exports_by_their_labels() -> None:
    problems = [problem for where, expr in queries() for problem in problems_in(where, expr)]
    assert not problems, "\n".join(problems)


def test_the_dashboard_shows_what_a_platform_team_watches() -> None:
    read = set().union(*(names_in(expr) for _, expr in queries()))
    assert {
        "wasp_operator_sessions",  # sessions by phase
        "wasp_otp_messages_total",  # OTPs by state and failure reason
        "wasp_otp_enqueue_to_sent_seconds_bucket",  # send latency
        "wasp_otp_queue_depth",
        "wasp_session_reconnects_total",
    } <= read
    variables = {each["name"] for each in DASHBOARD["templating"]["list"]}
    assert {"datasource", "tenant"} <= variables
    panel_ids = [panel["id"] for panel in DASHBOARD["panels"]]
    assert len(panel_ids) == len(set(panel_ids))


def test_the_drift_check_catches_a_renamed_metric_or_label() -> None:
    assert (
        problems_in("ok", 'sum by (reason) (rate(wasp_otp_messages_total{state="failed"}[5m]))')
        == []
    )
    renamed = problems_in("metric", 'sum by (tenant) (rate(wasp_otp_sent_total{tenant="a"}[5m]))')
    assert "metric: wasp_otp_sent_total is not exported" in renamed
    relabelled = problems_in("label", 'sum by (status) (wasp_otp_messages_total{kind="otp"})')
    assert relabelled == [
        "label: wasp_otp_messages_total has no label kind",
        "label: no series of ['wasp_otp_messages_total'] has label status",
    ]
    operator_only = problems_in("tenant", 'wasp_operator_sessions{tenant="a"}')
    assert operator_only == ["tenant: wasp_operator_sessions has no label tenant"]


# On the real API server, with the Prometheus Operator's CRDs.


@pytest.fixture(scope="module")
def podmonitor_crd() -> Path:
    """The PodMonitor CRD of the pinned Prometheus Operator, from its Go module."""
    with tempfile.TemporaryDirectory() as outside_any_module:
        result = subprocess.run(
            ["go", "mod", "download", "-json", PROMETHEUS_OPERATOR],
            capture_output=True,
            text=True,
            cwd=outside_any_module,
            timeout=300,
            check=False,
        )
    assert result.returncode == 0, result.stdout + result.stderr
    module = Path(json.loads(result.stdout)["Dir"])
    return module / "example" / "prometheus-operator-crd" / "monitoring.coreos.com_podmonitors.yaml"


@pytest.mark.controlplane
def test_the_api_server_accepts_the_monitors_and_the_dashboard(
    helm: Helm, control_plane: ControlPlane, namespace: str, podmonitor_crd: Path
) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(podmonitor_crd))
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/podmonitors.monitoring.coreos.com"
    )
    tenants = f"{namespace[:50]}-tenants"
    control_plane.kubectl("create", "namespace", tenants)
    release = "wasp-mon"
    try:
        helm(
            "install",
            release,
            str(CHART),
            "--namespace",
            namespace,
            "--set",
            "redis.url=redis://redis.example:6379/0",
            "--set",
            f"watchNamespaces={{{tenants}}}",
            "--set",
            "metrics.podMonitor.enabled=true",
            "--set",
            "metrics.podMonitor.labels.release=kube-prometheus-stack",
            "--set",
            "metrics.grafanaDashboard.enabled=true",
            "--kubeconfig",
            str(control_plane.kubeconfig),
        )
        stored = control_plane.kubectl("get", "podmonitors", "-n", namespace, "-o", "json")
        by_component = {
            each["metadata"]["labels"][contract.LABEL_COMPONENT]: each
            for each in json.loads(stored.stdout)["items"]
        }
        assert set(by_component) == {"operator", "session"}
        sessions = by_component["session"]
        assert sessions["spec"]["namespaceSelector"] == {"matchNames": [tenants]}
        (endpoint,) = sessions["spec"]["podMetricsEndpoints"]
        assert endpoint["relabelings"][0]["targetLabel"] == "tenant"
        dashboard = control_plane.kubectl(
            "get", "configmap", f"{release}-dashboard", "-n", namespace, "-o", "json"
        )
        assert json.loads(json.loads(dashboard.stdout)["data"]["wasp.json"]) == DASHBOARD
        # The CRD's schema is enforced: a PodMonitor the Operator could not use is refused.
        broken = {**sessions, "metadata": {"name": "broken", "namespace": namespace}}
        broken["spec"] = {**sessions["spec"], "podMetricsEndpoints": [{"scheme": "gopher"}]}
        refused = control_plane.kubectl("create", "-f", "-", stdin=json.dumps(broken), check=False)
        assert refused.returncode != 0
        assert "scheme" in refused.stderr
    finally:
        helm(
            "uninstall",
            release,
            "--namespace",
            namespace,
            "--wait",
            "--kubeconfig",
            str(control_plane.kubeconfig),
            check=False,
        )
        control_plane.kubectl("delete", "namespace", tenants, "--wait=false", check=False)
