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
# The durable event stream (issue #12): what happened, for an API that was down.
def event_stream_key(tenant: str) -> str:
    """Redis Stream of every message state change, session phase change and inbound message."""
    return f"wasp:{tenant}:stream"


EVENT_STREAM_MAX_LENGTH: Final = 100_000  # entries kept (XADD MAXLEN ~): trimmed beyond
EVENT_STREAM_RETENTION_SECONDS: Final = 7 * 24 * 3600  # expires this long after its last entry
EVENT_KIND: Final = "kind"  # every entry's field naming what it is, one of EVENT_KINDS
EVENT_AT: Final = "at"  # every entry's time, RFC 3339 UTC
EVENT_KIND_MESSAGE: Final = "message"  # message_id, state, and the change's fields
EVENT_KIND_SESSION: Final = "session"  # phase, reason, message
EVENT_KIND_INBOUND: Final = "inbound"  # sender, text, whatsapp_id, type
EVENT_KINDS: Final = (EVENT_KIND_MESSAGE, EVENT_KIND_SESSION, EVENT_KIND_INBOUND)

# Inbound messages (issue #12, docs/inbound.md): the fields of an "inbound" entry, the
# bounds on what a stranger's message may put in the stream, and the optional auto-reply.
INBOUND_SENDER: Final = "sender"  # E.164 ("+4915…"); "" when WhatsApp hides the number
INBOUND_TEXT: Final = "text"  # the text or caption, at most INBOUND_TEXT_MAX_CHARS; no media
INBOUND_WHATSAPP_ID: Final = "whatsapp_id"  # WhatsApp's id of the message
INBOUND_TYPE: Final = "type"  # "text", or the media type: one of INBOUND_TYPES
INBOUND_AUTO_REPLY: Final = "auto_reply"  # one of AUTO_REPLY_DECISIONS
INBOUND_TYPES: Final = (
    "text", "image", "video", "audio", "document", "sticker", "contact", "location"
)  # fmt: skip
INBOUND_TEXT_MAX_CHARS: Final = 4096  # longer texts are cut (and end with "…")
AUTO_REPLY_MAX_CHARS: Final = 1024  # spec.autoReply.text, as the CRD allows
AUTO_REPLY_PERIOD_SECONDS: Final = 24 * 3600  # one auto-reply per sender per this
# What became of the auto-reply when the message arrived: "queued" (this message gets
# one), "already_sent" (the sender got one within the period), "dropped" (too many
# waiting), "none" (no auto-reply configured, or no number to reply to).
AUTO_REPLY_DECISIONS: Final = ("queued", "already_sent", "dropped", "none")
ENV_AUTO_REPLY_TEXT: Final = "WASP_AUTO_REPLY_TEXT"  # unset: no auto-reply


def auto_reply_key(tenant: str, phone: str) -> str:
    """Marker that ``phone`` (digits, no "+") got the auto-reply (``SET NX EX`` one period)."""
    return f"wasp:{tenant}:autoreply:{phone}"


