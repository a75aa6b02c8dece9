"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that checks signatures.

It verifies every request with ``wasp.webhook_signature.verify`` (as a
tenant's receiver would) and keeps what arrived: the entry ids in arrival
order, the bodies, and how many requests had a bad signature. ``failing``
makes it answer 500 (a receiver that is down) until it is set back.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

from wasp import contract
from wasp.webhook_signature import WebhookSignatureError, verify


class WebhookReceiver:
    """Receives webhooks on ``url`` until closed."""

    def __init__(self, secret: bytes, path: str = "/hooks") -> None:
        """Listen on a free port of 127.0.0.1, checking signatures with ``secret``."""
        self.secret = secret
        self.failing = False
        self.lock = threading.Lock()
        self.accepted: list[dict[str, Any]] = []  # bodies answered 2xx, in arrival order
        self.refused = 0  # requests answered 500 on purpose
        self.bad_signatures = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                try:
                    verify(
                        receiver.secret,
                        self.headers.get(contract.WEBHOOK_TIMESTAMP_HEADER, ""),
                        body,
                        self.headers.get(contract.WEBHOOK_SIGNATURE_HEADER, ""),
                    )
                except WebhookSignatureError:
                    with receiver.lock:
                        receiver.bad_signatures += 1
                    self._answer(401)
                    return
                with receiver.lock:
                    if receiver.failing:
                        receiver.refused += 1
                        code = 500
                    else:
                        document = json.loads(body)
                        assert document["id"] == self.headers[contract.WEBHOOK_EVENT_ID_HEADER]
                        receiver.accepted.append(document)
                        code = 204
                self._answer(code)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
                del format, args

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}{path}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def documents(self) -> list[dict[str, Any]]:
        """The bodies accepted so far, parsed, in arrival order."""
        with self.lock:
            return list(self.accepted)

    def ids(self) -> list[str]:
        """The entry ids accepted so far, in arrival order (a retried one may repeat)."""
        with self.lock:
            return [document["id"] for document in self.accepted]

    def wait_for_ids(self, wanted: list[str], timeout: float = 30.0) -> None:
        """Wait until every id of ``wanted`` was accepted."""
        deadline = time.monotonic() + timeout
        while not set(wanted) <= set(self.ids()):
            if time.monotonic() > deadline:
                missing = sorted(set(wanted) - set(self.ids()))
                msg = f"{len(missing)} entries never arrived, e.g. {missing[:3]}"
                raise AssertionError(msg)
            time.sleep(0.2)

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        """Serve within a ``with`` block."""
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop serving."""
        self.close()
