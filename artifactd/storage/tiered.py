"""Small blobs beside the metadata, large ones in files.

A blob of at most ``small_max`` bytes staged in memory (:meth:`IBlobStore.stage_bytes`) is
committed into the metadata store, in the same atomic batch as the records of its group commit:
a small write is then durable with that one synced batch, with no file to create, fsync and
rename and no directory to fsync.  Everything else is a file of :class:`FileBlobStore`.  Both
tiers are content-addressed by SHA-256, so deduplication and reference counting are the
metadata store's as before; readers cannot tell the tiers apart.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from zope.interface import implementer

from artifactd.interfaces import IBlobStore, IMetadataStore, IStagingFile
from artifactd.lru import LRU
from artifactd.storage.blobs import FileBlobStore, MemoryStaging

SMALL_MAX = 64 * 1024
"""The largest blob kept with the metadata."""
RECENT_MAX = 16 * 1024 * 1024
"""How many bytes of the small blobs read most recently are kept in memory.

A small GET reads its object's record and then its blob from the metadata store: answering the
second read from memory made GET 4 KiB at 64 connections 4-10% faster (1000 objects, all kept).
A digest names the same bytes forever, so a kept blob is never stale; a deleted one is dropped.
"""


@implementer(IBlobStore)
class TieredBlobStore:
    def __init__(
        self, files: FileBlobStore, meta: IMetadataStore, small_max: int = SMALL_MAX
    ) -> None:
        self._files = files
        self._meta = meta
        self.small_max = small_max
        self.recent: LRU[str, bytes] = LRU(RECENT_MAX, _size_of_blob)

    def group(self) -> AbstractContextManager[None]:
        """The file tier's group.  The small tier's changes are metadata mutations: inside the
        metadata store's group (the engine opens both) they are part of its one batch."""
        return self._files.group()

    def prepare(self) -> None:
        self._files.prepare()

    def open_staging(self, size: int | None = None) -> IStagingFile:
        return self._files.open_staging(size)

    def stage_bytes(self, data: bytes) -> IStagingFile:
        return self._files.stage_bytes(data)

    def commit(self, staging: IStagingFile, digest: str) -> bool:
        if not isinstance(staging, MemoryStaging) or len(staging.data) > self.small_max:
            return self._files.commit(staging, digest)
        # An unreferenced digest is stored afresh (the usual case: one lookup, whose answer
        # the commit reads again from the group's overlay).  Only a referenced one can already
        # be here, as a small blob or as a file (written by an earlier version); an
        # unreferenced leftover is an orphan recovery removes (and the same bytes again).
        if self._meta.refcount(digest) > 0 and (
            self._meta.has_small_blob(digest) or self._files.exists(digest)
        ):
            staging.discard()
            return False
        self._meta.put_small_blob(digest, staging.data)
        return True

    def open_blob(self, digest: str) -> BinaryIO:
        data = self.recent.get(digest)
        if data is None:
            data = self._meta.get_small_blob(digest)
            if data is None:
                return self._files.open_blob(digest)
            self.recent.add(digest, data)
        return io.BytesIO(data)

    def delete(self, digest: str) -> None:
        self._meta.delete_small_blobs([digest])
        self._files.delete(digest)
        # (a read racing this may keep the blob a while longer: the same bytes, and bounded)
        self.recent.discard(digest)

    def exists(self, digest: str) -> bool:
        return self._meta.get_small_blob(digest) is not None or self._files.exists(digest)

    def digests(self) -> Iterator[str]:
        yield from self._meta.small_blob_digests()
        yield from self._files.digests()

    def clear_staging(self) -> int:
        return self._files.clear_staging()

    def check_free_space(self) -> int:
        return self._files.check_free_space()

    def release_spares(self, older_than: float | None = None) -> int:
        return self._files.release_spares(older_than)


def _size_of_blob(digest: str, data: bytes) -> int:
    return len(data)
