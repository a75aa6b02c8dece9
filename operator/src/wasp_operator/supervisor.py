"""The loop each WhatsAppSession runs in the operator: make the world match its spec.

Owns the per-session cycle: wake (the resource or its pod changed, Redis
reported, or the resync timer fired), read the spec, take the one next step
for the pod (``reconcile.decide``), then write the status (``status.py``)
and an Event for each phase change. Also the cleanup when a resource goes.

It holds no Kubernetes objects of its own: the live body and the pod index
come from kopf (``handlers.py``), the calls go through ``kube.py`` and
``relay.py``. Errors are the operator's own (``errors.py``); the handlers
translate them for kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasp import contract
from wasp.timestamps import format_seconds, utc_now
from wasp_operator import metrics, pods, reconcile, status
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import OperatorError, RedisUnavailableError, SecretMissingError
from wasp_operator.kube import Kube
from wasp_operator.relay import StatusRelay
from wasp_operator.sessions import Session, session_from_body

SessionKey = tuple[str, str]  # (namespace, name)
LOOP_END_TIMEOUT = 15.0  # a cycle in flight finishes well within this
EventPoster = Callable[[Mapping[str, Any], str, str, str], None]  # body, type, reason, message


@dataclass
class _Seen:
    """What one session's loop remembers between cycles."""

    url: str | None = None
    tenant: str | None = None
    report: dict[str, str] | None = None
    redis_problem: str | None = None
    phase: str | None = None  # the phase last written: one Event per change, never two


