"""A WhatsAppSession resource read into plain, typed values.

Owns the defaults the operator applies on top of the CRD's (the tenant id
defaults to the resource's name: a CRD default cannot reference metadata),
so every other module reads a ``Session``, never a raw body. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from wasp import contract

DEFAULT_TEMPLATE = "Your code is {code}. It expires in {minutes} minutes."


@dataclass(frozen=True)
class SecretRef:
    """A key in a Secret of the session's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class Webhook:
    """Where the session POSTs its event stream, and the Secret key it signs with."""

    url: str
    secret: SecretRef


@dataclass(frozen=True)
class Session:
    """What one WhatsAppSession asks for, with every default applied."""

    name: str
    namespace: str
    uid: str
    generation: int
    tenant: str
    transport: str = "neonize"
    pairing_method: str = "QR"
    phone_number: str | None = None
    expose_in_status: bool = True
    max_windows: int = 3
    default_region: str | None = None
    message_template: str = DEFAULT_TEMPLATE
    ttl_seconds: int = 300
    retry_attempts: int = 3
    retry_backoff_seconds: int = 2
    rate_per_minute: int = 30
    auto_reply_text: str | None = None  # spec.autoReply.text; None: no auto-reply
    redis_secret: SecretRef | None = None  # None: the operator's default Secret
    webhook: Webhook | None = None  # spec.webhook; None: no webhook
    suspend: bool = False
    unlink_on_delete: bool = True  # deletion logs the device out first
    image: str | None = None  # None: the operator's default image
    resources: Mapping[str, Any] = field(default_factory=dict)
    node_selector: Mapping[str, str] = field(default_factory=dict)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    deleting: bool = False

    @property
    def pod_name(self) -> str:
        """The deterministic name of the session's one pod."""
        return contract.session_pod_name(self.name)

    @property
    def auth_secret_name(self) -> str:
        """The Secret holding the session's auth key."""
        return contract.auth_secret_name(self.name)


def _dict(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def webhook_of(spec: Mapping[str, Any]) -> Webhook | None:
    """``spec.webhook`` (the CRD requires its url and secretRef.name), or None."""
    webhook = _dict(spec.get("webhook"))
    ref = _dict(webhook.get("secretRef"))
    if not webhook.get("url") or not ref.get("name"):
        return None
    key = str(ref.get("key") or contract.DEFAULT_WEBHOOK_SECRET_KEY)
    return Webhook(str(webhook["url"]), SecretRef(str(ref["name"]), key))


def session_from_body(body: Mapping[str, Any]) -> Session:
    """Read a WhatsAppSession body (as the API server serves it) into a Session."""
    meta, spec = _dict(body.get("metadata")), _dict(body.get("spec"))
    pairing, delivery = _dict(spec.get("pairing")), _dict(spec.get("delivery"))
    retry, rate = _dict(delivery.get("retry")), _dict(delivery.get("rateLimit"))
    pod = _dict(spec.get("podTemplate"))
    secret_ref = _dict(_dict(spec.get("redis")).get("secretRef"))
    name = str(meta.get("name", ""))
    return Session(
        name=name,
        namespace=str(meta.get("namespace", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation", 0) or 0),
        tenant=str(spec.get("tenantId") or name),
        transport=str(spec.get("transport", "neonize")),
        pairing_method=str(pairing.get("method", "QR")),
        phone_number=pairing.get("phoneNumber"),
        expose_in_status=bool(pairing.get("exposeInStatus", True)),
        max_windows=int(pairing.get("maxWindows", 3)),
        default_region=delivery.get("defaultRegion"),
        message_template=str(delivery.get("messageTemplate", DEFAULT_TEMPLATE)),
        ttl_seconds=int(delivery.get("ttlSeconds", 300)),
        retry_attempts=int(retry.get("attempts", 3)),
        retry_backoff_seconds=int(retry.get("backoffSeconds", 2)),
        rate_per_minute=int(rate.get("perMinute", 30)),
        auto_reply_text=_dict(spec.get("autoReply")).get("text") or None,
        redis_secret=(
            SecretRef(
                str(secret_ref["name"]),
                str(secret_ref.get("key", contract.DEFAULT_REDIS_SECRET_KEY)),
            )
            if secret_ref.get("name")
            else None
        ),
        webhook=webhook_of(spec),
        suspend=bool(spec.get("suspend", False)),
        unlink_on_delete=bool(spec.get("unlinkOnDelete", True)),
        image=pod.get("image") or None,
        resources=dict(_dict(pod.get("resources"))),
        node_selector={str(k): str(v) for k, v in _dict(pod.get("nodeSelector")).items()},
        tolerations=tuple(_dict(t) for t in pod.get("tolerations") or ()),
        deleting=bool(meta.get("deletionTimestamp")),
    )