# Webhooks (issue #12): the session pod POSTs each stream entry to the tenant's URL
# (docs/webhooks.md). Its consumer group on the stream, the pod's env, the status fields.
WEBHOOK_GROUP: Final = "wasp-webhook"  # consumer group of the session pod's webhook sender
WEBHOOK_CONSUMER: Final = "sender"  # its one consumer: whoever holds the lease inherits pending
WEBHOOK_SIGNATURE_HEADER: Final = "X-Wasp-Signature"  # "v1=<hex HMAC-SHA256>"
WEBHOOK_TIMESTAMP_HEADER: Final = "X-Wasp-Timestamp"  # Unix seconds, signed with the body
WEBHOOK_EVENT_ID_HEADER: Final = "X-Wasp-Event-Id"  # the stream entry id
ENV_WEBHOOK_URL: Final = "WASP_WEBHOOK_URL"  # unset: no webhook
ENV_WEBHOOK_SECRET_FILE: Final = "WASP_WEBHOOK_SECRET_FILE"  # noqa: S105 - file with the HMAC key
ENV_WEBHOOK_SECRET_REF: Final = "WASP_WEBHOOK_SECRET_REF"  # noqa: S105 - "name/key", for messages
# Private networks (CIDRs, comma-separated) a webhook may reach; default none: public only.
ENV_WEBHOOK_ALLOWED_NETWORKS: Final = "WASP_WEBHOOK_ALLOWED_NETWORKS"
ENV_WEBHOOK_BACKOFF_MAX_SECONDS: Final = "WASP_WEBHOOK_BACKOFF_MAX_SECONDS"  # default 60
ENV_OPERATOR_WEBHOOK_ALLOWED_NETWORKS: Final = "WASP_OPERATOR_WEBHOOK_ALLOWED_NETWORKS"
SESSION_WEBHOOK_SECRET_DIR: Final = "/etc/wasp/webhook"  # noqa: S105 - the webhook Secret's mount
DEFAULT_WEBHOOK_SECRET_KEY: Final = "secret"  # noqa: S105 - a data key, no secret
STATUS_WEBHOOK_STATE: Final = "webhook_state"  # one of WEBHOOK_STATES
STATUS_WEBHOOK_LAST_ERROR: Final = "webhook_last_error"  # one sentence, while not Delivering
STATUS_WEBHOOK_FAILING_SINCE: Final = "webhook_failing_since"  # RFC 3339 UTC
STATUS_WEBHOOK_DELIVERED_AT: Final = "webhook_delivered_at"  # RFC 3339 UTC of a recent 2xx
WEBHOOK_STATES: Final = ("Delivering", "Failing", "Misconfigured")


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
# The version of the contract between the operator and the session container
# (how its secrets arrive, which env it reads). A pod of another version is
# replaced once, whatever its spec hash: version 2 passes secrets only as
# files, so pods made before tenant isolation (with the admin Redis URL in
# their env) go away by themselves after the upgrade.
ANNOTATION_POD_CONTRACT: Final = f"{GROUP}/pod-contract"
POD_CONTRACT_VERSION: Final = "2"
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


# --------------------------------------------------------------------------
# More Redis keys: delivery bookkeeping, control commands, the simulator.
# --------------------------------------------------------------------------
def sent_marker_key(tenant: str, message_id: str) -> str:
    """String set (NX) just before a send: no retry ever sends a message twice."""
    return f"wasp:{tenant}:sent:{message_id}"


def whatsapp_id_key(tenant: str, whatsapp_message_id: str) -> str:
    """String mapping WhatsApp's message id back to wasp's message id (for receipts)."""
    return f"wasp:{tenant}:waid:{whatsapp_message_id}"


def on_whatsapp_cache_key(tenant: str, phone: str) -> str:
    """String caching whether a number is on WhatsApp ("1"/"0", with a TTL)."""
    return f"wasp:{tenant}:onwa:{phone}"


def rate_limit_key(tenant: str) -> str:
    """Hash holding the tenant's send token bucket."""
    return f"wasp:{tenant}:ratelimit"


def control_key(tenant: str) -> str:
    """List of commands for the tenant's session pod (e.g. ``pair`` re-arms pairing)."""
    return f"wasp:{tenant}:control"


def pairing_key(tenant: str) -> str:
    """Hash: pairing windows opened since the last reset, and a halt waiting for ``pair``.

    Written by the session pod holding the lease (``wasp_session.pairing_record``),
    read at start, so a restart neither restarts the window count nor un-halts.
    """
    return f"wasp:{tenant}:pairing"


def simulator_commands_key(tenant: str) -> str:
    """List of commands the simulator transport plays (scan, faults, receipts)."""
    return f"wasp:{tenant}:sim:commands"


def simulator_outbox_key(tenant: str) -> str:
    """List of every message the simulator "sent", as JSON, oldest first."""
    return f"wasp:{tenant}:sim:outbox"


def simulator_absent_key(tenant: str) -> str:
    """Set of E.164 numbers the simulator reports as not on WhatsApp."""
    return f"wasp:{tenant}:sim:absent"


def simulator_receipts_key(tenant: str) -> str:
    """Sorted set of the simulator's pending receipts (JSON), scored by due time (epoch s)."""
    return f"wasp:{tenant}:sim:receipts"


def simulator_timelock_key(tenant: str) -> str:
    """String ``1`` while the simulated WhatsApp holds the account's 463 timelock."""
    return f"wasp:{tenant}:sim:timelock"


