"""What of a user's input shows in logs and errors: masked numbers, short echoes."""

from __future__ import annotations

import json
import string

import pytest
import redis
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from wasp import (
    InvalidMessageIdError,
    InvalidNumberError,
    InvalidTemplateError,
    WaspClient,
    contract,
    normalize_phone,
    validate_template,
)
from wasp.redaction import echo, mask_log_fields, mask_numbers, mask_phone

pytestmark = pytest.mark.isolation

PHONE = "+4915112345678"


def test_a_phone_number_keeps_its_country_code_and_last_two_digits() -> None:
    assert mask_phone(PHONE) == "+49*********78"
    assert mask_phone("+1 415 555 0123") == "+1********23"
    assert mask_phone("4915112345678@s.whatsapp.net") == "49*********78@s.whatsapp.net"
    assert mask_phone("015112345678") == "**********78"
    assert mask_phone("12") == "**"


def test_a_masked_number_is_left_as_it_is() -> None:
    assert mask_phone(mask_phone(PHONE)) == "+49*********78"
    processed = mask_log_fields(None, "info", {"account": mask_phone(PHONE)})
    assert processed["account"] == "+49*********78"


def test_numbers_in_text_are_masked_and_dates_times_and_ids_are_not() -> None:
    text = "send to +49 151 1234-5678 failed at 2026-11-27T10:00:00Z (id acme_m1, 10.0.0.12)"
    assert mask_numbers(text) == (
        "send to +49*********78 failed at 2026-11-27T10:00:00Z (id acme_m1, 10.0.0.12)"
    )
    assert mask_numbers("+4915112345678 has no WhatsApp account") == (
        "+49*********78 has no WhatsApp account"
    )


@settings(max_examples=200, database=None)
@given(
    digits=st.text(alphabet=string.digits, min_size=7, max_size=15),
    before=st.text(alphabet=string.ascii_letters + " '\"(:=", max_size=12),
    after=st.text(alphabet=string.ascii_letters + " '\").,@", max_size=12),
    prefix=st.sampled_from(["", "+", "00"]),
)
def test_no_run_of_seven_or_more_digits_survives_masking(
    digits: str, before: str, after: str, prefix: str
) -> None:
    text = f"{before} {prefix}{digits} {after}"
    masked = mask_numbers(text)
    assert digits not in masked
    assert digits[-2:] in masked


def test_the_log_processor_masks_phone_fields_and_free_text_but_not_ids() -> None:
    event = {
        "event": "otp_failed",
        "phone": PHONE,
        "jid": "4915112345678@s.whatsapp.net",
        "error": f"{PHONE} has no WhatsApp account",
        "message_id": "order-1234567890",
        "attempt": 2,
    }
    masked = mask_log_fields(None, "warning", dict(event))
    assert "4915112345678" not in json.dumps(masked)
    assert masked["message_id"] == "order-1234567890"
    assert masked["attempt"] == 2


def test_the_client_logs_no_full_phone_number(redis_client: redis.Redis) -> None:
    with structlog.testing.capture_logs() as logs:
        client = WaspClient(redis_client, "acme", default_region="DE")
        message_id = client.send_otp("0151 12345678", "493817")
        client.send_otp(PHONE, "493817", message_id=message_id)  # logged as already enqueued
        client.request_pairing()
    assert any(entry.get("phone") == "+49*********78" for entry in logs), logs
    assert "15112345678" not in json.dumps(logs, default=str)


LONG = st.text(
    alphabet=string.ascii_letters + string.digits,
    min_size=contract.MAX_ECHOED_INPUT_CHARS + 1,
    max_size=3000,
)


def assert_short_echo(given_input: str, error: str) -> None:
    """No piece of ``given_input`` longer than the limit appears in ``error``."""
    window = contract.MAX_ECHOED_INPUT_CHARS + 1
    for start in range(len(given_input) - window + 1):
        assert given_input[start : start + window] not in error


@settings(max_examples=60, deadline=None, database=None)
@given(text=LONG)
def test_long_input_never_yields_a_longer_echo(text: str) -> None:
    assert len(echo(text)) < contract.MAX_ECHOED_INPUT_CHARS + 40
    for region in ("DE", None):
        with pytest.raises(InvalidNumberError) as number_error:
            normalize_phone(text, region)
        assert_short_echo(text, str(number_error.value))
    with pytest.raises(InvalidNumberError) as region_error:
        normalize_phone(PHONE, text)
    assert_short_echo(text, str(region_error.value))
    with pytest.raises(InvalidTemplateError) as template_error:
        validate_template("Your code is {code}, {" + text + "}")
    assert_short_echo(text, str(template_error.value))


@settings(
    max_examples=20,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],  # nothing is written
)
@given(text=LONG)
def test_the_client_echoes_long_input_cut(text: str, redis_client: redis.Redis) -> None:
    client = WaspClient(redis_client, "acme", default_region="DE")
    with pytest.raises(InvalidMessageIdError) as caught:
        client.send_otp(PHONE, "493817", message_id=text + "!", ttl_seconds=60)
    assert_short_echo(text, str(caught.value))
    with pytest.raises(ValueError, match="ttl_seconds") as ttl_error:
        client.send_otp(PHONE, "493817", ttl_seconds=-int("1" + "0" * len(text)))
    assert len(str(ttl_error.value)) < 200
