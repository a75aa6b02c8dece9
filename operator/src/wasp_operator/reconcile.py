"""What to do about a session's pod: one pure decision, level-based.

Given what the session asks for and the pod that exists (if any), say the
one next step that brings the world closer to the spec. Called again after
every change (of the resource, of the pod, or on a timer), so each step is
small and a missed event only delays, never loses, a step.

A pod made for another version of the pod contract (``contract.
POD_CONTRACT_VERSION``: how the container gets its secrets) is outdated
whatever its spec hash. At most one pod per tenant: an outdated or failed pod is deleted (never
force-deleted) and a new one is created only once the old object is gone.
This module does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from wasp import contract
from wasp_operator.status import PodView

REPLACED_POD_PHASES = frozenset({"Succeeded", "Failed"})


class Step(enum.Enum):
    """The next step for a session's pod."""

    NOTHING = "nothing"  # the pod matches the spec
    CREATE = "create"  # no pod: create one
    DELETE = "delete"  # the pod must go (suspended, outdated, failed)
    WAIT = "wait"  # a pod is terminating: wait until its object is gone


@dataclass(frozen=True)
class Decision:
    """A step and why, for logs and Events."""

    step: Step
    reason: str


def decide(*, suspended: bool, desired_hash: str, pod: PodView | None) -> Decision:
    """The next step for a session's pod."""
    if pod is not None and pod.deleting:
        return Decision(Step.WAIT, "PodTerminating")
    if pod is None:
        return (
            Decision(Step.NOTHING, "Suspended")
            if suspended
            else Decision(Step.CREATE, "PodMissing")
        )
    if suspended:
        return Decision(Step.DELETE, "Suspended")
    outdated = _outdated(pod, desired_hash)
    if outdated is not None:
        return Decision(Step.DELETE, outdated)
    return Decision(Step.NOTHING, "UpToDate")


def _outdated(pod: PodView, desired_hash: str) -> str | None:
    """Why a live pod must be replaced (failed, older contract or spec), or None."""
    if pod.phase in REPLACED_POD_PHASES:
        return f"Pod{pod.phase}"
    if pod.contract_version != contract.POD_CONTRACT_VERSION:
        return "PodContractChanged"
    if pod.spec_hash != desired_hash:
        return "SpecChanged"
    return None
