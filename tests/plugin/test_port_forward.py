"""How `kubectl wasp` reaches a Redis that only the cluster can reach (real API server).

A tenant credential names Redis by its Service's cluster name
(``wasp-redis.wasp-system.svc``), which a laptop cannot resolve. The plugin
then finds a ready pod behind that Service (its EndpointSlices, as kubectl
port-forward does) and the pod's port for the Service's port, and asks the
API server for a port-forward to it.

Proven here: the resolution, on real Service and EndpointSlice objects, and
that a forward the API server cannot make (no kubelet serves this test's
pods) ends in one line that says what to do. Bytes flowing through a forward
need a real kubelet: tests/node/test_wasp_on_node.py proves them (a tenant's
client reaches its Redis by a Service name only the cluster knows, and its
OTP is read).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from harness.controlplane import ControlPlane
from wasp_kubectl.cluster import Backend, Cluster, PluginError, connect
from wasp_kubectl.tunnel import Forward, redis_url_for

pytestmark = [pytest.mark.plugin, pytest.mark.controlplane]

SERVICE = "wasp-redis"
POD = "wasp-redis-0"


def create(plane: ControlPlane, namespace: str, body: dict[str, object]) -> None:
    plane.kubectl("create", "-n", namespace, "-f", "-", stdin=json.dumps(body))


@pytest.fixture
def cluster(control_plane: ControlPlane, namespace: str) -> Iterator[Cluster]:
    """The plugin's view of the test's namespace, through the admin kubeconfig."""
    seen = connect(str(control_plane.kubeconfig), None, namespace)
    try:
        yield seen
    finally:
        seen.close()


def redis_service(plane: ControlPlane, namespace: str, *, ready: bool) -> None:
    """A Redis Service (port 6379 → the pod's 6380), its pod and the EndpointSlice naming it."""
    create(
        plane,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": POD, "labels": {"app": "redis"}},
            "spec": {"containers": [{"name": "redis", "image": "redis:7"}]},
        },
    )
    create(
        plane,
        namespace,
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": SERVICE},
            "spec": {"ports": [{"name": "redis", "port": 6379, "targetPort": 6380}]},
        },
    )
    create(
        plane,
        namespace,
        {
            "apiVersion": "discovery.k8s.io/v1",
            "kind": "EndpointSlice",
            "metadata": {
                "name": f"{SERVICE}-1",
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "ports": [{"name": "redis", "port": 6380, "protocol": "TCP"}],
            "endpoints": [
                {
                    "addresses": ["10.0.0.9"],
                    "conditions": {"ready": ready},
                    "targetRef": {"kind": "Pod", "name": POD, "namespace": namespace},
                }
            ],
        },
    )


def test_a_service_resolves_to_its_ready_pod_and_the_pods_port(
    control_plane: ControlPlane, namespace: str, cluster: Cluster
) -> None:
    redis_service(control_plane, namespace, ready=True)
    assert cluster.service_backend(SERVICE, namespace, 6379) == Backend(POD, namespace, 6380)


def test_a_forward_the_api_server_cannot_make_is_one_line_saying_what_to_do(
    control_plane: ControlPlane, namespace: str, cluster: Cluster
) -> None:
    redis_service(control_plane, namespace, ready=True)
    forwards: list[Forward] = []
    with pytest.raises(PluginError) as refused:
        redis_url_for(cluster, f"redis://u:pw@{SERVICE}.{namespace}.svc:6379/0", forwards)
    message = str(refused.value)
    assert "\n" not in message
    assert f"port-forward to pod '{POD}' in namespace '{namespace}' failed" in message
    assert f"kubectl auth can-i create pods/portforward -n {namespace}" in message
    assert forwards == []


def test_a_service_without_a_ready_pod_says_how_to_look(
    control_plane: ControlPlane, namespace: str, cluster: Cluster
) -> None:
    redis_service(control_plane, namespace, ready=False)
    with pytest.raises(PluginError) as refused:
        redis_url_for(cluster, f"redis://{SERVICE}.{namespace}.svc:6379/0", [])
    assert "has no ready pod" in str(refused.value)
    assert f"kubectl get endpointslices -n {namespace}" in str(refused.value)


def test_a_missing_service_and_an_unknown_host_are_named(namespace: str, cluster: Cluster) -> None:
    with pytest.raises(PluginError) as missing:
        redis_url_for(cluster, f"redis://{SERVICE}.{namespace}.svc:6379/0", [])
    assert f"there is no Service '{SERVICE}' in namespace '{namespace}'" in str(missing.value)
    with pytest.raises(PluginError) as elsewhere:
        redis_url_for(cluster, "redis://127.0.0.1:1/0", [])
    assert "no cluster Service to forward to" in str(elsewhere.value)


def test_a_reachable_redis_is_used_as_it_is(cluster: Cluster) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listening:  # answers, as a reachable Redis
        url = f"redis://u:pw@127.0.0.1:{listening.getsockname()[1]}/0"
        assert redis_url_for(cluster, url, []) == url
