"""The tenant's RQ worker, run on a thread of the session process, never forking.

Owns the loop that takes OTP jobs: RQ's ``SimpleWorker`` (jobs run in this
process: a forked child cannot use neonize's Go runtime), adapted to a
thread of its own (no signal handlers, no SIGALRM job timeouts: the job
bounds itself by its TTL) and gated: it takes jobs only while the session's
``SendGate`` is open, so jobs wait in the queue, TTL running, while the
session is not Connected. Jobs come through ``intake.JobIntake``, never
through RQ's ``dequeue_any``: every job is judged from its raw bytes before
RQ reads it, and a refused one never runs. RQ's registry maintenance, which
fetches jobs and runs their failure callbacks, is replaced by the parts that
read no job (expired entries of the finished and failed registries, dead
workers). Before its first job it recovers jobs a killed predecessor left
behind (``recovery.py``), and again after any Redis error (a restarted or
unreachable Redis): the loop never quits on one, it waits, and the job it
held may sit in RQ's intermediate queue or registries. Retries due again are
moved back by ``scheduling.move_due_jobs`` on another thread.

Per job it makes the fewest round trips RQ's bookkeeping allows: RQ's two
transactions at the start (the execution record, then the job ``started``)
are one; the end is one transaction without RQ's ``WATCH`` of the job's
dependents (an ``OtpQueue`` never enqueues any), which also writes the
worker's state back to idle and the job's last heartbeat (RQ writes each on
its own); RQ's check for ``rq suspend`` (with a heartbeat) runs at most once
a ``_SUSPENSION_SECONDS``. These replay RQ's own steps (as of ``rq`` 3.0),
nothing more; a job with repeats (never an OTP job) takes RQ's own path.

Idle, it costs Redis next to nothing: it waits for a job with a blocking
``BLMOVE`` of ``health.JOB_WAIT_SECONDS`` (a job enqueued meanwhile is
handed over at once), cut short (``JobIntake.interrupt``) when ``stop`` is
set or the gate closes, so jobs still wait in the queue while the session
is not Connected; it writes RQ's worker state only when it
changes, RQ's heartbeat about once a minute (RQ's worker key lives
``worker_ttl`` + 60 s), and the queue depth gauge from a wait that ran out
(0) instead of asking. The scheduler sleeps until the next retry is due (or
``SCHEDULER_IDLE_SECONDS``), woken early when a job of this process ends,
since that may have scheduled one (at most once a second, as before). The worker is named
``contract.worker_name(tenant, ...)`` and uses JSON only. Must not decide
anything about a message: ``sender.py`` does that.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any, Final

import redis
import structlog
from rq import Queue, SimpleWorker, worker_registration
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.rate_limit import release_slot
from rq.registry import StartedJobRegistry
from rq.timeouts import BaseDeathPenalty
from rq.utils import now
from rq.worker import WorkerStatus

from wasp import contract, queueing
from wasp_session.delivery import metrics
from wasp_session.delivery.intake import JobIntake
from wasp_session.delivery.recovery import recover_abandoned_jobs
from wasp_session.delivery.scheduling import move_due_jobs
from wasp_session.gate import SendGate
from wasp_session.health import JOB_WAIT_SECONDS

_GATE_POLL_SECONDS: Final = 0.5
_HEARTBEAT_SECONDS: Final = 60.0
_SUSPENSION_SECONDS: Final = 1.0  # ``rq suspend`` is looked for at most this often
_DEPTH_SECONDS: Final = 1.0  # the queue depth gauge is asked for at most this often
_WATCH_SECONDS: Final = 0.1  # how soon a closed gate or a stop ends the wait for a job
SCHEDULER_IDLE_SECONDS: Final = 30.0  # with no retry due sooner, look again after this
_SCHEDULER_MIN_SECONDS: Final = 1.0  # at most one look a second, however many jobs end
_REDIS_RETRY_SECONDS: Final = 1.0

# Set when a job of this process ends (it may have scheduled a retry): the
# scheduler then looks at once. One delivery runs per process (``runtime``).
_job_ended = threading.Event()

log = structlog.get_logger("wasp_session.delivery.worker")


class _NoDeathPenalty(BaseDeathPenalty):
    """No SIGALRM (main thread only): the OTP job ends itself within its TTL."""

    def setup_death_penalty(self) -> None:
        """Nothing to arm."""

    def cancel_death_penalty(self) -> None:
        """Nothing to disarm."""


class GatedWorker(SimpleWorker):
    """A ``SimpleWorker`` for a non-main thread that takes judged jobs through an open gate."""

    death_penalty_class = _NoDeathPenalty

    def __init__(
        self,
        queue: Queue,
        *,
        tenant: str,
        gate: SendGate,
        stop: threading.Event,
        intake: JobIntake,
    ) -> None:
        """Serve ``queue`` with jobs from ``intake`` while ``gate`` is open, until ``stop``."""
        super().__init__(
            [queue],
            name=contract.worker_name(tenant, uuid.uuid4().hex),
            connection=queue.connection,
            serializer=queueing.JOB_SERIALIZER,
            log_job_description=False,  # the description holds the phone number and the code
        )
        self._tenant = tenant
        self._gate = gate
        self._stop = stop
        self._recovered = False
        self._queue = queue
        self._intake = intake
        self._last_heartbeat = 0.0
        self._last_depth = 0.0
        self._last_suspension_check = -_SUSPENSION_SECONDS
        self._waiting = threading.Event()  # set while waiting for a job through an open gate
        threading.Thread(target=self._watch_wait, name="otp-worker-watch", daemon=True).start()

    def _watch_wait(self) -> None:
        """Cut the wait for a job short when ``stop`` is set or the gate closes (no Redis call).

        A job taken with the gate closed would wait in this process instead of
        in the queue; a stop would wait out the wait.
        """
        while not self._stop.wait(_WATCH_SECONDS):
            if self._waiting.is_set() and not self._gate.is_open:
                self._waiting.clear()
                self._intake.interrupt()
        self._intake.interrupt()

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:  # noqa: ANN401
        """RQ's heartbeat, but on its own at most once a minute (it costs 3 round trips)."""
        moment = time.monotonic()
        if pipeline is None and moment - self._last_heartbeat < _HEARTBEAT_SECONDS:
            return
        self._last_heartbeat = moment
        try:
            super().heartbeat(timeout, pipeline)
        except redis.RedisError as error:  # the next one tries again
            self._redis_lost(error)

    def _redis_lost(self, error: redis.RedisError) -> None:
        """A Redis error: wait a moment, and recover held jobs before the next one."""
        log.warning("otp_worker_redis_error", tenant=self._tenant, error=str(error))
        self._recovered = False
        self._stop.wait(_REDIS_RETRY_SECONDS)

    def check_for_suspension(self, burst: bool) -> None:  # noqa: FBT001 - RQ's signature
        """RQ's check, at most once a ``_SUSPENSION_SECONDS``.

        A Redis error does not end the loop (RQ's would quit).
        """
        moment = time.monotonic()
        if moment - self._last_suspension_check < _SUSPENSION_SECONDS:
            return
        self._last_suspension_check = moment
        try:
            super().check_for_suspension(burst)
        except redis.RedisError as error:
            self._redis_lost(error)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """RQ's, but a Redis error in its bookkeeping does not end the loop (RQ's would quit)."""
        try:
            super().execute_job(job, queue)
        except redis.RedisError as error:
            self._redis_lost(error)
        finally:
            _job_ended.set()

    def set_state(self, state: str, pipeline: Any = None) -> None:  # noqa: ANN401 - RQ's signature
        """RQ's, but a state already written (e.g. with the job's end) is not written again."""
        if pipeline is None and state == self.get_state():
            return
        super().set_state(state, pipeline)

    def prepare_execution(self, job: Job) -> Execution:
        """RQ's execution record and its ``prepare_job_execution``, in one transaction."""
        with self.connection.pipeline() as pipeline:
            heartbeat_ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(
                job, heartbeat_ttl, pipeline=pipeline, worker_name=self.name
            )
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            self.heartbeat(heartbeat_ttl, pipeline=pipeline)
            job.heartbeat(now(), heartbeat_ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)
            pipeline.persist(job.key)
            pipeline.lrem(self._queue.intermediate_queue_key, 1, job.id)
            pipeline.execute()
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:  # noqa: FBT001, FBT002 - RQ's signature
        """Nothing: ``prepare_execution`` did it."""

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ's, but the job's last heartbeat is written with its outcome, not on its own."""
        del queue, heartbeat_ttl
        job.ended_at = now()
        job.last_heartbeat = job.ended_at

    def handle_job_success(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry,
        execution: Execution,
    ) -> None:
        """RQ's, in one transaction with the worker's idle state and without the ``WATCH``.

        RQ watches the job's dependents in case one is added meanwhile: an
        ``OtpQueue`` enqueues none, so there is nothing to watch.
        """
        if job.repeats_left:  # not an OTP job's: RQ's own way
            super().handle_job_success(job, queue, started_job_registry, execution)
            return
        ended_at = job.ended_at or now()  # both set by now: ``handle_execution_ended``
        with self.connection.pipeline() as pipeline:
            self.increment_successful_job_count(pipeline=pipeline)
            self.increment_total_working_time(ended_at - (job.started_at or ended_at), pipeline)
            result_ttl = job.get_result_ttl(self.default_result_ttl)
            if result_ttl != 0:
                job._handle_success(  # noqa: SLF001 - RQ's step, as its worker calls it
                    result_ttl,
                    pipeline=pipeline,
                    worker_name=self.name,
                    execution_id=execution.id,
                    execution_started_at=execution.created_at,
                    execution_ended_at=job.ended_at,
                )
            job.cleanup(result_ttl, pipeline=pipeline, remove_from_queue=False)
            job._status = JobStatus.FINISHED  # noqa: SLF001 - as RQ's worker sets it
            self.cleanup_execution(job, pipeline=pipeline, execution=execution)
            self.set_state(WorkerStatus.IDLE, pipeline=pipeline)
            pipeline.execute()
        release_slot(job)

    def handle_exception(self, job: Job, *exc_info: Any) -> None:  # noqa: ANN401 - RQ's signature
        """RQ's; a job ended by a Redis error is left pending: recover it before the next."""
        if isinstance(exc_info[1], redis.RedisError):
            self._recovered = False
        super().handle_exception(job, *exc_info)

    def _install_signal_handlers(self) -> None:
        """The session app owns the process's signals; this thread installs none."""

    def run_maintenance_tasks(self) -> None:
        """RQ's maintenance without what reads jobs: expired registry entries, dead workers."""
        self.last_cleaned_at = now()  # type: ignore[assignment]
        try:
            self._queue.finished_job_registry.cleanup()
            self._queue.failed_job_registry.cleanup()
            worker_registration.clean_worker_registry(self._queue)
        except redis.RedisError as error:  # e.g. NOPERM on a name someone else put there
            log.warning("otp_worker_maintenance_failed", tenant=self._tenant, error=str(error))

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        """Wait for the gate, then for an admitted job, a second at a time, watching ``stop``."""
        del timeout, max_idle_time
        while True:
            if self._stop.is_set():
                self._intake.close()
                raise StopRequested
            try:
                self.set_state(WorkerStatus.IDLE)  # written only if it changed
                job = self._take()
            except redis.RedisError as error:
                self._redis_lost(error)
                continue
            if job is not None:
                job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
                self.heartbeat()
                return job, self._queue

    def _report_depth(self) -> None:
        """Set the queue depth gauge from ``LLEN``, at most once a ``_DEPTH_SECONDS``."""
        if time.monotonic() - self._last_depth >= _DEPTH_SECONDS:
            self._last_depth = time.monotonic()
            metrics.QUEUE_DEPTH.labels(tenant=self._tenant).set(self._queue.count)

    def _take(self) -> Job | None:
        """One wait for the gate and for a job; None if either did not come."""
        if not self._gate.wait_open(_GATE_POLL_SECONDS):
            self._report_depth()  # jobs wait in the queue meanwhile: show how many
            self.heartbeat()
            return None
        if not self._recovered:
            recovered = recover_abandoned_jobs(
                self._queue, self._tenant, self._intake.is_message_done
            )
            if recovered:
                log.warning("otp_jobs_recovered", tenant=self._tenant, count=recovered)
            self._recovered = True
        self.heartbeat()
        self._waiting.set()
        try:
            job = self._intake.take(timeout=JOB_WAIT_SECONDS)
        finally:
            self._waiting.clear()
        if self._intake.waited_out:
            metrics.QUEUE_DEPTH.labels(tenant=self._tenant).set(0)  # the wait found none
        else:
            self._report_depth()
        return job


