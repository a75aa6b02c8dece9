"""What of a user's input may show in logs and error messages.

Owns three rules: a phone number in a log line keeps only its country code
and its last two digits (``+49*********78``); any text logged (an error, a
foreign library's message) has every phone-like number in it masked the
same way; and an error that quotes input quotes at most
``contract.MAX_ECHOED_INPUT_CHARS`` characters of it. ``mask_log_fields`` is
the structlog processor that applies the first two to every line; the
client and the worker also mask at the call site, so their events are clean
whatever logging the host application configured. Must not log, raise or
know about Redis.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from typing import Any, Final

import phonenumbers

from wasp import contract

__all__ = ["echo", "mask_log_fields", "mask_numbers", "mask_phone"]

MASK: Final = "*"
_KEPT_TAIL: Final = 2
_MIN_DIGITS: Final = 7  # fewer digits than this in a row is not a phone number

# A run of at least 7 digits, optionally led by "+" or "00", with at most one
# space, dash or parenthesis between digits ("+49 151 1234-5678", "(0151) 123456").
# Not followed by ':' or a word character, so clock times and longer words are left alone.
_NUMBER: Final = re.compile(r"(?<![\w+])(?:\+|00)?\(?\d(?:[ ()\-]{0,2}\d){6,}(?![\w:])")
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")

# Log fields that hold a phone number or a WhatsApp JID (its user part is one).
PHONE_FIELDS: Final = frozenset({"phone", "to", "jid", "account", "account_jid", "number", "e164"})
# Log fields that are wasp's own identifiers or bookkeeping: never masked.
_KEPT_FIELDS: Final = frozenset(
    {"timestamp", "level", "logger", "logger_name", "tenant", "message_id", "whatsapp_id", "job_id"}
)


def _country_code(digits: str) -> str:
    """The calling code at the start of ``digits`` (1 to 3 digits), or ``""``."""
    for length in (1, 2, 3):
        if int(digits[:length] or 0) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return digits[:length]
    return ""


def _mask_digits(digits: str, *, international: bool) -> str:
    kept_head = _country_code(digits) if international else ""
    hidden = len(digits) - len(kept_head) - _KEPT_TAIL
    if hidden <= 0:  # too short to show anything but the country code
        return kept_head + MASK * (len(digits) - len(kept_head))
    return kept_head + MASK * hidden + digits[-_KEPT_TAIL:]


def mask_phone(value: str) -> str:
    """``value`` (an E.164 number, a national one or a JID) with its digits masked.

    Keeps the ``+``, the country code (when the number is international) and
    the last two digits; a JID keeps its ``@server`` part.
    """
    user, at, server = value.partition("@")
    digits = "".join(ch for ch in user if ch.isdigit())
    if not digits or MASK in user:  # nothing to hide, or masked already
        return value
    international = user.lstrip().startswith(("+", "00")) or bool(at)
    prefix = "+" if user.lstrip().startswith("+") else ""
    if user.lstrip().startswith("00"):
        digits = digits[2:]
        prefix = "00"
    return prefix + _mask_digits(digits, international=international) + at + server


def _mask_match(match: re.Match[str]) -> str:
    text = match.group(0)
    if _ISO_DATE.fullmatch(text):
        return text
    return mask_phone(text)


def mask_numbers(text: str) -> str:
    """``text`` with every phone-like number in it (7 or more digits) masked."""
    return _NUMBER.sub(_mask_match, text)


def _repr(value: object) -> str:
    try:
        return repr(value)
    except RecursionError:
        return f"<a {type(value).__name__} nested too deeply to show>"


def echo(value: object) -> str:
    """``value`` quoted for an error message, cut to ``MAX_ECHOED_INPUT_CHARS`` characters."""
    text = value if isinstance(value, str) else _repr(value)
    limit = contract.MAX_ECHOED_INPUT_CHARS
    if len(text) <= limit:
        return repr(text) if isinstance(value, str) else text
    shown = repr(text[:limit]) if isinstance(value, str) else text[:limit]
    return f"{shown}... ({len(text)} characters)"


def mask_log_fields(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Mask phone fields, and phone numbers in all other text (a structlog processor)."""
    for key, value in event_dict.items():
        if not isinstance(value, str) or key in _KEPT_FIELDS:
            continue
        event_dict[key] = mask_phone(value) if key in PHONE_FIELDS else mask_numbers(value)
    return event_dict
