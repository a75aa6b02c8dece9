"""The SQLite work that must run in a child process: backup and inspection.

Two SQLite libraries in one process (Python's and the one inside neonize) do
not see each other's locks: an in-process backup of whatsmeow's live database
corrupts it (notes/neonize.md). So the session runs this module as
``python -m wasp_session.sqlite_child backup SRC DST`` or ``... inspect PATH``
in a fresh interpreter (never a fork) and reads one JSON line from stdout:
``{"has_device": bool, "integrity": "ok" | "<problem>"}``.

Imports the standard library only; must never import neonize.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

# The tables whose rows mean "a linked device is stored": whatsmeow's, and the
# simulator's stand-in.
DEVICE_TABLES = ("whatsmeow_device", "sim_device")


def inspect(connection: sqlite3.Connection) -> dict[str, object]:
    """Whether ``connection``'s database holds a device, and its integrity verdict."""
    integrity = str(connection.execute("PRAGMA integrity_check").fetchone()[0])
    names = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    has_device = False
    for table in DEVICE_TABLES:
        if table in names:
            count = connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
            has_device = has_device or count > 0
    return {"has_device": has_device, "integrity": integrity}


def backup(source: Path, destination: Path) -> dict[str, object]:
    """Copy ``source`` (live, WAL) into a self-contained ``destination``; inspect the copy."""
    destination.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=15)
    try:
        dst = sqlite3.connect(destination)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=DELETE")
            return inspect(dst)
        finally:
            dst.close()
    finally:
        src.close()


def inspect_file(path: Path) -> dict[str, object]:
    """Inspect a database file at rest (a restored snapshot)."""
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return inspect(connection)
    finally:
        connection.close()


def main(argv: list[str]) -> int:
    """``backup SRC DST`` or ``inspect PATH``; print one JSON line."""
    try:
        if len(argv) == 3 and argv[0] == "backup":  # noqa: PLR2004 - command and two paths
            result = backup(Path(argv[1]), Path(argv[2]))
        elif len(argv) == 2 and argv[0] == "inspect":  # noqa: PLR2004 - command and a path
            result = inspect_file(Path(argv[1]))
        else:
            sys.stderr.write("usage: sqlite_child backup SRC DST | inspect PATH\n")
            return 2
    except sqlite3.Error as error:
        result = {"has_device": False, "integrity": f"sqlite error: {error}"}
    sys.stdout.write(json.dumps(result) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