def _seconds_to_next_retry(queue: Queue) -> float:
    """Seconds until the earliest scheduled retry is due (0 if due), at most the idle pause."""
    earliest = queue.connection.zrange(queue.scheduled_job_registry.key, 0, 0, withscores=True)
    if not earliest:
        return SCHEDULER_IDLE_SECONDS
    due_at = float(earliest[0][1])
    return min(SCHEDULER_IDLE_SECONDS, max(0.0, due_at - time.time() + 0.01))


def _pause(stop: threading.Event, seconds: float) -> None:
    """Wait ``seconds``, or less if ``stop`` is set or a job ends (no Redis call)."""
    end = time.monotonic() + seconds
    while not stop.is_set() and (left := end - time.monotonic()) > 0:
        if _job_ended.wait(min(left, 1.0)):
            return


def run_scheduler(queue: Queue, stop: threading.Event) -> None:
    """Move due ``Retry`` backoffs back onto the queue when they are due, until ``stop``."""
    while not stop.is_set():
        _job_ended.clear()
        try:
            move_due_jobs(queue)
            pause = _seconds_to_next_retry(queue)
        except redis.RedisError as error:
            log.warning("otp_scheduler_redis_error", error=str(error))
            pause = _REDIS_RETRY_SECONDS
        if stop.wait(_SCHEDULER_MIN_SECONDS):
            return
        _pause(stop, pause - _SCHEDULER_MIN_SECONDS)
