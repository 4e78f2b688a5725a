"""Spare files: the files of deleted blobs, kept a short while for large uploads to write over.

A new file needs a fresh page-cache page for every byte written to it, and fresh disk blocks when
it is written back.  In a virtual machine whose host takes back the guest's free memory (free page
reporting), each fresh page is also faulted in from the host again: on the 2-core benchmark machine
that took the write of a 1 GiB upload from ~0.3 to 0.6-1.5 CPU seconds.  Writing over a file whose
pages are still cached reuses both its pages and its blocks.  So, as databases recycle their log
segments, the blob store renames a deleted blob's file into the staging directory instead of
unlinking it, and the next large upload of about its size writes over it (``FileBlobStore``).

A spare is only ever written over when nothing reads it: the store offers a blob's file only when
none of its own readers has it open (and it has no other link).  Spares are bounded: files of at
least ``min_size`` bytes, at most ``max_files`` of them and ``max_bytes`` in all, none while the
filesystem has less than ``reserve`` of its space free, and each kept at most ``max_age`` seconds
(:meth:`SparePool.release`, called periodically; the space of a deleted blob is free again by
then).  They live in the staging directory, so start-up removes any a crash left behind, as it
removes every staging file.

Any thread: the pool's own state is behind a lock.  Its methods block on the filesystem (disk
pool).
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import threading
import time
from collections.abc import Callable

from attrs import define, field, frozen

MiB = 1024 * 1024
GiB = 1024 * MiB

MAX_FILES = 8
MAX_BYTES = 4 * GiB
MIN_SIZE = 8 * MiB
RESERVE = 0.10  # of the filesystem's space: below that much free, deleted blobs go at once
LARGEST_FIT = 2  # a spare is only used for a body of at least 1/LARGEST_FIT of its size


@frozen
class Spare:
    path: str
    size: int
    since: float  # the pool's clock when it became a spare


@define
class SparePool:
    """Spare files in ``directory`` (the staging directory, on the blobs' filesystem)."""

    directory: str
    max_age: float
    max_files: int = MAX_FILES
    max_bytes: int = MAX_BYTES
    min_size: int = MIN_SIZE
    reserve: float = RESERVE
    clock: Callable[[], float] = time.monotonic
    _spares: list[Spare] = field(factory=list, init=False)
    _lock: threading.Lock = field(factory=threading.Lock, init=False)

    @property
    def spares(self) -> list[Spare]:
        """The spares, oldest first."""
        with self._lock:
            return list(self._spares)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(s.size for s in self._spares)

    def offer(self, path: str, move: Callable[[str, str], bool]) -> bool:
        """Take the file at ``path`` (a deleted blob's) as a spare, renamed into the directory
        by ``move(path, spare_path)``, which may refuse (False: a reader has the file open);
        False if it is not wanted, refused or gone, and then it is still at ``path``.

        The caller makes the removal of ``path`` durable, as for an unlink."""
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size < self.min_size:
            return False
        if not self._has_room(st.st_size):
            return False
        fd, spare = tempfile.mkstemp(prefix="spare-", dir=self.directory)
        os.close(fd)
        moved = False
        try:
            moved = move(path, spare)
        finally:
            if not moved:
                os.unlink(spare)
        if not moved:
            return False
        evicted: list[Spare] = []
        with self._lock:
            self._spares.append(Spare(spare, st.st_size, self.clock()))
            while len(self._spares) > self.max_files or (
                sum(s.size for s in self._spares) > self.max_bytes
            ):
                evicted.append(self._spares.pop(0))
        self._remove(evicted)  # outside the caller's lock: a large file takes a while to free
        return True

    def take(self, size: int) -> Spare | None:
        """The spare to write a body of ``size`` bytes over, no longer in the pool; None if none
        fits.  The closest in size wins among those no larger than ``LARGEST_FIT`` times the body
        (a larger one's extra pages would be dropped unused); the newest among equals."""
        if size < self.min_size:
            return None
        with self._lock:
            best: Spare | None = None
            for spare in reversed(self._spares):
                if spare.size > size * LARGEST_FIT:
                    continue
                if best is None or abs(spare.size - size) < abs(best.size - size):
                    best = spare
            if best is not None:
                self._spares.remove(best)
            return best

    def release(self, older_than: float) -> int:
        """Remove the spares kept ``older_than`` seconds or longer; how many."""
        cutoff = self.clock() - older_than
        with self._lock:
            old = [s for s in self._spares if s.since <= cutoff]
            self._spares = [s for s in self._spares if s.since > cutoff]
        self._remove(old)
        return len(old)

    def _has_room(self, size: int) -> bool:
        if size > self.max_bytes:
            return False
        st = os.statvfs(self.directory)
        return st.f_bavail >= st.f_blocks * self.reserve

    @staticmethod
    def _remove(spares: list[Spare]) -> None:
        # staging files: nothing to make durable (start-up removes whatever a crash leaves)
        for spare in spares:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(spare.path)
