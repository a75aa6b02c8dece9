"""The client library: what a tenant's API uses to send OTPs and follow sessions.

Owns the caller's side of "An OTP's life" (DESIGN.md): normalise and check
the number, code and template at once, write the message as ``queued`` and
enqueue the job on the tenant's RQ queue as JSON (``wasp.queueing``), with
job id ``<tenant>_<message id>`` (``contract.job_id``), so enqueueing the
same id twice sends once, and with RQ lifetimes that follow the OTP's TTL.
Also reads message and session status, waits for a state, streams QR codes
and live events from pub/sub, and consumes the tenant's durable event stream
with a consumer group (``consume_events``, ``wasp.event_stream``). Logs mask
phone numbers; errors quote at most ``contract.MAX_ECHOED_INPUT_CHARS``
characters of what they were given.

It must never import the session pod or the operator, and never moves a
message beyond ``queued``: only the session's worker does that.
"""

from __future__ import annotations

import dataclasses
import re
import time
import uuid
from collections.abc import Generator, Iterator
from datetime import timedelta
from typing import Any, Final, Self

import redis
import structlog
from rq.exceptions import DuplicateJobError
from rq.job import Job

from wasp import contract, queueing
from wasp.binary_client import binary_twin
from wasp.errors import (
    EventsLostError,
    InvalidMessageIdError,
    MessageNotFoundError,
    SessionNotFoundError,
    WaitTimeoutError,
)
from wasp.event_stream import EventStream, StreamEvent
from wasp.messages import MessageState, MessageStatus, MessageStore, decode_change, is_past
from wasp.phones import normalize_phone
from wasp.redaction import echo, mask_phone
from wasp.sessions import (
    PAIRING_PHASES,
    SessionStatus,
    decode_event,
    follow_channels,
    parse_session,
    read_hash,
)
from wasp.templates import validate_code, validate_template
from wasp.timestamps import format_timestamp, utc_now

__all__ = ["DEFAULT_TTL_SECONDS", "WaspClient"]

DEFAULT_TTL_SECONDS: Final = 300
_EVENT_WAIT_MS: Final = 1000  # longest single blocking read of the event stream
_MESSAGE_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")

log = structlog.get_logger("wasp.client")


def _expired_if_unsendable(status: MessageStatus) -> MessageStatus:
    """``status``, or ``failed``/``expired`` for a ``queued`` one whose job is gone by now.

    Its job lived the OTP's TTL plus ``queueing.JOB_LIFETIME_MARGIN_SECONDS``
    (RQ's ``ttl``); past that nothing can send it. The session's worker
    records the same when it meets the dead job id; this says it without one.
    """
    if status.state != "queued" or status.expires_at is None:
        return status
    margin = timedelta(seconds=queueing.JOB_LIFETIME_MARGIN_SECONDS)
    if utc_now() < status.expires_at + margin:
        return status
    return dataclasses.replace(
        status,
        state="failed",
        reason="expired",
        error=f"not sent: its time to live ended at {format_timestamp(status.expires_at)}",
    )


