"""The account a tenant's session is pinned to: what the pin holds, how it is shown, re-arming.

Owns the meaning of ``contract.account_key``: the phone number digits of the
WhatsApp account (the user part of its JID, no ``+``, no device suffix) that
the tenant's session pod pinned at its first pairing. ``account_of_jid``
turns a JID into that value, ``mask_account`` shows it in logs and messages
without the whole number, and ``forget_account`` is the deliberate platform
action behind ``wasp pair --new-account``: delete the pin and ask the session
to pair again, in one transaction.

The session pod writes the pin and refuses other accounts; this module only
names and removes it. Must not import the session pod or the operator.
"""

from __future__ import annotations

import re
from typing import Final

import redis

from wasp import contract
from wasp.errors import WaspError
from wasp.redaction import MASK, mask_phone

__all__ = ["PinNotRemovableError", "account_of_jid", "forget_account", "mask_account"]

_PHONE_SERVERS: Final = ("s.whatsapp.net", "c.us")  # LIDs (``@lid``) are not phone numbers
_HIDDEN: Final = re.compile(re.escape(MASK) + "+")
_MAX_ACCOUNT_DIGITS: Final = 15  # E.164


class PinNotRemovableError(WaspError):
    """The Redis credential in use may not remove a tenant's account pin."""


def account_of_jid(jid: str) -> str:
    """The account digits of a phone JID (``4915112345678:12@s.whatsapp.net`` → ``4915112345678``).

    Returns ``""`` when ``jid`` is not a phone number's JID (empty, a LID, a
    group, anything but digits), so a caller can tell "unknown" from an account.
    """
    user, at, server = jid.strip().partition("@")
    if at and server not in _PHONE_SERVERS:
        return ""
    digits = user.split(":", 1)[0].split(".", 1)[0].removeprefix("+")
    if not digits.isascii() or not digits.isdigit() or len(digits) > _MAX_ACCOUNT_DIGITS:
        return ""
    return "" if digits.startswith("0") else digits


def mask_account(digits: str) -> str:
    """``+49…78`` for ``4915112345678``: the country code and the last two digits only.

    The same masking as the logs' (``wasp.redaction.mask_phone``), with the
    hidden digits shown as one ``…``, short enough for a status sentence.
    """
    digits = digits.removeprefix("+")
    if not digits.isascii() or not digits.isdigit():
        return "+…"
    return _HIDDEN.sub("…", mask_phone(f"+{digits}"))


def forget_account(connection: redis.Redis, tenant: str) -> str | None:
    """Delete ``tenant``'s account pin and push ``pair``, atomically; return the old pin.

    The next account that pairs is pinned instead. Needs a credential that
    may write the pin (the platform's admin or the session's own); with the
    tenant API's credential Redis refuses the whole transaction, nothing
    changes, and ``PinNotRemovableError`` says so.
    """
    pipe = connection.pipeline(transaction=True)
    pipe.get(contract.account_key(tenant))
    pipe.delete(contract.account_key(tenant))
    pipe.rpush(contract.control_key(tenant), contract.CONTROL_PAIR)
    try:
        old, _, _ = pipe.execute()
    except redis.exceptions.NoPermissionError:
        msg = (
            f"this Redis credential may not remove {tenant}'s account pin (NOPERM): "
            "the tenant API's credential cannot do this; use the platform's admin "
            "credential or the session's own"
        )
        raise PinNotRemovableError(msg) from None
    if old is None:
        return None
    return old.decode() if isinstance(old, bytes) else str(old)
