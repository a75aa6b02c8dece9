"""Logging a session's device out of its account before the session is deleted.

A deleted session whose device stays linked leaves a dead device in the
phone's Linked devices. So, unless ``spec.unlinkOnDelete`` is false, the
deletion first asks the running pod to log out (``contract.CONTROL_UNLINK``
on the tenant's control list, pushed with the admin connection as ``wasp
logout`` pushes its command) and waits, bounded by ``UNLINK_TIMEOUT_SECONDS``,
for the lease holder to report ``LoggedOut``. ``unlink`` (not ``logout``)
tells the pod to stay logged out: it opens no new pairing window, so no QR
or code is shown while the session goes.

Owns that decision (``plan``, pure), the wait, and the Event that says how
it ended (``event_for``, pure). It never deletes the pod, the tenant's keys
or users, and never raises: whatever happens, the deletion goes on
(``supervisor.clean_up``), the Event says why the device may still be linked.
"""

from __future__ import annotations

import asyncio
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.exceptions import RedisError

from wasp import contract
from wasp.accounts import account_of_jid, mask_account
from wasp_operator import ownership
from wasp_operator.errors import OperatorError
from wasp_operator.relay import Reading, StatusRelay, not_from_lease_holder
from wasp_operator.sessions import Session

UNLINK_TIMEOUT_SECONDS: Final = 20.0  # a connected pod logs out within a second or two
POLL_SECONDS: Final = 0.25
REDIS_SECONDS: Final = 10.0  # on top: a Redis that never answers ends the attempt too
REASON_UNLINKED: Final = "DeviceUnlinked"
REASON_NOT_UNLINKED: Final = "DeviceNotUnlinked"
REASON_KEPT_LINKED: Final = "DeviceKeptLinked"


class Step(enum.Enum):
    """What a deletion does about the session's device."""

    NOTHING = "nothing"  # no device linked (never paired, logged out), or not the tenant's owner
    KEEP = "keep"  # linked, and spec.unlinkOnDelete is false
    UNLINK = "unlink"  # linked, and the pod is connected: ask it to log out
    CANNOT = "cannot"  # linked, but no connected pod can log it out


class Outcome(enum.Enum):
    """How a deletion ended for the session's device (the metric's label)."""

    NOT_LINKED = "not_linked"
    KEPT = "kept"
    UNLINKED = "unlinked"
    FAILED = "failed"


@dataclass(frozen=True)
class Plan:
    """The step, the account's JID (``""``: unknown) and, for ``CANNOT``, why."""

    step: Step
    account: str = ""
    why: str = ""


@dataclass(frozen=True)
class Result:
    """How the unlinking ended, for the Event and the metric."""

    outcome: Outcome
    account: str = ""
    why: str = ""


def account_in_status(body: Mapping[str, Any]) -> str:
    """The account JID the resource's status shows (``""``: none)."""
    status = body.get("status")
    account = status.get("account") if isinstance(status, Mapping) else None
    return str(account.get("jid") or "") if isinstance(account, Mapping) else ""


def plan(
    session: Session, reading: Reading, *, owned: bool, auth_stored: bool, known_account: str
) -> Plan:
    """What to do about the device: ``auth_stored`` says the tenant's auth key exists.

    Only the tenant's owner (``owned``) touches its device. A device counts
    as linked while its auth state is stored or the status hash names its
    account. Only the lease holder, reporting Connected, can log it out.
    """
    account = reading.status.get(contract.STATUS_ACCOUNT_JID) or known_account
    if not owned or (not auth_stored and not reading.status.get(contract.STATUS_ACCOUNT_JID)):
        return Plan(Step.NOTHING, account)
    if not session.unlink_on_delete:
        return Plan(Step.KEEP, account)
    phase = reading.status.get(contract.STATUS_PHASE, "")
    why = not_from_lease_holder(reading)
    if reading.lease is None:
        why = "no pod holds the session's lease (its pod is not running)"
    elif why is not None:
        why = f"the session's status is not its lease holder's ({why})"
    elif phase != "Connected":
        why = f"the session is {phase or 'not reporting'}, not Connected"
    return Plan(Step.CANNOT, account, why) if why else Plan(Step.UNLINK, account)


