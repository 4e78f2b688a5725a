"""Blobs as files sharded by SHA-256 on local disk (``blobs/ab/cd/<digest>``)."""

from __future__ import annotations

import functools
import io
import os
import shutil
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import BinaryIO

from zope.interface import implementer

from artifactd.interfaces import IBlobStore, IStagingFile
from artifactd.storage.durable import (
    FileSystem,
    OSFileSystem,
    durable_rename,
    durable_unlink,
    sync_dirs,
    sync_parent,
)
from artifactd.storage.layout import Layout, is_digest
from artifactd.storage.spares import SparePool

SPARE_SECONDS = 30.0


@implementer(IStagingFile)
class StagingFile:
    """A temp file under ``staging/``.  Disk pool only."""

    def __init__(self, path: str, fs: FileSystem, *, reuse: bool = False) -> None:
        """A new (empty) file at ``path``; with ``reuse``, a spare file to write over from its
        start, cut to the bytes written when synced or committed."""
        self.path = path
        self._fs = fs
        self._file: BinaryIO | None = (
            open(path, "r+b", buffering=0)  # noqa: SIM115
            if reuse
            else open(path, "wb", buffering=0)  # noqa: SIM115
        )
        self._reused = reuse
        self._written = 0
        self._synced = False

    def write(self, data: bytes | memoryview) -> None:
        assert self._file is not None, "write after discard"
        view = memoryview(data)
        while view:
            written = self._file.write(view) or 0
            self._written += written
            view = view[written:]

    def seal(self) -> None:
        """Cut a reused file to the bytes written: nothing of its earlier content may follow
        them into a blob."""
        if self._reused and self._file is not None:
            self._file.truncate(self._written)

    def datasync(self) -> None:
        f = self._file
        if f is not None:
            self._fs.fdatasync_fd(f.fileno())

    @property
    def synced(self) -> bool:
        return self._synced

    def sync(self) -> None:
        if self._synced:
            return
        assert self._file is not None, "sync after discard"
        self.seal()
        self._fs.fsync_fd(self._file.fileno())
        self._file.close()
        self._file = None
        self._synced = True

    def close(self) -> None:
        """Close without syncing (the file is committed, or being discarded)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self._fs.unlink(self.path)


@implementer(IStagingFile)
class MemoryStaging:
    """A whole small body held in memory (:meth:`IBlobStore.stage_bytes`): nothing to write,
    sync or remove until a commit decides where its bytes go."""

    synced = True

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write(self, data: bytes | memoryview) -> None:
        raise TypeError("a staged in-memory body is complete")

    def datasync(self) -> None:
        pass

    def sync(self) -> None:
        pass

    def discard(self) -> None:
        self.data = b""


@implementer(IBlobStore)
class FileBlobStore:
    def __init__(
        self,
        layout: Layout,
        fs: FileSystem | None = None,
        *,
        spare_seconds: float = SPARE_SECONDS,
    ) -> None:
        """``spare_seconds``: how long the file of a deleted blob is kept for a large upload to
        write over (:mod:`artifactd.storage.spares`); 0 removes it at once."""
        self._layout = layout
        self._fs = fs if fs is not None else OSFileSystem()
        self.spares = SparePool(layout.staging, spare_seconds) if spare_seconds > 0 else None
        self._readers: Counter[str] = Counter()  # blob path -> files of it open here
        # held while a blob's file becomes a spare; reentrant: a reader's close (which takes it)
        # may run in any thread at any time, as the garbage collector finalises a lost file
        self._readers_lock = threading.RLock()
        self._pending: set[str] | None = None  # directories to fsync at the end of a group
        self._pending_files: list[StagingFile] = []  # files committed unsynced in the group
        self._syncers = ThreadPoolExecutor(max_workers=16, thread_name_prefix="artifactd-fsync")

    @contextmanager
    def group(self) -> Iterator[None]:
        """Inside the block, ``commit`` and ``delete`` only note the directories they change;
        on a normal exit each of those is fsynced once.  One thread at a time (the engine's
        commit lock)."""
        assert self._pending is None, "groups do not nest"
        self._pending = set()
        self._pending_files = []
        try:
            yield
            files = [self._syncers.submit(f.sync) for f in self._pending_files]
            sync_dirs(self._fs, self._pending, self._syncers)
            for future in files:
                future.result()
        finally:
            for f in self._pending_files:
                f.close()
            self._pending = None
            self._pending_files = []

    def prepare(self) -> None:
        """Create the directory skeleton (disk pool or start-up only)."""
        os.makedirs(self._layout.blobs, exist_ok=True)
        os.makedirs(self._layout.staging, exist_ok=True)

    def open_staging(self, size: int | None = None) -> StagingFile:
        if self.spares is not None and size is not None:
            spare = self.spares.take(size)
            if spare is not None:
                try:
                    if spare.size > size:
                        os.truncate(spare.path, size)  # its extra pages go at once
                    return StagingFile(spare.path, self._fs, reuse=True)
                except OSError:
                    self._fs.unlink(spare.path)  # a new file instead
        fd, path = tempfile.mkstemp(prefix="put-", dir=self._layout.staging)
        os.close(fd)
        os.chmod(path, 0o640)
        return StagingFile(path, self._fs)

    def stage_bytes(self, data: bytes) -> MemoryStaging:
        return MemoryStaging(data)

    def commit(self, staging: IStagingFile, digest: str) -> bool:
        target = self._layout.blob(digest)
        if os.path.exists(target):
            staging.discard()
            return False
        if isinstance(staging, MemoryStaging):  # its first bytes on disk: synced with the group
            data = staging.data
            staging = self.open_staging()
            staging.write(data)
        assert isinstance(staging, StagingFile)
        if self._pending is None:
            staging.sync()  # sealed there
        elif not staging.synced:
            # Synced with the group's directories, before the group's metadata is written: if
            # the process dies first, the blob is unreferenced and recovery removes it.  Sealed
            # now, as the rename below shows it under its digest before that sync.
            staging.seal()
            self._pending_files.append(staging)
        durable_rename(self._fs, staging.path, target, self._pending)
        return True

    def open_blob(self, digest: str) -> BinaryIO:
        path = self._layout.blob(digest)
        with self._readers_lock:
            raw = _BlobFile(path, functools.partial(self._closed, path))
            self._readers[path] += 1
        return io.BufferedReader(raw)

    def _closed(self, path: str) -> None:  # any thread
        with self._readers_lock:
            self._readers[path] -= 1
            if not self._readers[path]:
                del self._readers[path]

    def delete(self, digest: str) -> None:
        path = self._layout.blob(digest)
        if self.spares is not None and self.spares.offer(path, self._move_unread):
            sync_parent(self._fs, path, self._pending)
            return
        if os.path.lexists(path):  # its shard directory may not exist: nothing to fsync then
            durable_unlink(self._fs, path, self._pending)

    def _move_unread(self, path: str, spare: str) -> bool:
        """Rename a blob's file to ``spare`` unless one of this store's readers has it open."""
        with self._readers_lock:  # no reader opens it meanwhile
            if self._readers[path]:
                return False
            os.replace(path, spare)
            return True

    def release_spares(self, older_than: float | None = None) -> int:
        """Remove the spare files kept longer than ``older_than`` seconds (by default the
        store's ``spare_seconds``); how many."""
        if self.spares is None:
            return 0
        return self.spares.release(self.spares.max_age if older_than is None else older_than)

    def exists(self, digest: str) -> bool:
        return os.path.exists(self._layout.blob(digest))

    def digests(self) -> Iterator[str]:
        for top in _subdirs(self._layout.blobs):
            for mid in _subdirs(top):
                with os.scandir(mid) as entries:
                    for entry in entries:
                        if is_digest(entry.name):
                            yield entry.name

    def clear_staging(self) -> int:
        removed = 0
        with os.scandir(self._layout.staging) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
                removed += 1
        if removed:
            self._fs.fsync_dir(self._layout.staging)
        return removed

    def check_free_space(self) -> int:
        st = os.statvfs(self._layout.blobs)
        spare = self.spares.total if self.spares is not None else 0
        return st.f_bavail * st.f_frsize + spare


class _BlobFile(io.FileIO):
    """A blob file open for reading, which tells its store when it is closed."""

    def __init__(self, path: str, closed: Callable[[], None]) -> None:
        self._on_close: Callable[[], None] | None = None  # not counted until open
        super().__init__(path, "rb")
        self._on_close = closed

    def close(self) -> None:
        try:
            super().close()
        finally:
            on_close, self._on_close = self._on_close, None
            if on_close is not None:
                on_close()


def _subdirs(path: str) -> list[str]:
    with os.scandir(path) as entries:
        return sorted(e.path for e in entries if e.is_dir(follow_symlinks=False))
