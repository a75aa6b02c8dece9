"""Every name the parts of wasp share, spelled once.

The operator, the session pod and the client library agree on Kubernetes
names, Redis keys and pod environment variables through this module alone.
It imports only the standard library (an import-linter contract checks it),
so every part can depend on it without pulling in another part's world.
"""

from typing import Final

GROUP: Final = "wasp.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "WhatsAppSession"
PLURAL: Final = "whatsappsessions"
SHORT_NAME: Final = "was"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"


def qr_channel(tenant: str) -> str:
    """Pub/sub channel of each new QR string (name kept for existing API code)."""
    return f"whatsapp:qr:{tenant}"


def events_channel(tenant: str) -> str:
    """Pub/sub channel of every status change of a tenant's session, as JSON."""
    return f"wasp:{tenant}:events"


def status_key(tenant: str) -> str:
    """Hash with the session's current phase, pairing code, account and heartbeat."""
    return f"wasp:{tenant}:status"


def auth_key(tenant: str) -> str:
    """String with the encrypted whatsmeow store snapshot."""
    return f"wasp:{tenant}:auth"


def lease_key(tenant: str) -> str:
    """String holding the singleton lease of the tenant's session."""
    return f"wasp:{tenant}:lease"


def message_key(tenant: str, message_id: str) -> str:
    """Hash of one OTP: state, timestamps, WhatsApp message id, error."""
    return f"wasp:{tenant}:msg:{message_id}"


def receipts_channel(tenant: str) -> str:
    """Pub/sub channel of message state changes, as JSON."""
    return f"wasp:{tenant}:receipts"


def delivery_queue(tenant: str) -> str:
    """Name of the tenant's RQ queue of OTP jobs."""
    return f"otp-delivery:{tenant}"
