"""``spec.autoReply``: the API server refuses a bad one; a good one reaches the pod's env."""

from __future__ import annotations

import json
from typing import Any

import pytest

from harness.controlplane import ControlPlane
from harness.operator_process import OperatorProcess, apply, eventually, get, session_body
from wasp import contract
from wasp_operator.config import OperatorConfig
from wasp_operator.pods import build_pod, spec_hash
from wasp_operator.sessions import session_from_body

pytestmark = pytest.mark.stream

CONFIG = OperatorConfig(session_image="registry.example/wasp:1.2.3")
REPLY = "Diese Nummer sendet nur Codes. 🔐 Fragen: https://example.com/help"


def session_of(**spec: Any) -> Any:  # noqa: ANN401 - the Session of a body
    body = session_body("acme", **spec)
    body["metadata"].update(namespace="tenants", uid="u-1", generation=1)
    return session_from_body(body)


def env_of(pod: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in pod["spec"]["containers"][0]["env"]}


def test_the_auto_reply_text_goes_to_the_pod_by_value_and_only_when_set() -> None:
    with_reply = env_of(build_pod(session_of(autoReply={"text": REPLY}), CONFIG))
    assert with_reply[contract.ENV_AUTO_REPLY_TEXT] == REPLY
    without = env_of(build_pod(session_of(), CONFIG))
    assert contract.ENV_AUTO_REPLY_TEXT not in without


def test_setting_an_auto_reply_replaces_the_pod_and_not_setting_one_changes_nothing() -> None:
    plain = spec_hash(session_of(), CONFIG)
    assert spec_hash(session_of(autoReply={"text": REPLY}), CONFIG) != plain
    assert spec_hash(session_of(autoReply={"text": "other"}), CONFIG) != spec_hash(
        session_of(autoReply={"text": REPLY}), CONFIG
    )


@pytest.mark.controlplane
@pytest.mark.usefixtures("wasp_crd")
def test_the_api_server_refuses_an_auto_reply_that_is_empty_blank_too_long_or_textless(
    control_plane: ControlPlane, namespace: str
) -> None:
    refusals = {
        "empty": ({"text": ""}, "spec.autoReply.text"),
        "blank": ({"text": " \t\n "}, "spec.autoReply.text must not be blank"),
        "too-long": ({"text": "x" * 1025}, "spec.autoReply.text"),
        "textless": ({}, "spec.autoReply.text: Required value"),
        "not-a-string": ({"text": 42}, "spec.autoReply.text"),
    }
    for name, (auto_reply, says) in refusals.items():
        manifest = json.dumps(session_body(name, autoReply=auto_reply))
        result = control_plane.kubectl(
            "apply", "-n", namespace, "-f", "-", stdin=manifest, check=False
        )
        assert result.returncode != 0, name
        assert says in result.stderr, (name, result.stderr)
    longest = json.dumps(session_body("longest", autoReply={"text": "ü" * 1024}))
    assert control_plane.kubectl("apply", "-n", namespace, "-f", "-", stdin=longest).returncode == 0


@pytest.mark.controlplane
def test_the_operator_hands_spec_auto_reply_to_the_session_pod(
    control_plane: ControlPlane, namespace: str, wasp_operator: OperatorProcess
) -> None:
    apply(
        control_plane,
        namespace,
        session_body("acme", transport="simulator", autoReply={"text": REPLY}),
    )
    pod = eventually(
        lambda: get(control_plane, namespace, "pod", contract.session_pod_name("acme")),
        "the pod exists",
        log=wasp_operator.log,
    )
    assert env_of(pod)[contract.ENV_AUTO_REPLY_TEXT] == REPLY
