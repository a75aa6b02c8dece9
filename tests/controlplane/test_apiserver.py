"""The control plane is the real one: schema and CEL validation by the API server."""

from __future__ import annotations

import json

from harness.controlplane import ControlPlane

GADGET_CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.harness.wasp.dev
spec:
  group: harness.wasp.dev
  scope: Namespaced
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [phone]
              properties:
                phone:
                  type: string
                  pattern: '^\\+[1-9][0-9]{6,14}$'
                minimum: {type: integer}
                maximum: {type: integer}
              x-kubernetes-validations:
                - rule: self.minimum <= self.maximum
                  message: minimum must not exceed maximum
"""


def gadget(name: str, phone: str, minimum: int, maximum: int) -> str:
    return json.dumps(
        {
            "apiVersion": "harness.wasp.dev/v1",
            "kind": "Gadget",
            "metadata": {"name": name},
            "spec": {"phone": phone, "minimum": minimum, "maximum": maximum},
        }
    )


def test_the_api_server_enforces_crd_patterns_and_cel_rules(
    control_plane: ControlPlane, namespace: str
) -> None:
    control_plane.kubectl("apply", "-f", "-", stdin=GADGET_CRD)
    control_plane.kubectl(
        "wait", "--for=condition=Established", "crd/gadgets.harness.wasp.dev", "--timeout=60s"
    )

    cel_violation = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=gadget("bad-range", "+4915112345678", 5, 1),
        check=False,
    )
    assert cel_violation.returncode != 0
    assert "minimum must not exceed maximum" in cel_violation.stderr

    pattern_violation = control_plane.kubectl(
        "apply",
        "-n",
        namespace,
        "-f",
        "-",
        stdin=gadget("bad-phone", "015112345678", 1, 5),
        check=False,
    )
    assert pattern_violation.returncode != 0
    assert "spec.phone" in pattern_violation.stderr
    assert "should match" in pattern_violation.stderr

    control_plane.kubectl(
        "apply", "-n", namespace, "-f", "-", stdin=gadget("good", "+4915112345678", 1, 5)
    )
    served = json.loads(
        control_plane.kubectl("get", "-n", namespace, "gadget", "good", "-o", "json").stdout
    )
    assert served["spec"] == {"phone": "+4915112345678", "minimum": 1, "maximum": 5}
    listed = control_plane.kubectl("get", "-n", namespace, "gadgets", "-o", "name").stdout.split()
    assert listed == ["gadget.harness.wasp.dev/good"]


def test_the_api_server_reports_the_pinned_kubernetes_version(control_plane: ControlPlane) -> None:
    version = json.loads(control_plane.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["major"] == "1"
    assert int(version["serverVersion"]["minor"]) >= 34
    assert version["serverVersion"]["gitVersion"] == version["clientVersion"]["gitVersion"]


def test_rbac_is_enforced(control_plane: ControlPlane, namespace: str) -> None:
    allowed = control_plane.kubectl(
        "auth",
        "can-i",
        "list",
        "pods",
        "-n",
        namespace,
        "--as",
        "system:serviceaccount:default:nobody",
        check=False,
    )
    assert allowed.stdout.strip() == "no"
    assert (
        control_plane.kubectl("auth", "can-i", "list", "pods", "-n", namespace).stdout.strip()
        == "yes"
    )
