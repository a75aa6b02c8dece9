"""The operator's errors: one root, a few kinds.

Modules raise these; only the kopf handlers (``handlers.py``) translate them
into ``kopf.TemporaryError`` or ``kopf.PermanentError``.
"""


class OperatorError(Exception):
    """Anything the operator cannot do right now."""


class KubernetesUnavailableError(OperatorError):
    """The API server refused or failed a request that is worth retrying."""


class SecretMissingError(OperatorError):
    """A Secret (or a key in it) that a session needs does not exist yet."""


class RedisUnavailableError(OperatorError):
    """The tenant's Redis could not be reached."""
