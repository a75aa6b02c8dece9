"""The session pod's error vocabulary: one root, a few kinds, each with an exit code.

Every error the session raises on purpose derives from ``SessionError``; the
app turns the one that ends the program into its exit code and a status
reason. Transport errors stay in ``transport.base`` (their own root).
"""

from __future__ import annotations

# Exit codes of ``wasp-session``: documented in docs/simulator.md and the CLI help.
EXIT_OK = 0
EXIT_FAILED = 1  # phase Failed: needs a human (client outdated, repeated start failures)
# Bad configuration, another WhatsAppSession owns the tenant (TenantConflict), or a Redis
# that may evict keys (RedisEvictionPolicy).
EXIT_CONFIG = 2
EXIT_TRANSPORT_STOPPED = 3  # the connection ended unexpectedly; a restart may help
EXIT_LEASE_LOST = 4  # another pod took the lease; this one wrote nothing more
# Asked to stop, it did not finish in time (e.g. a wedged transport): nothing to fix
# by hand, the next start restores the last checkpoint; not Failed.
EXIT_SHUTDOWN_TIMED_OUT = 5


class SessionError(Exception):
    """Root of every error the session pod raises on purpose."""

    exit_code = EXIT_FAILED


class ConfigError(SessionError):
    """An environment variable is missing or malformed."""

    exit_code = EXIT_CONFIG

    def __init__(self, variable: str, problem: str) -> None:
        """Name the variable and what is wrong with it."""
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


class LeaseLostError(SessionError):
    """This pod no longer holds the tenant's lease."""

    exit_code = EXIT_LEASE_LOST


class AuthStoreError(SessionError):
    """The auth snapshot could not be read, written or trusted."""


class SnapshotRejectedError(AuthStoreError):
    """Redis refused a checkpoint (stale generation, lost lease, or no device over a device)."""

    def __init__(self, verdict: str) -> None:
        """Keep the script's verdict."""
        super().__init__(f"checkpoint refused: {verdict}")
        self.verdict = verdict


class SessionFailedError(SessionError):
    """The session cannot go on without a human; phase Failed."""

    def __init__(self, reason: str, message: str, exit_code: int = EXIT_FAILED) -> None:
        """Record the status reason, its sentence and the exit code."""
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.exit_code = exit_code
