"""The API server itself refuses a bad ``spec.webhook``: a URL that could not be a receiver.

The URL is the tenant's input and the session pod will connect to it, so
the schema admits only ``http(s)://host[:port][/path]`` in printable ASCII:
no credentials, no spaces or control characters, no other scheme. Fuzzed
against the real API server (server-side dry run: nothing is stored).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.controlplane import ControlPlane
from wasp_session.webhook_target import parse_target

pytestmark = [pytest.mark.controlplane, pytest.mark.usefixtures("wasp_crd")]

CRD = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "crds" / "whatsappsessions.wasp.dev.yaml").read_text(
        encoding="utf-8"
    )
)
URL_SCHEMA = CRD["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"][
    "properties"
]["webhook"]["properties"]["url"]


def dry_run(plane: ControlPlane, spec: dict[str, Any]) -> tuple[bool, str]:
    """Whether the API server would create a session with ``spec``, and what it said."""
    manifest = {
        "apiVersion": "wasp.dev/v1alpha1",
        "kind": "WhatsAppSession",
        "metadata": {"name": "hooked", "namespace": "default"},
        "spec": spec,
    }
    result = plane.kubectl(
        "create",
        "--dry-run=server",
        "-o",
        "json",
        "-f",
        "-",
        stdin=json.dumps(manifest),
        check=False,
    )
    return result.returncode == 0, result.stderr + result.stdout


def webhook(url: str, **ref: str) -> dict[str, Any]:
    return {"webhook": {"url": url, "secretRef": {"name": "hooks", **ref}}}


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/wasp?tenant=acme#x",
        "http://127.0.0.1:8080/hooks",
        "https://[2001:db8::1]:8443/x",
        "https://xn--bcher-kva.example",
    ],
)
def test_a_receiver_url_is_accepted_with_the_secret_keys_default(
    control_plane: ControlPlane, url: str
) -> None:
    accepted, output = dry_run(control_plane, webhook(url))
    assert accepted, output
    stored = json.loads(output)["spec"]["webhook"]
    assert stored == {"url": url, "secretRef": {"name": "hooks", "key": "secret"}}


@pytest.mark.parametrize(
    "url",
    [
        "ftp://files.example.com/",
        "javascript:alert(1)",
        "https://user:password@example.com/",
        "https://example.com/a b",
        "https://example.com/\nHost: evil",
        "https://",
        "//example.com/",
        "https://bücher.example/",
        "https://example.com/" + "a" * 2048,
    ],
)
def test_a_url_that_cannot_be_a_receiver_is_refused_naming_the_field(
    control_plane: ControlPlane, url: str
) -> None:
    accepted, output = dry_run(control_plane, webhook(url))
    assert not accepted
    assert "spec.webhook.url" in output


def test_a_webhook_needs_its_secret_and_a_plain_key(control_plane: ControlPlane) -> None:
    accepted, output = dry_run(control_plane, {"webhook": {"url": "https://example.com/"}})
    assert not accepted
    assert "spec.webhook.secretRef: Required value" in output
    accepted, output = dry_run(control_plane, webhook("https://example.com/", key="../../etc"))
    assert not accepted
    assert "spec.webhook.secretRef.key" in output


urls = st.one_of(
    st.text(max_size=40),
    st.builds(
        "".join,
        st.tuples(
            st.sampled_from(["http://", "https://", "HTTPS://", "ftp://", "http:/", ""]),
            st.text(alphabet="ab1.-[]:@", max_size=15),
            st.sampled_from(["", ":80", ":99999", ":x"]),
            st.text(max_size=15),
        ),
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(url=urls)
def test_the_api_server_admits_exactly_the_urls_the_schema_describes(
    control_plane: ControlPlane, url: str
) -> None:
    accepted, output = dry_run(control_plane, webhook(url))
    described = (
        URL_SCHEMA["minLength"] <= len(url) <= URL_SCHEMA["maxLength"]
        and re.fullmatch(URL_SCHEMA["pattern"], url) is not None
    )
    assert accepted == described, output
    if accepted:  # and the session can use it (or says why: a port beyond 65535)
        try:
            target = parse_target(url)
        except ValueError as error:
            assert "valid URL" in str(error)  # noqa: PT017 - the one refusal left to the session
        else:
            assert target.scheme in {"http", "https"}
            assert "@" not in target.host
