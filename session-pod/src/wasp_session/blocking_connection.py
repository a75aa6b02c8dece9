"""One Redis connection for blocking reads, which another thread can cut short.

Owns a dedicated connection (outside the client's pool, with the client's
URL, credentials and options) for a loop that waits on Redis with a blocking
command (``BLMOVE``/``BLPOP ... timeout``) instead of polling: idle, such a
loop costs Redis one call per timeout, and what is pushed meanwhile is
handed over by Redis at once. The client's own commands cannot wait that
long: redis-py's default socket timeout (5 s) would cut a longer wait, and
its retry would send it again. Here each reply is read with a deadline a
little longer than the wait, so a Redis that vanished without closing the
connection is still noticed, as an error.

``interrupt()``, from another thread (the loop is told to stop, or what it
waits for is no longer wanted), shuts the socket down so the current wait
ends now rather than at its timeout (a blocked read on a thread other than
the main one is not woken by a signal), raising ``WaitInterruptedError``; an
interrupt that comes between two waits ends the next one at once. The next
wait after an interrupt connects afresh. Must not retry, decide or log: the
loop that waits does.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Final

import redis

READ_MARGIN_SECONDS: Final = 5.0


class WaitInterruptedError(Exception):
    """The wait was cut short by ``BlockingConnection.interrupt``."""


class BlockingConnection:
    """One connection for blocking waits; ``interrupt()`` ends the current (or next) one."""

    def __init__(self, client: redis.Redis) -> None:
        """A connection like ``client``'s (not taken from its pool; made when first used)."""
        pool = client.connection_pool
        self._connection = pool.connection_class(**pool.connection_kwargs)
        self._interrupt = threading.Event()

    def blmove(self, source: str, destination: str, timeout: float) -> object:
        """``BLMOVE source destination LEFT RIGHT timeout`` (as RQ moves); None if none came."""
        return self._wait(timeout, "BLMOVE", source, destination, "LEFT", "RIGHT", timeout)

    def blpop(self, key: str, timeout: float) -> object:
        """``BLPOP key timeout``: ``[key, value]``, or None if nothing came."""
        return self._wait(timeout, "BLPOP", key, timeout)

    def _wait(self, timeout: float, *command: str | float) -> object:
        """Send ``command`` and wait for its reply; ``WaitInterruptedError`` if cut short."""
        connection = self._connection
        if self._interrupt.is_set():  # it came before this wait: this one ends at once
            self._interrupt.clear()
            connection.disconnect()  # its socket may have been shut down
            raise WaitInterruptedError
        try:
            connection.send_command(*command)
            return connection.read_response(timeout=timeout + READ_MARGIN_SECONDS)
        except (redis.ConnectionError, redis.TimeoutError):
            connection.disconnect()
            if self._interrupt.is_set():  # set by another thread meanwhile
                self._interrupt.clear()
                raise WaitInterruptedError from None
            raise

    def interrupt(self) -> None:
        """End the current wait now, or the next one at once (from any thread)."""
        self._interrupt.set()
        sock = getattr(self._connection, "_sock", None)  # redis-py keeps its socket there
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Close the connection (the owner's thread, after its last wait)."""
        self._connection.disconnect()
