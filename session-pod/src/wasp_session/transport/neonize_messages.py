"""neonize's ``MessageEv`` read into ``MessageReceived``: who wrote what, never a media body.

Owns the translation only (a pure function of the protobuf, so it is tested
with real neonize messages and without WhatsApp): the chat and the sender as
``user@server`` (by phone number when WhatsApp tells it: a LID-addressed
sender's ``SenderAlt``), the text (``conversation`` or
``extendedTextMessage.text``) or, for media, its type from the table below
and its caption, and the time. Messages without content a person wrote
(protocol messages, reactions, polls, key distribution, ...) give ``None``.
Skipping the account's own messages, groups, broadcasts and newsletters is
the session's judgement (``inbound``), not this module's: it reports them.

whatsmeow hands the message unwrapped (ephemeral, view-once and
document-with-caption wrappers removed), so only the inner fields are read.
Must not download, decrypt or keep any media.
"""

from __future__ import annotations

import time
from typing import Any, Final

from wasp_session.transport.base import MessageReceived

# The E2E ``Message`` field of a media message -> the type recorded (contract.INBOUND_TYPES).
MEDIA_FIELDS: Final = {
    "imageMessage": "image",
    "videoMessage": "video",
    "ptvMessage": "video",  # a round video note
    "audioMessage": "audio",  # voice notes too
    "documentMessage": "document",
    "stickerMessage": "sticker",
    "contactMessage": "contact",
    "contactsArrayMessage": "contact",
    "locationMessage": "location",
    "liveLocationMessage": "location",
}
_CAPTIONED: Final = ("imageMessage", "videoMessage", "documentMessage")
_MILLISECONDS_FROM: Final = 100_000_000_000  # a "seconds" value this large is milliseconds


def message_received(event: Any) -> MessageReceived | None:  # noqa: ANN401 - neonize's proto
    """The ``MessageReceived`` of a neonize ``MessageEv``; None if no person's content is in it."""
    content = event.Message
    text, media = _text_and_media(content)
    if not text and not media:
        return None
    source = event.Info.MessageSource
    return MessageReceived(
        chat=_address(source.Chat),
        sender=_sender(source),
        text=text,
        whatsapp_id=str(event.Info.ID),
        sent_at=message_time(event.Info.Timestamp),
        media_type=media,
        from_me=bool(source.IsFromMe),
    )


def _text_and_media(content: Any) -> tuple[str, str]:  # noqa: ANN401 - neonize's proto
    if content.conversation:
        return str(content.conversation), ""
    if content.HasField("extendedTextMessage"):
        return str(content.extendedTextMessage.text), ""
    for name, media in MEDIA_FIELDS.items():
        if content.HasField(name):
            inner = getattr(content, name)
            caption = str(inner.caption) if name in _CAPTIONED else ""
            return caption, media
    return "", ""


def _address(jid: Any) -> str:  # noqa: ANN401 - neonize's proto
    """``user@server`` of a JID proto (no device part); "" for an empty one."""
    user, server = str(jid.User), str(jid.Server)
    return f"{user}@{server}" if server else ""


def _sender(source: Any) -> str:  # noqa: ANN401 - neonize's proto
    """The sender by phone number when WhatsApp tells it (a LID sender's ``SenderAlt``)."""
    sender = _address(source.Sender)
    if not sender.endswith("@s.whatsapp.net") and source.HasField("SenderAlt"):
        alternative = _address(source.SenderAlt)
        if alternative.endswith("@s.whatsapp.net"):
            return alternative
    return sender


def message_time(stamp: object) -> float:
    """A message's ``Info.Timestamp`` as epoch seconds (milliseconds are recognised); 0: now."""
    value = int(stamp)  # type: ignore[call-overload]
    if value <= 0:
        return time.time()
    return value / 1000 if value >= _MILLISECONDS_FROM else float(value)
