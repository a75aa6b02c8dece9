"""A session pod's NetworkPolicy: only Redis, DNS and WhatsApp out; only the scraper in."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from typing import Any

import kubernetes
import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.controlplane import ControlPlane
from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.kube import Kube
from wasp_operator.network_policy import (
    build_network_policy,
    fingerprint,
    matches,
    redis_port_of,
)
from wasp_operator.pods import build_pod
from wasp_operator.sessions import Session, session_from_body

SCRAPED = OperatorConfig(
    scraper_namespaces=("monitoring", "wasp-system"),
    scraper_labels=(("app.kubernetes.io/name", "prometheus"),),
)


def session(name: str = "acme", uid: str = "u-1", namespace: str = "tenants") -> Session:
    body = {"metadata": {"name": name, "namespace": namespace, "uid": uid}, "spec": {}}
    return session_from_body(body)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector["matchLabels"].items())


def allowed_ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(port["protocol"], port["port"]) for rule in rules for port in rule["ports"]}


def test_the_policy_selects_exactly_its_sessions_pod_and_is_owned_by_the_resource() -> None:
    policy = build_network_policy(session(), OperatorConfig())
    selector = policy["spec"]["podSelector"]
    assert selects(selector, build_pod(session(), OperatorConfig())["metadata"]["labels"])
    assert not selects(
        selector, build_pod(session("acme-2"), OperatorConfig())["metadata"]["labels"]
    )
    assert policy["metadata"]["namespace"] == "tenants"
    assert policy["metadata"]["name"] == contract.session_pod_name("acme")
    (owner,) = policy["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"]) == (contract.KIND, "u-1", True)
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]


def test_egress_is_only_dns_redis_and_whatsapp() -> None:
    egress = build_network_policy(session(), OperatorConfig(), redis_port=6380)["spec"]["egress"]
    assert allowed_ports(egress) == {
        ("UDP", 53),
        ("TCP", 53),
        ("TCP", 6380),
        ("TCP", 443),
        ("TCP", 5222),
    }
    (whatsapp,) = [rule for rule in egress if ("TCP", 443) in allowed_ports([rule])]
    assert allowed_ports([whatsapp]) == {("TCP", 443), ("TCP", 5222)}
    blocks = [peer["ipBlock"] for peer in whatsapp["to"]]
    assert {block["cidr"] for block in blocks} == {"0.0.0.0/0", "::/0"}


@pytest.mark.isolation
@pytest.mark.parametrize(
    "address",
    ["10.96.0.1", "172.20.3.4", "192.168.1.10", "100.64.0.10", "169.254.169.254", "fd00::1"],
)
def test_whatsapp_ports_never_reach_the_clusters_own_addresses(address: str) -> None:
    """The API server, other tenants' pods, the cloud's metadata endpoint: not on 443/5222."""
    egress = build_network_policy(session(), OperatorConfig())["spec"]["egress"]
    (whatsapp,) = [rule for rule in egress if ("TCP", 443) in allowed_ports([rule])]
    ip = ipaddress.ip_address(address)
    for peer in whatsapp["to"]:
        block = peer["ipBlock"]
        network = ipaddress.ip_network(block["cidr"])
        if ip.version == network.version and ip in network:
            assert any(ip in ipaddress.ip_network(cidr) for cidr in block["except"])


def test_nothing_reaches_the_pod_without_a_configured_scraper() -> None:
    spec = build_network_policy(session(), OperatorConfig())["spec"]
    assert "Ingress" in spec["policyTypes"]
    assert spec.get("ingress", []) == []  # the API server stores no empty list


def test_the_scraper_reaches_only_the_health_port_from_its_namespaces_and_labels() -> None:
    (rule,) = build_network_policy(session(), SCRAPED)["spec"]["ingress"]
    assert allowed_ports([rule]) == {("TCP", contract.SESSION_HEALTH_PORT)}
    (peer,) = rule["from"]
    assert peer["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "prometheus"}}
    (expression,) = peer["namespaceSelector"]["matchExpressions"]
    assert expression == {
        "key": "kubernetes.io/metadata.name",
        "operator": "In",
        "values": ["monitoring", "wasp-system"],
    }


@pytest.mark.parametrize(
    ("url", "port"),
    [
        ("redis://redis.example:6379/0", 6379),
        ("rediss://user:pw@redis.example:6380/2", 6380),
        ("redis://redis.example/0", 6379),
        ("redis://[::1]:7000", 7000),
        ("redis://host:notaport/0", 6379),
    ],
)
def test_the_redis_port_comes_from_the_url(url: str, port: int) -> None:
    assert redis_port_of(url) == port


@given(st.text(max_size=200))
def test_any_redis_url_gives_a_usable_port(url: str) -> None:
    assert 0 < redis_port_of(url) < 65536


# ---------------------------------------------------------------- against the API server
@pytest.fixture
def kube(control_plane: ControlPlane) -> Iterator[Kube]:
    """The operator's client, configured for the test control plane (restored after)."""
    before = kubernetes.client.Configuration.get_default_copy()
    kubernetes.config.load_kube_config(config_file=str(control_plane.kubeconfig))  # type: ignore[no-untyped-call]
    try:
        yield Kube()
    finally:
        kubernetes.client.Configuration.set_default(before)


