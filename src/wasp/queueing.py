"""How OTP jobs sit in RQ: JSON on every side, and no longer than the OTP lives.

Owns the two rules the client, the session's worker, the README's plain-RQ
snippet and the benchmark share about RQ itself: jobs are serialized with
``rq.serializers.JSONSerializer`` (never pickle: a queue holds data, never
code), and a job's hash, its result and its failure are kept for the OTP's
``ttl_seconds`` plus a small margin, not for RQ's defaults. Names (queue,
job id, worker name) live in ``wasp.contract``; this module only builds
RQ objects with them. Must not send, decide or check anything.
"""

from __future__ import annotations

from typing import Final, TypedDict

import redis
from rq import Queue
from rq.serializers import JSONSerializer

from wasp import contract

__all__ = [
    "JOB_LIFETIME_MARGIN_SECONDS",
    "JOB_SERIALIZER",
    "JobLifetimes",
    "job_lifetime_seconds",
    "job_lifetimes",
    "otp_queue",
]

JOB_SERIALIZER: Final = JSONSerializer
# Seconds an OTP job's RQ keys outlive the OTP itself: enough for the worker to
# record "expired" on a job it takes at the last moment, and no more.
JOB_LIFETIME_MARGIN_SECONDS: Final = 10


class JobLifetimes(TypedDict):
    """RQ's three lifetimes of a job, as ``enqueue_call`` takes them."""

    ttl: int  # the job waiting in the queue
    result_ttl: int  # the job hash and its result after it finished
    failure_ttl: int  # the job hash and its result after it failed


def job_lifetime_seconds(ttl_seconds: int) -> int:
    """How long an OTP job with ``ttl_seconds`` keeps its RQ keys."""
    return max(1, int(ttl_seconds)) + JOB_LIFETIME_MARGIN_SECONDS


def job_lifetimes(ttl_seconds: int) -> JobLifetimes:
    """``ttl``, ``result_ttl`` and ``failure_ttl`` of an OTP job: its TTL plus the margin."""
    seconds = job_lifetime_seconds(ttl_seconds)
    return {"ttl": seconds, "result_ttl": seconds, "failure_ttl": seconds}


def otp_queue(connection: redis.Redis, tenant: str, *, queue_class: type[Queue] = Queue) -> Queue:
    """The tenant's RQ queue of OTP jobs, JSON-serialized (``connection`` must not decode)."""
    return queue_class(
        contract.delivery_queue(tenant), connection=connection, serializer=JOB_SERIALIZER
    )
