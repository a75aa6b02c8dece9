"""How often each session's loop resyncs: the configured interval, stretched past a rate."""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from wasp_operator.loop_timing import (
    RESYNC_JITTER,
    RETRY_FIRST_SECONDS,
    resync_interval,
    resync_period,
    retry_delay,
)

seconds = st.floats(min_value=0.1, max_value=3600, allow_nan=False)
rates = st.floats(min_value=0.1, max_value=10_000, allow_nan=False)
loops = st.integers(min_value=0, max_value=1_000_000)


@given(resync=seconds, sessions=loops, rate=rates)
def test_loops_together_never_resync_faster_than_the_rate(
    resync: float, sessions: int, rate: float
) -> None:
    period = resync_period(resync, sessions, rate)
    assert period >= resync, "never more often than the configured interval"
    fastest = sessions / (RESYNC_JITTER * period)  # every loop drew its shortest interval
    assert fastest <= rate * (1 + 1e-9)


@given(resync=seconds, rate=rates)
def test_few_sessions_resync_at_the_configured_interval(resync: float, rate: float) -> None:
    few = math.floor(resync * rate * RESYNC_JITTER)
    assert resync_period(resync, few, rate) == resync


def test_at_the_defaults_a_thousand_resync_every_30_s_five_thousand_every_133_s() -> None:
    assert resync_period(30, 1000, 50) == 30
    assert math.isclose(resync_period(30, 5000, 50), 5000 / 37.5)


@given(period=seconds)
def test_each_interval_is_75_to_100_percent_of_the_period(period: float) -> None:
    assert RESYNC_JITTER * period <= resync_interval(period) <= period


@given(failures=st.integers(min_value=1, max_value=10_000), period=seconds)
def test_a_failed_loop_tries_again_soon_then_less_often_never_later_than_its_resync(
    failures: int, period: float
) -> None:
    backoff = min(period, RETRY_FIRST_SECONDS * 2.0 ** min(failures - 1, 16))
    assert 0.5 * backoff <= retry_delay(failures, period) <= backoff <= period
    assert retry_delay(1, 600) <= RETRY_FIRST_SECONDS
