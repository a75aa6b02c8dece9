"""The OTP job's arguments: what a valid job carries, checked before anything runs.

Owns the job's keyword contract (``phone``, ``code``, ``message_id``,
``ttl_seconds``, optional ``template``) and its check; anything else (a
missing or extra argument, a positional one, a wrong type, a job id that is
not ``contract.job_id(tenant, message_id)``) is an ``InvalidJobError`` whose
message says what to fix (quoting at most ``contract.MAX_ECHOED_INPUT_CHARS``
characters of input), and the message ends ``failed/invalid_job``. The
code's and the template's own rules live in ``wasp.templates``; this module
checks only shapes. ``admission.py`` judges the job as a whole first.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from wasp import contract
from wasp.redaction import echo

REQUIRED: Final = ("phone", "code", "message_id", "ttl_seconds")
OPTIONAL: Final = ("template",)
MAX_TTL_SECONDS: Final = 24 * 3600
MESSAGE_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")


def valid_ttl_seconds(value: object) -> int | None:
    """``value`` if it is a valid ``ttl_seconds`` (whole seconds, 1 to ``MAX_TTL_SECONDS``).

    The one check of a TTL: whatever dates a message (its expiry, the RQ
    lifetimes of a refused job) uses it, so no job's TTL overflows a date.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 < value <= MAX_TTL_SECONDS else None


class InvalidJobError(ValueError):
    """The job's arguments break the contract; the message says how."""


@dataclass(frozen=True)
class OtpRequest:
    """A well-formed OTP job (its phone, code and template not yet judged)."""

    message_id: str
    phone: str
    code: str
    ttl_seconds: int
    template: str | None


def parse_arguments(
    args: Sequence[object], kwargs: Mapping[str, object], job_id: str, tenant: str
) -> OtpRequest:
    """Check the job's arguments; return them typed or raise ``InvalidJobError``."""
    if args:
        msg = f"the OTP job takes keyword arguments only, got {len(args)} positional"
        raise InvalidJobError(msg)
    missing = [name for name in REQUIRED if name not in kwargs]
    if missing:
        msg = f"missing argument(s): {', '.join(missing)}"
        raise InvalidJobError(msg)
    extra = sorted(set(kwargs) - set(REQUIRED) - set(OPTIONAL))
    if extra:
        shown = echo(", ".join(extra))
        msg = f"unknown argument(s): {shown}; allowed: {', '.join(REQUIRED + OPTIONAL)}"
        raise InvalidJobError(msg)
    message_id, phone, code = kwargs["message_id"], kwargs["phone"], kwargs["code"]
    ttl, template = kwargs["ttl_seconds"], kwargs.get("template")
    if not isinstance(message_id, str) or not MESSAGE_ID_PATTERN.fullmatch(message_id):
        msg = "message_id must be 1-128 letters, digits, '-' or '_'"
        raise InvalidJobError(msg)
    if job_id != contract.job_id(tenant, message_id):
        expected = contract.job_id(tenant, message_id)
        msg = f"the job id {echo(job_id)} must be {echo(expected)} (enqueue with job_id=)"
        raise InvalidJobError(msg)
    for name, value in (("phone", phone), ("code", code)):
        if not isinstance(value, str):
            msg = f"{name} must be a string, not {type(value).__name__}"
            raise InvalidJobError(msg)
    ttl_seconds = valid_ttl_seconds(ttl)
    if ttl_seconds is None:
        msg = f"ttl_seconds must be a whole number of seconds from 1 to {MAX_TTL_SECONDS}"
        raise InvalidJobError(msg)
    if template is not None and not isinstance(template, str):
        msg = f"template must be a string, not {type(template).__name__}"
        raise InvalidJobError(msg)
    assert isinstance(phone, str)  # noqa: S101 - narrowed above, for mypy
    assert isinstance(code, str)  # noqa: S101
    return OtpRequest(
        message_id=message_id, phone=phone, code=code, ttl_seconds=ttl_seconds, template=template
    )
