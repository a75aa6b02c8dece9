"""How ``kubectl wasp`` shows a resource with its Events, and a list of messages.

Owns the text layouts of ``status`` (the resource's part) and ``messages``;
the session's own fields and QR codes are drawn by ``wasp.cli``'s helpers.
Phone numbers are always masked. Must not fetch anything: it is given what to show.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import TextIO

from wasp.cli import plain, print_fields
from wasp.messages import MessageStatus
from wasp.redaction import mask_phone
from wasp_kubectl.cluster import SessionResource

__all__ = ["print_messages", "print_resource"]

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def print_resource(resource: SessionResource, events: list[dict[str, str]], out: TextIO) -> None:
    """The resource's phase, pod, account, pairing, last error, conditions and Events."""
    status = resource.status
    out.write(
        f"WhatsAppSession {resource.name} (namespace {resource.namespace}, "
        f"tenant {resource.tenant})\n"
    )
    shown = {
        "phase": status.get("phase", "Pending"),
        "pod": status.get("podName"),
        "account": status.get("account"),
        "pairing": {k: v for k, v in (status.get("pairing") or {}).items() if k != "qrCode"},
        "lastError": status.get("lastError"),
    }
    print_fields(shown, out)
    conditions = status.get("conditions") or []
    if conditions:
        listed = " ".join(f"{c.get('type')}={c.get('status')}" for c in conditions)
        out.write(f"conditions: {listed}\n")
    out.write("events:\n" if events else "events: none\n")
    out.writelines(
        f"  {event['time']}  {event['type']:<7} {event['reason']:<16} {event['message']}\n"
        for event in events
    )


def print_messages(found: Sequence[MessageStatus], out: TextIO, *, as_json: bool) -> None:
    """A table of messages (newest first), or one JSON object a line."""
    if as_json:
        for status in found:
            line = plain({**asdict(status), "phone": mask_phone(status.phone or "")})
            out.write(json.dumps(line, sort_keys=True) + "\n")
        return
    if not found:
        out.write("no recent messages (a message is listed while its code is valid)\n")
        return
    out.write(f"{'MESSAGE ID':<34} {'STATE':<10} {'PHONE':<16} {'CREATED':<20} REASON\n")
    for status in found:
        created = status.created_at.strftime(_TIME_FORMAT) if status.created_at else ""
        phone = mask_phone(status.phone) if status.phone else ""
        out.write(
            f"{status.message_id:<34} {status.state:<10} {phone:<16} {created:<20} "
            f"{status.reason or ''}\n"
        )
