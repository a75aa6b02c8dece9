"""A process whose wall clock is minutes off: the environment that runs it under libfaketime.

libfaketime (Debian package ``faketime``, ``make faketime``) shifts the wall
clock of a process it is preloaded into by ``FAKETIME`` (``+5m``, ``-5m``);
the monotonic clock is left alone (with a faked monotonic clock libfaketime
0.9.10 makes every timed thread wait hang). Without a faked monotonic clock
its ``clock_nanosleep`` fails Python's ``time.sleep`` with EINVAL: a
``sitecustomize`` put first on ``PYTHONPATH`` makes ``time.sleep`` wait in
``select`` instead. Works for any Python program started with this
environment (``env -i`` included), e.g. ``wasp-operator`` and
``wasp-session``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

LIBFAKETIME: Final = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")

SLEEP_IN_SELECT: Final = """
import select, time

def _sleep(seconds):
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        select.select([], [], [], left)

time.sleep = _sleep
"""


def skewed_environment(offset: str, folder: Path) -> dict[str, str]:
    """The variables that run a process with its wall clock ``offset`` (``+5m``) off."""
    assert LIBFAKETIME.exists(), f"{LIBFAKETIME} missing: run `make faketime`"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(SLEEP_IN_SELECT, encoding="utf-8")
    return {
        "LD_PRELOAD": str(LIBFAKETIME),
        "FAKETIME": offset,
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": str(folder),
    }
