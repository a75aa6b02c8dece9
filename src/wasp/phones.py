"""Phone numbers: parse, validate and normalise to E.164 with the tenant's region.

Owns the one rule for turning what a user typed into the number wasp sends
to: parsed by ``phonenumbers`` with the tenant's default region (so a number
written without its country code gets the region's), and accepted only when
``phonenumbers`` calls it valid. Must not know about Redis or queues.
"""

from __future__ import annotations

import phonenumbers

from wasp.errors import InvalidNumberError
from wasp.redaction import echo

__all__ = ["e164_digits", "normalize_phone"]


def normalize_phone(raw: str, default_region: str | None) -> str:
    """The E.164 form (``+4915112345678``) of ``raw``, or ``InvalidNumberError``.

    ``default_region`` (ISO 3166 alpha-2, e.g. ``"DE"``) is used for numbers
    written without a country code; numbers with ``+`` or ``00`` need none.
    An error quotes at most ``contract.MAX_ECHOED_INPUT_CHARS`` characters of ``raw``.
    """
    text = raw.strip()
    if not text:
        msg = "the phone number is empty"
        raise InvalidNumberError(msg)
    region = default_region.upper() if default_region else None
    if region is not None and region not in phonenumbers.SUPPORTED_REGIONS:
        msg = f"unknown default region {echo(default_region)}: use an ISO 3166 code such as 'DE'"
        raise InvalidNumberError(msg)
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as error:
        if (
            region is None
            and error.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE
        ):
            msg = (
                f"phone number {echo(text)} has no country code and no default region is known: "
                "write it as +<country code><number>"
            )
        else:
            msg = f"phone number {echo(text)} cannot be parsed: {error._msg}"  # noqa: SLF001 - its only text
        raise InvalidNumberError(msg) from None
    if not phonenumbers.is_valid_number(parsed):
        where = f" (default region {region})" if region else ""
        msg = f"phone number {echo(text)} is not a valid number{where}"
        raise InvalidNumberError(msg)
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def e164_digits(e164: str) -> str:
    """The digits of an E.164 number without ``+``: how WhatsApp addresses a user."""
    return e164.removeprefix("+")
