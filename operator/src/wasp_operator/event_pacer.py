"""The operator's Kubernetes Events, posted at a pace that leaves the API server to the statuses.

A thousand tenants changing phase at once (a Redis failover, a network
blip) would post a thousand Events in the same second as a thousand status
patches, and an install of a thousand sessions three Events each beside
their Secrets and pods: on a busy API server every status then waits
behind an Event. Events are for people reading ``kubectl describe``; the
status is what people and programs wait for. So, as client-go's event
recorder does, wasp paces its own: up to ``BURST`` at once, then
``EVENTS_PER_SECOND``, in order. A single Event (the usual case) goes at
once; a burst's last one follows its status by seconds.

At most ``MAX_PENDING`` wait; past that the oldest is dropped and counted
(``metrics.EVENTS_DROPPED``), never the operator's memory. Events still
waiting when the operator stops are not posted (as kopf's own).

Owns the pacing only: kopf posts (``kopf.event``, in the context of the
handler that first posted, where kopf's settings and queue live).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import kopf

from wasp_operator import metrics

EVENTS_PER_SECOND: Final = 50.0
BURST: Final = 100
MAX_PENDING: Final = 20_000

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pending:
    """An Event to post: what it is about (its reference only) and what it says."""

    about: dict[str, Any]
    kind: str
    reason: str
    message: str


Post = Callable[[dict[str, Any], str, str, str], None]  # about, type, reason, message


def kopf_post(about: dict[str, Any], kind: str, reason: str, message: str) -> None:
    """Hand one Event to kopf's poster (which retries it with backoff)."""
    kopf.event(kopf.Body(about), type=kind, reason=reason, message=message)  # type: ignore[arg-type]


def _reference(body: Mapping[str, Any]) -> dict[str, Any]:
    """The object an Event is about, as kopf needs it to refer to it (no spec, no status)."""
    meta: Mapping[str, Any] = body.get("metadata") or {}
    return {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {key: meta.get(key) for key in ("name", "namespace", "uid")},
    }


class EventPacer:
    """A token bucket in front of ``kopf.event``: ``post`` never waits, the posting does."""

    def __init__(
        self,
        rate: float = EVENTS_PER_SECOND,
        burst: int = BURST,
        max_pending: int = MAX_PENDING,
        post: Post = kopf_post,
    ) -> None:
        """Post at most ``burst`` at once, then ``rate`` a second; keep at most ``max_pending``."""
        self._post = post
        self._rate = rate
        self._burst = burst
        self._pending: collections.deque[_Pending] = collections.deque()
        self._max_pending = max_pending
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def post(self, body: Mapping[str, Any], kind: str, reason: str, message: str) -> None:
        """Post an Event about ``body`` (type ``kind``): at once, unless a burst is under way."""
        if len(self._pending) >= self._max_pending:
            self._pending.popleft()
            metrics.EVENTS_DROPPED.inc()
        self._pending.append(_Pending(_reference(body), kind, reason, message))
        self._ready.set()
        if self._task is None:  # started here: in the context kopf posts from
            self._task = asyncio.get_running_loop().create_task(self._run(), name="event pacer")

    async def close(self) -> None:
        """Stop posting (what still waits is not posted)."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        tokens, refilled = float(self._burst), loop.time()
        while True:
            if not self._pending:
                self._ready.clear()
                await self._ready.wait()
            now = loop.time()
            tokens = min(float(self._burst), tokens + (now - refilled) * self._rate)
            refilled = now
            if tokens < 1.0:
                await asyncio.sleep((1.0 - tokens) / self._rate)
                continue
            tokens -= 1.0
            pending = self._pending.popleft()
            try:
                self._post(pending.about, pending.kind, pending.reason, pending.message)
            except Exception:  # one bad Event never stops the others
                logger.exception("event_not_posted reason=%s", pending.reason)
