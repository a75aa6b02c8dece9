"""The simulator's command vocabulary: what a test, a demo or an operator can play.

Commands are JSON objects pushed (RPUSH) on ``contract.simulator_commands_key``
(``wasp:<tenant>:sim:commands``); the session pod holding the lease plays
them in order. ``wasp-session simulate <command> --tenant T --redis-url U
[--seconds S] [--count N] [--code C] [--reason R] [--phone +CC…] [--jid J]
[--push-name P]`` pushes one from a shell.

======================  =====================================================
command                 effect
======================  =====================================================
``scan``                the phone scans the live QR / types the code: pairs
                        the account ``phone`` (E.164, e.g. ``+4915112345678``)
                        or ``jid`` (default: the pairing phone, else
                        ``+4915100000000``; ``push_name`` optional). Before
                        the first QR it is kept and applied when one is shown.
``disconnect``          the socket drops; back after ``seconds`` (default 1)
``logout``              the phone unlinks the device (LoggedOut)
``stream_replaced``     another client took the account (Conflict)
``ban``                 temporary ban (``seconds``, default 60; ``code``)
``timelock``            463 reach-out timelock: a send to a number the
                        account never wrote to (not in the outbox) raises
                        TimelockedError and reports the 463 again, as
                        whatsmeow does; numbers written before still go
``clear_timelock``      WhatsApp ends the timelock (the session clears it)
``fail_sends``          the next ``count`` sends (default 1) fail, transient
``send_timeout_after_delivery``
                        the next ``count`` sends (default 1) reach WhatsApp
                        (the outbox, receipts due), then no acknowledgement
                        comes: after ``seconds`` (default 0) the send raises
                        ``SendUncertainError`` (a timeout); a SIGKILL in
                        those seconds is a crash in the middle of a send
``fail_starts``         the next ``count`` connects (default 1) fail to dial
``fail_pair_phone``     the next ``count`` pairing-code requests (default 1)
                        fail as WhatsApp refuses them (``reason``, default
                        a rate limit: ``429: rate-overlimit``)
``expire_qr``           the current pairing window ends now, unscanned
``client_outdated``     WhatsApp refuses this client version (Failed)
``connect_failure``     an unknown connect failure (``reason``; Failed)
``keepalive_timeout``   pings fail (metrics only)
``keepalive_restored``  pings work again
``crash``               the connection ends unexpectedly (pod exits, restarts)
``hang``                the session's reads of the transport's events block
                        for ``seconds`` (default 60; 0 ends a hang), as on a
                        wedged whatsmeow client: its event loop stops making
                        progress and ``/healthz`` fails (liveness restarts it)
``inbound``             someone writes to the account: ``phone`` (the sender,
                        E.164) sends ``text`` (or a ``media`` type, e.g.
                        ``image``, with ``text`` as its caption) in the chat
                        ``jid`` (default the sender's own: a group is
                        ``…@g.us``, status ``status@broadcast``); ``from_me``
                        true: the account wrote it on another device. While
                        offline it is delivered on the next connect
======================  =====================================================

Numbers in the set ``contract.simulator_absent_key`` are "not on WhatsApp".
Every sent message is appended to ``contract.simulator_outbox_key`` as JSON
``{"to": "+4915…", "text": …, "whatsapp_id": …, "at": <epoch seconds>}``;
"delivered" and then "read" receipts follow after the configured delay, kept
until played in ``contract.simulator_receipts_key``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import redis

from wasp import contract

COMMANDS = (
    "scan",
    "disconnect",
    "logout",
    "stream_replaced",
    "ban",
    "timelock",
    "clear_timelock",
    "fail_sends",
    "send_timeout_after_delivery",
    "fail_starts",
    "fail_pair_phone",
    "expire_qr",
    "client_outdated",
    "connect_failure",
    "keepalive_timeout",
    "keepalive_restored",
    "crash",
    "hang",
    "inbound",
)
_PHONE = re.compile(r"^\+?[1-9][0-9]{6,14}$")
ARGUMENTS = (
    "seconds", "count", "code", "reason", "phone", "jid", "push_name", "text", "media", "from_me"
)  # fmt: skip


class CommandError(ValueError):
    """A simulator command that cannot be played."""


@dataclass(frozen=True)
class SimCommand:
    """One parsed command."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)

    def number(self, name: str, default: float) -> float:
        """A numeric argument, or ``default``."""
        value = self.arguments.get(name, default)
        try:
            return float(value)
        except (TypeError, ValueError):
            msg = f"{self.name}: {name} must be a number, got {value!r}"
            raise CommandError(msg) from None

    def text(self, name: str, default: str) -> str:
        """A string argument, or ``default``."""
        value = self.arguments.get(name)
        return default if value is None else str(value)


def parse_command(raw: str) -> SimCommand:
    """Parse one JSON command; raise ``CommandError`` if it is not one."""
    try:
        data = json.loads(raw)
    except ValueError as error:
        msg = f"not JSON: {raw[:80]!r}"
        raise CommandError(msg) from error
    if not isinstance(data, dict) or data.get("command") not in COMMANDS:
        msg = f"unknown command in {raw[:80]!r}; known: {', '.join(COMMANDS)}"
        raise CommandError(msg)
    arguments = {key: value for key, value in data.items() if key in ARGUMENTS}
    phone = arguments.get("phone")
    if phone is not None and not _PHONE.match(str(phone)):
        msg = f"{data['command']}: phone must be an E.164 number, got {str(phone)[:80]!r}"
        raise CommandError(msg)
    return SimCommand(name=str(data["command"]), arguments=arguments)


def push_command(client: redis.Redis, tenant: str, name: str, **arguments: object) -> str:
    """Queue command ``name`` for ``tenant``'s simulator; return the JSON pushed."""
    if name not in COMMANDS:
        msg = f"unknown command {name!r}; known: {', '.join(COMMANDS)}"
        raise CommandError(msg)
    payload = json.dumps({"command": name, **{k: v for k, v in arguments.items() if v is not None}})
    client.rpush(contract.simulator_commands_key(tenant), payload)
    return payload
