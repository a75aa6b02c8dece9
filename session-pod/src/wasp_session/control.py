"""The tenant's control commands, read with a blocking wait instead of a poll.

Owns reading ``contract.control_key`` (what ``kubectl wasp pair`` and the
operator push) on a thread of its own with ``BLPOP ... CONTROL_WAIT_SECONDS``
on a connection of its own (``blocking_connection``):
a command is handed over by Redis the moment it is pushed, and an idle
session costs Redis one call per wait instead of ten a second. Commands
wait in memory until the lifecycle's loop asks for the next one (``next``),
so they are acted on in that loop, in order, as before.

Reads only between ``start`` and ``stop`` (while the session's loop runs,
with the lease held): a standby pod never takes a command. A command read
but not acted on when ``stop`` comes is pushed back to the head of the list
for the next holder.
Must not decide what a command means: the lifecycle does.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Final

import redis
import structlog

from wasp import contract
from wasp_session.blocking_connection import BlockingConnection, WaitInterruptedError

CONTROL_WAIT_SECONDS: Final = 30.0
_REDIS_RETRY_SECONDS: Final = 1.0
_STOP_SECONDS: Final = 2.0  # how long ``stop`` waits for the commands to be handed back

log = structlog.stdlib.get_logger("wasp_session.control")


class ControlInbox:
    """The tenant's control commands, read on a daemon thread while started."""

    def __init__(self, client: redis.Redis, tenant: str) -> None:
        """Read ``tenant``'s control list through ``client`` (decoding to ``str``)."""
        self._redis = client
        self._waits = BlockingConnection(client)
        self._key = contract.control_key(tenant)
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._reading = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start reading (once; a second call does nothing)."""
        if self._thread is not None:
            return
        self._reading.set()
        self._thread = threading.Thread(target=self._read, name="control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reading now; commands read but not acted on go back to the list's head.

        Waits (briefly) for the reading thread to hand them back.
        """
        self._reading.clear()
        self._waits.interrupt()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=_STOP_SECONDS)

    def _hand_back(self, *commands: str) -> None:
        """Push ``commands`` (last first) back to the head of the list, for the next holder."""
        try:
            self._redis.lpush(self._key, *commands)
        except redis.RedisError as error:
            log.warning("control_commands_lost", error=str(error), count=len(commands))

    def next(self) -> str | None:
        """The next command read, or None (never waits, never calls Redis)."""
        try:
            return self._commands.get_nowait()
        except queue.Empty:
            return None

    def _read(self) -> None:
        late: list[str] = []  # read after stop: the next holder's
        while self._reading.is_set():
            try:
                popped = self._waits.blpop(self._key, timeout=CONTROL_WAIT_SECONDS)
            except WaitInterruptedError:
                continue  # stopped: the loop ends
            except redis.RedisError as error:  # the lifecycle's loop reports the outage
                log.debug("control_read_failed", error=str(error))
                time.sleep(_REDIS_RETRY_SECONDS)
                continue
            if not isinstance(popped, list):
                continue  # the wait ran out
            command = str(popped[1])
            if self._reading.is_set():
                self._commands.put(command)  # if stop comes now, it goes back below
            else:
                late.append(command)
        unread: list[str] = []
        while (left := self.next()) is not None:
            unread.append(left)
        unread.extend(late)  # in the order they were read
        if unread:
            self._hand_back(*reversed(unread))
        self._waits.close()
