"""An outside scanner agrees: ``checkov --framework kubernetes`` on what wasp deploys.

Scanned: the chart rendered in the variants that change what it deploys, and
session pods as the operator builds them (``pods.build_pod``, from the
environment the chart gives the operator) with their NetworkPolicies. Any
finding fails the test unless its check is in ``SKIPS``, which
docs/security.md lists with the reason each was decided on purpose. Secrets
in env, pods without a NetworkPolicy and missing requests or limits are never
skipped, and canaries (a chart without NetworkPolicies, the old session pod
with secrets in env and no resources) prove checkov still reports them.

checkov comes from ``make checkov`` (pinned with hashes, its own virtualenv,
never in uv.lock); it runs offline (``--skip-download``).
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from wasp import contract
from wasp_operator.config import config_from_env
from wasp_operator.network_policy import build_network_policy, redis_port_of
from wasp_operator.pods import build_pod
from wasp_operator.sessions import Session, session_from_body

pytestmark = pytest.mark.isolation

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "wasp"
SECURITY_DOC = ROOT / "docs" / "security.md"
Helm = Callable[..., subprocess.CompletedProcess[str]]

# Checks decided on purpose (docs/security.md says why), each only where it applies.
WORKLOAD = r"^(Deployment|Pod)\."
SKIPS = {
    "CKV_K8S_15": WORKLOAD,  # imagePullPolicy IfNotPresent: release tags are immutable
    "CKV_K8S_43": WORKLOAD,  # images by tag by default; image.digest pins them
    "CKV_K8S_38": r"^Deployment\.[^.]+\.[a-z0-9-]+-operator$",  # the operator needs its token
}
# Never skipped: secrets in env, pods without a NetworkPolicy, requests and limits.
NEVER_SKIPPED = {
    "CKV_K8S_35": "secrets as environment variables",
    "CKV2_K8S_6": "pods without a NetworkPolicy",
    "CKV_K8S_10": "CPU requests",
    "CKV_K8S_11": "CPU limits",
    "CKV_K8S_12": "memory requests",
    "CKV_K8S_13": "memory limits",
}

# Chart variants: each with its own release and namespace, because checkov links
# a NetworkPolicy to the pods it selects across every file it scans.
CHART_VARIANTS = {
    "default": [],
    "trial-redis": ["redis.inChart.enabled=true"],
    "cluster-wide": [
        "rbac.clusterWide=true",
        "operator.replicas=2",
        "redis.url=rediss://wasp:pw@redis.example:6380/0",
    ],
    "several-namespaces": [
        "watchNamespaces={tenant-a,tenant-b}",
        "operator.replicas=2",
        "redis.existingSecret=shared-redis",
        "allowedSessionImages={registry.example/wasp:debug}",
        "metricsScraper.namespaces={monitoring}",
    ],
}
CANARY_CHART = ["networkPolicy.enabled=false"]
# The session pods the operator builds: the examples' two ways of pairing.
SESSIONS: dict[str, dict[str, Any]] = {
    "acme": {"pairing": {"method": "QR"}},
    "sandbox": {
        "transport": "simulator",
        "pairing": {"method": "PairingCode", "phoneNumber": "+4915112345678"},
    },
}
ADMIN_REDIS_URL = "redis://default:pw@wasp-redis.wasp-system.svc:6379/0"


@pytest.fixture(scope="module")
def checkov() -> str:
    """The checkov program: ``make checkov`` installs it once (cached) and prints where."""
    result = subprocess.run(
        ["make", "--no-print-directory", "-s", "checkov"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"make checkov failed:\n{result.stderr}"
    return result.stdout.strip().splitlines()[-1]


def render(helm: Helm, release: str, settings: list[str]) -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", f"ns-{release}"]
    for setting in settings:
        args += ["--set", setting]
    return [doc for doc in yaml.safe_load_all(helm(*args).stdout) if doc]


def session(name: str, spec: dict[str, Any]) -> Session:
    body = {"metadata": {"name": name, "namespace": f"tenant-{name}", "uid": f"uid-{name}"}}
    return session_from_body({**body, "spec": spec})


def operator_environment(objects: list[dict[str, Any]]) -> dict[str, str]:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    # Only those given by value: POD_ID comes from the pod's own name.
    return {item["name"]: item["value"] for item in container["env"] if "value" in item}


def write(directory: Path, name: str, objects: list[dict[str, Any]]) -> None:
    (directory / f"{name}.yaml").write_text(yaml.safe_dump_all(objects), encoding="utf-8")


@pytest.fixture(scope="module")
def manifests(helm: Helm, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every variant in one folder (one checkov run), canaries in files of their own."""
    directory = tmp_path_factory.mktemp("checkov")
    for variant, settings in CHART_VARIANTS.items():
        write(directory, f"chart-{variant}", render(helm, f"wasp-{variant}", settings))
    write(directory, "canary-chart", render(helm, "wasp-canary", CANARY_CHART))
    config = config_from_env(operator_environment(render(helm, "wasp", [])))
    port = redis_port_of(ADMIN_REDIS_URL)
    for name, spec in SESSIONS.items():
        built = session(name, spec)
        pod, policy = build_pod(built, config), build_network_policy(built, config, port)
        write(directory, f"session-{name}", [pod, policy])
    # The session pod before tenant isolation: a secret in env, no resources, no policy.
    old = build_pod(session("canary", {}), config)
    (container,) = old["spec"]["containers"]
    container["env"].append(
        {
            "name": contract.ENV_REDIS_URL,
            "valueFrom": {"secretKeyRef": {"name": contract.DEFAULT_REDIS_SECRET, "key": "url"}},
        }
    )
    del container["resources"]
    write(directory, "canary-session", [old])
    return directory


