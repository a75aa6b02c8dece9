"""The loop each WhatsAppSession runs in the operator: make the world match its spec.

Owns the per-session cycle: wake (the resource, its pod or its
NetworkPolicy changed, Redis reported, or the resync timer fired), read the
spec, refuse an image outside the allowlist, claim the tenant on its Redis
and, as its owner, keep its Secrets and users (``tenancy.py``; nothing for
a resource that does not own its tenant), keep the pod's NetworkPolicy,
take the one next step for the pod (``reconcile.decide``), then write the
status (``status_writer.py``). A loop's first cycle that finds its pod
running (a restarted operator) writes the status right after the claim.
Also the cleanup when a resource goes (its device logged out first: ``unlink.py``).

Each wake says how much to look at (``Look``). The full cycle runs when the
spec (its generation) changed, after a Redis (re)subscription, when the
NetworkPolicy was changed by someone else, and at least once per resync
period: the configured interval, or longer when the loops would otherwise
resync more than ``max_resyncs_per_second`` times a second together. A pod
event steps the pod and writes the status on the standing the last full
cycle found. A tenant's report only needs the status written
again (one Redis read, at most one patch): a thousand tenants changing
phase at once cost a thousand reads, not a thousand Secret reads,
NetworkPolicy applies and ownership checks. The echo of the operator's own
status patch (the resource shows what its loop last wrote) wakes nothing,
nor does the echo of its own NetworkPolicy write.

It holds no Kubernetes objects of its own: the live body, the pod and
NetworkPolicy indexes and the host ports other session pods hold come from
kopf (``handlers.py``), the calls go through ``kube.py``, ``tenancy.py`` and
``relay.py``. Who owns a tenant is always read from Redis; what it
remembers between cycles (``loop_memory.Seen``) only saves work and logs.
Errors are the operator's own (``errors.py``); the handlers translate them
for kopf.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from wasp import contract
from wasp_operator import metrics, network_policy, pods, reconcile, status, unlink
from wasp_operator.config import OperatorConfig
from wasp_operator.errors import OperatorError, RedisUnavailableError, SecretMissingError
from wasp_operator.kube import Kube
from wasp_operator.loop_memory import Seen
from wasp_operator.loop_timing import resync_interval, resync_period, retry_delay
from wasp_operator.redis_users import RedisUsers, admin_secret_of, checked_admin_url
from wasp_operator.relay import StatusRelay
from wasp_operator.sessions import SecretRef, Session, session_from_body
from wasp_operator.status_writer import EventPoster, Logger, SessionKey, StatusWriter
from wasp_operator.tenancy import Standing, Tenancy

LOOP_END_TIMEOUT = 15.0  # a cycle in flight finishes well within this
ADMIN_SECRET_FRESH_SECONDS = 5.0  # an admin Secret read serves every cycle for this long
FULL_CYCLES_AT_ONCE = 64  # full cycles in flight at once; the others wait their turn
REASON_REDIS_SECRET_MISSING = "RedisSecretMissing"  # noqa: S105 - a reason, no password
REASON_NO_HOST_PORT = "NoHostPort"  # an Event: every session host port of the range is held
# The host ports other session pods hold (those on the node's network), for a session.
PortsInUse = Callable[[Session], Collection[int]]
# The fingerprint of a session pod's live NetworkPolicy as the watch saw it (None: none).
PolicyOf = Callable[[Session], str | None]


def _no_ports(_: Session) -> Collection[int]:
    return ()


def _no_policy(_: Session) -> str | None:
    return None  # unknown: the cycle reads it


class Look(enum.IntEnum):
    """How much a wake asks a session's loop to look at, least to most."""

    STATUS = 0  # a report, or the resource changed (maybe only its status): write the status
    POD = 1  # its pod changed: step the pod too, on the standing the last full cycle found
    FULL = 2  # everything: the admin Secret, the tenant's Redis, the NetworkPolicy, the pod


