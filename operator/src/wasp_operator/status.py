"""The resource's status, computed from the session's report and the pod: pure functions.

Owns the meaning of the status: which phase the resource shows (the session
pod's own word from Redis, overlaid with what only the operator knows: no
pod yet, suspended, a refusal such as a tenant owned by another resource),
the conditions and their reasons, when the live QR or pairing code may be
shown, the API's credential, and the merge patch that takes the stored
status to the desired one. No I/O: ``supervisor.py`` reads the inputs and
writes the patch. Which report may be relayed at all is ``relay.py``'s rule.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from wasp import contract
from wasp.timestamps import parse_timestamp

PAIRING_PHASES = frozenset({"AwaitingPairing"})
UNPAIRED_PHASES = frozenset({"AwaitingPairing", "LoggedOut", "PairingExpired"})
WARNING_PHASES = frozenset({"LoggedOut", "Conflict", "Banned", "PairingExpired", "Failed"})
PHASE_MESSAGES = {
    "Pending": "The session's pod is not running yet.",
    "Starting": "The session is restoring its auth state and connecting.",
    "AwaitingPairing": "Scan the QR code (or type the pairing code) on the phone to link it.",
    "Connected": "The account is linked and online; OTPs are delivered.",
    "Reconnecting": "The connection was lost; reconnecting with backoff. OTPs wait.",
    "LoggedOut": "The phone unlinked this device; a new pairing follows.",
    "Conflict": "Another client took over this account.",
    "Banned": "WhatsApp banned the account temporarily; waiting for the ban to expire.",
    "Suspended": "spec.suspend is true: the pod is stopped, the account stays linked.",
    "PairingExpired": "No one scanned in time; re-arm pairing with `kubectl wasp pair`.",
    "Failed": "The session cannot go on without a human; see lastError.",
}


@dataclass(frozen=True)
class PodView:
    """What the operator knows of a session's pod (from its index of pods)."""

    name: str
    uid: str
    spec_hash: str | None
    phase: str  # the pod's phase: Pending, Running, Succeeded, Failed, Unknown
    ready: bool
    deleting: bool
    created: str = ""  # RFC 3339 creationTimestamp
    contract_version: str | None = contract.POD_CONTRACT_VERSION  # its pod-contract annotation


def pod_view(body: Mapping[str, Any]) -> PodView:
    """Reduce a pod body to the facts the operator acts on."""
    meta, status = body.get("metadata") or {}, body.get("status") or {}
    conditions = status.get("conditions") or []
    return PodView(
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        spec_hash=(meta.get("annotations") or {}).get(contract.ANNOTATION_SPEC_HASH),
        phase=str(status.get("phase") or "Pending"),
        ready=any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions),
        deleting=bool(meta.get("deletionTimestamp")),
        created=str(meta.get("creationTimestamp") or ""),
        contract_version=(meta.get("annotations") or {}).get(contract.ANNOTATION_POD_CONTRACT),
    )


def _instant(text: str | None) -> dt.datetime | None:
    try:
        return parse_timestamp(text) if text else None
    except ValueError:
        return None


def _predates(report: Mapping[str, str], pod: PodView) -> bool:
    """Whether the report was written before this pod existed (by its predecessor).

    Every pod of a session has the same name, so the writer's name cannot
    tell them apart; the time of the last phase change can.
    """
    updated = _instant(report.get(contract.STATUS_UPDATED_AT))
    created = _instant(pod.created)
    return updated is not None and created is not None and updated < created


@dataclass(frozen=True)
class Refusal:
    """Why the operator will not run a session at all: the resource is Failed, with no pod."""

    reason: str  # e.g. contract.REASON_TENANT_CONFLICT
    message: str  # what happened and what to do, in a sentence or two


def tenant_conflict(tenant: str, owner: str) -> Refusal:
    """The refusal of a resource whose tenant another resource (``owner``) owns on its Redis."""
    return Refusal(
        contract.REASON_TENANT_CONFLICT,
        f"Another WhatsAppSession ({owner}) owns tenant {tenant} on this Redis; "
        "give this one another spec.tenantId, or delete it.",
    )


@dataclass(frozen=True)
class Overlay:
    """What the operator knows that the session pod cannot report."""

    suspended: bool = False
    pod: PodView | None = None
    refusal: Refusal | None = None


def effective_report(report: Mapping[str, str] | None, overlay: Overlay) -> dict[str, str]:
    """The session's status hash, with the phase the operator knows better overridden."""
    fields = dict(report or {})

    def say(phase: str, reason: str, message: str | None = None) -> dict[str, str]:
        fields[contract.STATUS_PHASE] = phase
        fields[contract.STATUS_REASON] = reason
        fields[contract.STATUS_MESSAGE] = message or PHASE_MESSAGES[phase]
        return fields

    pod = overlay.pod
    if overlay.refusal is not None:
        fields.clear()  # none of the report: it may be another resource's session
        fields[contract.STATUS_LAST_ERROR_REASON] = overlay.refusal.reason
        fields[contract.STATUS_LAST_ERROR_MESSAGE] = overlay.refusal.message
        return say("Failed", overlay.refusal.reason, overlay.refusal.message)
    if overlay.suspended:
        return say("Suspended", "Suspended")
    if pod is None or pod.deleting:
        return say("Pending", "PodMissing" if pod is None else "PodTerminating")
    if pod.phase != "Running":
        return say("Pending", f"Pod{pod.phase}")
    written_by = fields.get(contract.STATUS_POD)
    if (
        not fields.get(contract.STATUS_PHASE)
        or (written_by and written_by != pod.name)
        or _predates(fields, pod)
    ):
        return say("Starting", "PodStarted")
    return fields


