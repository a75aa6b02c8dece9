"""The next step for a session's pod: at most one pod per tenant, never forced."""

from __future__ import annotations

from wasp_operator.reconcile import Step, decide
from wasp_operator.status import PodView


def pod(*, spec_hash: str = "h1", phase: str = "Running", deleting: bool = False) -> PodView:
    return PodView("wasp-session-acme", "uid", spec_hash, phase, ready=True, deleting=deleting)


def test_a_missing_pod_is_created() -> None:
    assert decide(suspended=False, desired_hash="h1", pod=None).step is Step.CREATE


def test_an_up_to_date_pod_is_left_alone() -> None:
    assert decide(suspended=False, desired_hash="h1", pod=pod()).step is Step.NOTHING


def test_a_pod_built_for_an_older_spec_is_deleted_first() -> None:
    decision = decide(suspended=False, desired_hash="h2", pod=pod())
    assert (decision.step, decision.reason) == (Step.DELETE, "SpecChanged")


def test_a_pod_of_an_older_pod_contract_is_replaced_whatever_its_spec_hash() -> None:
    # A pod made before tenant isolation has no pod-contract annotation (and
    # the admin Redis URL in its env): the upgrade replaces it, once.
    for version in (None, "1"):
        old = PodView(
            "wasp-session-acme",
            "uid",
            "h1",
            "Running",
            ready=True,
            deleting=False,
            contract_version=version,
        )
        decision = decide(suspended=False, desired_hash="h1", pod=old)
        assert (decision.step, decision.reason) == (Step.DELETE, "PodContractChanged")


def test_nothing_new_starts_while_the_old_pod_is_terminating() -> None:
    for suspended in (False, True):
        terminating = pod(spec_hash="h1", deleting=True)
        assert decide(suspended=suspended, desired_hash="h2", pod=terminating).step is Step.WAIT


def test_a_failed_or_finished_pod_is_replaced() -> None:
    for phase in ("Failed", "Succeeded"):
        assert decide(suspended=False, desired_hash="h1", pod=pod(phase=phase)).step is Step.DELETE


def test_suspension_removes_the_pod_and_creates_none() -> None:
    assert decide(suspended=True, desired_hash="h1", pod=pod()).step is Step.DELETE
    assert decide(suspended=True, desired_hash="h1", pod=None).step is Step.NOTHING