@dataclass
class Supervisor:
    """Every session loop of this operator, and the wake-ups between them."""

    config: OperatorConfig
    kube: Kube
    relay: StatusRelay
    post_event: EventPoster
    _wakes: dict[SessionKey, asyncio.Event] = field(default_factory=dict)
    _urls: dict[SessionKey, str] = field(default_factory=dict)
    _loops: dict[SessionKey, asyncio.Event] = field(default_factory=dict)  # set: loop ended

    def wake(self, namespace: str | None, name: str | None) -> None:
        """Ask a session's loop to look again (no-op for unknown sessions)."""
        if namespace and name and (event := self._wakes.get((namespace, name))):
            event.set()

    # -- the loop ----------------------------------------------------------------
    async def run(
        self,
        body: Mapping[str, Any],
        pod_of: Callable[[Session], status.PodView | None],
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger],
    ) -> None:
        """Run one session until kopf stops it; ``body`` is kopf's live view."""
        first = session_from_body(body)
        key = (first.namespace, first.name)
        wake = self._wakes.setdefault(key, asyncio.Event())
        ended = self._loops[key] = asyncio.Event()
        seen = _Seen()
        try:
            while True:
                wake.clear()
                session = session_from_body(body)
                if session.deleting:
                    return
                try:
                    await self.cycle(session, body, pod_of(session), seen)
                except OperatorError as error:
                    logger.warning(f"session_cycle_failed: {error}")  # noqa: G004
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=self.config.resync_seconds)
        finally:
            if seen.url and seen.tenant:
                self.relay.unregister(seen.url, seen.tenant, _holder(key))
            self._wakes.pop(key, None)
            metrics.phase_moved(seen.phase, None)
            ended.set()

    async def cycle(
        self,
        session: Session,
        body: Mapping[str, Any],
        pod: status.PodView | None,
        seen: _Seen,
    ) -> None:
        """One pass: follow Redis, step the pod, write the status."""
        conflict = await self._follow(session, seen)
        desired_hash = pods.spec_hash(session, self.config)
        decision = reconcile.decide(
            suspended=session.suspend or conflict is not None,
            desired_hash=desired_hash,
            pod=pod,
        )
        if decision.step is reconcile.Step.CREATE:
            await asyncio.to_thread(self.kube.ensure_auth_secret, session)
            created = await asyncio.to_thread(
                self.kube.create_pod, pods.build_pod(session, self.config)
            )
            if created:
                metrics.POD_ACTIONS.labels(action="create", reason=decision.reason).inc()
                self.post_event(body, "Normal", "PodCreated", f"Created pod {session.pod_name}.")
        elif decision.step is reconcile.Step.DELETE and pod is not None:
            await asyncio.to_thread(self.kube.delete_pod, session.namespace, pod.name, pod.uid)
            metrics.POD_ACTIONS.labels(action="delete", reason=decision.reason).inc()
            self.post_event(
                body, "Normal", "PodDeleted", f"Deleting pod {pod.name} ({decision.reason})."
            )
        await self._write_status(session, body, pod, seen, conflict)

    async def _follow(self, session: Session, seen: _Seen) -> str | None:
        """Register the session's tenant with the relay; the conflicting holder, if any."""
        key = (session.namespace, session.name)
        url: str | None
        try:
            url = await asyncio.to_thread(
                self.kube.secret_value,
                session.namespace,
                pods.redis_secret_of(session, self.config),
            )
        except SecretMissingError as error:
            seen.redis_problem = str(error)
            url = seen.url
        else:
            seen.redis_problem = None
        if url is None:
            return None
        if (url, session.tenant) != (seen.url, seen.tenant):
            if seen.url and seen.tenant:
                self.relay.unregister(seen.url, seen.tenant, _holder(key))
            seen.url, seen.tenant, seen.report = url, session.tenant, None
        self._urls[key] = url
        holder = self.relay.register(url, session.tenant, _holder(key), lambda: self.wake(*key))
        return None if holder == _holder(key) else holder

    async def _write_status(
        self,
        session: Session,
        body: Mapping[str, Any],
        pod: status.PodView | None,
        seen: _Seen,
        conflict: str | None,
    ) -> None:
        if seen.url and conflict is None:
            report = self.relay.take(seen.url, session.tenant)
            if report is None:
                try:
                    report = await self.relay.read_status(seen.url, session.tenant)
                except RedisUnavailableError as error:
                    seen.redis_problem = str(error)
                    report = seen.report
            seen.report = report
        effective = status.effective_report(
            seen.report if conflict is None else None,
            status.Overlay(suspended=session.suspend, pod=pod, conflict_with=conflict),
        )
        if seen.redis_problem and not effective.get(contract.STATUS_LAST_ERROR_REASON):
            effective |= {
                contract.STATUS_LAST_ERROR_REASON: "RedisUnavailable",
                contract.STATUS_LAST_ERROR_MESSAGE: seen.redis_problem,
            }
        current: Mapping[str, Any] = body.get("status") or {}
        desired = status.desired_status(
            tenant=session.tenant,
            generation=session.generation,
            expose_pairing=session.expose_in_status,
            pod_name=pod.name if pod is not None else None,
            effective=effective,
            previous=current,
            now=format_seconds(utc_now()),
        )
        patch = status.status_patch(current, desired)
        phase = desired["phase"]
        if patch is not None:
            await asyncio.to_thread(self.kube.patch_status, session.namespace, session.name, patch)
            metrics.STATUS_PATCHES.inc()
            if phase not in {current.get("phase"), seen.phase}:
                message = _condition_message(desired["conditions"])
                self.post_event(body, status.event_type(phase), phase, message)
        metrics.phase_moved(seen.phase, phase)
        seen.phase = phase

    # -- deletion ------------------------------------------------------------------
    async def clean_up(self, session: Session) -> bool:
        """Stop the pod, then forget the tenant in Redis; False while the pod still exists."""
        key = (session.namespace, session.name)
        ended = self._loops.get(key)
        if ended is not None and not ended.is_set():
            self.wake(*key)  # it sees the deletion and ends: no pod is created behind us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout=LOOP_END_TIMEOUT)
        if await asyncio.to_thread(self.kube.pod_exists, session.namespace, session.pod_name):
            await asyncio.to_thread(self.kube.delete_pod, session.namespace, session.pod_name)
            return False
        try:
            url = await asyncio.to_thread(
                self.kube.secret_value,
                session.namespace,
                pods.redis_secret_of(session, self.config),
            )
        except SecretMissingError:
            if key not in self._urls:
                raise
            url = self._urls[key]
        holder = self.relay.holder(url, session.tenant)
        if holder in {None, _holder(key)}:
            await self.relay.forget_tenant(url, session.tenant)
        self._urls.pop(key, None)
        self._loops.pop(key, None)
        return True


def _holder(key: SessionKey) -> str:
    return f"{key[0]}/{key[1]}"


def _condition_message(conditions: Iterable[Mapping[str, Any]]) -> str:
    for condition in conditions:
        if condition.get("type") == contract.CONDITION_READY:
            return str(condition.get("message", ""))
    return ""
