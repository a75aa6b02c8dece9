"""RFC 3339 UTC timestamps as wasp writes them into Redis hashes and JSON.

Owns one format (``2026-01-31T12:00:00.123456Z``) and its parser. Must not
know about Redis.
"""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["as_utc", "format_seconds", "format_timestamp", "parse_timestamp", "utc_now"]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """``moment`` as aware UTC; a naive time (as RQ keeps them) is taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC with microseconds and a ``Z``; naive times are taken as UTC."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_seconds(moment: datetime) -> str:
    """``moment`` as RFC 3339 UTC to the second, as Kubernetes writes its times."""
    return as_utc(moment).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_timestamp(text: str) -> datetime:
    """Parse what ``format_timestamp`` (or any ISO 8601 writer) wrote, as aware UTC."""
    return as_utc(datetime.fromisoformat(text))
