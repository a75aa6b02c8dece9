"""The resource's status: the session's word, the operator's overlay, conditions."""

from __future__ import annotations

from typing import Any

from wasp import contract
from wasp_operator.status import (
    Overlay,
    PodView,
    Refusal,
    conditions_for,
    desired_status,
    effective_report,
    event_type,
    pod_view,
    status_patch,
    tenant_conflict,
)

RUNNING = PodView("wasp-session-acme", "uid-1", "h", "Running", ready=True, deleting=False)
CONNECTED = {
    contract.STATUS_PHASE: "Connected",
    contract.STATUS_ACCOUNT_JID: "4915112345678@s.whatsapp.net",
    contract.STATUS_PUSH_NAME: "Acme",
    contract.STATUS_POD: "wasp-session-acme",
    contract.STATUS_LEASE_HELD: "1",
}
PAIRING = {
    contract.STATUS_PHASE: "AwaitingPairing",
    contract.STATUS_QR: "2@abc,def",
    contract.STATUS_PAIRING_EXPIRES_AT: "2026-01-01T00:01:00Z",
    contract.STATUS_PAIRING_WINDOW: "1",
    contract.STATUS_POD: "wasp-session-acme",
}


def by_type(conditions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in conditions}


def status_for(
    report: dict[str, str] | None, *, expose: bool = True, previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    return desired_status(
        tenant="acme",
        generation=3,
        expose_pairing=expose,
        pod_name=RUNNING.name,
        effective=effective_report(report, Overlay(pod=RUNNING)),
        previous=previous or {},
        now="2026-01-01T00:00:00Z",
    )


def test_a_connected_session_is_ready_paired_and_connected() -> None:
    conditions = by_type(conditions_for(CONNECTED, generation=3))
    assert {kind: c["status"] for kind, c in conditions.items()} == {
        "Ready": "True",
        "Paired": "True",
        "Connected": "True",
    }
    assert all(c["observedGeneration"] == 3 for c in conditions.values())
    assert conditions["Ready"]["reason"] == "SessionConnected"
    assert "4915112345678@s.whatsapp.net" in conditions["Paired"]["message"]


def test_a_reconnecting_session_stays_paired_but_is_not_ready() -> None:
    report = CONNECTED | {contract.STATUS_PHASE: "Reconnecting", contract.STATUS_REASON: "Network"}
    conditions = by_type(conditions_for(report, generation=1))
    assert conditions["Ready"]["status"] == "False"
    assert conditions["Ready"]["reason"] == "Network"
    assert conditions["Connected"]["status"] == "False"
    assert conditions["Paired"]["status"] == "True"


def test_pairing_and_logged_out_sessions_are_not_paired() -> None:
    for phase in ("AwaitingPairing", "LoggedOut", "PairingExpired"):
        paired = by_type(conditions_for({contract.STATUS_PHASE: phase}, 1))["Paired"]
        assert (paired["status"], paired["reason"]) == ("False", phase)


def test_a_connected_pod_without_the_lease_is_not_ready() -> None:
    report = CONNECTED | {contract.STATUS_LEASE_HELD: "0"}
    ready = by_type(conditions_for(report, 1))["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "LeaseNotHeld")


def test_transition_times_move_only_when_a_condition_flips() -> None:
    first = conditions_for(PAIRING, 1, now="t1")
    again = conditions_for(PAIRING, 2, previous=first, now="t2")
    assert all(c["lastTransitionTime"] == "t1" for c in again)
    connected = by_type(conditions_for(CONNECTED, 2, previous=again, now="t3"))
    assert connected["Connected"]["lastTransitionTime"] == "t3"


def test_the_qr_shows_in_the_status_only_while_pairing_and_only_if_exposed() -> None:
    pairing = status_for(PAIRING)
    assert pairing["phase"] == "AwaitingPairing"
    assert pairing["pairing"] == {
        "qrCode": "2@abc,def",
        "expiresAt": "2026-01-01T00:01:00Z",
        "window": 1,
    }
    assert "pairing" not in status_for(PAIRING, expose=False)
    stale_qr = CONNECTED | {contract.STATUS_QR: "2@old"}
    assert "pairing" not in status_for(stale_qr)


def test_once_paired_a_patch_removes_the_qr_from_the_status() -> None:
    before = status_for(PAIRING)
    after = status_for(CONNECTED, previous=before)
    patch = status_patch(before, after)
    assert patch is not None
    assert patch["pairing"] is None
    assert patch["phase"] == "Connected"
    assert patch["account"] == {"jid": "4915112345678@s.whatsapp.net", "pushName": "Acme"}
    assert status_patch(after, status_for(CONNECTED, previous=after)) is None


def test_the_last_error_is_shown() -> None:
    report = {
        contract.STATUS_PHASE: "LoggedOut",
        contract.STATUS_POD: RUNNING.name,
        contract.STATUS_LAST_ERROR_REASON: "LoggedOut",
        contract.STATUS_LAST_ERROR_MESSAGE: "the phone unlinked this device",
        contract.STATUS_LAST_ERROR_AT: "2026-01-01T00:00:00Z",
    }
    assert status_for(report)["lastError"] == {
        "reason": "LoggedOut",
        "message": "the phone unlinked this device",
        "at": "2026-01-01T00:00:00Z",
    }


def test_what_only_the_operator_knows_overrides_the_sessions_report() -> None:
    def phase(report: dict[str, str] | None, overlay: Overlay) -> tuple[str, str]:
        fields = effective_report(report, overlay)
        return fields[contract.STATUS_PHASE], fields.get(contract.STATUS_REASON, "")

    pending = PodView("wasp-session-acme", "u", "h", "Pending", ready=False, deleting=False)
    stopping = PodView("wasp-session-acme", "u", "h", "Running", ready=True, deleting=True)
    newer = PodView("wasp-session-acme-2", "u", "h", "Running", ready=False, deleting=False)
    assert phase(CONNECTED, Overlay(suspended=True, pod=RUNNING)) == ("Suspended", "Suspended")
    assert phase(CONNECTED, Overlay(pod=None)) == ("Pending", "PodMissing")
    assert phase(CONNECTED, Overlay(pod=pending)) == ("Pending", "PodPending")
    assert phase(CONNECTED, Overlay(pod=stopping)) == ("Pending", "PodTerminating")
    assert phase(None, Overlay(pod=RUNNING)) == ("Starting", "PodStarted")
    assert phase(CONNECTED, Overlay(pod=newer)) == ("Starting", "PodStarted")
    assert phase(CONNECTED, Overlay(pod=RUNNING)) == ("Connected", "")
    conflict = tenant_conflict("acme", "ns/other")
    assert phase(CONNECTED, Overlay(pod=RUNNING, refusal=conflict)) == (
        "Failed",
        contract.REASON_TENANT_CONFLICT,
    )
    # The account stays known while the pod is away: the link outlives the pod.
    suspended = effective_report(CONNECTED, Overlay(suspended=True))
    assert suspended[contract.STATUS_ACCOUNT_JID] == "4915112345678@s.whatsapp.net"


def test_bad_phases_post_warning_events() -> None:
    assert event_type("Connected") == "Normal"
    assert event_type("LoggedOut") == "Warning"
    assert event_type("Failed") == "Warning"


def test_a_pod_body_reduces_to_what_the_operator_acts_on() -> None:
    body = {
        "metadata": {
            "name": "wasp-session-acme",
            "uid": "u-9",
            "annotations": {
                contract.ANNOTATION_SPEC_HASH: "abc",
                contract.ANNOTATION_POD_CONTRACT: "7",
            },
            "deletionTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
    }
    assert pod_view(body) == PodView(
        "wasp-session-acme",
        "u-9",
        "abc",
        "Running",
        ready=True,
        deleting=True,
        contract_version="7",
    )
    bare = pod_view({"metadata": {"name": "p"}})
    assert (bare.phase, bare.contract_version) == ("Pending", None)  # a pod of before the contract


def test_a_report_older_than_the_pod_is_its_predecessors() -> None:
    pod = PodView(
        "wasp-session-acme",
        "u2",
        "h",
        "Running",
        ready=False,
        deleting=False,
        created="2026-01-01T00:05:00Z",
    )
    stale = CONNECTED | {contract.STATUS_UPDATED_AT: "2026-01-01T00:04:59Z"}
    fresh = CONNECTED | {contract.STATUS_UPDATED_AT: "2026-01-01T00:05:01Z"}
    assert effective_report(stale, Overlay(pod=pod))[contract.STATUS_PHASE] == "Starting"
    assert effective_report(fresh, Overlay(pod=pod))[contract.STATUS_PHASE] == "Connected"


def test_a_refused_session_is_failed_with_the_reason_and_none_of_the_tenants_report() -> None:
    refusal = tenant_conflict("acme", "tenants/acme")
    fields = effective_report(CONNECTED | PAIRING, Overlay(pod=None, refusal=refusal))
    shown = desired_status(
        tenant="acme",
        generation=1,
        expose_pairing=True,
        pod_name=None,
        effective=fields,
        previous={},
        now="t",
    )
    assert shown["phase"] == "Failed"
    assert shown["lastError"]["reason"] == contract.REASON_TENANT_CONFLICT
    assert "tenants/acme" in shown["lastError"]["message"]
    assert "account" not in shown, "the owner's account is not the impostor's to show"
    assert "pairing" not in shown
    ready = by_type(shown["conditions"])["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", contract.REASON_TENANT_CONFLICT)
    image = Refusal(contract.REASON_IMAGE_NOT_ALLOWED, "spec.podTemplate.image 'x' is not allowed")
    assert effective_report(None, Overlay(refusal=image))[contract.STATUS_REASON] == (
        contract.REASON_IMAGE_NOT_ALLOWED
    )


def test_the_apis_credential_is_named_in_the_status_once_given() -> None:
    credentials = {"secretName": "wasp-api-acme-redis", "username": "wasp-api-acme"}
    shown = desired_status(
        tenant="acme",
        generation=1,
        expose_pairing=True,
        pod_name=None,
        effective={},
        previous={},
        now="t",
        api_credentials=credentials,
    )
    assert shown["apiCredentials"] == credentials
    assert "apiCredentials" not in status_for(CONNECTED)
