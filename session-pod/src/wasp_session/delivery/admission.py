"""Which job hashes may run: exactly the OTP job, judged from raw bytes before RQ reads them.

Owns the one decision between a tenant's queue and the code of this
process. A job hash is admitted only if, in this order: it holds at most
``contract.MAX_JOB_HASH_BYTES`` (field names and values together) in at most
``MAX_JOB_FIELDS`` fields, all of them fields RQ 3 writes; it has no
callback (success, failure, stopped), no dependency, no webhook, repeat,
rate limit or group; its ``data`` inflates to at most
``MAX_JOB_DATA_BYTES`` of JSON (never a pickle: nothing here or in RQ
unpickles it) naming ``contract.OTP_JOB_FUNCTION`` with keyword arguments
only; its id is ``contract.job_id(tenant, kwargs["message_id"])``; it came
from the tenant's queue; and RQ can read it (``Job.restore`` with the JSON
serializer, which imports nothing), with a creation time that can date its
message (from the year 2000 to 9000). Anything else is a ``JobRefusal`` naming
what is wrong, with the message id when one can be read (from the job id,
else from the arguments). Errors quote input through ``wasp.redaction.echo``.

Pure: it reads bytes it is given and never touches Redis, imports no job's
code and calls nothing from a job. ``intake.py`` reads the hash (bounded)
and records refusals.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

import redis
from rq.job import Job

from wasp import contract, queueing
from wasp.redaction import echo
from wasp_session.delivery.arguments import MESSAGE_ID_PATTERN, valid_ttl_seconds

MAX_JOB_FIELDS: Final = 64
# A job's creation time dates its message (expiry = created_at + TTL, a retry's backoff
# after it): far from the end of the calendar, where that date would overflow, and in
# years of four digits, as the message hash's RFC 3339 times must be.
_EARLIEST_CREATION: Final = datetime(2000, 1, 1)  # noqa: DTZ001 - RQ's times are naive UTC
_LATEST_CREATION: Final = datetime(9000, 1, 1)  # noqa: DTZ001
MAX_JOB_DATA_BYTES: Final = contract.MAX_JOB_HASH_BYTES  # inflated ``data``

# Every field RQ 3.0 writes into a job hash (``Job.to_dict``, ``set_status``,
# ``heartbeat``, retries). Anything else is not an RQ job of ours.
RQ_JOB_FIELDS: Final = frozenset(
    {
        "created_at",
        "data",
        "success_callback_name",
        "failure_callback_name",
        "stopped_callback_name",
        "started_at",
        "ended_at",
        "last_heartbeat",
        "worker_name",
        "group_id",
        "number_of_retries",
        "retries_left",
        "retry_intervals",
        "enqueue_at_front_on_retry",
        "origin",
        "description",
        "enqueued_at",
        "repeats_left",
        "repeat_intervals",
        "rate_limit_key",
        "rate_limit_concurrency",
        "result",
        "exc_info",
        "timeout",
        "success_callback_timeout",
        "failure_callback_timeout",
        "stopped_callback_timeout",
        "webhooks",
        "result_ttl",
        "failure_ttl",
        "status",
        "dependency_id",
        "dependency_ids",
        "meta",
        "ttl",
        "allow_dependency_failures",
        "enqueue_at_front",
    }
)
# Fields that must be empty or absent (or hold the one value that means "none"):
# what would make RQ run, import, call or enqueue anything beyond the OTP job.
FORBIDDEN_FEATURES: Final = {
    "success_callback_name": ("a success callback", ()),
    "failure_callback_name": ("a failure callback", ()),
    "stopped_callback_name": ("a stopped callback", ()),
    "dependency_id": ("a dependency", ()),
    "dependency_ids": ("dependencies", (b"[]",)),
    "webhooks": ("webhooks", (b"[]",)),
    "repeats_left": ("repeats", (b"0",)),
    "repeat_intervals": ("repeats", (b"[]",)),
    "rate_limit_key": ("a rate limit", ()),
    "group_id": ("a group", ()),
}


class JobRefusal(Exception):  # noqa: N818 - a verdict, raised only to leave the checks early
    """Why a job hash may not run, and which message it belongs to, if that can be read."""

    def __init__(
        self, error: str, message_id: str | None = None, ttl_seconds: int | None = None
    ) -> None:
        """``error`` says what is wrong; ``message_id`` and ``ttl_seconds`` when known."""
        super().__init__(error)
        self.error = error
        self.message_id = message_id
        self.ttl_seconds = ttl_seconds


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace")


def hash_size(fields: Mapping[bytes, bytes]) -> int:
    """Bytes of a job hash: every field name and value together."""
    return sum(len(name) + len(value) for name, value in fields.items())


def message_id_of_job_id(tenant: str, job_id: str) -> str | None:
    """The message id a job id names, when it is the tenant's and a valid message id."""
    message_id = contract.message_id_of_job(tenant, job_id)
    if message_id is not None and MESSAGE_ID_PATTERN.fullmatch(message_id):
        return message_id
    return None


