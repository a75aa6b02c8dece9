"""Jobs a killed session process left behind, put back on the queue.

Owns the one pass, at worker start, over RQ's bookkeeping of the tenant's
queue: jobs in the intermediate queue (taken but not started), in the started
registry (running when the process died) and in the failed registry (ended by
an unexpected error or a shutdown) are requeued at the front, unless their
message already reached a final state or was sent. It runs only while this
process holds the tenant's lease (the gate is open), so no other worker can
be running those jobs. The sender's marker then makes sure a recovered job
that did go out is not sent again (apart from the documented crash window).
"""

from __future__ import annotations

from collections.abc import Callable

from rq import Queue
from rq.intermediate_queue import IntermediateQueue
from rq.job import Job


def recover_abandoned_jobs(queue: Queue, is_message_done: Callable[[str], bool]) -> int:
    """Requeue abandoned OTP jobs of ``queue``; return how many."""
    connection = queue.connection
    intermediate = IntermediateQueue(queue.key, connection)
    candidates: dict[str, None] = {}
    for job_id in intermediate.get_job_ids():
        candidates[job_id] = None
    started = queue.started_job_registry
    entries: list[bytes] = connection.zrange(started.key, 0, -1)  # type: ignore[assignment]
    for entry in entries:
        candidates[started.parse_job_id(entry)] = None
        connection.zrem(started.key, entry)  # nobody runs it: this process holds the lease
    for job_id in queue.failed_job_registry.get_job_ids(cleanup=False):
        candidates[job_id] = None
    recovered = 0
    for job_id in candidates:
        intermediate.remove(job_id)
        job = Job.fetch(job_id, connection=connection) if Job.exists(job_id, connection) else None
        if job is None or is_message_done(job_id):
            queue.failed_job_registry.remove(job_id)
            continue
        queue.failed_job_registry.remove(job_id)
        with connection.pipeline() as pipe:
            job.started_at = None
            job.ended_at = None
            queue._enqueue_job(job, pipeline=pipe, at_front=True)  # noqa: SLF001 - RQ's requeue
            pipe.execute()
        recovered += 1
    return recovered
