"""The auth generation's high-water mark: when a lower generation is a Redis rollback."""

from __future__ import annotations

from wasp import contract
from wasp_operator.auth_mark import (
    AuthMark,
    Rollback,
    judge,
    mark_as_status,
    mark_from_status,
    with_rollback,
)
from wasp_operator.status import status_patch

JID = "4915112345678@s.whatsapp.net"
NOW = "2030-01-01T00:00:00Z"


def report(
    generation: int,
    phase: str = "Connected",
    jid: str = JID,
    token: str = "5",  # noqa: S107 - a fencing token
) -> dict[str, str]:
    return {
        contract.STATUS_PHASE: phase,
        contract.STATUS_ACCOUNT_JID: jid,
        contract.STATUS_AUTH_GENERATION: str(generation),
        contract.STATUS_LEASE_TOKEN: token,
    }


def test_the_mark_rises_with_the_generation_and_never_falls_back_silently() -> None:
    first = judge(report(7), "pod-a", None, NOW)
    assert first.mark == AuthMark(7, JID, "pod-a", "5")
    assert first.found is None
    assert judge(report(8), "pod-a", first.mark, NOW).mark == AuthMark(8, JID, "pod-a", "5")
    assert judge(report(5), "pod-a", first.mark, NOW) == first  # unchanged, nothing found


def test_an_older_generation_from_a_new_pod_is_a_rollback_found_once() -> None:
    mark = AuthMark(7, JID, "pod-a", "5")
    verdict = judge(report(3), "pod-b", mark, NOW)
    assert verdict.found == Rollback(restored=3, reached=7, at=NOW)
    assert verdict.mark == AuthMark(3, JID, "pod-b", "5", verdict.found)
    again = judge(report(3), "pod-b", verdict.mark, NOW)
    assert again.found is None
    assert again.mark == verdict.mark
    later = judge(report(4), "pod-b", verdict.mark, NOW)
    assert later.found is None
    assert later.mark == AuthMark(4, JID, "pod-b", "5", verdict.found)  # still shown


def test_the_process_that_reached_the_mark_reports_its_own_rollback() -> None:
    # A rolled-back status hash read while that process lives: it has the newer state.
    assert judge(report(3), "pod-a", AuthMark(7, JID, "pod-a", "5"), NOW).found is None


def test_a_restarted_container_that_restored_an_older_generation_is_a_rollback() -> None:
    # Same pod, a new process (a new lease token): its local copy was not kept.
    verdict = judge(report(3, token="6"), "pod-a", AuthMark(7, JID, "pod-a", "5"), NOW)
    assert verdict.found == Rollback(restored=3, reached=7, at=NOW)


def test_a_logout_or_another_account_starts_a_new_count() -> None:
    mark = AuthMark(7, JID, "pod-a", "5")
    assert judge(report(7, phase="LoggedOut"), "pod-a", mark, NOW).mark is None
    assert judge(report(0, phase="AwaitingPairing", jid=""), "pod-a", mark, NOW).mark is None
    other = judge(report(1, jid="4915199999999@s.whatsapp.net"), "pod-b", mark, NOW)
    assert other.found is None
    assert other.mark == AuthMark(1, "4915199999999@s.whatsapp.net", "pod-b", "5")


def test_no_report_keeps_the_mark() -> None:
    mark = AuthMark(7, JID, "pod-a", "5")
    assert judge(None, "pod-b", mark, NOW).mark == mark


def test_the_mark_round_trips_through_the_status() -> None:
    mark = AuthMark(3, JID, "pod-b", "5", Rollback(3, 7, NOW))
    assert mark_from_status({"auth": mark_as_status(mark)}) == mark
    assert mark_from_status({}) is None


def test_the_rollback_is_the_last_error_until_a_newer_one() -> None:
    mark = AuthMark(3, JID, "pod-b", "5", Rollback(3, 7, NOW))
    shown = with_rollback({contract.STATUS_LAST_ERROR_AT: "2029-12-31T00:00:00Z"}, mark)
    assert shown[contract.STATUS_LAST_ERROR_REASON] == contract.REASON_REDIS_ROLLED_BACK
    assert (
        "restored from generation 3, the session had reached 7"
        in (shown[contract.STATUS_LAST_ERROR_MESSAGE])
    )
    newer = {
        contract.STATUS_LAST_ERROR_REASON: "StreamReplaced",
        contract.STATUS_LAST_ERROR_AT: "2030-01-02T00:00:00Z",
    }
    assert with_rollback(newer, mark) == newer


def test_a_new_account_patches_the_old_rollback_away() -> None:
    before = {"auth": mark_as_status(AuthMark(3, JID, "pod-b", "5", Rollback(3, 7, NOW)))}
    after = {"auth": mark_as_status(AuthMark(1, JID, "pod-b", "5"))}
    patch = status_patch(before, after)
    assert patch is not None
    assert patch["auth"]["rollback"] is None  # a merge patch would otherwise keep it
