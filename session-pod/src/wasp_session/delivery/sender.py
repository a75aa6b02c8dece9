"""One OTP job, start to end: the worker's side of "An OTP's life" (DESIGN.md).

Owns the decisions for a single job, in order: arguments well-formed
(``invalid_job``), the message not already handled, TTL not passed
(``expired``, counted from the job's creation so retries never extend it),
number valid (``invalid_number``), code and template allowed
(``invalid_job``), the gate open (waiting while the session is not
Connected, TTL running), not banned, the number on WhatsApp
(``not_on_whatsapp``, cached), the send paced, the sent marker claimed, then
the send (a 463 reach-out timelock fails that one message ``timelocked``: it
refuses new contacts only, so the others are still tried); transient
failures are retried by RQ with exponential backoff up to the configured
attempts (``send_error`` after the last), permanent ones fail
at once; a send that may have reached WhatsApp (a timeout after the request
left, a process killed during the send and its one resend) fails
``uncertain`` and is never sent again. Every outcome is written through
``wasp.messages``; nothing here raises for a bad job, so the worker goes on
with the next one.

Must not dequeue jobs or talk to RQ beyond reading the job and returning
``Retry``; the worker (``worker.py``) owns that.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import redis
import redis.client
import redis.exceptions
import structlog
from rq.job import Job, Retry

from wasp import contract
from wasp.errors import InvalidCodeError, InvalidNumberError, InvalidTemplateError
from wasp.messages import FailureReason, MessageStore, Start, decode_reply, decode_start
from wasp.phones import e164_digits, normalize_phone
from wasp.redaction import mask_numbers
from wasp.templates import render_message
from wasp.timestamps import as_utc, format_timestamp
from wasp_session.delivery import metrics
from wasp_session.delivery.arguments import (
    InvalidJobError,
    OtpRequest,
    parse_arguments,
    valid_ttl_seconds,
)
from wasp_session.delivery.context import DeliveryContext
from wasp_session.delivery.markers import Claim, ClaimResult, SentMarkers
from wasp_session.delivery.pacing import SendPacer
from wasp_session.delivery.receipts import apply_early_receipt
from wasp_session.transport.base import (
    NotConnectedError,
    SendError,
    SendUncertainError,
    TimelockedError,
)

ON_WHATSAPP_TTL_SECONDS: Final = 24 * 3600
NOT_ON_WHATSAPP_TTL_SECONDS: Final = 3600
_GATE_POLL_SECONDS: Final = 0.5
# How often the sender reads Redis's clock again (in between: its own monotonic clock).
_CLOCK_READ_SECONDS: Final = 10.0

log = structlog.get_logger("wasp_session.delivery")


class DeliveryStoppedError(Exception):
    """The session is shutting down while a job waited; the job is run again after restart."""


class _Failed(Exception):  # noqa: N818 - internal control flow, never escapes ``handle``
    def __init__(self, reason: FailureReason, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


class _Transient(Exception):  # noqa: N818 - internal control flow
    pass


# Markers of a send that may have gone: the message fails ``uncertain`` with this error.
_NOT_AGAIN: Final = {
    Claim.UNCERTAIN: "an earlier attempt may have sent it; not sending again",
    Claim.CRASHED: (
        "the session process died while sending it, and again while resending it;"
        " it may have gone out; not sending again"
    ),
}


def _send_failure(error: SendError) -> Exception:
    """What a send that did not go (or may have gone) means for the job."""
    if isinstance(error, NotConnectedError):
        return error
    if isinstance(error, SendUncertainError):
        msg = f"it may have reached WhatsApp ({error}); not sending it again"
        return _Failed(reason="uncertain", error=msg)
    if isinstance(error, TimelockedError):
        return _Failed(reason="timelocked", error=str(error))
    if error.transient:
        return _Transient(str(error))
    return _Failed(reason="send_error", error=str(error))


class _Begun(NamedTuple):
    """A job whose message is pending: its TTL's end, and how far ``_begin`` got."""

    expires_at: datetime
    sending: bool  # moved to sending already
    cached: object  # the on-WhatsApp cache's answer, read with the move
    prepared: tuple[str, str] | None  # the number and text, if made already