def logged_out(reading: Reading) -> bool:
    """Whether the lease holder (or the last one) reports the device logged out."""
    return (
        not_from_lease_holder(reading) is None
        and reading.status.get(contract.STATUS_PHASE) == "LoggedOut"
    )


async def unlink(
    relay: StatusRelay,
    url: str,
    session: Session,
    known_account: str,
    wait_seconds: float = UNLINK_TIMEOUT_SECONDS,
) -> Result:
    """Log the session's device out if it is linked and may be; never raises.

    Bounded: ``wait_seconds`` for the pod, ``REDIS_SECONDS`` more for a
    Redis that does not answer (a partition, a frozen server).
    """
    try:
        async with asyncio.timeout(wait_seconds + REDIS_SECONDS):
            return await _unlink(relay, url, session, known_account, wait_seconds)
    except TimeoutError:
        why = f"the tenant's Redis did not answer within {wait_seconds + REDIS_SECONDS:.0f} s"
        return Result(Outcome.FAILED, known_account, why)


async def _unlink(
    relay: StatusRelay, url: str, session: Session, known_account: str, wait_seconds: float
) -> Result:
    try:
        async with relay.connection(url) as client:
            owned = await ownership.owner(client, session.tenant) == session.uid
            auth_stored = bool(await client.exists(contract.auth_key(session.tenant)))
        reading = await relay.read(url, session.tenant)
    except (OperatorError, RedisError, OSError) as error:
        return Result(Outcome.FAILED, known_account, f"the tenant's Redis failed ({error})")
    decided = plan(
        session, reading, owned=owned, auth_stored=auth_stored, known_account=known_account
    )
    match decided.step:
        case Step.NOTHING:
            return Result(Outcome.NOT_LINKED, decided.account)
        case Step.KEEP:
            return Result(Outcome.KEPT, decided.account)
        case Step.CANNOT:
            return Result(Outcome.FAILED, decided.account, decided.why)
        case Step.UNLINK:
            return await _log_out(relay, url, session.tenant, decided.account, wait_seconds)


async def _log_out(
    relay: StatusRelay, url: str, tenant: str, account: str, wait_seconds: float
) -> Result:
    """Push ``unlink`` and wait for the lease holder's ``LoggedOut``, at most ``wait_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    try:
        async with relay.connection(url) as client:
            await client.rpush(contract.control_key(tenant), contract.CONTROL_UNLINK)
        while True:
            if logged_out(await relay.read(url, tenant)):
                return Result(Outcome.UNLINKED, account)
            if loop.time() >= deadline:
                why = f"the session reported no LoggedOut within {wait_seconds:.0f} s"
                return Result(Outcome.FAILED, account, why)
            await asyncio.sleep(POLL_SECONDS)
    except (OperatorError, RedisError, OSError) as error:
        return Result(Outcome.FAILED, account, f"the tenant's Redis failed ({error})")


def event_for(result: Result) -> tuple[str, str, str] | None:
    """The Event (type, reason, message) that says how it ended; None: nothing to say."""
    digits = account_of_jid(result.account)  # masked, as in the logs: Events are widely read
    device = f"the linked device of {mask_account(digits)}" if digits else "the linked device"
    match result.outcome:
        case Outcome.UNLINKED:
            return (
                "Normal",
                REASON_UNLINKED,
                f"Logged out {device} before deleting the session.",
            )
        case Outcome.KEPT:
            return (
                "Normal",
                REASON_KEPT_LINKED,
                f"Kept {device} (spec.unlinkOnDelete is false): the phone still lists it.",
            )
        case Outcome.FAILED:
            return (
                "Warning",
                REASON_NOT_UNLINKED,
                (
                    f"Could not log out {device}: {result.why}. The session is deleted anyway; "
                    "remove the device in the phone's Linked devices."
                ),
            )
        case Outcome.NOT_LINKED:
            return None


__all__ = [
    "REASON_KEPT_LINKED",
    "REASON_NOT_UNLINKED",
    "REASON_UNLINKED",
    "UNLINK_TIMEOUT_SECONDS",
    "Outcome",
    "Plan",
    "Result",
    "Step",
    "account_in_status",
    "event_for",
    "logged_out",
    "plan",
    "unlink",
]
