"""The API server itself refuses bad WhatsAppSessions, saying what to fix."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.controlplane import ControlPlane
from wasp import contract

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("wasp_crd")]

CRDS = Path(__file__).resolve().parents[2] / "crds"
CRD = yaml.safe_load((CRDS / "whatsappsessions.wasp.dev.yaml").read_text(encoding="utf-8"))
EXAMPLES = sorted((CRDS / "examples").glob("*.yaml"))


@pytest.fixture(scope="module")
def refusals(control_plane: ControlPlane) -> Iterator[str]:
    """One namespace for the parametrized tests.

    The shared ``namespace`` fixture derives its name from the test's, which
    a parameter's brackets make invalid.
    """
    name = "t-crd-refusals"
    control_plane.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


def session(name: str, spec: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "wasp.dev/v1alpha1",
            "kind": "WhatsAppSession",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def apply(plane: ControlPlane, namespace: str, manifest: str) -> tuple[int, str]:
    result = plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=manifest, check=False)
    return result.returncode, result.stderr


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        pytest.param(
            {"pairing": {"method": "Telepathy"}},
            ['spec.pairing.method: Unsupported value: "Telepathy"', '"QR", "PairingCode"'],
            id="unknown-pairing-method",
        ),
        pytest.param(
            {"pairing": {"method": "PairingCode"}},
            ["spec.pairing.phoneNumber is required when spec.pairing.method is PairingCode"],
            id="pairing-code-without-phone",
        ),
        pytest.param(
            {"pairing": {"method": "PairingCode", "phoneNumber": "015112345678"}},
            ["spec.pairing.phoneNumber", "should match"],
            id="phone-not-e164",
        ),
        pytest.param(
            {"delivery": {"ttlSeconds": -5}},
            ["spec.delivery.ttlSeconds", "should be greater than or equal to 1"],
            id="negative-ttl",
        ),
        pytest.param(
            {"transport": "carrier-pigeon"},
            ['spec.transport: Unsupported value: "carrier-pigeon"', '"neonize", "simulator"'],
            id="unknown-transport",
        ),
        pytest.param(
            {"pairing": {"method": "QR", "colour": "green"}},
            ['unknown field "spec.pairing.colour"'],
            id="unknown-field",
        ),
        pytest.param(
            {"delivery": {"messageTemplate": "Hello"}},
            ["spec.delivery.messageTemplate must contain {code}"],
            id="template-without-code",
        ),
        pytest.param(
            {"delivery": {"messageTemplate": "Your code is {code.__class__}"}},
            ["spec.delivery.messageTemplate may use only {code} and {minutes}"],
            id="hostile-template",
        ),
        pytest.param(
            {"delivery": {"messageTemplate": "Code {code}, valid {minutes!r} min {"}},
            ["spec.delivery.messageTemplate may use only {code} and {minutes}"],
            id="malformed-template",
        ),
        pytest.param(
            {"tenantId": "Acme_Corp"},
            ["spec.tenantId", "should match"],
            id="tenant-not-dns-label",
        ),
        pytest.param(
            {"unlinkOnDelete": "false"},
            ["spec.unlinkOnDelete", "must be of type boolean"],
            id="unlink-on-delete-a-string",
        ),
        pytest.param(
            {"unlinkOnDelete": 0},
            ["spec.unlinkOnDelete", "must be of type boolean"],
            id="unlink-on-delete-a-number",
        ),
    ],
)
def test_a_bad_session_is_refused_with_what_to_fix(
    control_plane: ControlPlane, refusals: str, spec: dict[str, Any], says: list[str]
) -> None:
    namespace = refusals
    code, stderr = apply(control_plane, namespace, session("bad", spec))
    assert code != 0
    for words in says:
        assert words in stderr, stderr
    listed = control_plane.kubectl("get", "was", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


def test_the_tenant_id_cannot_change(control_plane: ControlPlane, namespace: str) -> None:
    assert apply(control_plane, namespace, session("acme", {"tenantId": "acme"}))[0] == 0

    code, stderr = apply(control_plane, namespace, session("acme", {"tenantId": "other"}))
    assert code != 0
    assert "spec.tenantId is immutable" in stderr

    # Setting it explicitly to what it defaulted to is no change; anything else is.
    assert apply(control_plane, namespace, session("plain", {}))[0] == 0
    assert apply(control_plane, namespace, session("plain", {"tenantId": "plain"}))[0] == 0
    code, stderr = apply(control_plane, namespace, session("plain", {"tenantId": "renamed"}))
    assert code != 0
    assert "spec.tenantId is immutable" in stderr


def test_a_name_that_cannot_be_a_tenant_needs_a_tenant_id(
    control_plane: ControlPlane, namespace: str
) -> None:
    code, stderr = apply(control_plane, namespace, session("acme.example", {}))
    assert code != 0
    assert "or set spec.tenantId" in stderr
    assert apply(control_plane, namespace, session("acme.example", {"tenantId": "acme"}))[0] == 0


def test_defaults_fill_a_minimal_session(control_plane: ControlPlane, namespace: str) -> None:
    assert apply(control_plane, namespace, session("minimal", {}))[0] == 0
    served = json.loads(
        control_plane.kubectl("get", "was", "minimal", "-n", namespace, "-o", "json").stdout
    )
    assert served["spec"] == {
        "transport": "neonize",
        "suspend": False,
        "unlinkOnDelete": True,
        "pairing": {"method": "QR", "exposeInStatus": True, "maxWindows": 3},
        "delivery": {
            "messageTemplate": "Your code is {code}. It expires in {minutes} minutes.",
            "ttlSeconds": 300,
            "retry": {"attempts": 3, "backoffSeconds": 2},
            "rateLimit": {"perMinute": 30},
        },
    }


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_is_accepted(
    control_plane: ControlPlane, refusals: str, example: Path
) -> None:
    namespace = refusals
    result = control_plane.kubectl(
        "apply", "-n", namespace, "--dry-run=server", "-f", str(example), check=False
    )
    assert result.returncode == 0, result.stderr


def _fields(schema: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for name, sub in (schema.get("properties") or {}).items():
        found.append((f"{path}.{name}", sub))
        found.extend(_fields(sub, f"{path}.{name}"))
    if "items" in schema:
        found.extend(_fields(schema["items"], f"{path}[]"))
    return found


def test_every_field_has_a_description() -> None:
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undocumented = [
        path
        for path, sub in _fields(schema, "")
        if not sub.get("description") and path != ".metadata"
    ]
    assert undocumented == []


def test_kubectl_explain_documents_every_spec_field(control_plane: ControlPlane) -> None:
    spec = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    explained = control_plane.kubectl("explain", "whatsappsession.spec", "--recursive").stdout
    for path, _ in _fields(spec, ""):
        assert path.rsplit(".", 1)[-1].rstrip("[]") in explained, path
    described = control_plane.kubectl("explain", "whatsappsession.spec.pairing.method").stdout
    assert "PairingCode" in described
    assert "needs phoneNumber" in " ".join(described.split())


def test_kubectl_get_shows_tenant_and_phase_columns(
    control_plane: ControlPlane, namespace: str
) -> None:
    assert apply(control_plane, namespace, session("columns", {}))[0] == 0
    header = control_plane.kubectl("get", "was", "-n", namespace).stdout.splitlines()[0].split()
    assert header == ["NAME", "TENANT", "PHASE", "ACCOUNT", "AGE"]
    wide = control_plane.kubectl("get", "wasp", "-n", namespace, "-o", "wide").stdout
    assert "TRANSPORT" in wide.splitlines()[0]
    assert "POD" in wide.splitlines()[0]


def test_the_schemas_enums_are_the_contracts() -> None:
    schema = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    spec, status = schema["spec"]["properties"], schema["status"]["properties"]
    assert tuple(status["phase"]["enum"]) == contract.PHASES
    assert tuple(spec["transport"]["enum"]) == contract.TRANSPORTS
    assert tuple(spec["pairing"]["properties"]["method"]["enum"]) == contract.PAIRING_METHODS
    names = CRD["spec"]["names"]
    assert (CRD["metadata"]["name"], names["kind"], names["shortNames"]) == (
        contract.CRD_NAME,
        contract.KIND,
        [contract.SHORT_NAME],
    )