def create_resource(plane: ControlPlane, namespace: str, name: str) -> str:
    """A real WhatsAppSession (no operator runs: it just exists); its uid.

    The policy's owner must exist, or the garbage collector removes the
    policy while the test looks at it.
    """
    manifest = {
        "apiVersion": f"{contract.GROUP}/{contract.VERSION}",
        "kind": contract.KIND,
        "metadata": {"name": name, "namespace": namespace},
        "spec": {},
    }
    plane.kubectl("create", "-f", "-", stdin=json.dumps(manifest))
    return plane.kubectl(
        "get", contract.PLURAL, name, "-n", namespace, "-o", "jsonpath={.metadata.uid}"
    ).stdout


@pytest.mark.controlplane
def test_applying_creates_then_writes_only_what_changed(
    kube: Kube,
    control_plane: ControlPlane,
    namespace: str,
    wasp_crd: str,  # noqa: ARG001 - requested for its effect: the CRD is installed
) -> None:
    acme = session(namespace=namespace, uid=create_resource(control_plane, namespace, "acme"))
    assert kube.apply_network_policy(build_network_policy(acme, OperatorConfig())) is True
    # Every resync applies it again: the API server's copy already matches, nothing is written.
    assert kube.apply_network_policy(build_network_policy(acme, OperatorConfig())) is False
    changed = build_network_policy(acme, SCRAPED, redis_port=6380)
    assert kube.apply_network_policy(changed) is True
    assert kube.apply_network_policy(changed) is False
    # Told none exists (the watch has not seen it yet), it finds the one there and compares.
    assert kube.apply_network_policy(changed, absent=True) is False
    assert kube.apply_network_policy(build_network_policy(acme, OperatorConfig()), absent=True)
    # What the watch delivers (the API server's JSON, defaults filled in) matches what was built.
    live = json.loads(
        control_plane.kubectl(
            "get", "networkpolicy", contract.session_pod_name("acme"), "-n", namespace, "-o", "json"
        ).stdout
    )
    assert matches(live, build_network_policy(acme, OperatorConfig()))
    assert fingerprint(live) == fingerprint(build_network_policy(acme, OperatorConfig()))
    assert not matches(live, changed)
    assert kube.apply_network_policy(changed) is True
    # A new resource of the same name owns it from now on.
    control_plane.kubectl("delete", contract.PLURAL, "acme", "-n", namespace)
    second_uid = create_resource(control_plane, namespace, "acme")
    successor = build_network_policy(session(namespace=namespace, uid=second_uid), SCRAPED, 6380)
    assert kube.apply_network_policy(successor) is True

    live = control_plane.kubectl(
        "get", "networkpolicy", contract.session_pod_name("acme"), "-n", namespace,
        "-o", "jsonpath={.metadata.ownerReferences[0].uid} {.spec.egress[1].ports[0].port}",
    ).stdout  # fmt: skip
    assert live == f"{second_uid} 6380"
