"""What one session's loop in the operator remembers between its cycles.

Only what saves work, keeps Events to one per change and logs to one per
change; never who owns the tenant (that is read from Redis every full
cycle). The supervisor (``supervisor.py``) and the status writer
(``status_writer.py``) share one ``Seen`` per loop.
"""

from __future__ import annotations

from dataclasses import dataclass

from wasp_operator import auth_mark, status
from wasp_operator.tenancy import Standing


@dataclass
class Seen:
    """What one session's loop remembers between cycles (never who owns the tenant)."""

    url: str | None = None
    tenant: str | None = None
    report: dict[str, str] | None = None  # the lease holder's last status hash
    ignored: tuple[str, ...] | None = None  # the last status hash not relayed, logged once
    redis_problem: tuple[str, str] | None = None  # (reason, message) of this cycle
    api_credentials: dict[str, str] | None = None
    phase: str | None = None  # the phase last written: one Event per change, never two
    generation: int | None = None  # the spec generation of the last full cycle that ran through
    refusal: status.Refusal | None = None  # what the last full cycle refused, if anything
    standing: Standing | None = None  # where the last full cycle found the session on Redis
    auth: auth_mark.AuthMark | None = None  # the mark last written (the body may lag behind)
    auth_written: bool = False  # whether ``auth`` holds one written by this loop
