"""The tenant's control commands, read with a blocking wait by ``ControlInbox``, real Redis.

A command pushed while the inbox waits is handed over; a standby (not
started) or stopped inbox leaves commands in the list for the lease holder;
commands read but not acted on when it stops go back, in order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import redis

from wasp import contract
from wasp_session.control import CONTROL_WAIT_SECONDS, ControlInbox

TENANT = "acme"
KEY = contract.control_key(TENANT)


def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.02)


def _waiting(client: redis.Redis) -> bool:
    """Whether a client is blocked in BLPOP (the inbox waits)."""
    return any(
        entry.get("cmd") == "blpop" and "b" in str(entry.get("flags", ""))
        for entry in client.client_list()
    )


@pytest.fixture
def inbox(redis_client: redis.Redis) -> Iterator[ControlInbox]:
    reader = ControlInbox(redis_client, TENANT)
    yield reader
    reader.stop()


def test_a_command_pushed_while_the_inbox_waits_is_handed_over(
    inbox: ControlInbox, redis_client: redis.Redis
) -> None:
    inbox.start()
    _until(lambda: _waiting(redis_client), "the inbox never waited")
    redis_client.rpush(KEY, '{"command": "pair"}')
    received: list[str] = []

    def handed_over() -> bool:
        command = inbox.next()
        if command is not None:
            received.append(command)
        return bool(received)

    # Within a fraction of one wait: Redis handed it over, no poll found it.
    _until(handed_over, "the command never came", timeout=CONTROL_WAIT_SECONDS / 3)
    assert received == ['{"command": "pair"}']
    assert redis_client.llen(KEY) == 0


def test_an_inbox_not_started_takes_nothing(inbox: ControlInbox, redis_client: redis.Redis) -> None:
    redis_client.rpush(KEY, "pair")
    time.sleep(0.3)
    assert inbox.next() is None
    assert redis_client.lrange(KEY, 0, -1) == ["pair"]  # left for the lease holder


def test_stopping_ends_the_wait_and_leaves_later_commands_for_the_next_holder(
    inbox: ControlInbox, redis_client: redis.Redis
) -> None:
    inbox.start()
    _until(lambda: _waiting(redis_client), "the inbox never waited")
    inbox.stop()
    _until(lambda: not _waiting(redis_client), "the wait went on after stop", timeout=3)
    redis_client.rpush(KEY, "pair")
    time.sleep(0.3)
    assert redis_client.lrange(KEY, 0, -1) == ["pair"]


def test_commands_read_but_not_acted_on_go_back_in_order_when_it_stops(
    inbox: ControlInbox, redis_client: redis.Redis
) -> None:
    inbox.start()
    redis_client.rpush(KEY, "first", "second")
    _until(lambda: redis_client.llen(KEY) == 0, "the inbox never read them")
    inbox.stop()
    _until(lambda: redis_client.llen(KEY) >= 2, "not handed back", timeout=3)
    assert redis_client.lrange(KEY, 0, -1) == ["first", "second"]
