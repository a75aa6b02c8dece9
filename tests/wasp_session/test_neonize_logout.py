"""The neonize transport's logout reports ``LoggedOut``, as whatsmeow does not.

whatsmeow's ``Client.Logout`` sends the remove-companion-device request,
disconnects and deletes its store, and dispatches no event (``LoggedOut``
is for the phone's unlinking). The session reacts to the event alone (auth
deleted, a new pairing or, after ``unlink``, none), so the transport emits
it once WhatsApp confirmed. The client stands in for the network only, in a
child process, as in ``test_neonize.py``: neonize is never loaded here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_LOGOUT = """
import json, queue, sys
from pathlib import Path
from wasp_session.transport.base import TransportError
from wasp_session.transport.whatsmeow import NeonizeTransport

class Events:
    def qr(self, handler):
        pass
    def __call__(self, kind):
        return lambda handler: None

class Client:
    def __init__(self, refuse):
        self.event = Events()
        self.refuse = refuse
    def logout(self):
        if self.refuse:
            raise RuntimeError("error sending logout request: websocket not connected")

def events_after_logout(refuse):
    transport = NeonizeTransport(Path(sys.argv[1]))
    transport._client = Client(refuse)
    try:
        transport.logout()
        error = None
    except TransportError as failure:
        error = str(failure)
    events = []
    while True:
        try:
            events.append(transport.events.get_nowait())
        except queue.Empty:
            break
    named = [[type(e).__name__, getattr(e, "reason", "")] for e in events]
    return {"error": error, "events": named}

print(json.dumps({"confirmed": events_after_logout(False), "refused": events_after_logout(True)}))
"""


def test_a_confirmed_logout_reports_logged_out_and_a_refused_one_an_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _LOGOUT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["confirmed"] == {
        "error": None,
        "events": [["LoggedOut", "logged out by this device"]],
    }
    assert seen["refused"]["events"] == []
    assert "websocket not connected" in seen["refused"]["error"]
