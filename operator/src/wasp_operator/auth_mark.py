"""The auth generation's high-water mark in the resource's status: a Redis rollback no pod saw.

A session pod finds a rollback itself when it has newer state (its live
session, or its local copy after a container restart). A pod rescheduled
without its data dir has none: it restores whatever Redis holds. etcd is not
rolled back with Redis, so the operator keeps ``status.auth``: the highest
``auth_generation`` the lease holder reported for the account, and which
session process reported it (its pod's uid and its lease's fencing token).
A lower generation for the same account from another process (a new pod, a
restarted container: the process that reported the mark has the newer state,
and writes it back and says so itself) is a rollback: reported once, and the
lower generation becomes the mark. The last one found stays in
``status.auth.rollback`` (and in ``lastError`` until a newer error) until
the account changes.

The mark starts afresh, with no rollback, whenever the account does: a
logout wipes the auth state and pairing starts again at generation 1, so a
report while unpaired (``LoggedOut``, ``AwaitingPairing``,
``PairingExpired``), without an account, or naming another account resets
it.

Pure functions: ``supervisor.py`` reads the report and writes the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from wasp import contract

_UNPAIRED_PHASES = frozenset({"AwaitingPairing", "LoggedOut", "PairingExpired"})


@dataclass(frozen=True)
class Rollback:
    """Redis went back: the auth state in use is older than the session had reached."""

    restored: int  # the generation a pod now reports
    reached: int  # the highest the session had reported before
    at: str  # RFC 3339, when the operator found it


@dataclass(frozen=True)
class AuthMark:
    """The highest auth generation reported for one account, and by which pod."""

    generation: int
    jid: str
    pod_uid: str
    lease_token: str  # with the pod's uid: the session process that reported it
    rollback: Rollback | None = None  # the last rollback found for this account


@dataclass(frozen=True)
class Verdict:
    """The mark the status should hold, and a rollback found just now (to tell once)."""

    mark: AuthMark | None
    found: Rollback | None = None


def rollback_message(rollback: Rollback) -> str:
    """What happened and what to do, in the words of ``lastError`` and the Event."""
    return (
        f"Redis lost recent writes: the auth state was restored from generation "
        f"{rollback.restored}, the session had reached {rollback.reached}; "
        "if messages fail to decrypt, pair again (kubectl wasp pair)."
    )


def mark_from_status(status: Mapping[str, Any]) -> AuthMark | None:
    """The mark in a resource's status (``status.auth``), if it holds a usable one."""
    auth = status.get("auth")
    if not isinstance(auth, Mapping):
        return None
    generation, jid = auth.get("generation"), auth.get("accountJID")
    if not isinstance(generation, int) or not isinstance(jid, str) or not jid:
        return None
    found = auth.get("rollback")
    rollback = None
    if isinstance(found, Mapping):
        restored, reached = found.get("restoredGeneration"), found.get("reachedGeneration")
        if isinstance(restored, int) and isinstance(reached, int):
            rollback = Rollback(restored, reached, str(found.get("at") or ""))
    writer = str(auth.get("podUID") or ""), str(auth.get("leaseToken") or "")
    return AuthMark(generation, jid, *writer, rollback)


def mark_as_status(mark: AuthMark) -> dict[str, Any]:
    """``status.auth`` for a mark."""
    auth: dict[str, Any] = {
        "generation": mark.generation,
        "accountJID": mark.jid,
        "podUID": mark.pod_uid,
        "leaseToken": mark.lease_token,
    }
    if mark.rollback is not None:
        auth["rollback"] = {
            "restoredGeneration": mark.rollback.restored,
            "reachedGeneration": mark.rollback.reached,
            "at": mark.rollback.at,
        }
    return auth


def _generation(report: Mapping[str, str]) -> int | None:
    text = report.get(contract.STATUS_AUTH_GENERATION, "")
    return int(text) if text.isdigit() else None


def _raised(mark: AuthMark, generation: int, writer: tuple[str, str]) -> AuthMark:
    """The mark, raised to ``generation`` (now ``writer``'s) if that is higher."""
    if generation <= mark.generation:
        return mark
    return AuthMark(generation, mark.jid, *writer, mark.rollback)


def judge(
    report: Mapping[str, str] | None, pod_uid: str, mark: AuthMark | None, now: str
) -> Verdict:
    """Take the lease holder's ``report`` (as ``pod_uid``'s) against the ``mark``.

    No report (none, or not the lease holder's) changes nothing.
    """
    writer = pod_uid, "" if report is None else report.get(contract.STATUS_LEASE_TOKEN, "")
    if report is None:
        return Verdict(mark)
    jid = report.get(contract.STATUS_ACCOUNT_JID, "")
    if not jid or report.get(contract.STATUS_PHASE) in _UNPAIRED_PHASES:
        return Verdict(None)  # logged out or pairing: a new account starts a new count
    generation = _generation(report)
    if mark is None or mark.jid != jid:
        return Verdict(None if generation is None else AuthMark(generation, jid, *writer))
    if generation is None:
        return Verdict(mark)
    if generation >= mark.generation or writer == (mark.pod_uid, mark.lease_token):
        # Below the mark from the process that reported it: it has the newer state, and
        # writes it back and says so itself (``wasp_session.rollback``).
        return Verdict(_raised(mark, generation, writer))
    found = Rollback(restored=generation, reached=mark.generation, at=now)
    return Verdict(AuthMark(generation, jid, *writer, found), found)


def with_rollback(effective: Mapping[str, str], mark: AuthMark | None) -> dict[str, str]:
    """The effective report, its last error the mark's rollback unless the report's is newer."""
    fields = dict(effective)
    rollback = None if mark is None else mark.rollback
    if rollback is None or fields.get(contract.STATUS_LAST_ERROR_AT, "") > rollback.at:
        return fields  # RFC 3339 UTC at second precision: text order is time order
    fields[contract.STATUS_LAST_ERROR_REASON] = contract.REASON_REDIS_ROLLED_BACK
    fields[contract.STATUS_LAST_ERROR_MESSAGE] = rollback_message(rollback)
    fields[contract.STATUS_LAST_ERROR_AT] = rollback.at
    return fields