def simulator_linked_key(tenant: str) -> str:
    """Set of the device JIDs the simulated phones list as linked (a scan adds, a logout removes).

    WhatsApp's record, not the session's: deleting the session leaves it, so
    a device left linked shows (as a dead device in a real phone's list).
    """
    return f"wasp:{tenant}:sim:linked"


# Fields of the status hash (``status_key``). The events channel carries the
# whole hash as one JSON object after every change, so a reader needs only the
# latest message (or the hash itself) to know the session's state.
STATUS_PHASE: Final = "phase"
STATUS_REASON: Final = "reason"  # machine-readable cause of the phase, e.g. "StreamReplaced"
STATUS_MESSAGE: Final = "message"  # one human sentence about the phase
STATUS_QR: Final = "qr"  # live QR string while pairing, else absent
STATUS_PAIRING_CODE: Final = "pairing_code"  # live "ABCD-EFGH" while pairing, else absent
STATUS_PAIRING_EXPIRES_AT: Final = "pairing_expires_at"  # RFC 3339 UTC
STATUS_PAIRING_WINDOW: Final = "pairing_window"  # 1-based count of pairing windows
STATUS_ACCOUNT_JID: Final = "account_jid"
STATUS_PUSH_NAME: Final = "push_name"
STATUS_LAST_ERROR_REASON: Final = "last_error_reason"
STATUS_LAST_ERROR_MESSAGE: Final = "last_error_message"
STATUS_LAST_ERROR_AT: Final = "last_error_at"  # RFC 3339 UTC
STATUS_TIMELOCKED: Final = "timelocked"  # "1" while WhatsApp's 463 timelock holds
STATUS_TIMELOCKED_UNTIL: Final = "timelocked_until"  # RFC 3339 UTC: when it is taken to end
STATUS_BANNED_UNTIL: Final = "banned_until"  # RFC 3339 UTC
STATUS_POD: Final = "pod"  # hostname of the pod that wrote the status
STATUS_LEASE_HELD: Final = "lease_held"  # "1" when this pod holds the lease
STATUS_HEARTBEAT: Final = "heartbeat"  # RFC 3339 UTC, refreshed while the pod lives
STATUS_UPDATED_AT: Final = "updated_at"  # RFC 3339 UTC of the last phase change
# The generation of the auth snapshot the lease holder last wrote or restored ("0": none),
# written after each restore and checkpoint: the operator keeps the highest one it saw in the
# resource's status (etcd is not rolled back with Redis) and reports one that went back.
STATUS_AUTH_GENERATION: Final = "auth_generation"

# Fields of a message hash (``message_key``).
MESSAGE_STATE: Final = "state"
MESSAGE_PHONE: Final = "phone"  # E.164
MESSAGE_REASON: Final = "reason"  # one of FAILURE_REASONS when state is "failed"
MESSAGE_ERROR: Final = "error"  # human sentence for a failure
MESSAGE_WHATSAPP_ID: Final = "whatsapp_id"
MESSAGE_ATTEMPTS: Final = "attempts"
MESSAGE_CREATED_AT: Final = "created_at"  # RFC 3339 UTC; TTL counts from here
MESSAGE_EXPIRES_AT: Final = "expires_at"  # RFC 3339 UTC

MESSAGE_STATES: Final = ("queued", "sending", "sent", "delivered", "read", "failed")
FINAL_MESSAGE_STATES: Final = ("delivered", "read", "failed")
FAILURE_REASONS: Final = (
    "invalid_number",
    "not_on_whatsapp",
    "expired",
    "timelocked",
    "banned",
    "send_error",
    "invalid_job",
    "uncertain",  # the send may have reached WhatsApp (a timeout, a crash): not sent again
)
# How long a message hash is kept after its last change (seconds).
MESSAGE_RETENTION_SECONDS: Final = 7 * 24 * 3600

# The OTP job, by dotted name, so an API can enqueue it with plain RQ without
# importing wasp. Keyword arguments: phone, code, message_id, ttl_seconds,
# template (optional).
OTP_JOB_FUNCTION: Final = "wasp_session.jobs.send_otp"

