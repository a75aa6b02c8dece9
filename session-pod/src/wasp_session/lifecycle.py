"""The session's lifecycle: lease, restore, connect, the event loop, shut down.

Owns the order of one pod's session on the main thread (DESIGN.md,
"Session lifecycle"): stand by until the lease is ours (``lease_keeper``),
restore the auth state, pin the account the spec names, connect, then loop:
hand each transport event to ``reactions``, let time pass for the ban timer
and the checkpoint schedule (``checkpoints``), and act on control commands
(read by ``control.ControlInbox`` with a blocking wait, not polled).
On SIGTERM it stops taking jobs, checkpoints a last time, stops the
transport and releases the lease; on a lost lease it stops at once and
writes nothing more. A Redis error in a round of the loop is logged once
(``redis_unreachable``) and the loop goes on. The send gate is fenced by the lease's deadline
(``LeaseKeeper.lease_valid``): past it nothing is sent until a renewal lands.
``/readyz`` is true only while Connected with the lease and the send gate
open. The event loop beats ``health.Heartbeats`` (``contract.LOOP_LIFECYCLE``)
each round, and is retired when it ends, so ``/healthz`` fails when it stops
making progress.

Must not decide what an event means (``decisions``) nor carry it out
(``reactions``); it wires the parts and runs them in order.
"""

from __future__ import annotations

import json
import queue
import random
import threading
from collections.abc import Callable

import redis
import structlog

from wasp import contract
from wasp_session import metrics
from wasp_session.account_guard import AccountGuard, AccountPin
from wasp_session.auth_store import AuthStore
from wasp_session.auto_reply import AutoReplier
from wasp_session.checkpoints import CheckpointScheduler
from wasp_session.config import Config
from wasp_session.control import ControlInbox
from wasp_session.errors import EXIT_LEASE_LOST, EXIT_OK, AuthStoreError, LeaseLostError
from wasp_session.gate import SendGate
from wasp_session.health import Heartbeats, bounds
from wasp_session.inbound import Inbound
from wasp_session.lease import Lease
from wasp_session.lease_keeper import LeaseKeeper
from wasp_session.pairing_record import PairingRecord
from wasp_session.phases import Phases, SessionExit
from wasp_session.reactions import Collaborators, Reactions
from wasp_session.rollback import RollbackReport
from wasp_session.status import StatusBoard
from wasp_session.transport.base import Transport, TransportError

log = structlog.stdlib.get_logger("wasp_session.lifecycle")
_TICK = 0.1


