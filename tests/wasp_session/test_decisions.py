"""The event table and the backoff, as plain functions."""

from __future__ import annotations

import pytest

from wasp import contract
from wasp_session.decisions import (
    AccountVerdict,
    Action,
    account_refusal,
    backoff_ceiling,
    backoff_delay,
    connection_is_stable,
    decide,
    judge_account,
    start_failure_is_fatal,
)
from wasp_session.transport.base import (
    Connected,
    ConnectFailed,
    Disconnected,
    LoggedOut,
    PairingWindowEnded,
    QRCodeIssued,
    StreamReplaced,
    TemporarilyBanned,
    TransportEvent,
    TransportStopped,
)


@pytest.mark.parametrize(
    ("event", "action", "phase"),
    [
        (QRCodeIssued("2@x", 60), Action.SHOW_PAIRING, "AwaitingPairing"),
        (Connected(), Action.ONLINE, "Connected"),
        (Disconnected("gone"), Action.PAUSE, "Reconnecting"),
        (LoggedOut("unlinked"), Action.WIPE_AND_PAIR, "LoggedOut"),
        (StreamReplaced(), Action.HALT, "Conflict"),
        (TemporarilyBanned(101, 60), Action.WAIT_BAN, "Banned"),
        (ConnectFailed("old", client_outdated=True), Action.FAIL, "Failed"),
        (ConnectFailed("unknown"), Action.FAIL, "Failed"),
        (TransportStopped("ended"), Action.RESTART_PROCESS, "Reconnecting"),
    ],
)
def test_each_event_leads_to_its_phase(event: TransportEvent, action: Action, phase: str) -> None:
    decision = decide(event, windows_used=0, max_windows=3)
    assert decision.action is action
    assert decision.phase == phase


def test_client_outdated_says_so() -> None:
    assert decide(
        ConnectFailed("x", client_outdated=True), windows_used=0, max_windows=1
    ).reason == ("ClientOutdated")


def test_pairing_windows_are_counted_until_they_run_out() -> None:
    assert decide(PairingWindowEnded(), windows_used=0, max_windows=3).action is Action.NEW_WINDOW
    assert decide(PairingWindowEnded(), windows_used=1, max_windows=3).action is Action.NEW_WINDOW
    last = decide(PairingWindowEnded(), windows_used=2, max_windows=3)
    assert last.action is Action.EXPIRE_PAIRING
    assert last.phase == "PairingExpired"


def test_backoff_grows_exponentially_up_to_the_cap() -> None:
    ceilings = [backoff_ceiling(attempt, base=1, cap=60) for attempt in range(8)]
    assert ceilings == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(10_000, base=1, cap=60) == 60


def test_backoff_has_full_jitter() -> None:
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 0.0) == 0
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 0.5) == 4
    assert backoff_delay(3, base=1, cap=60, rand=lambda: 0.999) < 8


def test_start_failures_and_stability() -> None:
    assert not start_failure_is_fatal(2, 3)
    assert start_failure_is_fatal(3, 3)
    assert connection_is_stable(60, 60)
    assert not connection_is_stable(5, 60)


# ---------------------------------------------------------------- the account pin
@pytest.mark.parametrize(
    ("pinned", "account", "verdict"),
    [
        (None, "4915112345678", AccountVerdict.PIN),
        ("4915112345678", "4915112345678", AccountVerdict.MATCH),
        ("4915112345612", "4915112345678", AccountVerdict.MISMATCH),
        ("4915112345678", "", AccountVerdict.UNKNOWN),
        (None, "", AccountVerdict.UNKNOWN),
    ],
)
def test_an_account_is_judged_against_the_pin(
    pinned: str | None, account: str, verdict: AccountVerdict
) -> None:
    assert judge_account(pinned, account) is verdict


def test_a_refused_pairing_says_which_accounts_and_how_to_rearm_without_whole_numbers() -> None:
    refusal = account_refusal(
        AccountVerdict.MISMATCH,
        tenant="acme",
        account="4915112345678",
        pinned="4915187654312",
        restored=False,
    )
    assert refusal.action is Action.REFUSE_ACCOUNT
    assert (refusal.phase, refusal.reason) == ("Failed", contract.REASON_ACCOUNT_MISMATCH)
    assert refusal.message.startswith("paired with +49…78 but this session is pinned to +49…12;")
    assert "`wasp pair acme --new-account`" in refusal.message
    assert "4915112345678" not in refusal.message
    assert "4915187654312" not in refusal.message


def test_a_refused_stored_device_and_an_unknown_account_say_so() -> None:
    stored = account_refusal(
        AccountVerdict.MISMATCH,
        tenant="acme",
        account="4915112345678",
        pinned="4915187654312",
        restored=True,
    )
    assert stored.message.startswith("the stored device belongs to +49…78")
    unknown = account_refusal(
        AccountVerdict.UNKNOWN, tenant="acme", account="", pinned="4915187654312", restored=True
    )
    assert unknown.reason == contract.REASON_ACCOUNT_MISMATCH
    assert "did not say which account" in unknown.message
    assert "wasp pair acme" in unknown.message
