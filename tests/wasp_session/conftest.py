"""The session pod's tests' own fixture: the tenant's published channels, subscribed.

The tests start real ``wasp-session`` processes for the tenant ``acme``
(``start_session``'s default) and check what they publish, as a user's
subscriber would see it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from harness.session_process import Channels


@pytest.fixture
def channels(redis_client: redis.Redis) -> Iterator[Channels]:
    """A subscriber to tenant ``acme``'s events and QR channels, from before its pod starts."""
    subscriber = Channels(redis_client, "acme")
    try:
        yield subscriber
    finally:
        subscriber.close()
