"""Keeping the daemon's memory flat under load.

Request bodies pass through the disk pool in 1 MiB buffers, allocated and freed by many threads.
glibc's malloc raises its mmap threshold to the size of the largest block freed (up to 32 MiB),
after which such buffers come from per-thread heaps that keep the freed memory: resident memory
then grows with the number of threads that ever held a buffer.  A fixed threshold keeps every
buffer of 256 KiB or more in its own mapping, returned to the system when freed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number
MMAP_THRESHOLD = 256 * 1024
YOUNG_THRESHOLD = 10_000
"""How many more container objects alive than when the collector last ran set it off again.

Python's default, 700, is reached by the objects of a few dozen requests in flight at once
(~30 each): under PUT 4 KiB at 64 connections the collector ran ~150 times a second and found
nothing, as the requests' objects are freed by reference counting; that took ~0.18 s of the
reactor's ~6.6 s over 8 s."""


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Set glibc's mmap threshold (which also stops its dynamic adjustment); False where the C
    library is not glibc or refuses."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, threshold))


def freeze_startup_objects() -> None:
    """Collect once, then move every object alive now (modules, classes, the service: what
    start-up made and the process keeps) out of the garbage collector's generations for good.

    The collector's older generations are otherwise traversed again and again although these
    objects never die; a listing page allocates thousands of short-lived objects and so sets off
    collections, which cost a listing of 1000 keys about 0.4 ms (12%) before this."""
    gc.collect()
    gc.freeze()


def raise_young_threshold(threshold: int = YOUNG_THRESHOLD) -> None:
    """Let ``threshold`` more objects be alive before the youngest generation is collected;
    the older generations keep their thresholds."""
    gc.set_threshold(threshold, *gc.get_threshold()[1:])
