"""Inbound messages: what someone's message to the tenant's number puts in its event stream.

Owns the judgement of a ``MessageReceived`` (``entry_of``: a pure function)
and its recording as an ``inbound`` entry of ``wasp:<tenant>:stream``
(``Inbound.received``), with the auto-reply's decision in the entry. Only a
person's message in a one-to-one chat is recorded: the account's own messages
(from its other devices), groups, broadcasts and status updates, newsletters
and anything else are skipped (counted, never recorded, never answered).

The sender is anyone on WhatsApp, so everything in the event is hostile: the
text is cut to ``contract.INBOUND_TEXT_MAX_CHARS`` (lone surrogates replaced,
any other unicode kept), the id to ``_MAX_ID_CHARS``, the type is one of
``contract.INBOUND_TYPES`` (other media are skipped), a time that is not a
plausible moment becomes now, and the sender is an E.164 number or "".
Recording is one ``XADD`` on the lifecycle's thread (two with an auto-reply's
claim); the reply itself is sent by ``auto_reply`` on its own thread, so a
flood of messages never waits on WhatsApp and never delays an OTP.

Must not send anything, nor read media bodies (transports never hand them).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

import redis
import structlog

from wasp import contract
from wasp.event_stream import EventStream
from wasp.timestamps import format_timestamp
from wasp_session import metrics
from wasp_session.auto_reply import AutoReplier
from wasp_session.transport.base import MessageReceived

log = structlog.stdlib.get_logger("wasp_session.inbound")

_PHONE_SERVER: Final = "s.whatsapp.net"  # a person, addressed by phone number
_PERSON_SERVERS: Final = (_PHONE_SERVER, "lid")  # one person's chat (by number or by LID)
_SKIPPED_SERVERS: Final = {  # a chat's server -> why its messages are not recorded
    "g.us": "group",
    "broadcast": "broadcast",  # status updates (status@broadcast) and broadcast lists
    "newsletter": "newsletter",
}
_E164_DIGITS: Final = re.compile(r"[1-9][0-9]{6,14}")
_MAX_ID_CHARS: Final = 128
_MAX_FUTURE_SECONDS: Final = 24 * 3600.0  # a message "sent" later than this from now: now
_CUT: Final = "…"


@dataclass(frozen=True)
class InboundEntry:
    """One recorded message: bounded, clean strings only."""

    sender: str  # "+4915…", or "" when WhatsApp hides the number (a LID only)
    text: str
    whatsapp_id: str
    type: str  # one of contract.INBOUND_TYPES
    at: float  # epoch seconds

    @property
    def phone_digits(self) -> str:
        """The sender's number without "+" ("" if unknown): where an auto-reply goes."""
        return self.sender.removeprefix("+")


def skip_reason(event: MessageReceived) -> str | None:
    """Why ``event`` is not recorded ("from_me", "group", ...), or None to record it."""
    if event.from_me:
        return "from_me"
    server = event.chat.rpartition("@")[2]
    if server in _PERSON_SERVERS:
        media = event.media_type
        return None if not media or media in contract.INBOUND_TYPES else "unsupported"
    return _SKIPPED_SERVERS.get(server, "other")


def entry_of(event: MessageReceived, now: float | None = None) -> InboundEntry | None:
    """The entry to record for ``event``, or None if it is skipped (``skip_reason``)."""
    if skip_reason(event) is not None:
        return None
    return InboundEntry(
        sender=e164_of(event.sender) or e164_of(event.chat),
        text=bounded(event.text, contract.INBOUND_TEXT_MAX_CHARS),
        whatsapp_id=bounded(event.whatsapp_id, _MAX_ID_CHARS),
        type=event.media_type or "text",
        at=plausible_time(event.sent_at, time.time() if now is None else now),
    )


def e164_of(jid: str) -> str:
    """``+digits`` for a phone-number JID (``digits[:device]@s.whatsapp.net``), else ""."""
    user, _, server = jid.rpartition("@")
    digits = user.partition(":")[0].partition(".")[0]  # no device or agent suffix
    if server != _PHONE_SERVER or not _E164_DIGITS.fullmatch(digits):
        return ""
    return f"+{digits}"


def bounded(text: str, limit: int) -> str:
    """``text`` as valid UTF-8 of at most ``limit`` characters (cut ones end with "…")."""
    if len(text) > limit:
        text = text[: limit - len(_CUT)] + _CUT
    return text.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"


def plausible_time(sent_at: float, now: float) -> float:
    """``sent_at``, unless it is not a moment between 1970 and a day from now: then ``now``."""
    if not math.isfinite(sent_at) or sent_at <= 0 or sent_at > now + _MAX_FUTURE_SECONDS:
        return now
    return sent_at


class Inbound:
    """Records one tenant's inbound messages and hands auto-replies to ``replier``."""

    def __init__(self, client: redis.Redis, tenant: str, replier: AutoReplier | None) -> None:
        """Record into ``tenant``'s stream; ``replier`` None: no auto-reply configured."""
        self._stream = EventStream(client, tenant)
        self._replier = replier

    def start(self) -> None:
        """Start the auto-reply thread, if there is an auto-reply."""
        if self._replier is not None:
            self._replier.start()

    def stop(self) -> None:
        """Stop the auto-reply thread; replies still waiting are not sent."""
        if self._replier is not None:
            self._replier.stop()

    def received(self, event: MessageReceived) -> str | None:
        """Record ``event`` (unless skipped) and decide its auto-reply; the entry's id or None."""
        entry = entry_of(event)
        if entry is None:
            reason = skip_reason(event) or "other"
            metrics.INBOUND_SKIPPED.labels(reason=reason).inc()
            log.debug("inbound_skipped", reason=reason)
            return None
        decision = "none"
        if self._replier is not None and entry.phone_digits:
            decision = self._replier.offer(entry.phone_digits)
        entry_id = self._stream.append(
            contract.EVENT_KIND_INBOUND,
            {
                contract.EVENT_AT: format_timestamp(datetime.fromtimestamp(entry.at, UTC)),
                contract.INBOUND_SENDER: entry.sender,
                contract.INBOUND_TEXT: entry.text,
                contract.INBOUND_WHATSAPP_ID: entry.whatsapp_id,
                contract.INBOUND_TYPE: entry.type,
                contract.INBOUND_AUTO_REPLY: decision,
            },
        )
        metrics.INBOUND_MESSAGES.labels(type=entry.type).inc()
        log.info(
            "inbound_recorded",
            entry=entry_id,
            type=entry.type,
            chars=len(entry.text),
            auto_reply=decision,
        )
        return entry_id
