"""The operator's errors: one root, a few kinds, and how Redis's exceptions map onto them.

Modules raise these; only the kopf handlers (``handlers.py``) translate them
into ``kopf.TemporaryError`` or ``kopf.PermanentError``. A message never
carries a password or a URL with its userinfo.
"""

from __future__ import annotations

from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError


class OperatorError(Exception):
    """Anything the operator cannot do right now."""


class KubernetesUnavailableError(OperatorError):
    """The API server refused or failed a request that is worth retrying."""


class SecretMissingError(OperatorError):
    """A Secret (or a key in it) that a session needs does not exist yet."""


class RedisUnavailableError(OperatorError):
    """The tenant's Redis could not be reached."""

    reason = "RedisUnavailable"


class RedisRefusedError(RedisUnavailableError):
    """The tenant's Redis answered, but refused: a wrong password, or no right to run ACL."""

    reason = "RedisRefused"


class RedisURLInvalidError(RedisUnavailableError):
    """The admin Redis URL in its Secret cannot be used (its scheme, port or database)."""

    reason = "RedisURLInvalid"


def redis_failure(context: str, error: Exception, *, secret: str | None = None) -> OperatorError:
    """The operator's error for a Redis client exception, saying what was being done.

    ``secret`` (a password the failed command carried) is blanked out of the
    message: Redis quotes a malformed ``ACL SETUSER`` argument back.
    """
    text = str(error)
    if secret:
        text = text.replace(secret, "***")
    refused = isinstance(error, ResponseError | AuthenticationError | AuthorizationError)
    kind = RedisRefusedError if refused else RedisUnavailableError
    return kind(f"{context}: {text}")
