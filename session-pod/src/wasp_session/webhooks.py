"""The webhook sender: every entry of the tenant's event stream, POSTed to the tenant's URL.

Owns one thread of the session pod (``WebhookSender.run``) and its own
Redis connection: it reads ``wasp:<tenant>:stream`` as the consumer group
``contract.WEBHOOK_GROUP``, POSTs each entry (``payload``) signed with
``wasp.webhook_signature`` to the URL the resource's ``spec.webhook`` names
(``webhook_target`` checks where that may go), and acknowledges it after a
2xx. A failed POST is retried with exponential backoff and jitter (1 s
doubling, capped at ``WASP_WEBHOOK_BACKOFF_MAX_SECONDS``, default 60), the
same entry until it is delivered, so entries arrive in the stream's order
(at least once: an entry may arrive again after a crash; its id,
``X-Wasp-Event-Id``, tells). Only the lease holder sends: a standby pod
sends nothing, and the pod that takes the lease over inherits the pending
entries (one consumer name for every pod).

The group is created at ``$`` when the webhook is first configured: entries
from before are not sent (a new receiver is not flooded with a week of
history). A pod started without a webhook destroys the group and clears the
webhook's status fields, so configuring it again starts afresh.

Never touches OTP delivery: a dead, slow or hostile receiver only delays
this thread; it is not a liveness loop (``/healthz`` ignores it). How it
fares goes into the status hash (``contract.STATUS_WEBHOOK_*``: the
operator shows them as ``status.webhook``) and the metrics
(``wasp_session_webhook_deliveries_total{result}``). A misconfiguration (a
missing Secret key, an empty secret, a bad URL or network) is one status
sentence; the entries wait in the stream until it is fixed. Stream entries
are hostile (the tenant's API may write any): each is sent as strings, cut
to ``MAX_BODY_BYTES``, and no entry can stop the thread.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import redis
import structlog

from wasp import contract
from wasp.event_stream import EventStream, StreamEvent
from wasp.webhook_signature import sign
from wasp_session import metrics
from wasp_session.errors import ConfigError, LeaseLostError
from wasp_session.lease import Lease
from wasp_session.status import StatusBoard, utc_now
from wasp_session.webhook_target import (
    Network,
    Target,
    WebhookTargetError,
    parse_networks,
    parse_target,
    post,
)

log = structlog.stdlib.get_logger("wasp_session.webhooks")

DEFAULT_BACKOFF_MAX: Final = 60.0
BACKOFF_BASE: Final = 1.0
READ_BLOCK_MS: Final = 1000  # each read waits this long for a new entry (and for a stop)
BATCH: Final = 100
IDLE_SECONDS: Final = 1.0  # a round's pause while standing by or after a Redis error
MISCONFIGURED_RETRY_SECONDS: Final = 10.0  # a fixed Secret is mounted within about a minute
STATUS_REFRESH_SECONDS: Final = 60.0  # ``webhook_delivered_at`` is rewritten at most this often
MAX_BODY_BYTES: Final = 64 * 1024  # a bigger entry is sent without its fields ("truncated")
MAX_SECRET_BYTES: Final = 4096
USER_AGENT: Final = "wasp-webhook/1"
_WEBHOOK_FIELDS: Final = (
    contract.STATUS_WEBHOOK_STATE,
    contract.STATUS_WEBHOOK_LAST_ERROR,
    contract.STATUS_WEBHOOK_FAILING_SINCE,
    contract.STATUS_WEBHOOK_DELIVERED_AT,
)


@dataclass(frozen=True)
class WebhookSettings:
    """What the pod's environment says about the webhook (checked when sending, not here)."""

    url: str
    secret_file: Path | None
    secret_ref: str  # "name/key" of the Secret, for messages only
    allowed_networks: str  # comma-separated CIDRs
    backoff_max: float = DEFAULT_BACKOFF_MAX


def webhook_settings_from(env: Mapping[str, str]) -> WebhookSettings | None:
    """The webhook settings, or ``None`` when no URL is set. Only the backoff can be invalid.

    A bad URL, network or secret is the tenant's (or the platform's) to fix
    while OTPs keep flowing: the sender reports it in the status instead.
    """
    url = env.get(contract.ENV_WEBHOOK_URL, "").strip()
    if not url:
        return None
    name = contract.ENV_WEBHOOK_BACKOFF_MAX_SECONDS
    raw = env.get(name, "").strip()
    backoff = DEFAULT_BACKOFF_MAX
    if raw:
        try:
            backoff = float(raw)
        except ValueError:
            backoff = -1.0
        if not 0 < backoff < float("inf"):
            raise ConfigError(name, f"must be a positive number of seconds, got {raw[:64]!r}")
    secret_file = env.get(contract.ENV_WEBHOOK_SECRET_FILE, "").strip()
    return WebhookSettings(
        url=url,
        secret_file=Path(secret_file) if secret_file else None,
        secret_ref=env.get(contract.ENV_WEBHOOK_SECRET_REF, "").strip(),
        allowed_networks=env.get(contract.ENV_WEBHOOK_ALLOWED_NETWORKS, ""),
        backoff_max=backoff,
    )


