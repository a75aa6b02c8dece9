"""The simulator's "linked device": one row in a SQLite file in the data dir.

The simulator keeps its device where neonize keeps whatsmeow's, in a file
that the auth store checkpoints and restores the same way (the child process
recognises the ``sim_device`` table), so a restarted or second pod finds the
account without a new scan. Opens the file per operation and never holds it
open, so the file can be replaced or deleted between operations.

Used only by the simulator transport (no neonize in the process).
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = "CREATE TABLE IF NOT EXISTS sim_device (jid TEXT PRIMARY KEY, push_name TEXT NOT NULL)"


@dataclass(frozen=True)
class Device:
    """The linked account."""

    jid: str
    push_name: str


class DeviceFile:
    """Load, store and forget the simulated device in ``path``."""

    def __init__(self, path: Path) -> None:
        """Use the SQLite file at ``path`` (created on first store)."""
        self.path = path

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=15)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute(_SCHEMA)
        return connection

    def load(self) -> Device | None:
        """The stored device, if any."""
        if not self.path.exists():
            return None
        with closing(self._connect()) as connection:
            row = connection.execute("SELECT jid, push_name FROM sim_device LIMIT 1").fetchone()
        return None if row is None else Device(jid=str(row[0]), push_name=str(row[1]))

    def store(self, device: Device) -> None:
        """Write the device (replacing any)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as connection, connection:
            connection.execute("DELETE FROM sim_device")
            connection.execute(
                "INSERT INTO sim_device (jid, push_name) VALUES (?, ?)",
                (device.jid, device.push_name),
            )

    def forget(self) -> None:
        """Delete the device row, as whatsmeow does on LoggedOut."""
        if not self.path.exists():
            return
        with closing(self._connect()) as connection, connection:
            connection.execute("DELETE FROM sim_device")
