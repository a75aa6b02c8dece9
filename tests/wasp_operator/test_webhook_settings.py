"""``spec.webhook`` and the operator's allowed networks, as the pure functions build them."""

from __future__ import annotations

from typing import Any

import pytest

from wasp import contract
from wasp_operator.config import OperatorConfig, config_from_env
from wasp_operator.network_policy import build_network_policy
from wasp_operator.pods import build_pod, spec_hash
from wasp_operator.sessions import SecretRef, Session, Webhook, session_from_body
from wasp_operator.status import desired_status


def session(webhook: dict[str, Any] | None = None) -> Session:
    spec: dict[str, Any] = {"transport": "simulator"}
    if webhook is not None:
        spec["webhook"] = webhook
    body = {"metadata": {"name": "acme", "namespace": "tenants", "uid": "u-1"}, "spec": spec}
    return session_from_body(body)


HOOKED = {"url": "https://hooks.example.com:8443/wasp", "secretRef": {"name": "acme-hooks"}}


def test_the_spec_reads_into_a_webhook_with_the_default_key() -> None:
    assert session(HOOKED).webhook == Webhook(
        "https://hooks.example.com:8443/wasp", SecretRef("acme-hooks", "secret")
    )
    assert session().webhook is None


def test_a_session_without_a_webhook_gets_nothing_of_it_and_adding_one_replaces_the_pod() -> None:
    config = OperatorConfig(webhook_allowed_networks=("10.0.0.0/8",))
    plain = session()
    pod = build_pod(plain, config)
    names = {e["name"] for e in pod["spec"]["containers"][0]["env"]}
    assert not {n for n in names if n.startswith("WASP_WEBHOOK")}
    assert "webhook-secret" not in {v["name"] for v in pod["spec"]["volumes"]}
    assert spec_hash(plain, config) != spec_hash(session(HOOKED), config)


def test_the_secret_is_only_a_file_and_the_env_names_it() -> None:
    pod = build_pod(session(HOOKED), OperatorConfig())
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"] if "value" in e}
    assert env[contract.ENV_WEBHOOK_URL] == HOOKED["url"]
    assert env[contract.ENV_WEBHOOK_SECRET_FILE] == "/etc/wasp/webhook/secret"
    assert env[contract.ENV_WEBHOOK_SECRET_REF] == "acme-hooks/secret"
    assert contract.ENV_WEBHOOK_ALLOWED_NETWORKS not in env  # default: public addresses only


def test_the_webhook_port_is_opened_to_public_addresses_and_allowed_networks_only() -> None:
    config = OperatorConfig(webhook_allowed_networks=("10.20.0.0/16",))
    egress = build_network_policy(session(HOOKED), config)["spec"]["egress"]
    on_8443 = [r for r in egress if {"protocol": "TCP", "port": 8443} in r.get("ports", [])]
    public, private = on_8443
    assert public["to"][0]["ipBlock"]["cidr"] == "0.0.0.0/0"
    assert "169.254.0.0/16" in public["to"][0]["ipBlock"]["except"]
    assert private["to"] == [{"ipBlock": {"cidr": "10.20.0.0/16"}}]


def test_https_on_443_needs_no_new_rule() -> None:
    hooked = session({"url": "https://hooks.example.com/x", "secretRef": {"name": "h"}})
    plain = session()
    config = OperatorConfig()
    assert (
        build_network_policy(hooked, config)["spec"]["egress"]
        == build_network_policy(plain, config)["spec"]["egress"]
    )


def test_the_operators_allowed_networks_are_normalized_or_refused() -> None:
    variable = contract.ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS
    config = config_from_env({variable: "127.0.0.1, 10.1.2.3/16 ,fd00::/8"})
    assert config.webhook_allowed_networks == ("127.0.0.1/32", "10.1.0.0/16", "fd00::/8")
    with pytest.raises(ValueError, match="CIDRs"):
        config_from_env({variable: "10.0.0.0/8,intranet"})


def test_the_status_shows_the_webhook_as_the_session_reports_it() -> None:
    report = {
        contract.STATUS_PHASE: "Connected",
        contract.STATUS_WEBHOOK_STATE: "Failing",
        contract.STATUS_WEBHOOK_LAST_ERROR: "the receiver answered HTTP 500",
        contract.STATUS_WEBHOOK_FAILING_SINCE: "2030-01-01T00:00:00Z",
    }
    status = desired_status(
        tenant="acme",
        generation=1,
        expose_pairing=True,
        pod_name="wasp-session-acme",
        effective=report,
        previous={},
        now="2030-01-01T00:01:00Z",
    )
    assert status["webhook"] == {
        "state": "Failing",
        "lastError": "the receiver answered HTTP 500",
        "failingSince": "2030-01-01T00:00:00Z",
    }
    quiet = desired_status(
        tenant="acme",
        generation=1,
        expose_pairing=True,
        pod_name=None,
        effective={contract.STATUS_PHASE: "Connected"},
        previous={},
        now="",
    )
    assert "webhook" not in quiet
