"""Webhook signatures: what a tenant's receiver accepts and refuses, fuzzed."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wasp.webhook_signature import WebhookSignatureError, sign, verify

NOW = 1_800_000_000
secrets = st.binary(min_size=1, max_size=64)
bodies = st.binary(max_size=2048)


def test_the_signature_is_documented_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"key", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"key", 1_700_000_000, b"{}") == f"v1={expected}"
    assert sign("key", 1_700_000_000, b"{}") == sign(b"key", 1_700_000_000, b"{}")


@given(secret=secrets, body=bodies, age=st.integers(-300, 300))
def test_a_request_signed_with_the_secret_within_the_window_verifies(
    secret: bytes, body: bytes, age: int
) -> None:
    timestamp = NOW - age
    verify(secret, str(timestamp), body, sign(secret, timestamp, body), now=NOW)


@given(secret=secrets, other=secrets, body=bodies, tampered=bodies)
def test_another_secret_or_another_body_is_refused(
    secret: bytes, other: bytes, body: bytes, tampered: bytes
) -> None:
    signature = sign(secret, NOW, body)
    if other != secret:
        with pytest.raises(WebhookSignatureError):
            verify(other, str(NOW), body, signature, now=NOW)
    if tampered != body:
        with pytest.raises(WebhookSignatureError):
            verify(secret, str(NOW), tampered, signature, now=NOW)
    with pytest.raises(WebhookSignatureError):
        verify(secret, str(NOW + 1), body, signature, now=NOW)  # the timestamp is signed too


@given(secret=secrets, body=bodies, age=st.integers(301, 10**9))
def test_a_replay_outside_the_window_is_refused_however_well_signed(
    secret: bytes, body: bytes, age: int
) -> None:
    for timestamp in (NOW - age, NOW + age):
        with pytest.raises(WebhookSignatureError, match="signed"):
            verify(secret, str(timestamp), body, sign(secret, timestamp, body), now=NOW)


@given(timestamp=st.text(max_size=40), signature=st.text(max_size=200), body=bodies)
def test_any_header_junk_is_refused_with_the_signature_error_only(
    timestamp: str, signature: str, body: bytes
) -> None:
    try:
        verify(b"key", timestamp, body, signature, now=NOW)
    except WebhookSignatureError:
        return
    pytest.fail("junk headers verified")  # a random string never is a valid HMAC


def test_one_matching_signature_of_several_is_enough_for_a_key_rotation() -> None:
    body = b'{"id":"1-0"}'
    header = f"{sign(b'old', NOW, body)}, {sign(b'new', NOW, body)}"
    verify(b"new", str(NOW), body, header, now=NOW)
    verify(b"old", str(NOW), body, header, now=NOW)


def test_an_empty_secret_is_refused_on_both_ends() -> None:
    with pytest.raises(WebhookSignatureError, match="empty"):
        sign(b"", NOW, b"")
    with pytest.raises(WebhookSignatureError, match="empty"):
        verify("", str(NOW), b"", "v1=00", now=NOW)
