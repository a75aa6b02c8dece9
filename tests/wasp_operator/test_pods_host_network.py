"""Session pods on the node's network: each its own health port, and nothing else moves."""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from harness.controlplane import ControlPlane
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import OperatorError
from wasp_operator.network_policy import build_network_policy
from wasp_operator.pods import build_pod, host_port_of, host_ports_in, spec_hash
from wasp_operator.sessions import Session, session_from_body

ON_POD_NETWORK = OperatorConfig(session_image="registry.example/wasp:1.2.3")
ON_HOST_NETWORK = dataclasses.replace(ON_POD_NETWORK, session_host_ports=(20000, 20999))


def session(name: str = "acme", namespace: str = "tenants") -> Session:
    body = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"u-{name}", "generation": 1},
        "spec": {"pairing": {"method": "QR"}},
    }
    return session_from_body(body)


def the_container(pod: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = pod["spec"]["containers"]
    (container,) = containers
    return container


def health_env(pod: dict[str, Any]) -> str:
    (value,) = (
        e["value"] for e in the_container(pod)["env"] if e["name"] == contract.ENV_HEALTH_PORT
    )
    return str(value)


def test_without_the_setting_the_pod_is_on_the_pod_network_at_port_8080() -> None:
    pod = build_pod(session(), ON_POD_NETWORK)
    assert "hostNetwork" not in pod["spec"]
    assert "dnsPolicy" not in pod["spec"]
    assert the_container(pod)["ports"] == [
        {"name": "health", "containerPort": contract.SESSION_HEALTH_PORT, "protocol": "TCP"}
    ]
    assert health_env(pod) == str(contract.SESSION_HEALTH_PORT)
    # The taken ports of other pods matter only on the node's network.
    assert build_pod(session(), ON_POD_NETWORK, {8080, 20000}) == pod


def test_on_the_host_network_the_pod_serves_its_health_port_on_the_node() -> None:
    pod = build_pod(session(), ON_HOST_NETWORK)
    assert pod["spec"]["hostNetwork"] is True
    assert pod["spec"]["dnsPolicy"] == "ClusterFirstWithHostNet"  # cluster DNS still resolves
    (port,) = the_container(pod)["ports"]
    assert port["name"] == "health"
    assert 20000 <= port["containerPort"] <= 20999
    assert port["hostPort"] == port["containerPort"]  # the scheduler keeps one per node
    assert health_env(pod) == str(port["containerPort"])  # the session listens where probed
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert the_container(pod)[probe]["httpGet"]["port"] == "health"
        # The kubelet shares the node's network: it asks on loopback, never the node's address.
        assert the_container(pod)[probe]["httpGet"]["host"] == "127.0.0.1"
    assert host_ports_in(pod) == (port["containerPort"],)
    assert host_ports_in(build_pod(session(), ON_POD_NETWORK)) == ()


def test_the_host_network_changes_nothing_else_of_the_pod() -> None:
    on_host = build_pod(session(), ON_HOST_NETWORK)
    back = copy.deepcopy(on_host)
    del back["spec"]["hostNetwork"], back["spec"]["dnsPolicy"]
    container = the_container(back)
    (port,) = container["ports"]
    del port["hostPort"]
    port["containerPort"] = contract.SESSION_HEALTH_PORT
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        del container[probe]["httpGet"]["host"]
    for entry in container["env"]:
        if entry["name"] == contract.ENV_HEALTH_PORT:
            entry["value"] = str(contract.SESSION_HEALTH_PORT)
    assert back == build_pod(session(), ON_POD_NETWORK)


def test_the_setting_restarts_no_tenant_its_spec_hash_stays() -> None:
    for each in (session(), session("globex", "other")):
        assert spec_hash(each, ON_HOST_NETWORK) == spec_hash(each, ON_POD_NETWORK)
        hashes = {
            build_pod(each, config)["metadata"]["annotations"][contract.ANNOTATION_SPEC_HASH]
            for config in (ON_POD_NETWORK, ON_HOST_NETWORK)
        }
        assert hashes == {spec_hash(each, ON_POD_NETWORK)}
    assert spec_hash(session(), ON_HOST_NETWORK) == spec_hash(session(), OperatorConfig())


def test_a_session_keeps_its_port_while_it_is_free() -> None:
    first = host_ports_in(build_pod(session(), ON_HOST_NETWORK))
    assert host_ports_in(build_pod(session(), ON_HOST_NETWORK, {1, 2})) == first
    # Taken by another pod: the next free one after it, in the range.
    (taken,) = first
    (moved,) = host_ports_in(build_pod(session(), ON_HOST_NETWORK, {taken}))
    assert moved == (taken + 1 if taken < 20999 else 20000)


def test_many_tenants_get_distinct_ports_until_the_range_is_full() -> None:
    config = dataclasses.replace(ON_HOST_NETWORK, session_host_ports=(30000, 30299))
    held: set[int] = set()
    for number in range(300):
        (port,) = host_ports_in(build_pod(session(f"tenant-{number}"), config, held))
        assert 30000 <= port <= 30299
        assert port not in held
        held.add(port)
    assert held == set(range(30000, 30300))
    with pytest.raises(OperatorError) as refused:
        build_pod(session("one-too-many"), config, held)
    assert "30000 to 30299" in str(refused.value)
    assert contract.ENV_OPERATOR_SESSION_HOST_PORTS in str(refused.value)
    assert "sessionPods.healthPortRange" in str(refused.value)


def test_tenants_spread_over_the_range_even_before_the_operator_sees_their_pods() -> None:
    ports = {host_port_of(f"tenants/tenant-{n}", (20000, 29999), ()) for n in range(100)}
    assert len(ports) >= 95  # from their hashes: a burst of new sessions rarely collides


@given(
    first=st.integers(1024, 65535),
    size=st.integers(1, 64),
    key=st.text(max_size=80),
    taken=st.sets(st.integers(1024, 65535 + 64), max_size=80),
)
def test_the_port_is_in_the_range_and_free_or_none_is_left(
    first: int, size: int, key: str, taken: set[int]
) -> None:
    last = min(first + size - 1, 65535)
    free = set(range(first, last + 1)) - taken
    if not free:
        with pytest.raises(OperatorError, match="is taken by another session pod"):
            host_port_of(key, (first, last), taken)
        return
    port = host_port_of(key, (first, last), taken)
    assert port in free
    assert host_port_of(key, (first, last), taken) == port  # the same answer every time


def test_the_scrapers_rule_names_the_health_port_wherever_it_is() -> None:
    on_pods = dataclasses.replace(ON_POD_NETWORK, scraper_namespaces=("monitoring",))
    on_host = dataclasses.replace(ON_HOST_NETWORK, scraper_namespaces=("monitoring",))
    (rule,) = build_network_policy(session(), on_pods)["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": contract.SESSION_HEALTH_PORT}]
    (rule,) = build_network_policy(session(), on_host)["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": "health"}]  # each pod its own number
    egress = build_network_policy(session(), on_host)["spec"]["egress"]
    assert egress == build_network_policy(session(), on_pods)["spec"]["egress"]