# Commands on ``control_key``.
CONTROL_PAIR: Final = "pair"  # re-arm pairing after PairingExpired
CONTROL_LOGOUT: Final = "logout"  # unlink the device from the account (then pair again)
CONTROL_UNLINK: Final = "unlink"  # log out and stay out: no new pairing (the session goes)


# --------------------------------------------------------------------------
# Session pod: tuning knobs, the lease's fencing counter, standby reporting.
# (Defaults suit production; tests shorten them.)
# --------------------------------------------------------------------------
ENV_POD_NAME: Final = "WASP_POD_NAME"  # who holds the lease; default: the hostname
ENV_LEASE_TTL_SECONDS: Final = "WASP_LEASE_TTL_SECONDS"  # default 15
ENV_CHECKPOINT_INTERVAL_SECONDS: Final = "WASP_CHECKPOINT_INTERVAL_SECONDS"  # default 300
ENV_CHECKPOINT_DEBOUNCE_SECONDS: Final = "WASP_CHECKPOINT_DEBOUNCE_SECONDS"  # default 5
ENV_RECONNECT_BASE_SECONDS: Final = "WASP_RECONNECT_BASE_SECONDS"  # default 1
ENV_RECONNECT_MAX_SECONDS: Final = "WASP_RECONNECT_MAX_SECONDS"  # default 60
ENV_SHUTDOWN_TIMEOUT_SECONDS: Final = "WASP_SHUTDOWN_TIMEOUT_SECONDS"  # default 20
# How long a 463 reach-out timelock is taken to last when WhatsApp does not clear
# it (default 86400; docs/delivery.md "Reach-out timelock").
ENV_TIMELOCK_SECONDS: Final = "WASP_TIMELOCK_SECONDS"
# Simulator only: seconds each QR code of a window is valid, comma-separated
# (default "60,20,20,20,20,20": ~160 s per window, as WhatsApp does).
ENV_SIMULATOR_QR_SECONDS: Final = "WASP_SIMULATOR_QR_SECONDS"
# Simulator only: seconds between a send and its "delivered" receipt, and again
# until "read" (default 1).
ENV_SIMULATOR_RECEIPT_DELAY_SECONDS: Final = "WASP_SIMULATOR_RECEIPT_DELAY_SECONDS"


def lease_fence_key(tenant: str) -> str:
    """Counter (INCR) handing out the lease's fencing tokens, never reset."""
    return f"wasp:{tenant}:lease:fence"


# A pod waiting for another pod's lease reports itself in these fields only,
# never in ``STATUS_PHASE`` (which belongs to the lease holder).
STATUS_STANDBY_POD: Final = "standby_pod"  # name of a pod waiting for the lease
STATUS_STANDBY_SINCE: Final = "standby_since"  # RFC 3339 UTC


# --------------------------------------------------------------------------
# Operator: the objects it owns beside the pod, its conditions, its own config.
# --------------------------------------------------------------------------
SESSION_CONTAINER: Final = "session"  # the session pod's one container
SESSION_COMMAND: Final = "wasp-session"  # its command (the image has the wasp wheel)
SESSION_HEALTH_PORT: Final = 8080  # value of ENV_HEALTH_PORT in the pod
SESSION_DATA_DIR: Final = "/var/lib/wasp"  # value of ENV_DATA_DIR (an emptyDir)
HEALTH_LIVE_PATH: Final = "/healthz"  # liveness probe of the session pod
HEALTH_READY_PATH: Final = "/readyz"  # readiness probe of the session pod
AUTH_SECRET_KEY: Final = "key"  # noqa: S105 - data key of the per-session auth Secret
DEFAULT_REDIS_SECRET: Final = "wasp-redis"  # noqa: S105 - a Secret name, no password
DEFAULT_REDIS_SECRET_KEY: Final = "url"  # noqa: S105 - its key holding the Redis URL
PEERING_NAME: Final = "wasp-operator"  # kopf peering object of the operator's replicas
PEERING_GROUP: Final = "zalando.org"  # kopf's peering resources (crds/kopf-peering.yaml)
PEERING_VERSION: Final = "v1"
PEERING_PLURAL: Final = "kopfpeerings"  # one per watched namespace
CLUSTER_PEERING_PLURAL: Final = "clusterkopfpeerings"  # one, when every namespace is watched

