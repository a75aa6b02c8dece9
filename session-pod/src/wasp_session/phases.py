"""The phase this pod's session is in, and the one way to enter another.

Owns the current phase and what entering one means: the status hash (through
the lease-fenced ``StatusBoard``, so only the lease holder ever writes a
phase), the phase metric, and the send gate, which closes on every phase but
``Connected``. Opening the gate is not done here: the reactions open it once
a ``Connected`` account passed the pin. ``fail`` enters ``Failed`` and ends
the session with an exit code (``SessionExit``).

Must not decide which phase comes next: ``decisions`` and the reactions do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn

import structlog

from wasp import contract
from wasp_session import metrics
from wasp_session.errors import EXIT_FAILED
from wasp_session.gate import SendGate
from wasp_session.status import PAIRING_FIELDS, StatusBoard

log = structlog.stdlib.get_logger("wasp_session.phases")
ACCOUNT_FIELDS = (contract.STATUS_ACCOUNT_JID, contract.STATUS_PUSH_NAME)


class SessionExit(Exception):  # noqa: N818 - control flow, not an error
    """Ends the session's loop with ``code`` (after what was written is written)."""

    def __init__(self, code: int) -> None:
        """Carry the exit code."""
        super().__init__(code)
        self.code = code


class Phases:
    """The session's phase, written to the status hash on every change."""

    def __init__(
        self, status: StatusBoard, gate: SendGate, check_lease: Callable[[], None]
    ) -> None:
        """Write through ``status``; ``check_lease`` raises if the lease is lost."""
        self._status = status
        self._gate = gate
        self._check_lease = check_lease
        self.current = "Starting"

    def enter(
        self,
        phase: str,
        reason: str = "",
        message: str = "",
        extra: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> None:
        """Enter ``phase``: close the gate unless Connected, write and publish the status."""
        self._check_lease()
        if phase != self.current:
            log.info("session_phase", phase=phase, previous=self.current, reason=reason)
        self.current = phase
        metrics.set_phase(phase)
        if phase != "Connected":
            self._gate.close()
            metrics.CONNECTED.set(0)
        fields = {contract.STATUS_LEASE_HELD: "1", **(extra or {})}
        self._status.set_phase(phase, reason=reason, message=message, extra=fields, remove=remove)

    def fail(
        self,
        reason: str,
        message: str,
        code: int = EXIT_FAILED,
        remove: tuple[str, ...] = PAIRING_FIELDS,
    ) -> NoReturn:
        """Enter ``Failed`` with the reason as the last error too, and end the session."""
        log.error("session_failed", reason=reason, error=message)
        self.enter("Failed", reason, message, self._status.error_fields(reason, message), remove)
        raise SessionExit(code)
