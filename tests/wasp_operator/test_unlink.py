"""What a deletion does about the session's device, and the Event that says so (pure)."""

from __future__ import annotations

import dataclasses

import pytest

from wasp import contract
from wasp_operator.relay import Reading
from wasp_operator.sessions import Session
from wasp_operator.unlink import Outcome, Result, Step, event_for, plan

JID = "4915112345678@s.whatsapp.net"
SESSION = Session(name="acme", namespace="ns", uid="uid-1", generation=1, tenant="acme")


def reading(phase: str = "Connected", *, lease: bool = True, account: bool = True) -> Reading:
    status = {
        contract.STATUS_PHASE: phase,
        contract.STATUS_LEASE_TOKEN: "7",
        contract.STATUS_POD: "wasp-session-acme",
    }
    if account:
        status[contract.STATUS_ACCOUNT_JID] = JID
    return Reading(status, "7 wasp-session-acme" if lease else None, "7")


def test_a_connected_linked_session_is_unlinked() -> None:
    decided = plan(SESSION, reading(), owned=True, auth_stored=True, known_account="")
    assert (decided.step, decided.account) == (Step.UNLINK, JID)


def test_a_session_never_paired_is_left_alone() -> None:
    unpaired = reading("AwaitingPairing", account=False)
    decided = plan(SESSION, unpaired, owned=True, auth_stored=False, known_account="")
    assert decided.step is Step.NOTHING


def test_a_resource_that_does_not_own_its_tenant_never_touches_the_device() -> None:
    decided = plan(SESSION, reading(), owned=False, auth_stored=True, known_account="")
    assert decided.step is Step.NOTHING


def test_unlink_on_delete_false_keeps_the_device() -> None:
    keeping = dataclasses.replace(SESSION, unlink_on_delete=False)
    decided = plan(keeping, reading(), owned=True, auth_stored=True, known_account="")
    assert decided.step is Step.KEEP


@pytest.mark.parametrize(
    ("seen", "why"),
    [
        (reading(lease=False), "no pod holds the session's lease"),
        (reading("Reconnecting"), "the session is Reconnecting, not Connected"),
    ],
)
def test_a_linked_device_no_pod_can_log_out_is_reported(seen: Reading, why: str) -> None:
    decided = plan(SESSION, seen, owned=True, auth_stored=True, known_account=JID)
    assert decided.step is Step.CANNOT
    assert why in decided.why


def test_the_events_name_the_account_masked_and_say_what_to_do() -> None:
    assert event_for(Result(Outcome.UNLINKED, JID)) == (
        "Normal",
        "DeviceUnlinked",
        "Logged out the linked device of +49…78 before deleting the session.",
    )
    warning = event_for(Result(Outcome.FAILED, JID, "the tenant's Redis failed"))
    assert warning is not None
    kind, reason, message = warning
    assert (kind, reason) == ("Warning", "DeviceNotUnlinked")
    assert "the tenant's Redis failed" in message
    assert "remove the device in the phone's Linked devices" in message
    assert event_for(Result(Outcome.KEPT, JID)) is not None
    assert event_for(Result(Outcome.NOT_LINKED)) is None
