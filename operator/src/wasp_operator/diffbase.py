"""kopf's memory of the last handled state of a resource, for an operator that needs none.

kopf compares every watch event's "essence" (the body without status and
system fields) with the one stored in an annotation, to tell creation,
update and resume handlers when to run. wasp registers none of those: its
session loop is a daemon, which reads the live body, and its deletion
handler is told by the deletion timestamp. Yet with kopf's default storage
every event deep-copies the body to build that essence, and every new
resource is patched once more to store it (a thousand resources: a thousand
extra writes and their watch echoes).

``NoDiffBase`` gives every resource the same empty essence, stored already:
kopf sees no change, builds nothing, writes nothing. ``tests/wasp_operator``
checks that wasp registers no handler that would need a real one.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoDiffBase(kopf.DiffBaseStorage):
    """Every resource's essence is empty, and already stored."""

    def build(
        self,
        *,
        body: kopf.Body,  # noqa: ARG002 - kopf's protocol
        extra_fields: Iterable[Any] | None = None,  # noqa: ARG002 - kopf's protocol
    ) -> kopf.BodyEssence:
        """Nothing to compare: no handler of wasp runs on a change of the spec."""
        return kopf.BodyEssence()

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:  # noqa: ARG002 - kopf's protocol
        """The same empty essence: kopf sees no change, ever."""
        return kopf.BodyEssence()

    def store(
        self,
        *,
        body: kopf.Body,
        patch: kopf.Patch,
        essence: kopf.BodyEssence,
    ) -> None:
        """Nothing is written."""
