"""The client library's tests' own fixtures: tenant ``acme``'s message store and its change feed.

Both work on the test's own redis-server (``redis_client``); the modules
that use them name the same tenant (their ``TENANT``) in what they assert.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import redis

from wasp import contract
from wasp.messages import MessageStore


@pytest.fixture
def store(redis_client: redis.Redis) -> MessageStore:
    """The message records of tenant ``acme``."""
    return MessageStore(redis_client, "acme")


@pytest.fixture
def changes(redis_client: redis.Redis) -> Iterator[Callable[[], list[dict[str, str]]]]:
    """A function returning every change published on the receipts channel so far."""
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
    pubsub.subscribe(contract.receipts_channel("acme"))
    seen: list[dict[str, str]] = []

    def drain() -> list[dict[str, str]]:
        while (message := pubsub.get_message(timeout=0.2)) is not None:
            seen.append(json.loads(message["data"]))
        return seen

    drain()  # the subscription is active from here on
    yield drain
    pubsub.close()
