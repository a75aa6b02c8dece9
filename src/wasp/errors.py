"""The client library's errors: one root, a few leaves a caller can tell apart.

Owns the error vocabulary of ``wasp`` (client, phone numbers, templates, CLI).
Every error's message is one readable sentence, fit to print as is; the CLI
prints exactly that line. Must not import anything but the standard library.
"""

from __future__ import annotations


class WaspError(Exception):
    """Root of every error the ``wasp`` library raises on purpose."""


class InvalidNumberError(WaspError, ValueError):
    """A phone number that cannot be a reachable mobile number."""


class InvalidCodeError(WaspError, ValueError):
    """An OTP code that is empty, too long or has characters other than letters and digits."""


class InvalidTemplateError(WaspError, ValueError):
    """A message template with fields other than ``{code}`` and ``{minutes}``."""


class InvalidMessageIdError(WaspError, ValueError):
    """A message id that cannot be an RQ job id."""


class MessageNotFoundError(WaspError, LookupError):
    """No message with this id is known (never enqueued, or expired from Redis)."""


class SessionNotFoundError(WaspError, LookupError):
    """No session of this tenant has reported a status to Redis."""


class WaitTimeoutError(WaspError, TimeoutError):
    """What was awaited did not happen in time."""


class EventsLostError(WaspError):
    """A consumer group missed entries of the event stream: trimmed (or gone) before it read them.

    ``count`` is how many (``None``: unknown); ``after`` where the loss
    starts (an entry id). The group has moved past the loss: consuming again
    goes on with what the stream still has, so this is said once.
    """

    def __init__(self, message: str, *, count: int | None, after: str) -> None:
        """Say ``message``; keep ``count`` and ``after`` for the caller."""
        super().__init__(message)
        self.count = count
        self.after = after
