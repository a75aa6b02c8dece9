"""When a session's loop looks again on its own: its resync, and its retry after a failure.

Owns the pure arithmetic of the supervisor's timer (``supervisor.py``): the
resync period (the configured interval, longer when the loops together
would resync more often than a rate allows), each loop's jittered interval
within it, and the backoff after failed cycles. No clocks, no I/O.
"""

from __future__ import annotations

import random

RESYNC_JITTER = 0.75  # a loop's resync interval is drawn from [0.75, 1] x the period
RETRY_FIRST_SECONDS = 2.0  # a failed cycle's loop looks again this soon, then 2x longer each time


def resync_period(resync_seconds: float, loops: int, max_per_second: float) -> float:
    """The resync period of ``loops`` loops: ``resync_seconds``, or longer past a rate.

    Long enough that they resync at most ``max_per_second`` times a second
    together, each drawing its interval from ``resync_interval`` (whose
    shortest is 75 % of the period).
    """
    return max(resync_seconds, loops / (max_per_second * RESYNC_JITTER))


def resync_interval(period: float) -> float:
    """The time to a loop's next full cycle: 75-100 % of the resync period, at random.

    Never longer than the period, and spread: loops started in one burst (an
    install, a restart) do not all resync at once, every period, for as long
    as the operator runs.
    """
    return period * random.uniform(RESYNC_JITTER, 1.0)  # noqa: S311 - spreading, not secrecy


def retry_delay(failures: int, period: float) -> float:
    """How soon a loop looks again after ``failures`` failed cycles in a row.

    50-100 % of 2 s, 4 s, 8 s, ..., and never later than its resync would
    (``period``). A new session whose first cycle met a Redis timeout gets
    its pod seconds later, not a whole resync period (minutes, with
    thousands of sessions) later.
    """
    backoff = RETRY_FIRST_SECONDS * 2.0 ** min(failures - 1, 16)
    return min(period, backoff) * random.uniform(0.5, 1.0)  # noqa: S311 - spreading, not secrecy
