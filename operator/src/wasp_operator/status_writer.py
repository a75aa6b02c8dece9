"""The status of a WhatsAppSession, written from what its lease holder reports.

Owns one step of a session's loop: read the tenant's report from Redis
(``relay.py``; a hash not written by the lease holder is ignored, and
logged once per change), lay over it what the operator knows (suspended,
the pod, a refusal, a Redis problem, the auth generation's high-water mark:
``auth_mark.py``), build the status (``status.py``), patch only what
changed, and post one Event per phase change (and a Warning once when Redis
rolled back). It remembers the status each loop last wrote, so the echo of
that patch (a watch event showing exactly it) wakes nobody (``is_echo``).

It decides nothing about pods or the tenant's Redis (``supervisor.py``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasp import contract
from wasp.timestamps import format_seconds, utc_now
from wasp_operator import auth_mark, metrics, status
from wasp_operator.errors import OperatorError, RedisUnavailableError
from wasp_operator.kube import Kube
from wasp_operator.loop_memory import Seen
from wasp_operator.relay import Reading, StatusRelay, not_from_lease_holder
from wasp_operator.sessions import Session
from wasp_operator.tenancy import api_credentials_of

SessionKey = tuple[str, str]  # (namespace, name)
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]  # body, type, reason, message
Logger = logging.Logger | logging.LoggerAdapter[logging.Logger]


@dataclass
class StatusWriter:
    """Writes each session's status and its phase Events; knows the echo of its own writes."""

    kube: Kube
    relay: StatusRelay
    post_event: EventPoster
    # The status each loop last wrote (or found as it should be), with the spec generation it
    # was for: the echo of that write wakes nobody (``is_echo``).
    _shown: dict[SessionKey, tuple[int | None, Mapping[str, Any]]] = field(default_factory=dict)

    def is_echo(self, key: SessionKey, body: Mapping[str, Any]) -> bool:
        """Whether the resource shows exactly the status last written, for the same generation.

        Never while it is being deleted: its loop must see that.
        """
        meta: Mapping[str, Any] = body.get("metadata") or {}
        shown = self._shown.get(key)
        return (
            shown is not None
            and not meta.get("deletionTimestamp")
            and shown == (meta.get("generation"), dict(body.get("status") or {}))
        )

    def forget(self, key: SessionKey) -> None:
        """The loop ended: nothing it wrote is an echo any more."""
        self._shown.pop(key, None)

    async def write_first(
        self,
        session: Session,
        body: Mapping[str, Any],
        pod: status.PodView,
        seen: Seen,
        logger: Logger,
    ) -> None:
        """A loop's first look at a running pod (a restart, a new leader): its status first.

        What the pod reports is what users wait for; the Secrets and users
        (API reads after a restart: nothing is remembered yet) are kept right
        after, and the cycle writes the status again only if that changed it.
        The API credential the status shows stays while it names this
        tenant's (the users were made by the operator before).
        """
        shown = (body.get("status") or {}).get("apiCredentials")
        expected = api_credentials_of(session)
        seen.api_credentials = expected if shown == expected else None
        await self.write(session, body, pod, seen, refusal=None, logger=logger)

    def _take(self, reading: Reading, seen: Seen, logger: Logger) -> None:
        """Keep the status hash as the report if the lease holder wrote it; else ignore it."""
        if not reading.status:
            seen.report, seen.ignored = None, None
            return
        why = not_from_lease_holder(reading)
        if why is None:
            seen.report, seen.ignored = reading.status, None
            return
        fields = reading.status
        signature = (
            why,
            *(fields.get(name, "") for name in _SIGNATURE_FIELDS),
            reading.lease or "",
            reading.fence or "",
        )
        if signature != seen.ignored:  # once per change, not every cycle
            seen.ignored = signature
            metrics.STATUS_REPORTS_IGNORED.inc()
            logger.warning(f"status_not_relayed: the status hash is ignored: {why}")  # noqa: G004

    async def write(  # noqa: PLR0913 - every input is a separate fact
        self,
        session: Session,
        body: Mapping[str, Any],
        pod: status.PodView | None,
        seen: Seen,
        *,
        refusal: status.Refusal | None,
        logger: Logger,
        read_report: bool = True,
    ) -> None:
        """Read the report, build the status, patch what changed, post an Event per new phase.

        ``read_report=False``: the report this cycle read already (``write_first``) stands.
        """
        if seen.url and refusal is None and read_report:
            try:
                reading = await self.relay.read(seen.url, session.tenant)
            except RedisUnavailableError as error:
                seen.redis_problem = seen.redis_problem or (error.reason, str(error))
            else:
                self._take(reading, seen, logger)
        now = format_seconds(utc_now())
        current: Mapping[str, Any] = body.get("status") or {}
        verdict = auth_mark.judge(
            seen.report if refusal is None else None,
            pod.uid if pod is not None else "",
            seen.auth if seen.auth_written else auth_mark.mark_from_status(current),
            now,
        )
        effective = status.effective_report(
            seen.report if refusal is None else None,
            status.Overlay(suspended=session.suspend, pod=pod, refusal=refusal),
        )
        if refusal is None and not seen.redis_problem:
            effective = auth_mark.with_rollback(effective, verdict.mark)
        if seen.redis_problem and not effective.get(contract.STATUS_LAST_ERROR_REASON):
            reason, message = seen.redis_problem
            effective |= {
                contract.STATUS_LAST_ERROR_REASON: reason,
                contract.STATUS_LAST_ERROR_MESSAGE: message,
            }
        desired = status.desired_status(
            tenant=session.tenant,
            generation=session.generation,
            expose_pairing=session.expose_in_status,
            pod_name=pod.name if pod is not None else None,
            effective=effective,
            previous=current,
            now=now,
            api_credentials=seen.api_credentials if refusal is None else None,
            auth=None if verdict.mark is None else auth_mark.mark_as_status(verdict.mark),
        )
        patch = status.status_patch(current, desired)
        phase = desired["phase"]
        key = (session.namespace, session.name)
        if patch is not None:
            self._shown[key] = (session.generation, desired)  # its echo may come back first
            try:
                await asyncio.to_thread(
                    self.kube.patch_status, session.namespace, session.name, patch
                )
            except OperatorError:
                self._shown.pop(key, None)
                raise
            metrics.STATUS_PATCHES.inc()
            if phase not in {current.get("phase"), seen.phase}:
                message = _condition_message(desired["conditions"])
                self.post_event(body, status.event_type(phase), phase, message)
        seen.auth, seen.auth_written = verdict.mark, True
        if verdict.found is not None:
            metrics.REDIS_ROLLBACKS.inc()
            message = auth_mark.rollback_message(verdict.found)
            logger.warning(f"redis_rolled_back: {message}")  # noqa: G004
            self.post_event(body, "Warning", contract.REASON_REDIS_ROLLED_BACK, message)
        metrics.phase_moved(seen.phase, phase)
        seen.phase = phase
        self._shown[key] = (session.generation, desired)


# What tells one ignored status hash from the next (the heartbeat alone is no change).
_SIGNATURE_FIELDS = (
    contract.STATUS_LEASE_TOKEN,
    contract.STATUS_POD,
    contract.STATUS_PHASE,
    contract.STATUS_UPDATED_AT,
)


def _condition_message(conditions: Iterable[Mapping[str, Any]]) -> str:
    for condition in conditions:
        if condition.get("type") == contract.CONDITION_READY:
            return str(condition.get("message", ""))
    return ""
