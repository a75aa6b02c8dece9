"""Many OTPs enqueued the fastest way a tenant's API can: plain RQ, 500 per round trip.

For the runs of thousands of OTPs through a real session: each message id is
``bulk-<n>`` and its code is ``n`` (six digits), so a test can tell every
message, and every send, apart.
"""

from __future__ import annotations

import redis

from wasp import contract, queueing

BATCH = 500
TTL_SECONDS = 3600  # longer than any run: these tests are about loss and duplicates, not expiry


def enqueue_many(client: redis.Redis, tenant: str, phone: str, count: int) -> list[str]:
    """Enqueue ``count`` OTPs to ``phone`` on ``tenant``'s queue; return their message ids."""
    queue = queueing.otp_queue(client, tenant)
    ids = [f"bulk-{i:05d}" for i in range(count)]
    for start in range(0, count, BATCH):
        with client.pipeline() as pipe:
            for message_id in ids[start : start + BATCH]:
                queue.enqueue_call(
                    contract.OTP_JOB_FUNCTION,
                    kwargs={
                        "phone": phone,
                        "code": f"{int(message_id[5:]):06d}",
                        "message_id": message_id,
                        "ttl_seconds": TTL_SECONDS,
                    },
                    job_id=contract.job_id(tenant, message_id),
                    pipeline=pipe,
                )
            pipe.execute()
    return ids
