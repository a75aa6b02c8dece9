"""What the worker is given by the session: settings, Redis, transport and gate."""

from __future__ import annotations

from dataclasses import dataclass

from wasp_session.gate import SendGate
from wasp_session.transport.base import Transport


@dataclass(frozen=True)
class DeliverySettings:
    """The tenant's delivery settings (``spec.delivery`` of the resource)."""

    default_region: str = "DE"
    message_template: str = "Your code is {code}. It expires in {minutes} minutes."
    ttl_seconds: int = 300
    retry_attempts: int = 3
    retry_backoff_seconds: float = 2.0
    rate_per_minute: int = 30


@dataclass(frozen=True)
class DeliveryContext:
    """Everything the worker needs from the session process."""

    tenant: str
    redis_url: str
    settings: DeliverySettings
    transport: Transport
    gate: SendGate
