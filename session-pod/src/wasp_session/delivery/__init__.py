"""The tenant's OTP worker, run inside the session process.

``run_delivery`` is the one entry point the session's app calls, on a thread
of its own, once the transport is started: it publishes the tenant's
delivery settings for clients, binds the job function to this session
(``runtime``), moves due retries back onto the queue on a helper thread and
runs the gated ``SimpleWorker`` on the calling thread until ``stop`` is set.
Jobs are JSON (``wasp.queueing``) and judged before anything runs
(``admission``). Never forks.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

import redis
import structlog

from wasp import contract, queueing
from wasp_session.delivery import runtime
from wasp_session.delivery.context import DeliveryContext, DeliverySettings
from wasp_session.delivery.intake import JobIntake, OtpQueue
from wasp_session.delivery.sender import OtpSender
from wasp_session.delivery.worker import GatedWorker, run_scheduler

__all__ = ["DeliveryContext", "DeliverySettings", "run_delivery"]

log = structlog.get_logger("wasp_session.delivery")


def publish_settings(client: redis.Redis, context: DeliveryContext) -> None:
    """Write the tenant's delivery settings where clients read them."""
    settings = context.settings
    client.hset(
        contract.delivery_settings_key(context.tenant),
        mapping={
            contract.DELIVERY_DEFAULT_REGION: settings.default_region,
            contract.DELIVERY_TTL_SECONDS: str(settings.ttl_seconds),
            contract.DELIVERY_MESSAGE_TEMPLATE: settings.message_template,
            contract.DELIVERY_RATE_PER_MINUTE: str(settings.rate_per_minute),
        },
    )


def run_delivery(context: DeliveryContext, stop: threading.Event) -> None:
    """Serve the tenant's queue until ``stop`` is set. Never forks."""
    client = redis.Redis.from_url(context.redis_url)
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    queue_name = contract.delivery_queue(context.tenant)
    queue = queueing.otp_queue(client, context.tenant, queue_class=OtpQueue)
    scheduler_client = redis.Redis.from_url(context.redis_url)
    sender = OtpSender(context, client, stop, owner)
    scheduler = threading.Thread(
        target=run_scheduler,
        args=(queueing.otp_queue(scheduler_client, context.tenant), stop),
        name="otp-scheduler",
        daemon=True,
    )

    publish_settings(client, context)
    runtime.bind(sender)
    scheduler.start()
    worker = GatedWorker(
        queue,
        tenant=context.tenant,
        gate=context.gate,
        stop=stop,
        intake=JobIntake(queue, context.tenant, context.settings.ttl_seconds),
    )
    log.info("delivery_started", tenant=context.tenant, queue=queue_name, owner=owner)
    try:
        worker.work(logging_level="WARNING")
    finally:
        runtime.unbind(sender)
        stop.set()
        scheduler.join(timeout=5)
        scheduler_client.close()
        client.close()
        log.info("delivery_stopped", tenant=context.tenant)