CONDITION_READY: Final = "Ready"
CONDITION_PAIRED: Final = "Paired"
CONDITION_CONNECTED: Final = "Connected"

# The operator's own environment (flags override): what the chart sets.
ENV_OPERATOR_NAMESPACE: Final = "WASP_OPERATOR_NAMESPACE"  # watch one namespace; unset: all
ENV_OPERATOR_SESSION_IMAGE: Final = "WASP_OPERATOR_SESSION_IMAGE"  # default session image
ENV_OPERATOR_REDIS_SECRET: Final = "WASP_OPERATOR_REDIS_SECRET"  # noqa: S105 - NAME[:KEY]
ENV_OPERATOR_STANDALONE: Final = "WASP_OPERATOR_STANDALONE"  # "1": no peering
ENV_OPERATOR_POD_ID: Final = "POD_ID"  # kopf's name for a replica's identity: the pod's name
ENV_OPERATOR_LIVENESS: Final = "WASP_OPERATOR_LIVENESS"  # e.g. http://0.0.0.0:8080/healthz
ENV_OPERATOR_METRICS_PORT: Final = "WASP_OPERATOR_METRICS_PORT"  # Prometheus /metrics; unset: off


def auth_secret_name(session_name: str) -> str:
    """The Secret holding a session's auth key (32 random bytes, base64), owned by the CR."""
    return f"{SESSION_POD_PREFIX}{session_name}-auth"


EVENTS_CHANNEL_PATTERN: Final = events_channel("*")  # one PSUBSCRIBE follows every tenant


def tenant_of_events_channel(channel: str) -> str | None:
    """The tenant an events channel belongs to, or None if it is not one."""
    prefix, suffix = EVENTS_CHANNEL_PATTERN.split("*")
    if channel.startswith(prefix) and channel.endswith(suffix):
        tenant = channel[len(prefix) : len(channel) - len(suffix)]
        return tenant or None
    return None


# --------------------------------------------------------------------------
# Delivery (issue #4): the OTP's life, as the client and the worker share it.
# --------------------------------------------------------------------------
def delivery_settings_key(tenant: str) -> str:
    """Hash of the tenant's delivery settings, written by its worker for clients to read."""
    return f"wasp:{tenant}:delivery"


def message_state_at_field(state: str) -> str:
    """Field of a message hash holding when the message entered ``state`` (RFC 3339 UTC)."""
    return f"{state}_at"


# Fields of the delivery settings hash (``delivery_settings_key``).
DELIVERY_DEFAULT_REGION: Final = "default_region"
DELIVERY_TTL_SECONDS: Final = "ttl_seconds"
DELIVERY_MESSAGE_TEMPLATE: Final = "message_template"
DELIVERY_RATE_PER_MINUTE: Final = "rate_per_minute"

# More fields of a message hash (``message_key``).
MESSAGE_ID: Final = "message_id"
MESSAGE_UPDATED_AT: Final = "updated_at"  # RFC 3339 UTC of the last state change

# OTP codes: what a code may be (documented in docs/delivery.md).
CODE_MIN_LENGTH: Final = 4
CODE_MAX_LENGTH: Final = 10
# The only replacement fields a message template may use.
TEMPLATE_FIELDS: Final = ("code", "minutes")


def early_receipt_key(tenant: str, whatsapp_message_id: str) -> str:
    """String holding a receipt ("delivered"/"read") that came before its send was recorded."""
    return f"wasp:{tenant}:early:{whatsapp_message_id}"


# --------------------------------------------------------------------------
# Tenant isolation (issue #8): who owns a tenant, which account it is pinned
# to, the Redis identities the operator keeps, how RQ's keys carry the tenant.
# --------------------------------------------------------------------------
def owner_key(tenant: str) -> str:
    """String: the uid of the WhatsAppSession that owns the tenant on this Redis (SET NX).

    Set once by the operator; checked by the operator before it touches the
    tenant and by the session pod at start. Deleted last, with the session.
    """
    return f"wasp:{tenant}:owner"


