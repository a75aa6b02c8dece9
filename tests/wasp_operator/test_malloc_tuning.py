"""The operator's C allocator settings (``malloc_tuning.py``): glibc only, the user's wins."""

from __future__ import annotations

import asyncio
import contextlib

from wasp_operator.malloc_tuning import (
    M_ARENA_MAX,
    MALLOC_ARENAS,
    glibc,
    limit_malloc_arenas,
    trim_malloc,
)


class RecordingLibc:
    """Stands in for the C library only to see what would be asked of it."""

    def __init__(self) -> None:
        """Nothing asked yet."""
        self.calls: list[tuple[str, int, int]] = []

    def mallopt(self, parameter: int, value: int) -> int:
        """Record the call; glibc answers 1 for success."""
        self.calls.append(("mallopt", parameter, value))
        return 1


def test_the_arenas_are_limited_unless_the_user_set_malloc_arena_max() -> None:
    libc = RecordingLibc()
    limit_malloc_arenas(libc, {})  # type: ignore[arg-type]
    assert libc.calls == [("mallopt", M_ARENA_MAX, MALLOC_ARENAS)]
    chosen = RecordingLibc()
    limit_malloc_arenas(chosen, {"MALLOC_ARENA_MAX": "4"})  # type: ignore[arg-type]
    assert chosen.calls == []


def test_this_debian_image_has_glibc_and_trimming_runs_until_cancelled() -> None:
    libc = glibc()
    assert libc is not None, "the image's Python runs on Debian's glibc"

    async def trim_a_few_times() -> bool:
        task = asyncio.create_task(trim_malloc(libc, seconds=0.01))
        await asyncio.sleep(0.1)
        alive = not task.done()  # it trims again and again; a failure would end it
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return alive

    assert asyncio.run(trim_a_few_times())
