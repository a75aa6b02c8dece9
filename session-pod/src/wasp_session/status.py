"""The tenant's status hash and its events channel, written by this pod alone.

Owns ``wasp:<tenant>:status`` and ``wasp:<tenant>:events`` (and the QR
channel): every change is one MULTI (set fields, delete fields) followed by a
publication of the whole hash as JSON, so a reader needs only the latest
message. The heartbeat is refreshed without a publication (it is not a
change). Decides nothing: the lifecycle says what to write.
"""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime
from typing import Any, cast

import redis

from wasp import contract, timestamps
from wasp.timestamps import format_seconds

PAIRING_FIELDS = (
    contract.STATUS_QR,
    contract.STATUS_PAIRING_CODE,
    contract.STATUS_PAIRING_EXPIRES_AT,
)


def utc_now() -> str:
    """Now as RFC 3339 UTC, second precision (the status hash's times)."""
    return format_seconds(timestamps.utc_now())


def rfc3339(epoch_seconds: float) -> str:
    """An epoch time as RFC 3339 UTC, second precision."""
    return format_seconds(datetime.fromtimestamp(epoch_seconds, UTC))


class StatusBoard:
    """Writes the status hash and publishes every change."""

    def __init__(self, client: redis.Redis, tenant: str, pod_name: str) -> None:
        """Write for ``tenant`` as ``pod_name`` with a ``decode_responses`` client."""
        self._redis = client
        self._tenant = tenant
        self._pod = pod_name
        self._key = contract.status_key(tenant)
        self._lock = threading.Lock()

    def update(
        self, fields: dict[str, str] | None = None, remove: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Set ``fields``, delete ``remove``, publish the whole hash; return it."""
        values = dict(fields or {})
        values[contract.STATUS_POD] = self._pod
        if contract.STATUS_PHASE in values:
            values[contract.STATUS_UPDATED_AT] = utc_now()
        with self._lock:
            pipe = self._redis.pipeline(transaction=True)
            pipe.hset(self._key, mapping=cast("dict[Any, Any]", values))
            if remove:
                pipe.hdel(self._key, *remove)
            pipe.hgetall(self._key)
            status: dict[str, str] = pipe.execute()[-1]
            self._redis.publish(
                contract.events_channel(self._tenant), json.dumps(status, sort_keys=True)
            )
        return status

    def set_phase(
        self,
        phase: str,
        *,
        reason: str = "",
        message: str = "",
        extra: dict[str, str] | None = None,
        remove: tuple[str, ...] = (),
    ) -> dict[str, str]:
        """Enter ``phase`` with its reason and sentence."""
        fields = {
            contract.STATUS_PHASE: phase,
            contract.STATUS_REASON: reason,
            contract.STATUS_MESSAGE: message,
            **(extra or {}),
        }
        return self.update(fields, remove)

    def record_error(self, reason: str, message: str) -> dict[str, str]:
        """Set the last error fields (and publish)."""
        return self.update(
            {
                contract.STATUS_LAST_ERROR_REASON: reason,
                contract.STATUS_LAST_ERROR_MESSAGE: message,
                contract.STATUS_LAST_ERROR_AT: utc_now(),
            }
        )

    def publish_pairing(self, code: str) -> None:
        """Publish a new QR string or pairing code on the QR channel."""
        self._redis.publish(contract.qr_channel(self._tenant), code)

    def heartbeat(self) -> None:
        """Refresh the heartbeat field (no publication)."""
        self._redis.hset(self._key, contract.STATUS_HEARTBEAT, utc_now())

    def announce_standby(self) -> None:
        """Say that this pod waits for the lease, without touching the phase."""
        self._redis.hset(
            self._key,
            mapping={
                contract.STATUS_STANDBY_POD: self._pod,
                contract.STATUS_STANDBY_SINCE: utc_now(),
            },
        )

    def clear_standby(self) -> None:
        """Remove this pod's standby fields (if they are still its own)."""
        if self._redis.hget(self._key, contract.STATUS_STANDBY_POD) == self._pod:
            self._redis.hdel(self._key, contract.STATUS_STANDBY_POD, contract.STATUS_STANDBY_SINCE)