def account_key(tenant: str) -> str:
    """String: the account (phone number digits, no ``+``) the tenant is pinned to.

    Written by the session pod on its first pairing, or at start when the
    spec names the phone number; a pairing to any other account is refused
    until this key is deleted on purpose (``wasp pair --new-account``).
    """
    return f"wasp:{tenant}:account"


# RQ's job ids and worker names carry the tenant, so a Redis ACL can confine
# RQ's own keys (``rq:job:<id>``, ``rq:results:<id>``, ``rq:worker:<name>``)
# to one tenant. Tenant ids are DNS-1123 labels (no ``_`` or ``.``), so the
# prefixes below never overlap between two tenants.
JOB_ID_SEPARATOR: Final = "_"
WORKER_NAME_SEPARATOR: Final = "."


def job_id(tenant: str, message_id: str) -> str:
    """The RQ job id of a message: ``<tenant>_<message id>``."""
    return f"{tenant}{JOB_ID_SEPARATOR}{message_id}"


def message_id_of_job(tenant: str, rq_job_id: str) -> str | None:
    """The message id inside a tenant's job id, or None if the job id is not the tenant's."""
    prefix = f"{tenant}{JOB_ID_SEPARATOR}"
    if rq_job_id.startswith(prefix) and len(rq_job_id) > len(prefix):
        return rq_job_id[len(prefix) :]
    return None


def worker_name(tenant: str, unique: str) -> str:
    """The RQ worker name of a tenant's session: ``<tenant>.<unique>``."""
    return f"{tenant}{WORKER_NAME_SEPARATOR}{unique}"


# The Redis ACL users the operator makes for each tenant (``wasp.redis_acl``
# holds their rules). Tenant ids are DNS-1123 labels, so these never collide.
def session_redis_user(tenant: str) -> str:
    """The Redis ACL user of a tenant's session pod."""
    return f"wasp-session-{tenant}"


def api_redis_user(tenant: str) -> str:
    """The Redis ACL user of a tenant's API (enqueue, read messages, status, QR)."""
    return f"wasp-api-{tenant}"


def session_redis_secret_name(session_name: str) -> str:
    """The Secret with the session pod's Redis URL (its own ACL user), owned by the CR."""
    return f"{SESSION_POD_PREFIX}{session_name}-redis"


def api_redis_secret_name(session_name: str) -> str:
    """The Secret in the tenant's namespace with its API's Redis URL, owned by the CR."""
    return f"wasp-api-{session_name}-redis"


# Data keys of both Redis credential Secrets.
REDIS_SECRET_URL_KEY: Final = "url"  # noqa: S105 - a data key; its value: redis://<user>:<pw>@host:port/db
REDIS_SECRET_USERNAME_KEY: Final = "username"  # noqa: S105 - a data key
REDIS_SECRET_PASSWORD_KEY: Final = "password"  # noqa: S105 - a data key, no password

# Session pod secrets arrive as files (Secret volumes), never as env values.
ENV_REDIS_URL_FILE: Final = "WASP_REDIS_URL_FILE"  # file holding the Redis URL
ENV_AUTH_KEY_FILE: Final = "WASP_AUTH_KEY_FILE"  # file holding the auth key (base64)
ENV_OWNER_UID: Final = "WASP_OWNER_UID"  # uid of the WhatsAppSession (checked vs owner_key)
SESSION_SECRETS_DIR: Final = "/etc/wasp"  # secret volumes are mounted below it
SESSION_REDIS_SECRET_DIR: Final = f"{SESSION_SECRETS_DIR}/redis"  # holds REDIS_SECRET_URL_KEY
SESSION_AUTH_SECRET_DIR: Final = f"{SESSION_SECRETS_DIR}/auth"  # holds AUTH_SECRET_KEY

# Field of the status hash: the fencing token of the lease held by the pod
# that wrote it. The operator relays a status only when this token is the
# lease's current one (``lease_fence_key``), so a pod without the lease can
# never put a QR code or a phase into any resource's status.
STATUS_LEASE_TOKEN: Final = "lease_token"  # noqa: S105 - a field name, no secret