class RedisClock:
    """The present on Redis's clock (``TIME``), never on this pod's wall clock.

    A TTL counts from the job's creation on its enqueuer's clock; the pod's own
    clock may be minutes off (docs/delivery.md, "Clocks"). Redis is the one
    clock every pod and enqueuer of a tenant shares, as the send pacing does.
    Read every ``_CLOCK_READ_SECONDS`` and carried forward in between on the
    monotonic clock (which no wall-clock step moves); while Redis cannot be
    read, the last reading is carried forward.
    """

    def __init__(self, client: redis.Redis) -> None:
        """Read ``client``'s server clock."""
        self._client = client
        self._read: tuple[float, datetime] | None = None

    def now(self) -> datetime:
        """Redis's time now, aware UTC."""
        moment = time.monotonic()
        if self._read is None or moment - self._read[0] >= _CLOCK_READ_SECONDS:
            try:
                seconds, micros = self._client.time()
                self._read = (moment, datetime.fromtimestamp(seconds + micros / 1e6, UTC))
            except redis.RedisError:
                if self._read is None:
                    raise
        at, then = self._read
        return then + timedelta(seconds=time.monotonic() - at)


class OtpSender:
    """Runs OTP jobs for one tenant with its transport, gate, settings and Redis."""

    def __init__(
        self, context: DeliveryContext, client: redis.Redis, stop: threading.Event, owner: str
    ) -> None:
        """Serve ``context.tenant``; ``owner`` names this process run in sent markers."""
        self._context = context
        self._settings = context.settings
        self._tenant = context.tenant
        self._client = client
        self._stop = stop
        self._store = MessageStore(client, context.tenant)
        self._pacer = SendPacer(client, context.tenant, context.settings.rate_per_minute)
        self._markers = SentMarkers(client, context.tenant, owner, self._pacer)
        self._clock = RedisClock(client)
        self._log = log.bind(tenant=context.tenant)
        self._store.ensure_loaded()
        self._pacer.ensure_loaded(client)

    # ------------------------------------------------------------ the job
    def handle(self, job: Job, args: tuple[object, ...], kwargs: dict[str, object]) -> Retry | None:
        """Run one OTP job; return ``Retry`` for RQ to run it again after a backoff."""
        message_id = contract.message_id_of_job(self._tenant, job.id) or job.id
        job_log = self._log.bind(message_id=message_id)
        created_at = as_utc(job.created_at)
        try:
            request = parse_arguments(args, kwargs, job.id, self._tenant)
        except InvalidJobError as error:
            ttl = valid_ttl_seconds(kwargs.get("ttl_seconds"))  # a huge one overflows a date
            ttl_seconds = ttl or self._settings.ttl_seconds
            self._store.create(
                message_id,
                phone=None,
                created_at=created_at,
                expires_at=created_at + timedelta(seconds=ttl_seconds),
            )
            self._fail(job_log, message_id, "invalid_job", str(error))
            return None
        attempt = (job.number_of_retries or 0) + 1
        try:
            return self._run(job_log, request, created_at, attempt)
        except _Failed as failure:
            self._fail(job_log, message_id, failure.reason, failure.error)
            return None

    def _run(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        request: OtpRequest,
        created_at: datetime,
        attempt: int,
    ) -> Retry | None:
        message_id = request.message_id
        begun = self._begin(job_log, request, created_at, attempt)
        if begun is None:
            return None
        expires_at, sending, cached = begun.expires_at, begun.sending, begun.cached
        e164, text = begun.prepared or self._prepare(request)

        while True:  # once per "not connected" seen at send time; bounded by the TTL
            if not sending:
                self._wait_for_gate(expires_at)
                if self._context.gate.banned:
                    raise _Failed(
                        reason="banned", error="the account is temporarily banned by WhatsApp"
                    )
                cached = self._mark_sending(message_id, self._sending_fields(attempt, e164), e164)
            sending = False  # a "not connected" below marks it sending again
            try:
                address = self._on_whatsapp(e164, cached)
                if address is None:
                    raise _Failed(reason="not_on_whatsapp", error=f"{e164} has no WhatsApp account")
                claim = self._claim(message_id, expires_at)
                self._send(job_log, message_id, claim, address, text, created_at)
            except NotConnectedError:
                job_log.info("otp_waiting_for_connection")
                time.sleep(_GATE_POLL_SECONDS)
                continue
            except _Transient as error:
                return self._retry_or_fail(job_log, message_id, attempt, expires_at, str(error))
            return None

    # ------------------------------------------------------------ steps
    def _begin(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        request: OtpRequest,
        created_at: datetime,
        attempt: int,
    ) -> _Begun | None:
        """Create the message, and move it to ``sending`` at once if nothing stands in the way.

        None when it was handled already; ``_Failed`` (``expired``) when its TTL,
        counted from its first creation, has ended.
        """
        ttl = timedelta(seconds=request.ttl_seconds)
        expires_at = created_at + ttl
        cached: object = None
        prepared = self._ready(request, expires_at)
        if prepared is None:  # something stands in the way: create it, then see what
            status = self._store.create_and_read(
                request.message_id, phone=None, created_at=created_at, expires_at=expires_at
            )
            start = Start(sending=False, state=status.state, created_at=status.created_at)
        else:  # the usual case: created and moved to sending in one round trip
            start, cached = self._start(request.message_id, ttl, created_at, attempt, prepared[0])
        if start.state not in ("queued", "sending"):
            job_log.info("otp_already_handled", state=start.state)
            return None
        if start.created_at is not None:
            # Enqueued twice: the TTL counts from the first time.
            expires_at = min(expires_at, start.created_at + ttl)
        if not start.sending:
            self._check_expiry(expires_at)
        return _Begun(expires_at, start.sending, cached, prepared)

    def _prepare(self, request: OtpRequest) -> tuple[str, str]:
        """The E.164 number and the message text, or the reason they cannot be."""
        try:
            e164 = normalize_phone(request.phone, self._settings.default_region)
        except InvalidNumberError as error:
            raise _Failed(reason="invalid_number", error=str(error)) from None
        try:
            template = request.template or self._settings.message_template
            text = render_message(template, request.code, request.ttl_seconds)
        except (InvalidCodeError, InvalidTemplateError) as error:
            raise _Failed(reason="invalid_job", error=str(error)) from None
        return e164, text

    def _ready(self, request: OtpRequest, expires_at: datetime) -> tuple[str, str] | None:
        """The number and text if the job may go straight to ``sending``, else None.

        That is: valid arguments, the job's TTL running, the gate open and no
        ban. Anything else takes the long way (create, then decide), which
        fails or waits exactly as before.
        """
        gate = self._context.gate
        if not gate.is_open or gate.banned or self._clock.now() >= expires_at:
            return None
        try:
            return self._prepare(request)
        except _Failed:
            return None

    def _start(
        self,
        message_id: str,
        ttl: timedelta,
        created_at: datetime,
        attempt: int,
        e164: str,
    ) -> tuple[Start, object]:
        """Create the message and move it to ``sending``; the cached on-WhatsApp answer too.

        One round trip. The move is left out when the message was handled
        already or its TTL, counted from its first creation, has ended.
        """
        earliest_live = self._clock.now() - ttl
        key = contract.on_whatsapp_cache_key(self._tenant, e164)

        def fill(pipe: redis.client.Pipeline) -> None:
            self._store.start_in(
                pipe,
                message_id,
                created_at=created_at,
                expires_at=created_at + ttl,
                earliest_live=earliest_live,
                fields=self._sending_fields(attempt, e164),
            )
            pipe.get(key)

        replies = self._pipeline(fill)
        return decode_start(replies[0]), replies[1]

    @staticmethod
    def _sending_fields(attempt: int, e164: str) -> dict[str, str]:
        return {contract.MESSAGE_ATTEMPTS: str(attempt), contract.MESSAGE_PHONE: e164}

    def _check_expiry(self, expires_at: datetime, ahead: float = 0.0) -> None:
        """Fail ``expired`` if the TTL has ended (or ends within ``ahead`` seconds)."""
        if self._clock.now() + timedelta(seconds=ahead) >= expires_at:
            msg = f"not sent: its time to live ended at {format_timestamp(expires_at)}"
            raise _Failed(reason="expired", error=msg)

    def _wait_for_gate(self, expires_at: datetime) -> None:
        """Block while the session is not Connected; fail expired when the TTL runs out."""
        while not self._context.gate.wait_open(_GATE_POLL_SECONDS):
            if self._stop.is_set():
                msg = "the session is stopping"
                raise DeliveryStoppedError(msg)
            self._check_expiry(expires_at)

    def _pipeline(self, fill: Callable[[redis.client.Pipeline], None]) -> list[Any]:
        """Run the commands ``fill`` queues in one round trip (scripts by their hash)."""
        for _ in range(2):
            pipe = self._client.pipeline(transaction=False)
            fill(pipe)
            try:
                return pipe.execute()
            except redis.exceptions.NoScriptError:
                self._store.ensure_loaded()  # Redis restarted or flushed its scripts
                self._pacer.ensure_loaded(self._client)
        msg = "Redis keeps forgetting the delivery's scripts"
        raise RuntimeError(msg)

    def _mark_sending(self, message_id: str, fields: dict[str, str], e164: str) -> object:
        """Move the message to ``sending``; return the cached on-WhatsApp answer, if any."""
        key = contract.on_whatsapp_cache_key(self._tenant, e164)

        def fill(pipe: redis.client.Pipeline) -> None:
            self._store.transition_in(pipe, message_id, "sending", fields)
            pipe.get(key)

        return self._pipeline(fill)[1]

    def _on_whatsapp(self, e164: str, cached: object) -> str | None:
        """The address WhatsApp gave for the number (send to it), or None if it has no account.

        Cached as that address ("0": no account; "1", from before, or a bare yes: the digits).
        """
        key = contract.on_whatsapp_cache_key(self._tenant, e164)
        digits = e164_digits(e164)
        if cached is not None:
            text = cached.decode() if isinstance(cached, bytes) else str(cached)
            return None if text == "0" else (digits if text == "1" else text)
        try:
            answer: object = self._context.transport.check_number(digits)
        except NotConnectedError:
            raise
        except SendError as error:
            if error.transient:
                raise _Transient(str(error)) from None
            raise _Failed(
                reason="send_error", error=f"checking the number failed: {error}"
            ) from None
        address = answer if isinstance(answer, str) else (digits if answer else None)
        ttl = ON_WHATSAPP_TTL_SECONDS if address else NOT_ON_WHATSAPP_TTL_SECONDS
        self._client.set(key, address or "0", ex=ttl)
        return address or None

    def _claim(self, message_id: str, expires_at: datetime) -> ClaimResult:
        """The pacing token and the sent marker, once the token is there and the TTL runs."""
        while True:
            self._check_expiry(expires_at)
            claim = self._markers.claim(message_id)
            if claim.claim is not Claim.WAIT:
                return claim
            wait = float(claim.detail)
            self._check_expiry(expires_at, ahead=wait)  # the next token comes too late
            if self._stop.wait(min(wait, 1.0)):
                msg = "the session is stopping"
                raise DeliveryStoppedError(msg)

    def _send(  # noqa: PLR0913, PLR0917 - the job's parts, each used here
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        message_id: str,
        claim: ClaimResult,
        address: str,
        text: str,
        created_at: datetime,
    ) -> None:
        if claim.claim is Claim.SENT:
            job_log.info("otp_send_already_recorded", whatsapp_id=claim.detail)
            self._record_sent(job_log, message_id, claim.detail, created_at)
            return
        if claim.claim in _NOT_AGAIN:
            raise _Failed(reason="uncertain", error=_NOT_AGAIN[claim.claim])
        if claim.claim is Claim.TAKEOVER:
            metrics.POSSIBLE_DUPLICATES.labels(tenant=self._tenant).inc()
            job_log.warning("otp_resend_after_crash", previous_owner=claim.detail)
        try:
            self._context.gate.check_lease()  # past the lease's deadline: NotConnectedError
            sent = self._context.transport.send_text(address, text)  # as check_number gave it
        except SendError as error:  # NotConnectedError included: it did not go
            self._pacer.settle()
            if not isinstance(error, SendUncertainError):  # it may have gone: keep the marker
                self._markers.release(message_id)
            raise _send_failure(error) from None
        except BaseException:
            self._pacer.settle()
            raise
        whatsapp_id = sent.whatsapp_id
        early_key = contract.early_receipt_key(self._tenant, whatsapp_id)

        def fill(pipe: redis.client.Pipeline) -> None:
            self._markers.record_in(pipe, message_id, whatsapp_id)
            self._store.transition_in(
                pipe, message_id, "sent", {contract.MESSAGE_WHATSAPP_ID: whatsapp_id}
            )
            pipe.get(early_key)
            self._pacer.settle_in(pipe)

        replies = self._pipeline(fill)
        moved, _fields = decode_reply(replies[2])
        if replies[3] is not None:  # a receipt came first: apply it now
            apply_early_receipt(self._client, self._store, self._tenant, message_id, whatsapp_id)
        if moved:
            self._count_sent(job_log, whatsapp_id, created_at)

    def _record_sent(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        message_id: str,
        whatsapp_id: str,
        created_at: datetime,
    ) -> None:
        """Record a send found in the marker (an earlier attempt sent it)."""
        moved = self._store.transition(
            message_id, "sent", {contract.MESSAGE_WHATSAPP_ID: whatsapp_id}
        )
        apply_early_receipt(self._client, self._store, self._tenant, message_id, whatsapp_id)
        if moved:
            self._count_sent(job_log, whatsapp_id, created_at)

    def _count_sent(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        whatsapp_id: str,
        created_at: datetime,
    ) -> None:
        latency = max(0.0, (self._clock.now() - created_at).total_seconds())
        metrics.SEND_LATENCY.labels(tenant=self._tenant).observe(latency)
        metrics.count_state(self._tenant, "sent")
        job_log.info("otp_sent", whatsapp_id=whatsapp_id, latency_seconds=round(latency, 3))

    def _retry_or_fail(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        message_id: str,
        attempt: int,
        expires_at: datetime,
        error: str,
    ) -> Retry | None:
        attempts = max(1, self._settings.retry_attempts)
        if attempt >= attempts:
            msg = f"{error} (after {attempt} attempts)"
            self._fail(job_log, message_id, "send_error", msg)
            return None
        backoff = self._settings.retry_backoff_seconds
        intervals = [max(1, math.ceil(backoff * 2**i)) for i in range(attempts - 1)]
        delay = intervals[attempt - 1]
        if self._clock.now() + timedelta(seconds=delay) >= expires_at:
            msg = f"not sent: {error}; its time to live ends before the next attempt"
            self._fail(job_log, message_id, "expired", msg)
            return None
        job_log.info(
            "otp_retry_scheduled", attempt=attempt, delay_seconds=delay, error=mask_numbers(error)
        )
        return Retry(max=attempts - 1, interval=intervals)

    def _fail(
        self,
        job_log: structlog.typing.FilteringBoundLogger,
        message_id: str,
        reason: FailureReason,
        error: str,
    ) -> None:
        if self._store.fail(message_id, reason, error):
            metrics.count_state(self._tenant, "failed", reason)
            job_log.warning("otp_failed", reason=reason, error=mask_numbers(error))
        else:
            job_log.info("otp_fail_ignored", reason=reason, error=mask_numbers(error))