@pytest.fixture(scope="module")
def report(checkov: str, manifests: Path) -> dict[str, Any]:
    """What checkov found, passed and failed, in every file (offline: no download)."""
    result = subprocess.run(
        [
            *(checkov, "--framework", "kubernetes", "--directory", str(manifests)),
            *("--output", "json", "--skip-download", "--compact"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode in {0, 1}, f"checkov failed to run:\n{result.stderr}"
    found: dict[str, Any] = json.loads(result.stdout)
    assert found["check_type"] == "kubernetes"
    assert not found["results"]["parsing_errors"]
    results: dict[str, Any] = found["results"]
    return results


def findings(results: dict[str, Any], kind: str, *, canary: bool) -> list[dict[str, Any]]:
    """Findings of ``kind`` (passed_checks, failed_checks) in the canaries' files or the others."""
    return [f for f in results[kind] if Path(f["file_path"]).name.startswith("canary-") is canary]


def skipped(finding: dict[str, Any]) -> bool:
    pattern = SKIPS.get(finding["check_id"])
    return pattern is not None and re.search(pattern, finding["resource"]) is not None


def test_checkov_finds_nothing_that_was_not_decided_on_purpose(report: dict[str, Any]) -> None:
    unexpected = [
        f"{f['check_id']} {f['check_name']!r}: {f['resource']} ({Path(f['file_path']).name})"
        for f in findings(report, "failed_checks", canary=False)
        if not skipped(f)
    ]
    assert not unexpected, "checkov findings:\n" + "\n".join(unexpected)


def test_secrets_network_policies_and_resources_are_checked_on_every_workload(
    report: dict[str, Any],
) -> None:
    assert not set(SKIPS) & set(NEVER_SKIPPED)
    passed = findings(report, "passed_checks", canary=False)
    pods = {f["resource"] for f in passed if f["check_id"] == "CKV2_K8S_6"}
    workloads = {  # the graph checks name pods of Deployments their own way: not these
        f["resource"]
        for f in passed
        if re.match(WORKLOAD, f["resource"]) and not f["check_id"].startswith("CKV2_")
    }
    assert len(workloads) == len(CHART_VARIANTS) + 1 + len(SESSIONS)  # + the trial Redis
    assert {r.split(".")[2] for r in pods} >= {
        "wasp-default-operator",
        "wasp-trial-redis-redis",
        "wasp-session-acme",
        "wasp-session-sandbox",
    }
    for check_id, what in NEVER_SKIPPED.items():
        if check_id.startswith("CKV2_"):
            continue  # the graph check names pods, not their Deployments: checked above
        checked = {f["resource"] for f in passed if f["check_id"] == check_id}
        assert checked == workloads, f"{check_id} ({what}) did not pass on every workload"


def test_canaries_show_checkov_would_report_what_is_never_skipped(
    report: dict[str, Any],
) -> None:
    failed = findings(report, "failed_checks", canary=True)
    by_file: dict[str, set[str]] = {}
    for finding in failed:
        by_file.setdefault(Path(finding["file_path"]).name, set()).add(finding["check_id"])
    assert "CKV2_K8S_6" in by_file["canary-chart.yaml"]  # no NetworkPolicy
    assert set(NEVER_SKIPPED) <= by_file["canary-session.yaml"]


def test_every_skipped_check_has_its_reason_in_the_security_doc() -> None:
    text = SECURITY_DOC.read_text(encoding="utf-8")
    documented = dict(re.findall(r"^\| `(CKV2?_K8S_\d+)` \| (.+?) \|", text, re.MULTILINE))
    assert set(documented) == set(SKIPS)
    for check_id in SKIPS:
        reason = text.split(f"| `{check_id}` |", 1)[1].splitlines()[0]
        assert len(reason.split("|")) >= 3, f"{check_id} has no reason in docs/security.md"
