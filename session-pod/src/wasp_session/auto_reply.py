"""The auto-reply: ``spec.autoReply.text``, at most once per sender per day, off the event thread.

Owns ``contract.auto_reply_key`` (``wasp:<tenant>:autoreply:<digits>``),
taken with ``SET NX EX contract.AUTO_REPLY_PERIOD_SECONDS`` before a reply is
queued: whichever pod of the tenant takes it replies, no other and no later
message within the period. ``offer`` (on the lifecycle's thread) only claims
and queues; a thread of its own sends, so a reply never blocks the handling
of WhatsApp's events. The queue is bounded: when it is full a message gets no
reply (counted ``dropped``), and a flood of strangers costs a few Redis calls
each, never memory.

A reply must never delay an OTP nor burst past the tenant's pacing: it is
sent only while the send gate is open (connected, the lease held, no ban) and
only if the tenant's pacing bucket (``delivery.pacing``) has a token right
now; it never waits for one. A reply not sent (no token, not connected, a
failed send) gives the claim back, so the sender's next message may get one;
a reply that may have gone (``SendUncertainError``) keeps it. Outcomes are
counted in ``wasp_session_auto_replies_total{result}`` and logged
(``auto_reply_sent``, ``auto_reply_not_sent``).

Must not record inbound messages (``inbound`` does) nor send anything but
the configured text to a number that wrote to the account.
"""

from __future__ import annotations

import queue
import threading
from typing import Final

import redis
import structlog

from wasp import contract
from wasp.accounts import mask_account
from wasp_session import metrics
from wasp_session.delivery.pacing import ACQUIRE_LUA, SendPacer
from wasp_session.gate import SendGate
from wasp_session.transport.base import SendError, SendUncertainError, Transport

log = structlog.stdlib.get_logger("wasp_session.auto_reply")

QUEUE_CAPACITY: Final = 100  # replies waiting at most; beyond, a message gets none
_PHONE_SERVER: Final = "s.whatsapp.net"
_POLL_SECONDS: Final = 0.5
# KEYS: bucket. ARGV: sends a minute. Take the token if it is there now; else the wait, as text
# (a Lua number would come back truncated to an integer).
_TAKE_TOKEN: Final = ACQUIRE_LUA + "\nreturn string.format('%.6f', acquire(KEYS[1], ARGV[1]))\n"


class AutoReplier:
    """Replies ``text`` to each new sender of one tenant, at most once a period."""

    def __init__(  # noqa: PLR0913 - the reply's text and the send path's parts, each distinct
        self,
        client: redis.Redis,
        tenant: str,
        text: str,
        *,
        transport: Transport,
        gate: SendGate,
        rate_per_minute: float,
        capacity: int = QUEUE_CAPACITY,
    ) -> None:
        """Reply ``text`` through ``transport`` while ``gate`` is open, within the pacing."""
        self._client = client
        self._tenant = tenant
        self._text = text
        self._transport = transport
        self._gate = gate
        self._pacer = SendPacer(client, tenant, rate_per_minute)
        self._take_token = client.register_script(_TAKE_TOKEN)
        self._queue: queue.Queue[str] = queue.Queue(maxsize=capacity)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ the event thread
    def offer(self, phone_digits: str) -> str:
        """Claim and queue a reply to ``phone_digits``; one of ``contract.AUTO_REPLY_DECISIONS``."""
        if self._queue.full():  # only this thread puts: room now is room at the put
            return self._count("dropped")
        key = contract.auto_reply_key(self._tenant, phone_digits)
        if not self._client.set(key, "1", nx=True, ex=contract.AUTO_REPLY_PERIOD_SECONDS):
            return self._count("already_sent")
        self._queue.put_nowait(phone_digits)
        return "queued"

    @staticmethod
    def _count(result: str) -> str:
        metrics.AUTO_REPLIES.labels(result=result).inc()
        return result

    # ------------------------------------------------------------ the reply thread
    def start(self) -> None:
        """Send queued replies on a daemon thread until ``stop``."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="auto-reply", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending; a reply in flight finishes (bounded by the transport's send)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                phone_digits = self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                result = self._reply(phone_digits)
            except redis.RedisError as error:
                result = "failed"
                log.warning("auto_reply_redis_error", error=str(error))
            self._count(result)

    def _reply(self, phone_digits: str) -> str:
        """Send one reply if the gate and the pacing allow it now; the result."""
        to = mask_account(phone_digits)
        if not self._gate.is_open or self._gate.banned:
            return self._not_sent(phone_digits, "not_connected")
        if self._pacer.limited:
            wait = float(str(self._take_token(keys=[self._pacer.key], args=[self._pacer.rate])))
            if wait > 0:
                return self._not_sent(phone_digits, "rate_limited")
        try:
            self._gate.check_lease()
            sent = self._transport.send_text(f"{phone_digits}@{_PHONE_SERVER}", self._text)
        except SendUncertainError as error:  # it may have gone: the claim stays
            log.warning("auto_reply_uncertain", to=to, error=str(error))
            return "uncertain"
        except SendError as error:
            return self._not_sent(phone_digits, "failed", str(error))
        finally:
            self._pacer.settle()
        log.info("auto_reply_sent", to=to, whatsapp_id=sent.whatsapp_id)
        return "sent"

    def _not_sent(self, phone_digits: str, result: str, error: str = "") -> str:
        """Give the claim back: the sender's next message may get the reply."""
        self._client.delete(contract.auto_reply_key(self._tenant, phone_digits))
        log.info("auto_reply_not_sent", to=mask_account(phone_digits), result=result, error=error)
        return result
