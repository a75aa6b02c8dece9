"""OTP codes and message templates: what is allowed, and the text they make.

Owns the rules for a code (4 to 10 ASCII letters or digits) and for a
template (literal text with only bare ``{code}`` and ``{minutes}`` fields),
and the rendering. Templates are parsed with ``string.Formatter`` and refused
if any field has an attribute, an index, a conversion or a format spec, so a
hostile template (``{code.__class__}``) can never reach into Python objects.
Must not know about Redis or queues.
"""

from __future__ import annotations

import math
import string

from wasp import contract
from wasp.errors import InvalidCodeError, InvalidTemplateError
from wasp.redaction import echo

__all__ = ["DEFAULT_TEMPLATE", "render_message", "validate_code", "validate_template"]

DEFAULT_TEMPLATE = "Your code is {code}. It expires in {minutes} minutes."
MAX_TEMPLATE_LENGTH = 1000


def validate_code(code: object) -> str:
    """Return ``code`` if it is 4 to 10 ASCII letters or digits, else ``InvalidCodeError``."""
    if not isinstance(code, str):
        msg = f"the code must be a string, not {type(code).__name__}"
        raise InvalidCodeError(msg)
    if not code:
        msg = "the code is empty"
        raise InvalidCodeError(msg)
    if not (contract.CODE_MIN_LENGTH <= len(code) <= contract.CODE_MAX_LENGTH):
        msg = (
            f"the code has {len(code)} characters: it must have "
            f"{contract.CODE_MIN_LENGTH} to {contract.CODE_MAX_LENGTH}"
        )
        raise InvalidCodeError(msg)
    if not (code.isascii() and code.isalnum()):
        msg = "the code may contain only ASCII letters and digits"
        raise InvalidCodeError(msg)
    return code


def validate_template(template: object) -> str:
    """Return ``template`` if its only fields are bare ``{code}``/``{minutes}``.

    Raises ``InvalidTemplateError`` naming the first field that is not allowed.
    ``{{`` and ``}}`` stand for literal braces, as in ``str.format``.
    """
    if not isinstance(template, str):
        msg = f"the message template must be a string, not {type(template).__name__}"
        raise InvalidTemplateError(msg)
    if len(template) > MAX_TEMPLATE_LENGTH:
        msg = f"the message template is longer than {MAX_TEMPLATE_LENGTH} characters"
        raise InvalidTemplateError(msg)
    allowed = ", ".join("{" + name + "}" for name in contract.TEMPLATE_FIELDS)
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as error:
        msg = f"the message template is malformed ({error}): use {{{{ and }}}} for literal braces"
        raise InvalidTemplateError(msg) from None
    has_code = False
    for _literal, field, spec, conversion in parts:
        if field is None:
            continue
        if field not in contract.TEMPLATE_FIELDS or spec or conversion:
            shown = "{" + field + (f"!{conversion}" if conversion else "")
            shown += (f":{spec}" if spec else "") + "}"
            msg = f"the message template may use only {allowed}, not {echo(shown)}"
            raise InvalidTemplateError(msg)
        has_code = has_code or field == "code"
    if not has_code:
        msg = "the message template must contain {code}"
        raise InvalidTemplateError(msg)
    return template


def render_message(template: str, code: str, ttl_seconds: float) -> str:
    """The message text: ``template`` with the code and the TTL in whole minutes (rounded up)."""
    validate_template(template)
    validate_code(code)
    minutes = str(max(1, math.ceil(ttl_seconds / 60)))
    values = {"code": code, "minutes": minutes}
    return "".join(
        literal + (values[field] if field is not None else "")
        for literal, field, _spec, _conversion in string.Formatter().parse(template)
    )
