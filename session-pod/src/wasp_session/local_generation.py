"""Which snapshot the pod's local database is at: a small file next to it.

Owns ``<database>.generation``: one JSON line naming the tenant, the
transport, and the generation and fencing token of the snapshot the local
database last matched (``Mark``). The auth store writes it after every
checkpoint written and every restore, and removes it with the database. The
data dir survives a container restart (an emptyDir), and the local database
only moves forward from the snapshot it matched, so at the next start the
auth store can tell a local copy newer than what Redis holds (Redis was
rolled back) from an older one (another pod wrote since).

Written atomically (a temporary file, then a rename); anything unreadable
reads as no mark, so a damaged file only costs the comparison. Must not talk
to Redis nor open the database.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

SUFFIX: Final = ".generation"


@dataclass(frozen=True)
class Mark:
    """The snapshot the local database matched when it was last written or restored."""

    tenant: str
    transport: str
    generation: int
    fence: int


class GenerationFile:
    """Reads, writes and removes the mark of one local database."""

    def __init__(self, database: Path) -> None:
        """Keep the mark of ``database`` beside it."""
        self.path = database.with_name(database.name + SUFFIX)

    def read(self) -> Mark | None:
        """The mark, or ``None`` if there is none (or it is unreadable)."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return Mark(
                tenant=str(data["tenant"]),
                transport=str(data["transport"]),
                generation=int(data["generation"]),
                fence=int(data["fence"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def write(self, mark: Mark) -> None:
        """Replace the mark (atomically)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = self.path.with_name(self.path.name + ".tmp")
        staging.write_text(json.dumps(asdict(mark), sort_keys=True) + "\n", encoding="utf-8")
        staging.replace(self.path)

    def remove(self) -> None:
        """Forget the mark (the local database is gone)."""
        self.path.unlink(missing_ok=True)
