"""Webhook signatures: how wasp signs a webhook request, and how a receiver checks one.

Owns the signature scheme, nothing else (no HTTP, no Redis): the session
pod's sender signs with ``sign`` and a tenant's receiver verifies with
``verify``, the same code on both ends. A request carries

- ``X-Wasp-Timestamp``: the Unix time (whole seconds) it was signed at, and
- ``X-Wasp-Signature``: ``v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``.

The timestamp is signed with the body, so a captured request cannot be
replayed later than ``tolerance`` seconds (default 300) after it was signed;
a receiver that must never act twice also keeps the ``X-Wasp-Event-Id`` it
handled (a retried entry is signed again, with a new timestamp). The header
may carry several comma-separated ``v1=`` values (any one matching is
enough), so a future sender can sign with an old and a new key during a
rotation. Comparisons are constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from wasp.errors import WaspError

__all__ = ["DEFAULT_TOLERANCE_SECONDS", "SCHEME", "WebhookSignatureError", "sign", "verify"]

SCHEME = "v1"
DEFAULT_TOLERANCE_SECONDS = 300
_MAX_HEADER_CHARS = 4096  # a header longer than this is not wasp's


class WebhookSignatureError(WaspError, ValueError):
    """A webhook request whose signature or timestamp does not check out."""


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def _digest(secret: str | bytes, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The ``X-Wasp-Signature`` value of ``body`` signed at ``timestamp`` (Unix seconds)."""
    if not _key(secret):
        msg = "the webhook secret is empty"
        raise WebhookSignatureError(msg)
    return f"{SCHEME}={_digest(secret, timestamp, body)}"


def _timestamp(header: str) -> int:
    text = header.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 12:  # noqa: PLR2004 - ~year 33658
        msg = "X-Wasp-Timestamp is not a Unix time in seconds"
        raise WebhookSignatureError(msg)
    return int(text)


def verify(  # noqa: PLR0913 - the request's three parts, the key, and two knobs
    secret: str | bytes,
    timestamp_header: str,
    body: bytes,
    signature_header: str,
    *,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a request's signature and its age; raise ``WebhookSignatureError`` if either fails.

    ``timestamp_header`` and ``signature_header`` are the request's
    ``X-Wasp-Timestamp`` and ``X-Wasp-Signature`` as received; ``body`` the
    raw bytes, before any JSON parsing. ``now`` (Unix seconds) is for tests.
    """
    if not _key(secret):
        msg = "the webhook secret is empty"
        raise WebhookSignatureError(msg)
    if len(signature_header) > _MAX_HEADER_CHARS or len(timestamp_header) > _MAX_HEADER_CHARS:
        msg = "a signature header is too long"
        raise WebhookSignatureError(msg)
    timestamp = _timestamp(timestamp_header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        msg = f"the request was signed {int(current - timestamp)} s from now, beyond {tolerance} s"
        raise WebhookSignatureError(msg)
    expected = _digest(secret, timestamp, body)
    offered = [
        value.strip()[len(SCHEME) + 1 :]
        for value in signature_header.split(",")
        if value.strip().startswith(f"{SCHEME}=")
    ]
    if not offered:
        msg = f"X-Wasp-Signature holds no {SCHEME}= signature"
        raise WebhookSignatureError(msg)
    # Every candidate is compared (no early exit), each in constant time.
    matches = [hmac.compare_digest(expected.encode(), value.encode()) for value in offered]
    if not any(matches):
        msg = "the signature does not match the body and timestamp (wrong secret, or altered)"
        raise WebhookSignatureError(msg)