class Lifecycle:
    """Runs one tenant's session until stopped; ``run()`` returns the exit code."""

    def __init__(  # noqa: PLR0913 - the session's collaborators, each distinct
        self,
        config: Config,
        *,
        transport: Transport,
        client: redis.Redis,
        status: StatusBoard,
        store: AuthStore,
        lease: Lease,
        gate: SendGate,
        stop: threading.Event,
        stop_jobs: Callable[[], None],
        rand: Callable[[], float] = random.random,
        heartbeats: Heartbeats | None = None,
    ) -> None:
        """Wire the session; ``client`` decodes responses to ``str``."""
        t = config.timings
        self.heartbeats = (
            heartbeats
            if heartbeats is not None
            else Heartbeats(bounds(t.lease_ttl, t.lease_ttl, config.delivery.ttl_seconds))
        )
        self._config = config
        self._transport = transport
        self._redis = client
        self._status = status
        self._store = store
        self._lease = lease
        self._gate = gate
        self._stop = stop
        self._stop_jobs = stop_jobs
        self._keeper = LeaseKeeper(
            lease, status, config.timings.lease_ttl, self._on_lease_lost, self.heartbeats
        )
        gate.fence_with(self._keeper.lease_valid)  # past the lease's deadline nothing is sent
        self._phases = Phases(status, gate, self._keeper.check)
        halts = PairingRecord(client, config.tenant, lease)  # windows and halts, across restarts
        self._checkpoints = CheckpointScheduler(
            store,
            config.timings,
            self._keeper.lose,
            on_rollback=RollbackReport(status, self._phases, halts),  # Redis lost writes
            writes_lost=status.writes_lost,  # the heartbeat says Redis lost some: check now
            status=status,  # auth_generation: the operator's mark against a rollback
        )
        self._guard = AccountGuard(
            tenant=config.tenant,
            pin=AccountPin(client, config.tenant),
            transport=transport,
            store=store,
            checkpoints=self._checkpoints,
            phases=self._phases,
            status=status,
            record=halts,
        )
        replier = (
            AutoReplier(
                client,
                config.tenant,
                config.auto_reply_text,
                transport=transport,
                gate=gate,
                rate_per_minute=config.delivery.rate_per_minute,
            )
            if config.auto_reply_text
            else None
        )
        self._inbound = Inbound(client, config.tenant, replier)  # messages people send
        parts = Collaborators(
            transport=transport,
            client=client,
            status=status,
            store=store,
            gate=gate,
            phases=self._phases,
            checkpoints=self._checkpoints,
            guard=self._guard,
            pairing=halts,
            lease_held=lease.holds,
            check_lease=self._keeper.check,
            beat=self._beat,
            inbound=self._inbound.received,
        )
        self._reactions = Reactions(config, parts, stop, rand)
        self._inbox = ControlInbox(client, config.tenant)
        self._redis_down = False

    # ------------------------------------------------------------ public
    @property
    def ready(self) -> bool:
        """Connected and holding the lease (``/readyz``)."""
        return self._phases.current == "Connected" and self._lease.holds() and self._gate.is_open

    def run(self) -> int:
        """Wait for the lease, then run the session; return the exit code."""
        self.heartbeats.expect(contract.LOOP_LIFECYCLE)
        try:
            return self._run()
        finally:
            self.heartbeats.retire(contract.LOOP_LIFECYCLE)

    def _beat(self) -> None:
        self.heartbeats.beat(contract.LOOP_LIFECYCLE)

    def _run(self) -> int:
        if not self._keeper.wait(self._stop):
            return EXIT_OK
        self._keeper.start_renewing(self._stop)
        try:
            code = self._session()
        except SessionExit as exit_:
            code = exit_.code
        except LeaseLostError:
            code = EXIT_LEASE_LOST
        self._inbox.stop()
        self._inbound.stop()
        if self._keeper.lost.is_set() or not self._lease.holds():
            log.error("lease_lost_exiting")
            self._gate.close()
            self._stop_jobs()
            self._transport.stop()
            return EXIT_LEASE_LOST
        self._shutdown()
        return code

    # ------------------------------------------------------------ the session
    def _on_lease_lost(self) -> None:
        self._gate.close()
        self._transport.stop()

    def _session(self) -> int:
        self._phases.enter("Starting", "Starting", "Restoring auth state and connecting.")
        try:
            restored = self._store.restore()
        except AuthStoreError as error:
            self._phases.fail("AuthRestoreFailed", str(error))
        self._checkpoints.account_kept = restored
        log.info("auth_restored" if restored else "auth_absent")
        self._checkpoints.announce_generation()
        self._guard.pin_up_front(self._config.pairing_phone)
        self._checkpoints.restart_clock()
        self._reactions.resume()  # connects, unless the pairing record says halted
        self._inbox.start()  # stopped when the session ends (``_run``)
        self._inbound.start()  # the auto-reply's thread; stopped with the inbox
        while not self._stop.is_set():
            self._beat()
            self._keeper.check()
            try:
                event = self._transport.events.get(timeout=_TICK)
            except queue.Empty:
                event = None
            try:
                if event is not None:
                    self._reactions.handle(event)
                self._reactions.tick()
                self._checkpoints.tick()
                self._control()
            except redis.RedisError as error:  # the lease's deadline keeps sends safe meanwhile
                self._redis_unreachable(error)
                continue
            if self._redis_down:
                self._redis_down = False
                log.info("redis_reachable_again")
        self.heartbeats.retire(contract.LOOP_LIFECYCLE)  # stopping: the shutdown timer bounds it
        return EXIT_OK

    def _redis_unreachable(self, error: redis.RedisError) -> None:
        """Say so once per outage; the loop goes on (the lease decides whether we may)."""
        if not self._redis_down:
            self._redis_down = True
            log.error("redis_unreachable", error=str(error))
        self._stop.wait(_TICK)

    def _control(self) -> None:
        raw = self._inbox.next()
        if raw is None:
            return
        command = raw
        try:
            parsed = json.loads(command)
            if isinstance(parsed, dict):
                command = str(parsed.get("command", ""))
        except ValueError:
            pass
        if command == contract.CONTROL_UNLINK:  # the operator deletes the session: no new pairing
            self._reactions.stay_unlinked()
        if command in {contract.CONTROL_LOGOUT, contract.CONTROL_UNLINK}:  # LoggedOut follows
            log.info("logout_requested", command=command)
            try:
                self._transport.logout()
            except TransportError as error:
                log.warning("logout_failed", error=str(error))
            return
        if command != contract.CONTROL_PAIR:
            log.warning(
                "control_command_unknown", command=command[: contract.MAX_ECHOED_INPUT_CHARS]
            )
            return
        self._reactions.rearm()

    # ------------------------------------------------------------ shutdown
    def _shutdown(self) -> None:
        """Stop jobs, final checkpoint, stop the transport, release the lease."""
        log.info("session_stopping", phase=self._phases.current)
        self._gate.close()
        self._stop_jobs()
        try:
            self._checkpoints.now("shutdown")
        except LeaseLostError:
            return
        self._transport.stop()
        try:
            self._status.update({contract.STATUS_LEASE_HELD: "0"})
        except LeaseLostError:
            return
        self._lease.release()
        metrics.LEASE_HELD.set(0)
        log.info("session_stopped")
