"""A real ``redis-server`` on a free port in a temporary directory.

Optionally locked like a production Redis (``password=``): the ``default``
user then needs that password, so the only ways in are the admin URL
(``url``) and the ACL users the operator makes. ``restart()`` stops the server
and starts it again on the same port with the data it had (an RDB snapshot
taken just before; or, with AOF, only what it persisted itself, also after a
SIGKILL), but, as after any real restart or failover to a replica
without an ACL file, with none of the ACL users made at runtime.
``save_snapshot()`` copies a real RDB snapshot (``SAVE``) aside and
``roll_back(snapshot)`` starts the server again from it, on the same port: a
Redis restored from an older backup (every write since is lost).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from pathlib import Path

import redis

from harness.processes import ManagedProcess, free_port, wait_until


class RedisServer:
    """One private redis-server: its own port, its own directory, no persistence."""

    def __init__(
        self,
        directory: Path,
        *,
        password: str | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        """Start the server and wait until it answers PING.

        ``extra_args``: more ``redis-server`` options, e.g.
        ``("--maxmemory-policy", "allkeys-lru")``; kept across ``restart()``.
        """
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed: run `make deps` (Debian package redis-server)"
            raise RuntimeError(msg)
        self._binary = binary
        self._directory = directory
        self.password = password
        self.extra_args = tuple(extra_args)
        self.port = free_port()
        userinfo = f":{password}@" if password else ""
        self.url = f"redis://{userinfo}127.0.0.1:{self.port}/0"
        directory.mkdir(parents=True, exist_ok=True)
        self._starts = 0
        self.process = self._start()

    def _start(self) -> ManagedProcess:
        self._starts += 1
        args = [
            self._binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self._directory),
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "yes",
        ]
        if self.password:
            args += ["--requirepass", self.password]
        args += self.extra_args
        process = ManagedProcess(
            "redis-server", args, self._directory / f"redis-{self._starts}.log"
        )
        wait_until(self._answers, "PING", process, timeout=10)
        return process

    def _answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        """A new admin client that decodes responses to ``str``."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def restart(
        self, *, snapshot: bool = True, kill: bool = False, down_seconds: float = 0.0
    ) -> None:
        """Stop and start again on the same port: same data, no runtime ACL users.

        ``snapshot=False``: no SAVE first, the data comes back only as far as the
        server persisted it itself (AOF: ``extra_args=("--appendonly", "yes")``).
        ``kill``: SIGKILL instead of a shutdown (implies ``snapshot=False``): what
        the AOF had fsynced survives, no more. ``down_seconds``: stay down that long.
        """
        if snapshot and not kill:
            with redis.Redis.from_url(self.url) as client:
                client.save()
        if kill:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.popen.wait()
        self.process.stop()
        time.sleep(down_seconds)
        self.process = self._start()

    def save_snapshot(self, destination: Path) -> Path:
        """``SAVE`` now and copy the RDB file to ``destination`` (a backup); return it."""
        with redis.Redis.from_url(self.url) as client:
            client.save()
        shutil.copyfile(self._directory / "dump.rdb", destination)
        return destination

    def roll_back(self, snapshot: Path) -> None:
        """Stop, put ``snapshot`` (from ``save_snapshot``) in place, start on the same port."""
        self.process.stop()
        shutil.copyfile(snapshot, self._directory / "dump.rdb")
        self.process = self._start()

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()