@pytest.mark.controlplane
def test_the_api_server_accepts_the_host_network_pod_as_built(
    control_plane: ControlPlane, namespace: str
) -> None:
    pod = build_pod(session(namespace=namespace), ON_HOST_NETWORK)
    del pod["metadata"]["ownerReferences"]  # no such resource: the GC would delete it
    control_plane.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(pod))
    live = control_plane.kubectl("get", "pod", pod["metadata"]["name"], "-n", namespace, "-o=json")
    spec = json.loads(live.stdout)["spec"]
    assert (spec["hostNetwork"], spec["dnsPolicy"]) == (True, "ClusterFirstWithHostNet")
    assert spec["containers"][0]["ports"] == the_container(pod)["ports"]


# ---------------------------------------------------------------- the operator, for real
@pytest.fixture
def two_port_operator(start_operator: Callable[..., OperatorProcess]) -> OperatorProcess:
    """``wasp-operator`` with session pods on the node's network, two ports for them all."""
    return start_operator(
        environment={contract.ENV_OPERATOR_SESSION_HOST_PORTS: "30000-30001"},
        resync_seconds=1.0,
    )


@pytest.mark.controlplane
def test_the_operator_gives_each_session_pod_a_port_no_other_holds(
    control_plane: ControlPlane, namespace: str, two_port_operator: OperatorProcess
) -> None:
    def port_of(name: str) -> int | None:
        pod = get(control_plane, namespace, "pod", contract.session_pod_name(name))
        return host_ports_in(pod)[0] if pod else None

    held: dict[str, int] = {}
    for name in ("acme", "globex"):  # one after the other: the operator has seen the first
        apply(control_plane, namespace, session_body(name))
        held[name] = eventually(
            functools.partial(port_of, name), f"{name}'s pod", log=two_port_operator.log
        )
    assert sorted(held.values()) == [30000, 30001]

    apply(control_plane, namespace, session_body("initech"))
    eventually(
        lambda: "every session host port from 30000 to 30001 is taken" in two_port_operator.log(),
        "the operator says the range is full",
        log=two_port_operator.log,
    )
    assert port_of("initech") is None  # no pod made to wait for a port

    # The tenant sees why: `kubectl describe whatsappsession initech` lists the Event.
    def no_host_port_events() -> str:
        return control_plane.kubectl(
            "get",
            "events",
            "-n",
            namespace,
            "--field-selector",
            "involvedObject.name=initech,reason=NoHostPort",
            "-o",
            "name",
        ).stdout.strip()

    events = eventually(no_host_port_events, "a NoHostPort Event on initech")
    assert events

    control_plane.kubectl("delete", contract.PLURAL, "acme", "-n", namespace)
    freed = eventually(lambda: port_of("initech"), "initech's pod", log=two_port_operator.log)
    assert freed == held["acme"]