@dataclass
class Supervisor:
    """Every session loop of this operator, and the wake-ups between them."""

    config: OperatorConfig
    kube: Kube
    relay: StatusRelay
    post_event: EventPoster
    users: RedisUsers = field(default_factory=RedisUsers)
    _wakes: dict[SessionKey, asyncio.Event] = field(default_factory=dict)
    _asked: dict[SessionKey, Look] = field(default_factory=dict)  # the most each loop is asked
    # (namespace, Secret, key) -> (loop time asked, the read) of admin Secrets: _admin_secret_value
    _admin_secrets: dict[tuple[str, str, str], tuple[float, asyncio.Future[str]]] = field(
        default_factory=dict
    )
    _urls: dict[SessionKey, str] = field(default_factory=dict)
    _loops: dict[SessionKey, asyncio.Event] = field(default_factory=dict)  # set: loop ended
    _names: dict[str, str] = field(default_factory=dict)  # uid -> "namespace/name", for messages
    # The NetworkPolicy each loop last applied or found as built: the echo of a write wakes nobody.
    _policies: dict[SessionKey, str] = field(default_factory=dict)  # their fingerprints
    _unlinks_tried: set[str] = field(default_factory=set)  # uids whose deletion tried (unlink.py)
    _full_cycles: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(FULL_CYCLES_AT_ONCE)
    )

    def __post_init__(self) -> None:
        """The tenancy keeper and the status writer share this supervisor's clients."""
        self.tenancy = Tenancy(self.kube, self.relay, self.users)
        self.status_writer = StatusWriter(self.kube, self.relay, self.post_event)

    def wake(self, namespace: str | None, name: str | None, look: Look = Look.FULL) -> None:
        """Ask a session's loop to look again, at least at ``look`` (no-op for unknown sessions).

        The loop looks at everything anyway if the spec's generation moved or
        the resync interval has passed.
        """
        key = (namespace or "", name or "")
        if namespace and name and (event := self._wakes.get(key)):
            self._asked[key] = max(look, self._asked.get(key, Look.STATUS))
            event.set()

    def changed(self, namespace: str | None, name: str | None, body: Mapping[str, Any]) -> None:
        """The resource changed: its loop writes the status again, unless this is our own echo.

        A status patch comes back as a watch event. When the resource shows
        exactly the status its loop last wrote, for the same spec generation,
        and is not being deleted, there is nothing to look at: a thousand
        relayed changes cost a thousand patches, not also a thousand Redis
        reads and status steps for their echoes.
        """
        if not self.status_writer.is_echo((namespace or "", name or ""), body):
            self.wake(namespace, name, Look.STATUS)

    def policy_changed(self, namespace: str | None, name: str | None, live: str | None) -> None:
        """A session's NetworkPolicy changed (``live``: its fingerprint) or went: apply it again.

        Unless it is as the loop last applied it (the echo of its own write):
        someone else's edit or deletion is undone at the next full cycle, now.
        """
        key = (namespace or "", name or "")
        applied = self._policies.get(key)
        if live is not None and live == applied:
            return
        self._policies.pop(key, None)
        self.wake(namespace, name, Look.FULL)

    def resync_period(self) -> float:
        """How often each loop resyncs now: the configured interval, or longer at scale.

        Longer when the loops would otherwise resync more than
        ``max_resyncs_per_second`` together: a resync costs the operator a few
        milliseconds of CPU even when nothing changed, and ten thousand
        sessions every 30 s would keep a core busy (and new sessions waiting)
        for nothing. Every change a watch or Redis reports still wakes its
        loop at once; only the look "anyway" comes less often.
        """
        return resync_period(
            self.config.resync_seconds, len(self._wakes), self.config.max_resyncs_per_second
        )

    # -- the loop ----------------------------------------------------------------
    async def run(
        self,
        body: Mapping[str, Any],
        pod_of: Callable[[Session], status.PodView | None],
        logger: Logger,
        ports_in_use: PortsInUse = _no_ports,
        policy_of: PolicyOf = _no_policy,
    ) -> None:
        """Run one session until kopf stops it; ``body`` is kopf's live view."""
        first = session_from_body(body)
        key = (first.namespace, first.name)
        wake = self._wakes.setdefault(key, asyncio.Event())
        ended = self._loops[key] = asyncio.Event()
        self._names[first.uid] = _follower(key)
        seen = Seen()
        loop = asyncio.get_running_loop()
        last_full = -self.config.resync_seconds
        interval = self.config.resync_seconds  # this loop's, jittered after every full cycle
        failures = 0  # cycles in a row that failed, or could not stand on Redis
        retry_at = math.inf  # after a failure: the next full cycle, soon
        try:
            while True:
                wake.clear()
                session = session_from_body(body)
                if session.deleting:
                    return
                look = self._asked.pop(key, Look.STATUS)
                now = loop.time()
                if session.generation != seen.generation or now >= retry_at:
                    look = Look.FULL
                elif look is not Look.FULL and now - last_full >= interval:
                    look = Look.FULL
                    metrics.RESYNCS.inc()
                if look is Look.FULL:
                    last_full, retry_at = now, math.inf
                    interval = resync_interval(self.resync_period())
                if await self._look(
                    look,
                    body,
                    seen,
                    logger=logger,
                    pod_of=pod_of,
                    ports_in_use=ports_in_use,
                    policy_of=policy_of,
                ):
                    failures = 0
                else:
                    failures += 1
                    retry_at = loop.time() + retry_delay(failures, interval)
                wait = min(last_full + interval, retry_at) - loop.time()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=max(0.0, wait))
        finally:
            if seen.url and seen.tenant:
                self.relay.unfollow(seen.url, seen.tenant, _follower(key))
            self._wakes.pop(key, None)
            self._asked.pop(key, None)
            self.status_writer.forget(key)
            self._policies.pop(key, None)
            self._names.pop(first.uid, None)
            metrics.phase_moved(seen.phase, None)
            ended.set()

    async def _look(  # noqa: PLR0913 - every input is a separate fact
        self,
        look: Look,
        body: Mapping[str, Any],
        seen: Seen,
        *,
        logger: Logger,
        pod_of: Callable[[Session], status.PodView | None],
        ports_in_use: PortsInUse,
        policy_of: PolicyOf,
    ) -> bool:
        """Look as far as asked; False when it failed or could not stand on Redis.

        At most ``FULL_CYCLES_AT_ONCE`` full cycles run at once: thousands at
        once (an install, a restart) would each wait on an event loop busy
        with all the others, holding Redis connections meanwhile, until their
        calls time out; queued, they finish sooner. A full cycle reads the
        resource, its pod and its NetworkPolicy once its turn comes.
        """
        try:
            if look is Look.FULL:
                seen.generation = None  # until this full cycle runs through
                async with self._full_cycles:
                    session = session_from_body(body)
                    if session.deleting:
                        return True  # the loop sees it and ends
                    await self.cycle(
                        session,
                        body,
                        pod_of(session),
                        seen,
                        logger,
                        ports_in_use=ports_in_use,
                        policy=policy_of(session),
                    )
                seen.generation = session.generation
                return seen.redis_problem is None
            session = session_from_body(body)
            if look is Look.POD:
                await self.cycle(
                    session,
                    body,
                    pod_of(session),
                    seen,
                    logger,
                    ports_in_use=ports_in_use,
                    stand=False,
                )
            else:
                await self.status_writer.write(
                    session, body, pod_of(session), seen, refusal=seen.refusal, logger=logger
                )
        except OperatorError as error:
            logger.warning(f"session_cycle_failed: {error}")  # noqa: G004
            return False
        return True

    async def cycle(  # noqa: PLR0913 - every input is a separate fact
        self,
        session: Session,
        body: Mapping[str, Any],
        pod: status.PodView | None,
        seen: Seen,
        logger: Logger,
        *,
        ports_in_use: PortsInUse = _no_ports,
        policy: str | None = None,
        stand: bool = True,
    ) -> None:
        """One pass: stand on Redis, step the pod, write the status.

        ``policy``: the live NetworkPolicy's fingerprint as the watch saw it
        (None: none seen; it is created, or read if it exists). ``stand=False`` (a pod
        event between full cycles): the standing, the refusal and the
        NetworkPolicy of the last full cycle hold; only the pod is stepped
        and the status written.
        """
        report_read = False  # this cycle read the tenant's report already
        if stand:
            seen.redis_problem = None
            refusal = _image_refusal(session, self.config)  # Failed, no pod, nothing on Redis
            owner = None if refusal is not None else await self._claim(session, seen)
            standing = None if owner is None else Standing(owner)
            if owner is not None and owner != session.uid:
                named = self._names.get(owner, f"uid {owner}")
                refusal = status.tenant_conflict(session.tenant, named)
            elif owner is not None:
                if pod is not None and seen.phase is None:
                    await self.status_writer.write_first(session, body, pod, seen, logger)
                    report_read = True
                standing = await self._keep(
                    session,
                    body,
                    seen,
                    logger,
                    recheck=pod is None and not session.suspend,
                    absent=not body.get("status"),
                )
            seen.refusal, seen.standing = refusal, standing
        else:
            refusal, standing = seen.refusal, seen.standing
        decision = reconcile.decide(
            suspended=session.suspend or refusal is not None,
            desired_hash=pods.spec_hash(session, self.config),
            pod=pod,
        )
        runnable = standing is not None and standing.owner == session.uid  # users exist
        if stand and runnable and seen.url is not None:
            # Level-based, and always before the pod exists: what may reach it, what it may reach.
            built = network_policy.build_network_policy(
                session, self.config, network_policy.redis_port_of(seen.url)
            )
            key = (session.namespace, session.name)
            wanted = network_policy.fingerprint(built)
            if policy != wanted:
                self._policies.pop(key, None)
                await asyncio.to_thread(
                    self.kube.apply_network_policy, built, absent=policy is None
                )
            self._policies[key] = wanted
        if decision.step is reconcile.Step.CREATE and runnable and not stand:
            # A pod event: the Secrets the new pod mounts are read again first (a
            # full cycle without a pod has just done so), in case they went.
            standing = await self._keep(session, body, seen, logger, recheck=True, absent=False)
            runnable = standing is not None
        if decision.step is reconcile.Step.CREATE and runnable:
            # The status shows the new pod at once: its watch event then changes nothing.
            pod = await self._create_pod(session, body, decision, ports_in_use) or pod
        elif decision.step is reconcile.Step.DELETE and pod is not None:
            await asyncio.to_thread(self.kube.delete_pod, session.namespace, pod.name, pod.uid)
            metrics.POD_ACTIONS.labels(action="delete", reason=decision.reason).inc()
            self.post_event(
                body, "Normal", "PodDeleted", f"Deleting pod {pod.name} ({decision.reason})."
            )
        await self.status_writer.write(
            session, body, pod, seen, refusal=refusal, logger=logger, read_report=not report_read
        )

    async def _create_pod(
        self,
        session: Session,
        body: Mapping[str, Any],
        decision: reconcile.Decision,
        ports_in_use: PortsInUse,
    ) -> status.PodView | None:
        """Create the session's pod (and its auth key first): the pod as created, if it was."""
        # Only on the node's network do pods hold host ports that a new one must avoid.
        taken = ports_in_use(session) if self.config.session_host_ports is not None else ()
        try:
            pod = pods.build_pod(session, self.config, taken)
        except OperatorError as error:  # every host port of the range is held: say so, retry later
            self.post_event(body, "Warning", REASON_NO_HOST_PORT, str(error))
            raise
        await asyncio.to_thread(self.kube.ensure_auth_secret, session)
        created = await asyncio.to_thread(self.kube.create_pod, pod)
        if created is None:
            return None
        metrics.POD_ACTIONS.labels(action="create", reason=decision.reason).inc()
        self.post_event(body, "Normal", "PodCreated", f"Created pod {session.pod_name}.")
        return status.pod_view(created)

    # -- the tenant's Redis --------------------------------------------------------
    async def _admin_secret_value(self, namespace: str, ref: SecretRef) -> str:
        """The admin Secret's value, read at most once per ``ADMIN_SECRET_FRESH_SECONDS``.

        Most sessions share one admin Secret: a thousand full cycles in a burst
        (a restart, a resync) read it a few times, not a thousand. Cycles that
        ask while a read is under way wait for that read (a restart starts
        every loop at once: none would find a value yet). A failed read is
        not kept: the next cycle reads again.
        """
        key = (namespace, ref.name, ref.key)
        loop = asyncio.get_running_loop()
        now = loop.time()
        cached = self._admin_secrets.get(key)
        if cached is None or now - cached[0] >= ADMIN_SECRET_FRESH_SECONDS:
            read = loop.run_in_executor(None, self.kube.secret_value, namespace, ref)
            cached = self._admin_secrets[key] = (now, read)
        try:
            return await asyncio.shield(cached[1])
        except Exception:
            if self._admin_secrets.get(key) is cached:
                del self._admin_secrets[key]
            raise

    async def _admin_url(self, session: Session, seen: Seen) -> str | None:
        """The admin Redis URL from its Secret; the last one known if the Secret went."""
        namespace, ref = admin_secret_of(session, self.config)
        try:
            url = await self._admin_secret_value(namespace, ref)
            return checked_admin_url(url, f"Secret {namespace}/{ref.name} (key {ref.key})")
        except SecretMissingError as error:
            seen.redis_problem = (REASON_REDIS_SECRET_MISSING, str(error))
        except RedisUnavailableError as error:
            seen.redis_problem = (error.reason, str(error))
        return seen.url

    async def _claim(self, session: Session, seen: Seen) -> str | None:
        """Follow the tenant and claim it: the owner's uid (None: Redis cannot be reached)."""
        key = (session.namespace, session.name)
        url = await self._admin_url(session, seen)
        if url is None:
            return None
        if (url, session.tenant) != (seen.url, seen.tenant):
            if seen.url and seen.tenant:
                self.relay.unfollow(seen.url, seen.tenant, _follower(key))
            seen.url, seen.tenant, seen.report, seen.ignored = url, session.tenant, None, None
        self._urls[key] = url
        self.relay.follow(
            url,
            session.tenant,
            _follower(key),
            wake=lambda: self.wake(*key, Look.STATUS),
            resync=lambda: self.wake(*key),
        )
        try:
            return await self.tenancy.claim(session, url)
        except RedisUnavailableError as error:
            seen.redis_problem = (error.reason, str(error))
            return None

    async def _keep(  # noqa: PLR0913 - every input is a separate fact
        self,
        session: Session,
        body: Mapping[str, Any],
        seen: Seen,
        logger: Logger,
        *,
        recheck: bool,
        absent: bool,
    ) -> Standing | None:
        """As the tenant's owner, keep its Secrets and users (None: Redis cannot be reached)."""
        if seen.url is None:
            return None
        try:
            standing = await self.tenancy.keep(session, seen.url, recheck=recheck, absent=absent)
        except RedisUnavailableError as error:
            seen.redis_problem = (error.reason, str(error))
            return None
        seen.api_credentials = standing.api_credentials
        for username, why in standing.made:
            metrics.REDIS_USERS_MADE.labels(why=why).inc()
            logger.info(f"redis_user_made: {username} ({why})")  # noqa: G004
            if why != "started":
                self.post_event(
                    body, "Normal", "RedisUserMade", f"Made Redis user {username} ({why})."
                )
        return standing

    # -- deletion ------------------------------------------------------------------
    async def clean_up(self, session: Session, body: Mapping[str, Any]) -> bool:
        """Log the device out (``unlink.py``), stop the pod, then, as the owner only, forget it.

        False while the pod still exists. A resource that does not own its
        tenant touches nothing of it: not its device, not its keys, not its users.
        """
        key = (session.namespace, session.name)
        ended = self._loops.get(key)
        if ended is not None and not ended.is_set():
            self.wake(*key)  # it sees the deletion and ends: no pod is created behind us
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ended.wait(), timeout=LOOP_END_TIMEOUT)
        if session.uid not in self._unlinks_tried:  # once, while the pod still runs
            self._unlinks_tried.add(session.uid)
            await self._unlink_device(session, body)
        if await asyncio.to_thread(self.kube.pod_exists, session.namespace, session.pod_name):
            await asyncio.to_thread(self.kube.delete_pod, session.namespace, session.pod_name)
            return False
        namespace, ref = admin_secret_of(session, self.config)
        try:
            url = await asyncio.to_thread(self.kube.secret_value, namespace, ref)
        except SecretMissingError:
            if key not in self._urls:
                raise
            url = self._urls[key]
        checked_admin_url(url, f"Secret {namespace}/{ref.name} (key {ref.key})")
        await self.tenancy.forget(session, url)
        self._urls.pop(key, None)
        self._loops.pop(key, None)
        self._unlinks_tried.discard(session.uid)
        return True

    async def _unlink_device(self, session: Session, body: Mapping[str, Any]) -> None:
        """Log the session's device out unless kept; count it and say so in an Event."""
        key = (session.namespace, session.name)
        namespace, ref = admin_secret_of(session, self.config)
        known = unlink.account_in_status(body)
        try:
            url = await asyncio.to_thread(self.kube.secret_value, namespace, ref)
            url = checked_admin_url(url, f"Secret {namespace}/{ref.name} (key {ref.key})")
        except SecretMissingError as error:
            url = self._urls.get(key) or ""
            missing = unlink.Result(unlink.Outcome.FAILED, known, str(error))
        except OperatorError as error:
            url, missing = "", unlink.Result(unlink.Outcome.FAILED, known, str(error))
        result = await unlink.unlink(self.relay, url, session, known) if url else missing
        metrics.DEVICE_UNLINKS.labels(outcome=result.outcome.value).inc()
        if (event := unlink.event_for(result)) is not None:
            self.post_event(body, *event)


def _follower(key: SessionKey) -> str:
    return f"{key[0]}/{key[1]}"


def _image_refusal(session: Session, config: OperatorConfig) -> status.Refusal | None:
    """Failed/ImageNotAllowed when ``podTemplate.image`` is not in the operator's allowlist."""
    reason = pods.image_refusal(session, config)
    return None if reason is None else status.Refusal(contract.REASON_IMAGE_NOT_ALLOWED, reason)