class WaspClient:
    """Send OTPs through one tenant's session and read what happened to them.

    Example::

        client = WaspClient.from_url("redis://localhost:6379/0", "acme")
        message_id = client.send_otp("+4915112345678", "493817")
        status = client.wait_for(message_id, "sent", timeout=60)
    """

    def __init__(
        self, connection: redis.Redis, tenant: str, *, default_region: str | None = None
    ) -> None:
        """Use ``connection`` for ``tenant``.

        ``default_region`` (e.g. ``"DE"``) applies to numbers written without
        a country code; if not given, the region the tenant's session reports
        (``spec.delivery.defaultRegion``) is used.
        """
        if not tenant:
            msg = "the tenant must not be empty"
            raise ValueError(msg)
        self.tenant = tenant
        self._redis = connection
        self._rq = binary_twin(connection)
        self._default_region = default_region
        self._messages = MessageStore(connection, tenant)
        self._events = EventStream(self._rq, tenant)
        self._log = log.bind(tenant=tenant)

    @classmethod
    def from_url(cls, url: str, tenant: str, *, default_region: str | None = None) -> WaspClient:
        """A client for ``tenant`` on the Redis at ``url`` (``redis://host:port/db``)."""
        return cls(redis.Redis.from_url(url), tenant, default_region=default_region)

    def close(self) -> None:
        """Close the connections this client opened itself."""
        if self._rq is not self._redis:
            self._rq.close()

    def __enter__(self) -> Self:
        """Use as a context manager."""
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Close on exit."""
        self.close()

    # ------------------------------------------------------------ sending
    def delivery_settings(self) -> dict[str, str]:
        """The tenant's delivery settings as its session reported them (may be empty)."""
        return read_hash(self._redis, contract.delivery_settings_key(self.tenant))

    def send_otp(
        self,
        phone: str,
        code: str,
        *,
        message_id: str | None = None,
        ttl_seconds: int | None = None,
        template: str | None = None,
    ) -> str:
        """Enqueue one OTP and return its message id.

        The number is normalised to E.164 with the tenant's default region and
        refused at once (``InvalidNumberError``) if invalid; so are bad codes
        (``InvalidCodeError``: 4 to 10 ASCII letters or digits) and templates
        (``InvalidTemplateError``: only ``{code}`` and ``{minutes}``). The code
        is never sent after ``ttl_seconds`` (default: the tenant's setting, or
        300) counted from now. Sending the same ``message_id`` again does not
        send a second message.
        """
        settings = self.delivery_settings()
        region = self._default_region or settings.get(contract.DELIVERY_DEFAULT_REGION)
        e164 = normalize_phone(phone, region)
        validate_code(code)
        if template is not None:
            validate_template(template)
        if ttl_seconds is None:
            ttl_seconds = int(settings.get(contract.DELIVERY_TTL_SECONDS) or DEFAULT_TTL_SECONDS)
        if isinstance(ttl_seconds, bool) or ttl_seconds <= 0:
            msg = f"ttl_seconds must be a positive whole number, not {echo(ttl_seconds)}"
            raise ValueError(msg)
        message_id = message_id or uuid.uuid4().hex
        if not _MESSAGE_ID.fullmatch(message_id):
            msg = (
                f"message id {echo(message_id)} may only have letters, digits, '-' and '_' (1-128)"
            )
            raise InvalidMessageIdError(msg)

        now = utc_now()
        self._messages.create(
            message_id, phone=e164, created_at=now, expires_at=now + timedelta(seconds=ttl_seconds)
        )
        current = self._messages.get(message_id)
        if current is not None and not current.is_pending:
            self._log.info("otp_already_handled", message_id=message_id, state=current.state)
            return message_id
        kwargs: dict[str, Any] = {
            "phone": e164,
            "code": code,
            "message_id": message_id,
            "ttl_seconds": ttl_seconds,
        }
        if template is not None:
            kwargs["template"] = template
        queue = queueing.otp_queue(self._rq, self.tenant)
        try:
            queue.enqueue_call(
                contract.OTP_JOB_FUNCTION,
                kwargs=kwargs,
                job_id=contract.job_id(self.tenant, message_id),
                unique=True,
                **queueing.job_lifetimes(ttl_seconds),
            )
        except DuplicateJobError:
            self._log.info("otp_already_enqueued", message_id=message_id)
        else:
            self._log.info("otp_enqueued", message_id=message_id, phone=mask_phone(e164))
        return message_id

    # ------------------------------------------------------------ message status
    def message_status(self, message_id: str) -> MessageStatus:
        """What is known about a message; ``MessageNotFoundError`` if nothing is.

        A job enqueued with plain RQ that no worker has taken yet reads as
        ``queued``. A ``queued`` message whose job outlived its RQ ``ttl``
        (the OTP's TTL + ``queueing.JOB_LIFETIME_MARGIN_SECONDS``) reads as
        ``failed``/``expired``: nothing can send it any more, even when no
        worker comes to record it (a suspended or deleted session).
        """
        status = self._messages.get(message_id)
        if status is not None:
            return _expired_if_unsendable(status)
        if _MESSAGE_ID.fullmatch(message_id) and Job.exists(
            contract.job_id(self.tenant, message_id), connection=self._rq
        ):
            return MessageStatus(message_id=message_id, state="queued")
        msg = f"no message {echo(message_id)} of tenant {self.tenant!r} (unknown, or expired)"
        raise MessageNotFoundError(msg)

    def wait_for(
        self, message_id: str, state: MessageState = "sent", *, timeout: float = 60.0
    ) -> MessageStatus:
        """Block until the message reaches ``state`` (or a later one), or fails.

        Returns the status then (check ``status.state``: it may be
        ``failed``); raises ``WaitTimeoutError`` after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        pubsub.subscribe(contract.receipts_channel(self.tenant))
        try:
            while True:
                try:
                    status = self.message_status(message_id)
                except MessageNotFoundError:
                    status = None
                if status is not None and (
                    status.state == "failed" or is_past(status.state, state)
                ):
                    return status
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = status.state if status else "unknown"
                    msg = (
                        f"message {echo(message_id)} did not reach {state!r} "
                        f"in {timeout:g} s (it is {seen})"
                    )
                    raise WaitTimeoutError(msg)
                change = pubsub.get_message(timeout=min(left, 1.0))
                if change is not None and change.get("type") == "message":
                    decode_change(change["data"])  # any change: read the hash again
        finally:
            pubsub.close()

    # ------------------------------------------------------------ sessions
    def session_status(self) -> SessionStatus:
        """The session's current phase and details; ``SessionNotFoundError`` if none reported."""
        fields = read_hash(self._redis, contract.status_key(self.tenant))
        if not fields:
            msg = f"no session status for tenant {self.tenant!r}: is its session pod running?"
            raise SessionNotFoundError(msg)
        return parse_session(self.tenant, fields)

    def qr_codes(self, *, timeout: float | None = None) -> Iterator[str]:
        """Yield each live QR string as the session issues it, starting with the current one.

        Ends when the session leaves pairing (e.g. it is Connected), or after
        ``timeout`` seconds without news (``None``: wait for ever).
        """
        channels = [contract.qr_channel(self.tenant), contract.events_channel(self.tenant)]
        feed = follow_channels(self._redis, channels, timeout)
        try:
            # Subscribed first (the generator starts on the first next()), then read the
            # current code, so none issued in between is missed.
            current = read_hash(self._redis, contract.status_key(self.tenant))
            last = current.get(contract.STATUS_QR)
            phase = current.get(contract.STATUS_PHASE, "Pending")
            if phase not in PAIRING_PHASES:
                return
            if last:
                yield last
            for channel, payload in feed:
                if channel == contract.qr_channel(self.tenant):
                    if payload != last:
                        last = payload
                        yield payload
                    continue
                phase = str(decode_event(payload).get(contract.STATUS_PHASE, phase))
                if phase not in PAIRING_PHASES:
                    return
        finally:
            feed.close()

    def events(self, *, timeout: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield each status change of the session (JSON objects of the status hash)."""
        feed = follow_channels(self._redis, [contract.events_channel(self.tenant)], timeout)
        try:
            for _channel, payload in feed:
                yield decode_event(payload)
        finally:
            feed.close()

    def feed(
        self, *, messages: bool = False, timeout: float | None = None
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Yield ``(channel, change)`` for each session status change.

        With ``messages``, also each message state change (the receipts channel).
        """
        channels = [contract.events_channel(self.tenant)]
        if messages:
            channels.append(contract.receipts_channel(self.tenant))
        feed = follow_channels(self._redis, channels, timeout)
        try:
            for channel, payload in feed:
                yield channel, decode_event(payload)
        finally:
            feed.close()

    # ------------------------------------------------------------ durable events
    def consume_events(  # noqa: PLR0913 - the consumer group's knobs, each named
        self,
        group: str,
        consumer: str,
        *,
        timeout: float | None = None,
        count: int = 100,
        auto_ack: bool = True,
        start: str = "0",
    ) -> Generator[StreamEvent, None, None]:
        """Yield the tenant's durable events as ``consumer`` of consumer group ``group``.

        Every message state change (kind ``message``), session phase change
        (``session``) and inbound message (``inbound``), from the tenant's
        event stream (docs/events.md). The group is made on first use: from
        every entry still in the stream (``start="0"``) or from now (``"$"``).
        A consumer gets its own unacknowledged entries again first (it stopped
        before acknowledging them), then new ones; each consumer of a group
        gets different entries. With ``auto_ack`` an entry is acknowledged
        when the caller asks for the next one, so the one being handled when
        the loop stops or crashes comes again: handle entries idempotently
        (``event.id``; a message's id and state). Without it, acknowledge with
        ``ack_events`` (an unacknowledged entry comes once per call). Ends
        after ``timeout`` seconds without an entry (``None``: never), or when
        closed (``.close()``).

        Raises ``EventsLostError`` once when the group missed entries (it was
        away so long that they were trimmed, or the stream expired after a
        week without entries): re-read what matters (``message_status``), then
        consume again; the entries read with that news come first.
        """
        self._events.ensure_group(group, start=start)
        deadline = None if timeout is None else time.monotonic() + timeout
        last = "0"  # the newest entry yielded: pending ones up to it are not read again
        while True:
            wait_ms = _EVENT_WAIT_MS
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return
                wait_ms = max(1, min(wait_ms, int(left * 1000)))
            batch = self._events.read_batch(
                group, consumer, count=count, block_ms=wait_ms, pending_after=last
            )
            if batch.lost is not None:
                lost = batch.lost
                msg = f"event stream of tenant {self.tenant!r}, group {group!r}: {lost.reason}"
                raise EventsLostError(msg, count=lost.count, after=lost.after)
            for event in batch.events:
                last = event.id
                yield event
                if auto_ack:
                    self._events.ack(group, event.id)
            if batch.events and timeout is not None:
                deadline = time.monotonic() + timeout

    def ack_events(self, group: str, *entry_ids: str) -> int:
        """Acknowledge entries of consumer group ``group`` (never delivered again); how many."""
        return self._events.ack(group, *entry_ids)

    def request_pairing(self) -> None:
        """Ask the session to start pairing again (after ``PairingExpired``)."""
        self._redis.rpush(contract.control_key(self.tenant), contract.CONTROL_PAIR)
        self._log.info("pairing_requested")

    def request_logout(self) -> None:
        """Ask the session to unlink its device from the account (it then pairs again)."""
        self._redis.rpush(contract.control_key(self.tenant), contract.CONTROL_LOGOUT)
        self._log.info("logout_requested")

    # ------------------------------------------------------------ recent messages
    def recent_messages(self, limit: int = 20) -> list[MessageStatus]:
        """The tenant's messages whose RQ jobs still live, newest first, at most ``limit``.

        Read from the tenant's queue and RQ's registries of it (a job lives
        its OTP's TTL + ``queueing.JOB_LIFETIME_MARGIN_SECONDS``), never with
        ``SCAN``: the tenant API's Redis user may not list keys.
        """
        if limit <= 0:
            return []
        queue = queueing.otp_queue(self._rq, self.tenant)
        pipe = self._redis.pipeline(transaction=False)
        pipe.lrange(queue.key, -limit, -1)
        for registry in (
            queue.started_job_registry,
            queue.finished_job_registry,
            queue.failed_job_registry,
            queue.canceled_job_registry,
        ):
            pipe.zrange(registry.key, -limit, -1)
        ids: set[str] = set()
        for entries in pipe.execute():
            for entry in entries:
                job = (entry.decode() if isinstance(entry, bytes) else str(entry)).split(":")[0]
                message_id = contract.message_id_of_job(self.tenant, job)
                if message_id is not None:
                    ids.add(message_id)
        found: list[MessageStatus] = []
        for message_id in sorted(ids):
            try:
                found.append(self.message_status(message_id))
            except MessageNotFoundError:
                continue  # its job ended since the listing
        found.sort(key=lambda status: status.created_at or utc_now(), reverse=True)
        return found[:limit]