def payload(tenant: str, event: StreamEvent) -> bytes:
    """The JSON body of one entry: id, tenant, kind, at, and its other fields as strings."""
    fields = {
        key: value
        for key, value in event.fields.items()
        if key not in {contract.EVENT_KIND, contract.EVENT_AT}
    }
    document: dict[str, object] = {
        "id": event.id,
        "tenant": tenant,
        "kind": event.kind,
        "at": event.fields.get(contract.EVENT_AT, ""),
        "fields": fields,
    }
    body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    if len(body) > MAX_BODY_BYTES:
        document["fields"] = {}
        document["truncated"] = True
        document["kind"] = event.kind[:64]
        document["at"] = str(document["at"])[:64]
        body = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
    return body


def backoff_delay(attempt: int, cap: float, rand: Callable[[], float] = random.random) -> float:
    """Seconds before retry ``attempt`` (0-based): 1 s doubling, capped, with jitter (50-100 %)."""
    ceiling = min(cap, BACKOFF_BASE * 2.0 ** min(attempt, 32))
    return ceiling * (0.5 + rand() / 2)


class Misconfigured(Exception):  # noqa: N818 - a state, as the status names it
    """The webhook cannot be sent as configured; the message says what to fix."""


class WebhookSender:
    """Sends the tenant's stream to its webhook while this pod holds the lease."""

    def __init__(  # noqa: PLR0913 - the sender's collaborators, each distinct
        self,
        settings: WebhookSettings | None,
        *,
        tenant: str,
        redis_url: str,
        lease: Lease,
        status: StatusBoard,
        stop: threading.Event,
    ) -> None:
        """Send per ``settings`` (``None``: only clear what a former webhook left)."""
        self._settings = settings
        self._tenant = tenant
        self._lease = lease
        self._status = status
        self._stop = stop
        self._state: str | None = None
        self._error = ""
        self._written_at = 0.0
        self._target: Target | None = None
        self._networks: tuple[Network, ...] = ()
        self._group_ready = False
        self._client = redis.Redis.from_url(  # its own: a blocking read waits on no one else
            redis_url, decode_responses=True, socket_timeout=READ_BLOCK_MS / 1000 + 10
        )

    def run(self) -> None:
        """Serve until ``stop``; survives any entry, any receiver and any Redis error."""
        client = self._client
        stream = EventStream(client, self._tenant)
        problem_logged = False
        try:
            while not self._stop.is_set():
                if not self._lease.surely_held():
                    self._stop.wait(IDLE_SECONDS)
                    continue
                try:
                    if self._settings is None:
                        self._clear(client, stream)
                        return
                    self._round(stream)
                    problem_logged = False
                except Exception as error:  # noqa: BLE001 - the thread must outlive anything
                    if not problem_logged:
                        log.warning("webhook_round_failed", error=str(error)[:300])
                        problem_logged = True
                    self._stop.wait(IDLE_SECONDS)
        finally:
            client.close()

    def _clear(self, client: redis.Redis, stream: EventStream) -> None:
        """No webhook: forget a former one's position and status."""
        with contextlib.suppress(redis.exceptions.ResponseError):  # no stream: no group
            client.xgroup_destroy(stream.key, contract.WEBHOOK_GROUP)
        if client.hexists(contract.status_key(self._tenant), contract.STATUS_WEBHOOK_STATE):
            self._status.update(remove=_WEBHOOK_FIELDS)

    def _round(self, stream: EventStream) -> None:
        try:
            self._prepare(stream)
        except Misconfigured as problem:
            self._report("Misconfigured", str(problem), "misconfigured")
            self._stop.wait(MISCONFIGURED_RETRY_SECONDS)
            return
        try:
            events = stream.read(
                contract.WEBHOOK_GROUP,
                contract.WEBHOOK_CONSUMER,
                count=BATCH,
                block_ms=READ_BLOCK_MS,
            )
        except redis.exceptions.ResponseError as error:
            if "NOGROUP" in str(error):  # the stream expired, or the tenant's API dropped it
                self._group_ready = False
            raise
        for event in events:
            if not self._deliver(stream, event):
                return

    def _prepare(self, stream: EventStream) -> None:
        """Parse the URL and networks once, make the group once, check the secret.

        Raises ``Misconfigured`` saying what to fix.
        """
        assert self._settings is not None  # noqa: S101 - run() checked
        if self._target is None:
            try:
                self._networks = parse_networks(self._settings.allowed_networks)
            except ValueError as error:
                msg = f"{contract.ENV_WEBHOOK_ALLOWED_NETWORKS}: {error}"
                raise Misconfigured(msg) from None
            try:
                self._target = parse_target(self._settings.url)
            except ValueError as error:
                raise Misconfigured(str(error)) from None
        if not self._group_ready:  # first: entries wait in it while the secret is missing
            stream.ensure_group(contract.WEBHOOK_GROUP, start="$")
            # A stream the group made (MKSTREAM) has no expiry yet: give it the stream's.
            self._client.expire(stream.key, contract.EVENT_STREAM_RETENTION_SECONDS, nx=True)
            self._group_ready = True
        self._secret()  # a missing or empty one is said at once, not at the first entry
        if self._state in {None, "Misconfigured"}:  # ready (a failing receiver stays Failing)
            self._report("Delivering", "", None)

    def _secret(self) -> bytes:
        """The HMAC key, read afresh (a rotated Secret is used at once); ``Misconfigured``."""
        assert self._settings is not None  # noqa: S101 - run() checked
        ref = self._settings.secret_ref or "spec.webhook.secretRef"
        path = self._settings.secret_file
        if path is None:
            msg = f"{contract.ENV_WEBHOOK_SECRET_FILE} is not set: no key to sign webhooks with"
            raise Misconfigured(msg)
        try:
            with path.open("rb") as file:
                secret = file.read(MAX_SECRET_BYTES + 1).strip()
        except OSError:
            msg = (
                f"the webhook Secret {ref} is missing or lacks that key: create it in the "
                "resource's namespace (webhooks are held until then)"
            )
            raise Misconfigured(msg) from None
        if not secret or len(secret) > MAX_SECRET_BYTES:
            msg = f"the webhook Secret {ref} is empty or longer than {MAX_SECRET_BYTES} bytes"
            raise Misconfigured(msg)
        return secret

    def _deliver(self, stream: EventStream, event: StreamEvent) -> bool:
        """POST one entry until a 2xx (then ack); False when stopped or the lease is gone."""
        assert self._target is not None  # noqa: S101 - _prepare() set it
        body = payload(self._tenant, event)
        attempt = 0
        while not self._stop.is_set() and self._lease.surely_held():
            try:
                secret = self._secret()
            except Misconfigured as problem:
                self._report("Misconfigured", str(problem), "misconfigured")
                self._stop.wait(MISCONFIGURED_RETRY_SECONDS)
                continue
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                contract.WEBHOOK_SIGNATURE_HEADER: sign(secret, timestamp, body),
                contract.WEBHOOK_TIMESTAMP_HEADER: str(timestamp),
                contract.WEBHOOK_EVENT_ID_HEADER: event.id,
            }
            try:
                post(self._target, self._networks, body, headers)
            except WebhookTargetError as failure:
                delay = backoff_delay(attempt, self._settings_backoff())
                self._report("Failing", str(failure), f"{failure.kind}_error")
                log.warning(
                    "webhook_failed",
                    event_id=event.id,
                    attempt=attempt + 1,
                    retry_in=round(delay, 1),
                    error=str(failure),
                )
                attempt += 1
                self._stop.wait(delay)
                continue
            stream.ack(contract.WEBHOOK_GROUP, event.id)
            self._report("Delivering", "", "delivered")
            return True
        return False

    def _settings_backoff(self) -> float:
        return self._settings.backoff_max if self._settings is not None else DEFAULT_BACKOFF_MAX

    def _report(self, state: str, error: str, result: str | None) -> None:
        """Count the result; write the status on a change (and ``delivered_at`` now and then)."""
        if result is not None:
            metrics.WEBHOOK_DELIVERIES.labels(result=result).inc()
        metrics.WEBHOOK_FAILING.set(0 if state == "Delivering" else 1)
        now = time.monotonic()
        if state == "Delivering":
            if self._state == state and now - self._written_at < STATUS_REFRESH_SECONDS:
                return
            if self._state not in {None, "Delivering"}:
                log.info("webhook_recovered", failed_since_error=self._error)
            fields = {contract.STATUS_WEBHOOK_STATE: state}
            if result == "delivered":
                fields[contract.STATUS_WEBHOOK_DELIVERED_AT] = utc_now()
            remove: tuple[str, ...] = (
                contract.STATUS_WEBHOOK_LAST_ERROR,
                contract.STATUS_WEBHOOK_FAILING_SINCE,
            )
        else:
            if self._state == state and self._error == error:
                return
            if state == "Misconfigured":
                log.error("webhook_misconfigured", error=error)
            fields = {
                contract.STATUS_WEBHOOK_STATE: state,
                contract.STATUS_WEBHOOK_LAST_ERROR: error,
            }
            if self._state in {None, "Delivering"}:
                fields[contract.STATUS_WEBHOOK_FAILING_SINCE] = utc_now()
            remove = ()
        try:
            self._status.update(fields, remove)
        except (LeaseLostError, redis.RedisError):
            return  # the next change writes it; the lease's loss stops the sending anyway
        self._state, self._error, self._written_at = state, error, now
