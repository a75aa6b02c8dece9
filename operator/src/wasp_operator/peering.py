"""The replicas' peering priorities: distinct, the oldest first, and a tie broken.

kopf (its peering) pauses every replica that sees a live peer of higher *or
equal* priority: replicas that share a priority all pause and nothing is
reconciled. So each replica takes its priority from when it started
(``own_priority``): the oldest live replica is the active one, and a
newcomer (a rollout, a restart) stands by instead of taking over from a
working one. Random low bits tell apart replicas started in the same
second; should two still draw the same number, ``TieGuard`` sees it in the
peering objects and draws again, and kopf's next keep-alive announces it.

A replica's record lives ``PEERING_LIFETIME_SECONDS`` past its last renewal
(kopf renews it 5-10 s before it would expire, and removes it when the
operator exits): a killed replica is replaced within that long, plus a
re-list. kopf does the peering itself (keep-alives, pausing, resuming); this
module only reads the peering objects and never writes them.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
import kubernetes
import urllib3
from kubernetes.client.exceptions import ApiException

from wasp import contract

logger = logging.getLogger(__name__)

# How long a replica's peering record outlives its last renewal: the failover bound.
PEERING_LIFETIME_SECONDS = 20
PRIORITY_CEILING = 2**53 - 1  # the largest integer every JSON reader keeps exact
TIE_BREAK_BITS = 20  # random bits below the start second
TIE_CHECK_SECONDS = 10.0
KOPF_DEFAULT_LIFETIME = 60  # what kopf assumes of a record that names none
READ_TIMEOUT = (1.0, 5.0)  # connect, read

Records = Mapping[str, Mapping[str, Any]]  # identity -> {priority, lifetime, lastseen}


def own_priority(started: float | None = None) -> int:
    """A replica's priority: the earlier ``started`` (default: now), the higher.

    Seconds since the epoch, shifted left, below a positive ceiling, with
    random low bits: two replicas draw the same only if they start in the
    same second and draw the same one of 2**20 numbers.
    """
    seconds = int(time.time() if started is None else started)
    return PRIORITY_CEILING - ((seconds << TIE_BREAK_BITS) | secrets.randbits(TIE_BREAK_BITS))


def redrawn(priority: int) -> int:
    """Another priority from the same start second: the low bits drawn again."""
    seconds = (PRIORITY_CEILING - priority) >> TIE_BREAK_BITS
    while True:
        again = PRIORITY_CEILING - ((seconds << TIE_BREAK_BITS) | secrets.randbits(TIE_BREAK_BITS))
        if again != priority:
            return again


def tied(priority: int, identity: str, records: Records, now: dt.datetime) -> bool:
    """Whether another replica's live record in ``records`` has exactly ``priority``."""
    for peer, record in records.items():
        if peer == identity or not isinstance(record, Mapping):
            continue
        try:
            same = int(record.get("priority", 0)) == priority
            lifetime = int(record.get("lifetime", KOPF_DEFAULT_LIFETIME))
            last = dt.datetime.fromisoformat(str(record["lastseen"]))
        except (KeyError, TypeError, ValueError):
            continue  # not a record kopf wrote: kopf ignores it too
        if same and last + dt.timedelta(seconds=lifetime) > now:
            return True
    return False


def peering_records(namespaces: tuple[str, ...]) -> list[Records]:
    """The records of every peering object the operator peers through (none: cluster-wide)."""
    api = kubernetes.client.CustomObjectsApi()
    group, version, name = contract.PEERING_GROUP, contract.PEERING_VERSION, contract.PEERING_NAME
    if namespaces:
        found = [
            api.get_namespaced_custom_object(
                group,
                version,
                namespace,
                contract.PEERING_PLURAL,
                name,
                _request_timeout=READ_TIMEOUT,
            )
            for namespace in namespaces
        ]
    else:
        found = [
            api.get_cluster_custom_object(
                group, version, contract.CLUSTER_PEERING_PLURAL, name, _request_timeout=READ_TIMEOUT
            )
        ]
    return [cast("Records", cast("dict[str, Any]", body).get("status") or {}) for body in found]


class TieGuard:
    """Draws this replica's priority again whenever another live replica has the same."""

    def __init__(
        self,
        settings: kopf.OperatorSettings,
        identity: str,
        read: Callable[[], list[Records]] = list,
    ) -> None:
        """As ``identity``, change ``settings``' priority on a tie in what ``read`` returns."""
        self._settings = settings
        self._identity = identity
        self._read = read

    def check(self, found: list[Records], now: dt.datetime | None = None) -> bool:
        """Draw again if tied in ``found`` (each peering object's records); True if it did."""
        priority = self._settings.peering.priority
        moment = now or dt.datetime.now(dt.UTC)
        if not any(tied(priority, self._identity, records, moment) for records in found):
            return False
        self._settings.peering.priority = redrawn(priority)  # kopf's next keep-alive says so
        logger.warning(
            "peering_tie_broken: another replica had priority %d; %s now announces %d",
            priority,
            self._identity,
            self._settings.peering.priority,
        )
        return True

    async def run(self) -> None:
        """Check every ``TIE_CHECK_SECONDS`` until cancelled; a failed read waits for the next."""
        while True:
            await asyncio.sleep(TIE_CHECK_SECONDS)
            try:
                found = await asyncio.to_thread(self._read)
            except (ApiException, urllib3.exceptions.HTTPError, OSError) as error:
                logger.debug("peering_tie_check_failed: %s", error)
                continue
            self.check(found)
