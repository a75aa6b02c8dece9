"""Jobs a killed session process left behind, put back on the queue by id.

Owns the one pass, at worker start, over RQ's bookkeeping of the tenant's
queue: jobs in the intermediate queue (taken but not started), in the started
registry (running when the process died) and in the failed registry (ended by
an unexpected error or a shutdown) are requeued at the front, unless their
id is not the tenant's (``<tenant>_<message id>``), their hash is gone, or
their message already reached a final state or was sent. It runs only while
this process holds the tenant's lease (the gate is open), so no other worker
can be running those jobs. The sender's marker then makes sure a recovered
job that did go out is not sent again (apart from the documented crash window:
one resend per message, then ``failed``/``uncertain``).

Nothing is fetched or deserialized here: a job goes back by its id alone,
and is judged again like any other when the worker takes it
(``intake.py``), so a registry is no way around the job boundary.
"""

from __future__ import annotations

from collections.abc import Callable

from rq import Queue
from rq.job import Job, JobStatus

from wasp_session.delivery.admission import message_id_of_job_id


def _text(value: object) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def recover_abandoned_jobs(
    queue: Queue, tenant: str, is_message_done: Callable[[str], bool]
) -> int:
    """Requeue abandoned OTP jobs of ``queue``; return how many."""
    connection = queue.connection
    intermediate_key = queue.intermediate_queue_key
    candidates: dict[str, None] = {}
    for job_id in connection.lrange(intermediate_key, 0, -1):
        candidates[_text(job_id)] = None
    started = queue.started_job_registry
    entries: list[bytes] = connection.zrange(started.key, 0, -1)  # type: ignore[assignment]
    for entry in entries:
        candidates[started.parse_job_id(_text(entry))] = None
        connection.zrem(started.key, entry)  # nobody runs it: this process holds the lease
    for job_id in queue.failed_job_registry.get_job_ids(cleanup=False):
        candidates[job_id] = None
    recovered = 0
    for job_id in candidates:
        connection.lrem(intermediate_key, 1, job_id)
        queue.failed_job_registry.remove(job_id)
        message_id = message_id_of_job_id(tenant, job_id)
        if message_id is None or is_message_done(message_id):
            continue
        if not connection.exists(Job.key_for(job_id)):
            continue
        with connection.pipeline() as pipe:
            pipe.hset(
                Job.key_for(job_id),
                mapping={"status": JobStatus.QUEUED.value, "started_at": "", "ended_at": ""},
            )
            pipe.lpush(queue.key, job_id)
            pipe.execute()
        recovered += 1
    return recovered