# Reasons (status ``reason`` / ``lastError.reason``) of isolation refusals.
REASON_TENANT_CONFLICT: Final = "TenantConflict"  # another resource owns the tenant
REASON_ACCOUNT_MISMATCH: Final = "AccountMismatch"  # paired to an account it is not pinned to
REASON_IMAGE_NOT_ALLOWED: Final = "ImageNotAllowed"  # podTemplate.image not in the allowlist

# A session refuses a Redis whose maxmemory-policy may evict keys (wasp_session.redis_policy).
REASON_REDIS_EVICTION_POLICY: Final = "RedisEvictionPolicy"
# Redis held older auth state than the session had written (restored from an old snapshot):
# the session wrote its newer state back (wasp_session.rollback), or, when no pod had newer
# state, the operator found the generation gone back (wasp_operator.auth_mark).
REASON_REDIS_ROLLED_BACK: Final = "RedisRolledBack"

# The operator's settings for isolation.
ENV_OPERATOR_SESSION_IMAGES: Final = "WASP_OPERATOR_SESSION_IMAGES"  # allowlist, comma-separated
ENV_OPERATOR_REDIS_SECRET_NAMESPACE: Final = "WASP_OPERATOR_REDIS_SECRET_NAMESPACE"  # noqa: S105
# Who may scrape a session pod's /metrics through its NetworkPolicy: pods with
# these labels ("k=v,k2=v2") in these namespaces (names, comma-separated).
# No namespaces: nothing may (probes come from the node, which is always allowed).
ENV_OPERATOR_SCRAPER_NAMESPACES: Final = "WASP_OPERATOR_SCRAPER_NAMESPACES"
ENV_OPERATOR_SCRAPER_LABELS: Final = "WASP_OPERATOR_SCRAPER_LABELS"
ENV_OPERATOR_RESYNC_SECONDS: Final = "WASP_OPERATOR_RESYNC_SECONDS"  # default 30
# At most this many resyncs (full cycles the timer starts) per second over every session
# (default 50): past 0.75 x resync seconds x this many sessions, each resyncs less often.
ENV_OPERATOR_MAX_RESYNCS_PER_SECOND: Final = "WASP_OPERATOR_MAX_RESYNCS_PER_SECOND"
# Session pods on the node's network, each with its own health port from
# this range ("FIRST-LAST", e.g. "20000-20999"); unset: the pod network, port 8080.
ENV_OPERATOR_SESSION_HOST_PORTS: Final = "WASP_OPERATOR_SESSION_HOST_PORTS"

# Bounds on what a job may be (the worker checks them before running anything).
MAX_JOB_HASH_BYTES: Final = 16 * 1024  # the whole RQ job hash, all fields together
MAX_ECHOED_INPUT_CHARS: Final = 64  # an error quoting input quotes at most this much


def keys_deleted_with_session(tenant: str) -> tuple[str, ...]:
    """What deleting a WhatsAppSession removes from Redis: its account and its sandbox.

    Message hashes stay until they expire (``MESSAGE_RETENTION_SECONDS``), so an
    API can still read how its last OTPs ended; the lease's fencing counter
    stays too, so a later session of the same tenant never reuses a token.
    """
    return (
        auth_key(tenant),
        lease_key(tenant),
        status_key(tenant),
        control_key(tenant),
        pairing_key(tenant),
        simulator_commands_key(tenant),
        simulator_outbox_key(tenant),
        simulator_absent_key(tenant),
        simulator_receipts_key(tenant),
        simulator_timelock_key(tenant),
        account_key(tenant),
        owner_key(tenant),  # last: until it goes, no other resource can take the tenant
    )


# ---------------------------------------------------------------- session liveness
# ``/healthz`` of a session pod answers 503 naming the loop that stopped making
# progress: silent for longer than this stall (default: the lease TTL) plus the
# loop's own period (and, for the delivery loop, a job's TTL).
ENV_LIVENESS_STALL_SECONDS: Final = "WASP_LIVENESS_STALL_SECONDS"
LOOP_LIFECYCLE: Final = "lifecycle"  # the session's event loop (and its standby)
LOOP_LEASE: Final = "lease"  # the lease renewal
LOOP_DELIVERY: Final = "delivery"  # the OTP worker's dequeue loop
LIVENESS_LOOPS: Final = (LOOP_LIFECYCLE, LOOP_LEASE, LOOP_DELIVERY)
