"""Whether the session's loops make progress: the heartbeats behind ``/healthz``.

Owns one ``Heartbeats`` per process. Each long-running loop that must not
hang (``contract.LIVENESS_LOOPS``: the lifecycle's event loop, the lease
renewal, the OTP worker's dequeue loop) is watched from its start
(``expect``), beats once a round (``beat``) and is retired when it ends on
purpose (``retire``). A watched loop silent for longer than its bound is
*stuck*: ``/healthz`` then answers 503 naming it, the kubelet's liveness probe
fails and the pod is restarted. A bound is the stall
(``contract.ENV_LIVENESS_STALL_SECONDS``, default the lease TTL) plus the
loop's own period (see ``bounds``). The last beat of each loop is the metric
``wasp_session_loop_last_beat_timestamp_seconds``.

``BeatingGate`` is the send gate the worker waits on each round of its
dequeue loop, open or closed: each wait is the delivery loop's beat.
Must not decide what happens to a stuck loop: the kubelet restarts the pod.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from wasp import contract
from wasp_session import metrics
from wasp_session.errors import ConfigError
from wasp_session.gate import SendGate

# The loops' own periods (seconds between beats when all is well).
LIFECYCLE_PERIOD = 1.0  # a tick is 0.1 s; standing by, a round is at most 1 s
JOB_WAIT_SECONDS = 10.0  # the worker's blocking wait for a job (BLMOVE), cut short on stop
DELIVERY_PERIOD = 0.5 + JOB_WAIT_SECONDS  # a gate wait of 0.5 s, then the wait for a job


@dataclass(frozen=True)
class Stall:
    """A loop silent for longer than its bound."""

    loop: str
    silent_seconds: float
    bound_seconds: float


def stall_from(env: Mapping[str, str], lease_ttl: float) -> float:
    """The stall the environment sets (seconds > 0); default the lease TTL."""
    name = contract.ENV_LIVENESS_STALL_SECONDS
    raw = env.get(name, "").strip()
    if not raw:
        return lease_ttl
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"must be a number of seconds, got {raw[:64]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(name, f"must be more than 0 seconds, got {raw[:64]!r}")
    return value


def bounds(stall: float, lease_ttl: float, job_ttl: float) -> dict[str, float]:
    """Each loop's bound: the stall plus the loop's period (and a job's TTL for delivery).

    The lease renews every third of its TTL; a job runs inside the dequeue
    loop and ends itself within its TTL.
    """
    return {
        contract.LOOP_LIFECYCLE: stall + LIFECYCLE_PERIOD,
        contract.LOOP_LEASE: stall + lease_ttl / 3,
        contract.LOOP_DELIVERY: stall + DELIVERY_PERIOD + job_ttl,
    }


class Heartbeats:
    """The last beat of each watched loop, and which are stuck. Thread-safe."""

    def __init__(
        self, bounds: Mapping[str, float], clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Watch loops named in ``bounds`` (seconds of silence allowed each)."""
        self._bounds = dict(bounds)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def bound(self, loop: str) -> float:
        """The silence ``loop`` is allowed."""
        return self._bounds[loop]

    def expect(self, loop: str) -> None:
        """Watch ``loop`` from now on (its first beat)."""
        self.beat(loop)

    def beat(self, loop: str) -> None:
        """``loop`` made progress now."""
        with self._lock:
            self._last[loop] = self._clock()
        metrics.LOOP_LAST_BEAT.labels(loop=loop).set(time.time())

    def retire(self, loop: str) -> None:
        """``loop`` ended on purpose: stop watching it."""
        with self._lock:
            self._last.pop(loop, None)

    def stuck(self) -> list[Stall]:
        """The watched loops silent for longer than their bound, in a fixed order."""
        now = self._clock()
        with self._lock:
            last = dict(self._last)
        stalls = []
        for loop in sorted(last):
            silent = now - last[loop]
            bound = self._bounds.get(loop, math.inf)
            if silent > bound:
                stalls.append(Stall(loop, round(silent, 2), round(bound, 2)))
        return stalls

    def report(self) -> str | None:
        """``None`` while no loop is stuck, else one line of JSON naming the first stuck one."""
        stalls = self.stuck()
        if not stalls:
            return None
        first = stalls[0]
        return json.dumps(
            {
                "status": "stuck",
                "loop": first.loop,
                "silent_seconds": first.silent_seconds,
                "bound_seconds": first.bound_seconds,
                "stuck": [stall.loop for stall in stalls],
            }
        )


class BeatingGate(SendGate):
    """The send gate whose every wait beats the delivery loop (it waits once a round)."""

    def __init__(self, heartbeats: Heartbeats) -> None:
        """Start closed; beat ``contract.LOOP_DELIVERY`` in ``heartbeats`` on each wait."""
        super().__init__()
        self._heartbeats = heartbeats

    def wait_open(self, timeout: float) -> bool:
        """Beat, then block up to ``timeout`` seconds for the gate to open."""
        self._heartbeats.beat(contract.LOOP_DELIVERY)
        return super().wait_open(timeout)