def _condition(
    kind: str, *, true: bool, reason: str, message: str, generation: int
) -> dict[str, Any]:
    return {
        "type": kind,
        "status": "True" if true else "False",
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


def conditions_for(
    status: Mapping[str, str],
    generation: int,
    previous: Iterable[Mapping[str, Any]] = (),
    now: str = "",
) -> list[dict[str, Any]]:
    """Ready, Paired and Connected for a (effective) status hash.

    ``lastTransitionTime`` is kept from ``previous`` while a condition's
    status holds, and set to ``now`` when it changes.
    """
    phase = status.get(contract.STATUS_PHASE, "Pending")
    reason = status.get(contract.STATUS_REASON) or phase
    message = status.get(contract.STATUS_MESSAGE) or PHASE_MESSAGES.get(phase, phase)
    connected = phase == "Connected"
    lease_lost = status.get(contract.STATUS_LEASE_HELD) == "0"
    jid = status.get(contract.STATUS_ACCOUNT_JID)
    paired = bool(jid) and phase not in UNPAIRED_PHASES
    if paired:
        paired_reason, paired_message = "Paired", f"Linked to {jid}."
    elif phase in UNPAIRED_PHASES:
        paired_reason, paired_message = phase, PHASE_MESSAGES[phase]
    else:
        paired_reason, paired_message = "NotPaired", "No WhatsApp account is linked yet."
    conditions = [
        _condition(
            contract.CONDITION_READY,
            true=connected and not lease_lost,
            reason=(
                "SessionConnected"
                if connected and not lease_lost
                else ("LeaseNotHeld" if connected else reason)
            ),
            message=message,
            generation=generation,
        ),
        _condition(
            contract.CONDITION_PAIRED,
            true=paired,
            reason=paired_reason,
            message=paired_message,
            generation=generation,
        ),
        _condition(
            contract.CONDITION_CONNECTED,
            true=connected,
            reason="Connected" if connected else reason,
            message=message,
            generation=generation,
        ),
    ]
    before = {c.get("type"): c for c in previous}
    for condition in conditions:
        old = before.get(condition["type"])
        if old is not None and old.get("status") == condition["status"]:
            condition["lastTransitionTime"] = old.get("lastTransitionTime") or now
        else:
            condition["lastTransitionTime"] = now
    return conditions


def _drop_empty(mapping: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in mapping.items() if value not in (None, "", {})}


def desired_status(  # noqa: PLR0913 - every input is a separate fact
    *,
    tenant: str,
    generation: int,
    expose_pairing: bool,
    pod_name: str | None,
    effective: Mapping[str, str],
    previous: Mapping[str, Any],
    now: str,
    api_credentials: Mapping[str, str] | None = None,
    auth: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The status the resource should show.

    ``api_credentials`` ({secretName, username}) names the tenant API's
    Redis credential once its user exists; ``auth`` is the auth
    generation's high-water mark (``auth_mark.mark_as_status``).
    """
    phase = effective.get(contract.STATUS_PHASE, "Pending")
    status: dict[str, Any] = {
        "tenantId": tenant,
        "phase": phase,
        "observedGeneration": generation,
        "conditions": conditions_for(effective, generation, previous.get("conditions") or (), now),
    }
    if pod_name:
        status["podName"] = pod_name
    if phase in PAIRING_PHASES and expose_pairing:
        window = effective.get(contract.STATUS_PAIRING_WINDOW, "")
        pairing = _drop_empty(
            {
                "qrCode": effective.get(contract.STATUS_QR),
                "pairingCode": effective.get(contract.STATUS_PAIRING_CODE),
                "expiresAt": effective.get(contract.STATUS_PAIRING_EXPIRES_AT),
                "window": int(window) if window.isdigit() else None,
            }
        )
        if pairing.get("qrCode") or pairing.get("pairingCode"):
            status["pairing"] = pairing
    account = _drop_empty(
        {
            "jid": effective.get(contract.STATUS_ACCOUNT_JID),
            "pushName": effective.get(contract.STATUS_PUSH_NAME),
        }
    )
    if account:
        status["account"] = account
    error = _drop_empty(
        {
            "reason": effective.get(contract.STATUS_LAST_ERROR_REASON),
            "message": effective.get(contract.STATUS_LAST_ERROR_MESSAGE),
            "at": effective.get(contract.STATUS_LAST_ERROR_AT),
        }
    )
    if error:
        status["lastError"] = error
    webhook = _drop_empty(
        {
            "state": effective.get(contract.STATUS_WEBHOOK_STATE),
            "lastError": effective.get(contract.STATUS_WEBHOOK_LAST_ERROR),
            "failingSince": effective.get(contract.STATUS_WEBHOOK_FAILING_SINCE),
            "lastDeliveredAt": effective.get(contract.STATUS_WEBHOOK_DELIVERED_AT),
        }
    )
    if webhook:
        status["webhook"] = webhook
    if api_credentials:
        status["apiCredentials"] = dict(api_credentials)
    if auth:
        status["auth"] = dict(auth)
    return status


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch from ``current`` to ``desired`` (top-level keys), or None if equal.

    A changed object is sent whole, with ``None`` for the keys it lost (a
    merge patch merges objects: a key left out would stay).
    """
    patch: dict[str, Any] = {}
    for key, value in desired.items():
        before = current.get(key)
        if before == value:
            continue
        patch[key] = value
        if isinstance(value, Mapping) and isinstance(before, Mapping):
            patch[key] = {**{k: None for k in before if k not in value}, **value}
    patch.update({k: None for k in current if k not in desired})
    return patch or None


def event_type(phase: str) -> str:
    """The Kubernetes Event type for entering ``phase``."""
    return "Warning" if phase in WARNING_PHASES else "Normal"
