"""Child processes that never outlive the test run.

Every server the harness starts goes through ``start``: it runs in its own
process group, is told by the kernel to die with its parent
(``PR_SET_PDEATHSIG``, so even a SIGKILLed pytest leaves nothing behind), and
is recorded in ``$WASP_TEST_PIDFILE`` when set, so ``harness.leftovers`` can
prove after the run that none is alive.

A test's teardown need not wait for a server that takes seconds to exit
(the operator's graceful stop): ``stop_in_background`` sends the same
SIGTERM at once and leaves the waiting (and the SIGKILL after the grace) to
a thread; ``wait_for_background_stops`` joins them all, at the latest when
the test session ends.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import threading
import time
from contextlib import closing, suppress
from pathlib import Path
from typing import IO

PR_SET_PDEATHSIG = 1
PIDFILE_VARIABLE = "WASP_TEST_PIDFILE"
_background_stops: list[threading.Thread] = []


def _die_with_parent() -> None:
    """Runs in the child before exec: ask for SIGKILL when the parent dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def start_time(pid: int) -> str | None:
    """The kernel's start time of a process (field 22 of /proc/<pid>/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class ManagedProcess:
    """A server process with its log file, stopped by ``stop()``."""

    def __init__(self, name: str, args: list[str], log_path: Path) -> None:
        """Start ``args`` with output to ``log_path``."""
        self.name = name
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads fork here
        )
        pidfile = os.environ.get(PIDFILE_VARIABLE)
        if pidfile:
            with Path(pidfile).open("a", encoding="utf-8") as record:
                record.write(f"{self.popen.pid} {start_time(self.popen.pid)} {name}\n")

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of its output, for error messages."""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM its process group, then SIGKILL after ``grace`` seconds."""
        if self.alive():
            with suppress(ProcessLookupError):  # it exited meanwhile
                os.killpg(self.popen.pid, signal.SIGTERM)
            self._reap(grace)
        self._log.close()

    def stop_in_background(self, grace: float = 10.0) -> None:
        """As ``stop``, but only the SIGTERM now: a thread waits; ``wait_for_background_stops``."""
        if not self.alive():
            self._log.close()
            return
        with suppress(ProcessLookupError):  # it exited meanwhile
            os.killpg(self.popen.pid, signal.SIGTERM)

        def finish() -> None:
            self._reap(grace)
            self._log.close()

        thread = threading.Thread(target=finish, name=f"stop {self.name}", daemon=True)
        thread.start()
        _background_stops.append(thread)

    def _reap(self, grace: float) -> None:
        """Wait ``grace`` seconds for the signalled group's leader, then SIGKILL the group."""
        try:
            self.popen.wait(grace)
        except subprocess.TimeoutExpired:
            with suppress(ProcessLookupError):  # it exited meanwhile
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def wait_for_background_stops() -> None:
    """Return once every process given to ``stop_in_background`` has exited."""
    while _background_stops:
        _background_stops.pop().join()


def wait_until(condition: object, what: str, process: ManagedProcess, timeout: float) -> None:
    """Poll ``condition()`` until true; fail with the process's log if it dies or times out."""
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process.alive():
            msg = f"{process.name} exited ({process.popen.returncode}):\n{process.log_tail()}"
            raise RuntimeError(msg)
        if condition():
            return
        time.sleep(0.05)
    msg = f"{process.name}: {what} not reached in {timeout} s:\n{process.log_tail()}"
    raise TimeoutError(msg)
