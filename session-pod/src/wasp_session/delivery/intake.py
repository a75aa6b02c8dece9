"""Taking one job off the tenant's queue: read bounded, admitted, or refused and recorded.

Owns the worker's path from the queue to a runnable RQ ``Job``, in place of
RQ's own ``Queue.dequeue_any`` (which would ``Job.fetch`` whatever hash it
finds). The job id is moved to RQ's intermediate queue (``BLMOVE``, as RQ
does: a blocking wait on a connection of its own, ``blocking_connection``,
that ``interrupt()`` cuts short when the worker stops or its gate closes),
then one Lua script reads the job hash only if it is a hash of at most
``contract.MAX_JOB_HASH_BYTES`` (a bigger one is refused unread), and
``admission.admit`` judges the bytes. A refused job ends ``failed`` in RQ
(status, error text, the failed registry, expiring with the OTP) and its
message, when one can be read, ``failed/invalid_job``; nothing of it is
deserialized beyond JSON, imported or called. A job id whose hash is gone
(RQ's ``ttl`` ran out while the session was away) fails its pending message
``expired``. Either way the worker simply takes the next job.

``OtpQueue`` is the tenant's queue as the worker uses it: JSON jobs, and no
dependents ever enqueued (an OTP job has none; anything in its dependents
set was put there by someone else).
"""

from __future__ import annotations

import zlib
from datetime import timedelta
from typing import Any, Final, cast

import redis
import structlog
from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import current_timestamp

from wasp import contract, queueing
from wasp.messages import MessageStore
from wasp.redaction import mask_numbers
from wasp.timestamps import format_timestamp, utc_now
from wasp_session.blocking_connection import BlockingConnection, WaitInterruptedError
from wasp_session.delivery import metrics
from wasp_session.delivery.admission import (
    MAX_JOB_FIELDS,
    JobRefusal,
    admit,
    message_id_of_job_id,
)

log = structlog.get_logger("wasp_session.delivery.intake")

# KEYS: job hash. ARGV: max bytes, max fields. Replies {kind, size, field, value, ...};
# the fields only when the hash is within both bounds.
_READ_BOUNDED: Final = """
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind == 'none' then return {'missing', 0} end
if kind ~= 'hash' then return {'not_a_hash', 0} end
local count = redis.call('HLEN', KEYS[1])
if count > tonumber(ARGV[2]) then return {'too_many_fields', count} end
local size = 0
for _, name in ipairs(redis.call('HKEYS', KEYS[1])) do
  size = size + #name + redis.call('HSTRLEN', KEYS[1], name)
end
if size > tonumber(ARGV[1]) then return {'too_large', size} end
local reply = {'ok', size}
for _, item in ipairs(redis.call('HGETALL', KEYS[1])) do reply[#reply + 1] = item end
return reply
"""


class OtpQueue(Queue):
    """The tenant's queue for the worker: OTP jobs have no dependents, so none are enqueued."""

    def move_dependents_to_ready(self, *args: Any, **kwargs: Any) -> dict[str, list[str]]:  # noqa: ANN401, ARG002 - RQ's signature
        """Nothing: a dependent of an OTP job was put there by someone else."""
        return {}

    def enqueue_dependents(self, *args: Any, **kwargs: Any) -> dict[str, list[str]]:  # noqa: ANN401, ARG002
        """Nothing, as above."""
        return {}


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _failed_fields(error: str) -> dict[str, str | bytes]:
    """The fields that end a refused job ``failed`` in RQ, with ``error`` as its text."""
    return {
        "status": JobStatus.FAILED.value,
        "ended_at": format_timestamp(utc_now()),
        "exc_info": zlib.compress(error.encode("utf-8")),
    }


def _unread_refusal(kind: str, size: int, message_id: str | None) -> JobRefusal | None:
    """The refusal of a job hash the bounded read did not return, if it did not."""
    reasons = {
        "not_a_hash": "the job's key is not a hash",
        "unreadable": "the job hash cannot be read with this session's Redis credential",
        "too_many_fields": f"the job hash has {size} fields: an OTP job has at most "
        f"{MAX_JOB_FIELDS}",
        "too_large": f"the job hash has {size} bytes: an OTP job has at most "
        f"{contract.MAX_JOB_HASH_BYTES} (refused unread)",
    }
    return JobRefusal(reasons[kind], message_id) if kind in reasons else None


