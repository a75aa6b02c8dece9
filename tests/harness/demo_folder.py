"""The demo's folder and the files in it, shared by ``up``, the tenant's part and ``down``.

One demo lives in one folder (``.demo/`` at the repository root, or
``$WASP_DEMO_DIR``): the cluster's servers keep their folders there, beside
the supervisor's record (``supervisor.json``), its log (``supervisor.log``)
and the state it writes once the chart is installed (``state.json``). This
module names those files, reads and writes them, tells whether the recorded
supervisor still runs and prints the demo's lines of progress; it starts and
stops nothing.
"""

from __future__ import annotations

import json
import os
import sys
from contextlib import suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.processes import start_time
from harness.wasp_cluster import ROOT

FOLDER_VARIABLE = "WASP_DEMO_DIR"
DEFAULT_FOLDER = ROOT / ".demo"


def log(message: str) -> None:
    """One line of progress, flushed (the supervisor's go to its log, ``up`` follows it)."""
    print(f"demo: {message}", flush=True)  # noqa: T201 - the command's output


@dataclass(frozen=True)
class Folder:
    """The files of one demo."""

    root: Path

    @classmethod
    def chosen(cls) -> Folder:
        """``$WASP_DEMO_DIR``, else ``.demo/`` in the repository."""
        configured = os.environ.get(FOLDER_VARIABLE)
        return cls(Path(configured).resolve() if configured else DEFAULT_FOLDER)

    @property
    def cluster(self) -> Path:
        """Where the cluster's servers keep their folders (control plane, node, Redis)."""
        return self.root

    @property
    def supervisor(self) -> Path:
        """``{"pid", "start_time"}`` of the supervisor, written by ``up`` when it starts it."""
        return self.root / "supervisor.json"

    @property
    def state(self) -> Path:
        """What ``up`` needs, written by the supervisor once the chart is installed."""
        return self.root / "state.json"

    @property
    def log(self) -> Path:
        """The supervisor's output."""
        return self.root / "supervisor.log"

    @property
    def marker(self) -> Path:
        """Says the folder is a demo's, all of it: ``down`` removes only such a folder."""
        return self.root / ".wasp-demo"

    def claim(self) -> None:
        """Make the folder a demo's; refuse a folder with other files in it."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists() and any(self.root.iterdir()):
            msg = f"{self.root} has files of its own: point {FOLDER_VARIABLE} at a new folder"
            raise RuntimeError(msg)
        self.marker.touch()


@dataclass(frozen=True)
class State:
    """The running cluster, as the supervisor describes it."""

    pid: int
    kubeconfig: str
    kubectl: str
    admin_redis_url: str

    def write(self, path: Path) -> None:
        """Write atomically (``up`` polls for it), readable by root only: it holds a password."""
        scratch = path.with_suffix(".tmp")
        scratch.write_text(json.dumps(asdict(self)), encoding="utf-8")
        scratch.chmod(0o600)
        scratch.replace(path)

    @classmethod
    def read(cls, path: Path) -> State | None:
        """The state, or None if the supervisor has not written it."""
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return None


def running(pid: int, started: str | None) -> bool:
    """Whether the process ``pid`` started at ``started`` still runs (a zombie does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and start_time(pid) == started


def supervisor_pid(folder: Folder) -> int | None:
    """The supervisor's pid if it runs."""
    try:
        record = json.loads(folder.supervisor.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    pid = int(record["pid"])
    return pid if running(pid, record["start_time"]) else None


def log_tail(folder: Folder, lines: int = 40) -> str:
    """The supervisor's last lines of output."""
    try:
        text = folder.log.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def follow(path: Path, offset: int) -> int:
    """Print what was appended to ``path`` since ``offset``; return the new offset."""
    with suppress(FileNotFoundError), path.open("rb") as handle:
        handle.seek(offset)
        chunk = handle.read()
        if chunk:
            sys.stdout.write(chunk.decode("utf-8", errors="replace"))
            sys.stdout.flush()
        return offset + len(chunk)
    return offset
