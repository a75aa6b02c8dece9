"""Retries that are due, moved back onto the tenant's queue by id.

Owns what RQ's scheduler would do for the tenant's queue, and only that: a
job that returned ``Retry`` waits in RQ's scheduled registry until its
backoff ends; each ``move_due_jobs`` pass takes the due ids out of the
registry (``ZREM``: whoever removes an id moves it) and pushes them back on
the queue. Unlike ``rq.scheduler.RQScheduler`` it never fetches a job (which
would deserialize whatever hash a registry names), so the only way from the
registry to running code is the worker's intake, which judges every job.
It runs on the session's own thread while the session holds the tenant's
lease, so no scheduler lock is needed. Must not decide anything about a job.
"""

from __future__ import annotations

from typing import Final, cast

from rq import Queue
from rq.job import Job, JobStatus
from rq.utils import current_timestamp

BATCH: Final = 200  # due jobs moved per pass at most


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def move_due_jobs(queue: Queue) -> int:
    """Push ``queue``'s scheduled jobs that are due back onto it; return how many."""
    connection = queue.connection
    registry_key = queue.scheduled_job_registry.key
    due = cast(
        "list[bytes]",
        connection.zrangebyscore(registry_key, 0, current_timestamp(), start=0, num=BATCH),
    )
    moved = 0
    for raw_id in due:
        job_id = _text(raw_id)
        if not connection.zrem(registry_key, raw_id):
            continue  # someone else moved it
        with connection.pipeline() as pipe:
            if connection.exists(Job.key_for(job_id)):  # gone: the intake fails it "expired"
                pipe.hset(Job.key_for(job_id), "status", JobStatus.QUEUED.value)
            pipe.rpush(queue.key, job_id)
            pipe.execute()
        moved += 1
    return moved