class JobIntake:
    """Takes the tenant's next job, admitted or refused; one per worker."""

    def __init__(self, queue: Queue, tenant: str, default_ttl_seconds: int) -> None:
        """Take jobs from ``queue`` of ``tenant``; refusals expire after the default TTL."""
        self._queue = queue
        self._connection: redis.Redis = queue.connection
        self._tenant = tenant
        self._default_ttl = default_ttl_seconds
        self._store = MessageStore(self._connection, tenant)
        self._read = self._connection.register_script(_READ_BOUNDED)
        self._intermediate_key = queue.intermediate_queue_key
        self._waits = BlockingConnection(self._connection)
        self.waited_out = False  # whether the last ``take`` found the queue empty all along
        self._log = log.bind(tenant=tenant)

    def is_message_done(self, message_id: str) -> bool:
        """Whether the message was sent or reached a final state (nothing left to send)."""
        status = self._store.get(message_id)
        return status is not None and not status.is_pending

    def take(self, timeout: float) -> Job | None:
        """The next admitted job, waiting up to ``timeout`` seconds; None if none came.

        None at once if ``interrupt()`` cut the wait short.
        """
        self.waited_out = False
        try:
            raw_id = cast(
                "bytes | None",
                self._waits.blmove(self._queue.key, self._intermediate_key, timeout),
            )
        except WaitInterruptedError:
            return None
        if raw_id is None:
            self.waited_out = True
            return None
        try:
            job_id = raw_id.decode("utf-8")
        except UnicodeDecodeError:
            self._refuse_unnamed(raw_id)
            return None
        return self.admit(job_id)

    def interrupt(self) -> None:
        """End the current wait for a job now, or the next one at once (any thread)."""
        self._waits.interrupt()

    def close(self) -> None:
        """Close the connection the waits use (after the last ``take``)."""
        self._waits.close()

    def _refuse_unnamed(self, raw_id: bytes) -> None:
        """A job id that is not UTF-8 (RQ never writes one): off the queue, its hash ``failed``.

        It names no message. Its hash, if it is one, ends ``failed`` with the
        error and expires like any refused job's; it is not put in RQ's failed
        registry, whose maintenance decodes every id.
        """
        error = "not an OTP job: its id is not UTF-8 (RQ's job ids are [A-Za-z0-9_-])"
        key = Job.redis_job_namespace_prefix.encode() + raw_id
        is_hash = self._connection.type(key) in (b"hash", "hash")
        with self._connection.pipeline(transaction=False) as pipe:
            pipe.lrem(self._intermediate_key, 1, raw_id)  # type: ignore[arg-type]
            if is_hash:
                pipe.hset(key, mapping=_failed_fields(error))  # type: ignore[arg-type]
                pipe.expire(key, queueing.job_lifetime_seconds(self._default_ttl))
            pipe.execute()
        shown = _text(raw_id)[: contract.MAX_ECHOED_INPUT_CHARS]
        self._log.warning("otp_job_refused", job_id=shown, error="its id is not UTF-8")

    def admit(self, job_id: str) -> Job | None:
        """The job ``job_id`` (already in the intermediate queue) if admitted, else None."""
        try:
            reply = cast(
                "list[Any]",
                self._read(
                    keys=[Job.key_for(job_id)], args=[contract.MAX_JOB_HASH_BYTES, MAX_JOB_FIELDS]
                ),
            )
        except redis.exceptions.ResponseError as error:  # e.g. NOPERM: not this tenant's job
            reply = ["unreadable", 0]
            self._log.info(
                "otp_job_unreadable",
                job_id=job_id[: contract.MAX_ECHOED_INPUT_CHARS],
                error=str(error),
            )
        kind, size = _text(reply[0]), int(reply[1])
        if kind == "missing":
            self._missing(job_id)
            return None
        message_id = message_id_of_job_id(self._tenant, job_id)
        unread = _unread_refusal(kind, size, message_id)
        if unread is not None:
            self._refuse(job_id, unread, is_hash=kind not in ("not_a_hash", "unreadable"))
            return None
        try:
            fields = dict(zip(reply[2::2], reply[3::2], strict=True))
            return admit(
                self._tenant,
                job_id,
                fields,
                self._connection,
                default_ttl_seconds=self._default_ttl,
            )
        except JobRefusal as refusal:
            self._refuse(job_id, refusal, is_hash=True)
        except Exception as error:  # noqa: BLE001 - a job that cannot be judged is refused
            msg = f"the job cannot be judged ({type(error).__name__})"
            self._refuse(job_id, JobRefusal(msg, message_id), is_hash=True)
        return None

    def _refuse(self, job_id: str, refusal: JobRefusal, *, is_hash: bool) -> None:
        """End the job ``failed`` in RQ and its message ``failed/invalid_job``."""
        lifetime = queueing.job_lifetime_seconds(refusal.ttl_seconds or self._default_ttl)
        error = f"not an OTP job: {refusal.error}"
        key = Job.key_for(job_id)
        with self._connection.pipeline(transaction=False) as pipe:
            pipe.lrem(self._intermediate_key, 1, job_id)
            if is_hash:
                pipe.hset(key, mapping=_failed_fields(error))  # type: ignore[arg-type]
                pipe.expire(key, lifetime)
                pipe.zadd(
                    self._queue.failed_job_registry.key, {job_id: current_timestamp() + lifetime}
                )
            pipe.execute()
        message_id = refusal.message_id
        job_log = self._log.bind(
            message_id=message_id, job_id=job_id[: contract.MAX_ECHOED_INPUT_CHARS]
        )
        job_log.warning("otp_job_refused", error=mask_numbers(refusal.error))
        if message_id is None:
            return
        now = utc_now()
        ttl = refusal.ttl_seconds or self._default_ttl
        self._store.create(
            message_id, phone=None, created_at=now, expires_at=now + timedelta(seconds=ttl)
        )
        if self._store.fail(message_id, "invalid_job", error):
            metrics.count_state(self._tenant, "failed", "invalid_job")

    def _missing(self, job_id: str) -> None:
        """A job id without its hash: its RQ ``ttl`` ran out (or it was deleted) unseen."""
        self._connection.lrem(self._intermediate_key, 1, job_id)
        message_id = message_id_of_job_id(self._tenant, job_id)
        status = self._store.get(message_id) if message_id else None
        self._log.info(
            "otp_job_missing",
            message_id=message_id,
            job_id=job_id[: contract.MAX_ECHOED_INPUT_CHARS],
        )
        if message_id is None or status is None or not status.is_pending:
            return
        seconds, micros = self._connection.time()  # Redis's clock, as every TTL decision
        if status.expires_at is None or seconds + micros / 1e6 < status.expires_at.timestamp():
            return
        msg = f"not sent: its time to live ended at {format_timestamp(status.expires_at)}"
        if self._store.fail(message_id, "expired", msg):
            metrics.count_state(self._tenant, "failed", "expired")
