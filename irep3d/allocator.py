"""Keep freed memory for reuse instead of handing it back to the OS (a process setting).

The synthesis network allocates and frees the same large temporaries for every layer of
every frame. glibc serves large blocks with fresh `mmap` pages and unmaps them on free, so
each layer pays page faults again (several times slower at batch 8: README.md, "Measured
speed"). Turning `mmap` off for the heap and never trimming it lets the allocator recycle
those blocks. Every thread allocates from the one main heap (`M_ARENA_MAX` 1): a thread
of its own otherwise gets a separate arena, built of 64 MiB heaps that this tuning does not
reach, and a network run from a thread (the explorer's walks, `live`, a render started from
the page) ran at half the speed it runs at from the main thread. This is for applications
(the CLI, benchmarks), not for library code called inside someone else's process such as
Blender.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_allocator"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8


def tune_allocator() -> bool:
    """Set glibc's malloc to reuse large blocks. Returns False where that does not apply."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc without mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    ok &= mallopt(_M_ARENA_MAX, 1) == 1
    return bool(ok)
