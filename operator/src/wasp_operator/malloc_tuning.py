"""How the operator's C allocator holds memory: few arenas, freed memory given back.

A thousand sessions starting at once make the operator's API threads
allocate and free a lot (responses decoded, bodies built). glibc's malloc
gives each thread an arena of its own (up to 8 per core) and keeps what was
freed in them resident: measured at 1,000 sessions, up to 95 MiB of the
operator's RSS was free malloc memory. So, on glibc only (musl and others
are left alone):

- at most ``MALLOC_ARENAS`` arenas, set before any thread starts, unless
  ``MALLOC_ARENA_MAX`` is set (the user's setting wins);
- ``malloc_trim(0)`` every ``MALLOC_TRIM_SECONDS`` (0.1-6 ms each), which
  also returns free pages in the middle of a heap, not only at its top.

Neither changes what the operator does; a quiet start can land as low
without them, they remove the bad runs.
"""

from __future__ import annotations

import asyncio
import ctypes
import os

M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)
MALLOC_ARENAS = 2
MALLOC_TRIM_SECONDS = 5.0


def glibc() -> ctypes.CDLL | None:
    """The C library when it is glibc (``mallopt``, ``malloc_trim``); None elsewhere (musl)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    if not hasattr(libc, "malloc_trim") or not hasattr(libc, "mallopt"):
        return None
    return libc


def limit_malloc_arenas(libc: ctypes.CDLL, environ: dict[str, str] | None = None) -> None:
    """At most ``MALLOC_ARENAS`` arenas, unless ``MALLOC_ARENA_MAX`` says otherwise.

    Before the API threads start: each would take an arena of its own (up to
    16 on 2 cores) and keep what it freed there (the responses it decoded).
    """
    environment = os.environ if environ is None else environ
    if "MALLOC_ARENA_MAX" not in environment:
        libc.mallopt(M_ARENA_MAX, MALLOC_ARENAS)


async def trim_malloc(libc: ctypes.CDLL, seconds: float = MALLOC_TRIM_SECONDS) -> None:
    """Give the memory malloc holds free back to the system every ``seconds``, for ever.

    A thousand sessions starting at once leave most of malloc's heaps free
    but resident (freed between long-lived objects: glibc trims only a
    heap's top); ``malloc_trim`` releases those pages too.
    """
    while True:
        await asyncio.sleep(seconds)
        libc.malloc_trim(0)
