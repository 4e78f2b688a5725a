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
from artifactd.storage.blobs import FileBlobStore, MemoryStaging

SMALL_MAX = 64 * 1024
"""The largest blob kept with the metadata."""


@implementer(IBlobStore)
class TieredBlobStore:
    def __init__(
        self, files: FileBlobStore, meta: IMetadataStore, small_max: int = SMALL_MAX
    ) -> None:
        self._files = files
        self._meta = meta
        self.small_max = small_max

    def group(self) -> AbstractContextManager[None]:
        """The file tier's group.  The small tier's changes are metadata mutations: inside the
        metadata store's group (the engine opens both) they are part of its one batch."""
        return self._files.group()

    def prepare(self) -> None:
        self._files.prepare()

    def open_staging(self) -> IStagingFile:
        return self._files.open_staging()

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
        data = self._meta.get_small_blob(digest)
        if data is not None:
            return io.BytesIO(data)
        return self._files.open_blob(digest)

    def delete(self, digest: str) -> None:
        self._meta.delete_small_blobs([digest])
        self._files.delete(digest)

    def exists(self, digest: str) -> bool:
        return self._meta.get_small_blob(digest) is not None or self._files.exists(digest)

    def digests(self) -> Iterator[str]:
        yield from self._meta.small_blob_digests()
        yield from self._files.digests()

    def clear_staging(self) -> int:
        return self._files.clear_staging()

    def check_free_space(self) -> int:
        return self._files.check_free_space()