def _inflate(raw: bytes) -> bytes:
    """The job's data as RQ reads it (zlib, or as stored), refused when it inflates too far."""
    inflater = zlib.decompressobj()
    try:
        data = inflater.decompress(raw, MAX_JOB_DATA_BYTES + 1)
    except zlib.error:
        data, complete, left = raw, True, b""
    else:
        complete, left = inflater.eof, inflater.unconsumed_tail
    if len(data) > MAX_JOB_DATA_BYTES or left:
        msg = f"the job's data inflates to more than {MAX_JOB_DATA_BYTES} bytes"
        raise JobRefusal(msg)
    return data if complete else raw  # RQ too falls back to the stored bytes


class _Judgement:
    """One job hash being judged; learns the message id and TTL as the checks go."""

    def __init__(self, tenant: str, job_id: str, fields: Mapping[bytes, bytes]) -> None:
        self.tenant = tenant
        self.job_id = job_id
        self.raw = fields
        self.job_message_id = message_id_of_job_id(tenant, job_id)
        self.message_id = self.job_message_id
        self.ttl_seconds: int | None = None

    def refuse(self, error: str) -> JobRefusal:
        return JobRefusal(error, self.message_id, self.ttl_seconds)

    def inflate(self, raw: bytes) -> bytes:
        try:
            return _inflate(raw)
        except JobRefusal as refusal:
            raise self.refuse(refusal.error) from None

    def check_bounds(self) -> None:
        size = hash_size(self.raw)
        if size > contract.MAX_JOB_HASH_BYTES or len(self.raw) > MAX_JOB_FIELDS:
            msg = (
                f"the job hash has {len(self.raw)} fields and {size} bytes: an OTP job has at "
                f"most {MAX_JOB_FIELDS} fields and {contract.MAX_JOB_HASH_BYTES} bytes"
            )
            raise self.refuse(msg)

    def check_fields(self) -> dict[str, bytes]:
        fields: dict[str, bytes] = {}
        for name, value in self.raw.items():
            try:
                text = name.decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if text not in RQ_JOB_FIELDS:
                msg = f"the job hash has a field RQ never writes: {echo(_text(name))}"
                raise self.refuse(msg)
            fields[text] = value
        for field, (feature, harmless) in FORBIDDEN_FEATURES.items():
            value = fields.get(field, b"")
            if value and value not in harmless:
                msg = (
                    f"the job has {feature} ({field}={echo(_text(value))}): "
                    "an OTP job has no callbacks, dependencies, webhooks, repeats or groups"
                )
                raise self.refuse(msg)
        if "data" not in fields:
            msg = "the job hash has no data"
            raise self.refuse(msg)
        return fields

    def check_call(self, data: bytes) -> dict[str, Any]:
        try:
            call = json.loads(data.decode("utf-8"))
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            msg = (
                "the job's data is not JSON (a pickle?): wasp reads only jobs enqueued with "
                "rq.serializers.JSONSerializer and never unpickles anything"
            )
            raise self.refuse(msg) from None
        if not isinstance(call, list) or len(call) != 4:  # noqa: PLR2004 - RQ's (func, instance, args, kwargs)
            msg = "the job's data is not RQ's [function, instance, args, kwargs]"
            raise self.refuse(msg)
        function, instance, args, kwargs = call
        if function != contract.OTP_JOB_FUNCTION:
            msg = f"the job's function {echo(function)} is not {contract.OTP_JOB_FUNCTION!r}"
            raise self.refuse(msg)
        if not isinstance(kwargs, dict):
            msg = "the job's keyword arguments are not a mapping"
            raise self.refuse(msg)
        self._learn(kwargs)
        if instance is not None:
            msg = "the OTP job is a plain function, not a method of an instance"
            raise self.refuse(msg)
        if args:
            msg = f"the OTP job takes keyword arguments only, got {echo(args)}"
            raise self.refuse(msg)
        return kwargs

    def _learn(self, kwargs: dict[str, Any]) -> None:
        """The message id (if the job id has none) and the TTL, from the arguments."""
        message_id = kwargs.get("message_id")
        if (
            self.message_id is None
            and isinstance(message_id, str)
            and MESSAGE_ID_PATTERN.fullmatch(message_id)
        ):
            self.message_id = message_id
        self.ttl_seconds = valid_ttl_seconds(kwargs.get("ttl_seconds"))

    def check_id(self, kwargs: dict[str, Any]) -> None:
        """The job id is ``<tenant>_<message id>``, with the arguments' message id if valid.

        A missing or malformed ``message_id`` argument is left to
        ``arguments.parse_arguments``, which fails the message with its own sentence.
        """
        message_id = kwargs.get("message_id")
        valid = isinstance(message_id, str) and MESSAGE_ID_PATTERN.fullmatch(message_id)
        expected = contract.job_id(self.tenant, str(message_id) if valid else "<message_id>")
        if self.job_message_id is None or (valid and self.job_id != expected):
            msg = f"the job id {echo(self.job_id)} must be {echo(expected)} (enqueue with job_id=)"
            raise self.refuse(msg)

    def restore(self, connection: redis.Redis, data: bytes, kwargs: dict[str, Any]) -> Job:
        try:
            job = Job(self.job_id, connection=connection, serializer=queueing.JOB_SERIALIZER)
            job.restore(dict(self.raw))
            readable = (job.func_name, job.instance, list(job.args), job.kwargs)
        except Exception as error:  # noqa: BLE001 - whatever RQ cannot read is refused
            msg = f"RQ cannot read the job hash: {type(error).__name__}: {echo(str(error))}"
            raise self.refuse(msg) from None
        if job.data != data or readable != (contract.OTP_JOB_FUNCTION, None, [], kwargs):
            msg = "RQ reads the job's data differently from its check"
            raise self.refuse(msg)
        if not _EARLIEST_CREATION <= job.created_at.replace(tzinfo=None) <= _LATEST_CREATION:
            msg = f"the job's created_at {echo(str(job.created_at))} is not a time RQ writes"
            raise self.refuse(msg)
        queue_name = contract.delivery_queue(self.tenant)
        if job.origin != queue_name:
            msg = f"the job comes from queue {echo(job.origin)}, not {queue_name!r}"
            raise self.refuse(msg)
        return job


def admit(
    tenant: str,
    job_id: str,
    fields: Mapping[bytes, bytes],
    connection: redis.Redis,
    *,
    default_ttl_seconds: int,
) -> Job:
    """The job of ``fields`` (the raw hash of ``job_id``), if it is exactly an OTP job.

    Raises ``JobRefusal`` otherwise. The job's RQ lifetimes are set from its
    ``ttl_seconds`` (``wasp.queueing``; ``default_ttl_seconds`` when it has
    none that is valid), whatever the enqueuer asked for.
    """
    judgement = _Judgement(tenant, job_id, fields)
    judgement.check_bounds()
    checked = judgement.check_fields()
    data = judgement.inflate(checked["data"])
    if checked.get("exc_info"):
        judgement.inflate(checked["exc_info"])  # RQ inflates it too, unbounded
    kwargs = judgement.check_call(data)
    judgement.check_id(kwargs)
    job = judgement.restore(connection, data, kwargs)
    lifetimes = queueing.job_lifetimes(judgement.ttl_seconds or default_ttl_seconds)
    job.ttl = lifetimes["ttl"]
    job.result_ttl = lifetimes["result_ttl"]
    job.failure_ttl = lifetimes["failure_ttl"]
    return job
