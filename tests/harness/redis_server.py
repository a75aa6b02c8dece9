"""A real ``redis-server`` on a free port in a temporary directory."""

from __future__ import annotations

import shutil
from pathlib import Path

import redis

from harness.processes import ManagedProcess, free_port, wait_until


class RedisServer:
    """One private redis-server: its own port, its own directory, no persistence."""

    def __init__(self, directory: Path) -> None:
        """Start the server and wait until it answers PING."""
        binary = shutil.which("redis-server")
        if binary is None:
            msg = "redis-server is not installed: run `make deps` (Debian package redis-server)"
            raise RuntimeError(msg)
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        directory.mkdir(parents=True, exist_ok=True)
        self.process = ManagedProcess(
            "redis-server",
            [
                binary,
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(directory),
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "yes",
            ],
            directory / "redis.log",
        )
        wait_until(self._answers, "PING", self.process, timeout=10)

    def _answers(self) -> bool:
        try:
            with redis.Redis.from_url(self.url, socket_timeout=1) as client:
                return bool(client.ping())
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        """A new client that decodes responses to ``str``."""
        return redis.Redis.from_url(self.url, decode_responses=True)

    def stop(self) -> None:
        """Stop the server."""
        self.process.stop()
