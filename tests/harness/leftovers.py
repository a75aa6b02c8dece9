"""After a test run: fail if any server the harness started is still alive.

Reads ``$WASP_TEST_PIDFILE`` (lines of ``pid start-time name``) and compares
each process's kernel start time, so a reused pid is not mistaken for ours.
Also fails if a real node (``harness.node``) of a finished run was never
stopped (its record in ``harness.node_cleanup`` is left).
Run as ``python -m harness.leftovers PIDFILE``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from harness import node_cleanup
from harness.processes import start_time


def alive_from(pidfile: Path) -> list[str]:
    """The recorded processes that are still running, as ``name (pid)``."""
    if not pidfile.exists():
        return []
    alive = []
    for line in pidfile.read_text(encoding="utf-8").splitlines():
        pid, started, name = line.split(maxsplit=2)
        if start_time(int(pid)) == started:
            alive.append(f"{name} ({pid})")
    return alive


def main() -> None:
    """Exit non-zero, naming them, if any recorded process is alive."""
    pidfile = Path(sys.argv[1])
    alive = alive_from(pidfile)
    recorded = len(pidfile.read_text(encoding="utf-8").splitlines()) if pidfile.exists() else 0
    if alive:
        print("left alive after the tests: " + ", ".join(alive), file=sys.stderr)  # noqa: T201
        sys.exit(1)
    nodes = node_cleanup.stale()
    if nodes:
        names = ", ".join(str(record) for record in nodes)
        print(f"nodes never stopped (records left): {names}", file=sys.stderr)  # noqa: T201
        sys.exit(1)
    print(f"no process left behind ({recorded} started by the tests)")  # noqa: T201


if __name__ == "__main__":
    main()
