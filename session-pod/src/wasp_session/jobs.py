"""The OTP job: the one function an API enqueues, by its dotted name.

``wasp_session.jobs.send_otp`` (``contract.OTP_JOB_FUNCTION``) is a stable
import path: an API enqueues it with plain RQ, without importing wasp, on
queue ``otp-delivery:<tenant>``, serialized as JSON, with job id
``<tenant>_<message id>`` (``contract.job_id``)::

    queue = Queue("otp-delivery:acme", connection=redis, serializer=JSONSerializer)
    queue.enqueue(
        "wasp_session.jobs.send_otp",
        job_id=f"acme_{message_id}",
        kwargs={
            "phone": "+4915112345678",
            "code": "493817",
            "message_id": message_id,
            "ttl_seconds": 300,
        },
    )

Keyword arguments: ``phone`` (E.164, or national with the tenant's default
region), ``code`` (4-10 ASCII letters/digits), ``message_id`` (the bare id,
the job id without its ``<tenant>_``), ``ttl_seconds`` (counted from the
job's creation), and optionally ``template`` (``{code}`` and ``{minutes}``
only). Anything else fails the message with reason ``invalid_job``. The
worker calls this function only for a job it has judged to be exactly the
OTP job (``delivery.admission``: JSON, this function, no callbacks or
dependencies, bounded size); the function accepts any arguments so that a
malformed one is recorded as such instead of raising in RQ. It runs only
inside the session process, which binds the delivery that does the work.
"""

from __future__ import annotations

from rq import get_current_job
from rq.job import Retry

from wasp_session.delivery import runtime

__all__ = ["send_otp"]


def send_otp(*args: object, **kwargs: object) -> Retry | None:
    """Deliver one OTP; return ``Retry`` when a transient failure should be tried again."""
    job = get_current_job()
    if job is None:
        msg = "send_otp runs only as an RQ job inside wasp-session"
        raise RuntimeError(msg)
    return runtime.active().handle(job, args, dict(kwargs))
