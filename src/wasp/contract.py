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


# --------------------------------------------------------------------------
# Kubernetes names: labels, annotations, finalizer, pod naming.
# --------------------------------------------------------------------------
ANNOTATION_PREFIX: Final = GROUP  # kopf's own bookkeeping annotations live under it
FINALIZER: Final = f"{GROUP}/cleanup"
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_TENANT: Final = f"{GROUP}/tenant"
LABEL_SESSION: Final = f"{GROUP}/session"
ANNOTATION_SPEC_HASH: Final = f"{GROUP}/spec-hash"
APP_NAME: Final = "wasp"
SESSION_COMPONENT: Final = "session"
OPERATOR_NAME: Final = "wasp-operator"
SESSION_POD_PREFIX: Final = "wasp-session-"


def session_pod_name(session_name: str) -> str:
    """The one pod of a WhatsAppSession: deterministic, so two can never coexist."""
    return f"{SESSION_POD_PREFIX}{session_name}"


# --------------------------------------------------------------------------
# The session pod's environment: what the operator sets, what the pod reads.
# --------------------------------------------------------------------------
ENV_TENANT: Final = "WASP_TENANT"
ENV_REDIS_URL: Final = "WASP_REDIS_URL"
ENV_AUTH_KEY: Final = "WASP_AUTH_KEY"  # base64 of 32 random bytes, from a Secret
ENV_TRANSPORT: Final = "WASP_TRANSPORT"  # "neonize" | "simulator"
ENV_PAIRING_METHOD: Final = "WASP_PAIRING_METHOD"  # "QR" | "PairingCode"
ENV_PAIRING_PHONE: Final = "WASP_PAIRING_PHONE"  # E.164, required for PairingCode
ENV_PAIRING_MAX_WINDOWS: Final = "WASP_PAIRING_MAX_WINDOWS"
ENV_DEFAULT_REGION: Final = "WASP_DEFAULT_REGION"
ENV_MESSAGE_TEMPLATE: Final = "WASP_MESSAGE_TEMPLATE"
ENV_TTL_SECONDS: Final = "WASP_TTL_SECONDS"
ENV_RETRY_ATTEMPTS: Final = "WASP_RETRY_ATTEMPTS"
ENV_RETRY_BACKOFF_SECONDS: Final = "WASP_RETRY_BACKOFF_SECONDS"
ENV_RATE_PER_MINUTE: Final = "WASP_RATE_PER_MINUTE"
ENV_DATA_DIR: Final = "WASP_DATA_DIR"  # local disk (emptyDir) for whatsmeow's SQLite
ENV_HEALTH_PORT: Final = "WASP_HEALTH_PORT"  # /healthz, /readyz, /metrics
ENV_MAX_START_FAILURES: Final = "WASP_MAX_START_FAILURES"
ENV_LOG_FORMAT: Final = "WASP_LOG_FORMAT"  # "json" | "console" | "auto"

TRANSPORTS: Final = ("neonize", "simulator")
PAIRING_METHODS: Final = ("QR", "PairingCode")
LOG_FORMATS: Final = ("auto", "json", "console")


# --------------------------------------------------------------------------
# Session phases (DESIGN.md, "Session lifecycle").
# --------------------------------------------------------------------------
PHASES: Final = (
    "Pending",
    "Starting",
    "AwaitingPairing",
    "Connected",
    "Reconnecting",
    "LoggedOut",
    "Conflict",
    "Banned",
    "Suspended",
    "PairingExpired",
    "Failed",
)
