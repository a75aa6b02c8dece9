"""The tenant's OTP worker, run inside the session process.

``run_delivery`` is the one entry point the session's app calls, on a thread
of its own, once the transport is started: it publishes the tenant's
delivery settings for clients, binds the job function to this session
(``runtime``), runs RQ's scheduler on a helper thread and the gated
``SimpleWorker`` on the calling thread until ``stop`` is set. Never forks.
"""

from __future__ import annotations

import os
import socket
import threading
import uuid

import redis
import structlog
from rq import Queue

from wasp import contract
from wasp.messages import MessageStore
from wasp_session.delivery import runtime
from wasp_session.delivery.context import DeliveryContext, DeliverySettings
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
    queue = Queue(queue_name, connection=client)
    store = MessageStore(client, context.tenant)
    sender = OtpSender(context, client, stop, owner)
    scheduler = threading.Thread(
        target=run_scheduler,
        args=(queue_name, redis.Redis.from_url(context.redis_url), stop),
        name="otp-scheduler",
        daemon=True,
    )

    def is_message_done(message_id: str) -> bool:
        status = store.get(message_id)
        return status is not None and not status.is_pending

    publish_settings(client, context)
    runtime.bind(sender)
    scheduler.start()
    worker = GatedWorker(
        queue, tenant=context.tenant, gate=context.gate, stop=stop, is_message_done=is_message_done
    )
    log.info("delivery_started", tenant=context.tenant, queue=queue_name, owner=owner)
    try:
        worker.work(logging_level="WARNING")
    finally:
        runtime.unbind(sender)
        stop.set()
        scheduler.join(timeout=5)
        client.close()
        log.info("delivery_stopped", tenant=context.tenant)
