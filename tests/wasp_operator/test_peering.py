"""Replicas announce distinct peering priorities, the oldest highest, and a tie is broken."""

from __future__ import annotations

import datetime as dt

import kopf

from wasp_operator.peering import (
    PRIORITY_CEILING,
    TieGuard,
    own_priority,
    redrawn,
    tied,
)

STARTED = 1_800_000_000.0  # 2027-01-15
NOW = dt.datetime(2027, 1, 15, 8, 0, tzinfo=dt.UTC)


def record(priority: int, seconds_ago: float = 1.0, lifetime: int = 20) -> dict[str, object]:
    """A record as kopf writes it into the peering object's status."""
    lastseen = NOW - dt.timedelta(seconds=seconds_ago)
    return {"priority": priority, "lifetime": lifetime, "lastseen": lastseen.isoformat()}


def test_an_older_replica_always_outranks_a_younger_one() -> None:
    for offset in range(200):
        assert own_priority(STARTED + offset) > own_priority(STARTED + offset + 1)


def test_priorities_stay_positive_and_exact_in_json_until_2106() -> None:
    assert 0 < own_priority(2**32 - 1) < own_priority(STARTED) <= PRIORITY_CEILING < 2**53


def test_a_priority_drawn_again_differs_and_keeps_its_start_second() -> None:
    for _ in range(200):
        priority = own_priority(STARTED)
        again = redrawn(priority)
        assert again != priority
        assert own_priority(STARTED - 1) > again > own_priority(STARTED + 1)


def test_only_another_live_record_with_the_same_priority_is_a_tie() -> None:
    mine = own_priority(STARTED)
    assert tied(mine, "a", {"a": record(mine), "b": record(mine)}, NOW)
    assert not tied(mine, "a", {"a": record(mine)}, NOW), "its own record is no tie"
    assert not tied(mine, "a", {"b": record(mine - 1)}, NOW)
    assert not tied(mine, "a", {"b": record(mine, seconds_ago=21)}, NOW), "expired"
    junk: dict[str, dict[str, object]] = {"b": {"priority": mine}, "c": {"priority": "x"}}
    assert not tied(mine, "a", junk, NOW), "not records kopf wrote"


def test_the_guard_draws_again_on_a_tie_and_only_then() -> None:
    settings = kopf.OperatorSettings()
    settings.peering.priority = first = own_priority(STARTED)
    guard = TieGuard(settings, "a")
    assert not guard.check([{"b": record(first - 1)}], NOW)
    assert settings.peering.priority == first
    assert guard.check([{"b": record(first - 1)}, {"a": record(first), "b": record(first)}], NOW)
    assert settings.peering.priority != first
    assert not guard.check([{"a": record(first), "b": record(first)}], NOW), "no tie any more"
