"""wasp: WhatsApp sessions for many tenants on Kubernetes, for one-time passwords.

This package is what a tenant's API imports: the contract (resource names,
Redis keys, environment variables), the client library (``WaspClient``) and
the ``wasp`` command line. It never imports the operator or the session pod.
"""

from wasp._version import __version__
from wasp.client import DEFAULT_TTL_SECONDS, WaspClient
from wasp.errors import (
    EventsLostError,
    InvalidCodeError,
    InvalidMessageIdError,
    InvalidNumberError,
    InvalidTemplateError,
    MessageNotFoundError,
    SessionNotFoundError,
    WaitTimeoutError,
    WaspError,
)
from wasp.event_stream import StreamEvent
from wasp.messages import FailureReason, MessageState, MessageStatus
from wasp.phones import normalize_phone
from wasp.sessions import SessionStatus
from wasp.templates import DEFAULT_TEMPLATE, render_message, validate_code, validate_template

__all__ = [
    "DEFAULT_TEMPLATE",
    "DEFAULT_TTL_SECONDS",
    "EventsLostError",
    "FailureReason",
    "InvalidCodeError",
    "InvalidMessageIdError",
    "InvalidNumberError",
    "InvalidTemplateError",
    "MessageNotFoundError",
    "MessageState",
    "MessageStatus",
    "SessionNotFoundError",
    "SessionStatus",
    "StreamEvent",
    "WaitTimeoutError",
    "WaspClient",
    "WaspError",
    "__version__",
    "normalize_phone",
    "render_message",
    "validate_code",
    "validate_template",
]
