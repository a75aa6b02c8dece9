"""kube-controller-manager runs: owned objects are garbage-collected with their owner."""

from __future__ import annotations

import json
import time

from harness.controlplane import ControlPlane


def test_deleting_an_owner_removes_what_it_owns(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("create", "configmap", "owner", "-n", namespace)
    owner = json.loads(
        control_plane.kubectl("get", "configmap", "owner", "-n", namespace, "-o", "json").stdout
    )
    owned = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": "owned",
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "owner",
                    "uid": owner["metadata"]["uid"],
                    "controller": True,
                }
            ],
        },
        "data": {"k": "v"},
    }
    control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=json.dumps(owned))
    control_plane.kubectl("create", "configmap", "bystander", "-n", namespace)

    control_plane.kubectl("delete", "configmap", "owner", "-n", namespace)

    deadline = time.monotonic() + 60
    remaining: list[str] = []
    while time.monotonic() < deadline:
        remaining = control_plane.kubectl(
            "get", "configmaps", "-n", namespace, "-o", "name"
        ).stdout.split()
        if "configmap/owned" not in remaining:
            break
        time.sleep(0.5)
    assert "configmap/owned" not in remaining, "the owned object outlived its owner"
    assert "configmap/bystander" in remaining
