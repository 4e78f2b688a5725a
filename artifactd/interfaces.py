"""The seams of artifactd: blob store, metadata store and authenticator.

Nothing outside the implementing modules knows about file paths or plyvel; a PostgreSQL metadata
store or an object-tier blob store plugs in here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager
from typing import BinaryIO

from zope.interface import Attribute, Interface

from artifactd.preconditions import WriteCondition
from artifactd.records import (
    Bucket,
    ListPage,
    ObjectRecord,
    ObjectSummary,
    Part,
    RowPage,
    Upload,
    UploadPage,
)


class IStagingFile(Interface):
    """A new blob being written.  Disk pool only: every method may block."""

    def write(data: bytes | memoryview) -> None:
        """Append ``data``."""

    def datasync() -> None:
        """Start the bytes written so far on their way to the disk (fdatasync); may run in
        another thread while ``write`` appends.  Only an optimisation: ``sync`` is what makes
        the file durable."""

    synced = Attribute("Whether sync() has made the file durable (bool).")

    def sync() -> None:
        """Flush and fsync the bytes written so far; after this the file is durable.  Once
        synced, the file takes no more writes and further calls do nothing."""

    def discard() -> None:
        """Close and delete the staging file.  Idempotent."""


class IBlobStore(Interface):
    """Content-addressed, immutable blobs named by the hex SHA-256 of their bytes.

    Every method may block (disk I/O): call from the disk threadpool, never the reactor thread,
    except :meth:`open_blob` whose returned stream is read in small pieces by the download producer.
    """

    def open_staging(size: int | None = None) -> IStagingFile:
        """Create a new staging file on the same filesystem as the blobs.  ``size``, when the
        body's exact length is known, lets the store give a file it can write over faster (a
        deleted blob's, see :meth:`release_spares`)."""

    def stage_bytes(data: bytes) -> IStagingFile:
        """A staged blob whose bytes are all in memory already (a small body); no I/O.  The
        store decides at commit where its bytes go."""

    def commit(staging: IStagingFile, digest: str) -> bool:
        """Make a staging file the blob ``digest``, durably (rename, fsync the directory).

        A staging file not synced yet is synced by the commit: at once outside a group; inside
        one, together with the group's directories before the group ends (its rename may come
        first: a blob whose metadata never got written is an orphan that recovery removes).

        If the blob already exists the staging file is discarded instead.  Returns whether a new
        blob was created.  Must be called with the engine's commit lock held so that it cannot race
        a deletion of the same digest.
        """

    def open_blob(digest: str) -> BinaryIO:
        """Open the blob for reading; raises ``FileNotFoundError`` if it does not exist."""

    def delete(digest: str) -> None:
        """Remove the blob if it exists."""

    def group() -> AbstractContextManager[None]:
        """A block in which ``commit`` and ``delete`` defer making their directory changes
        durable; a normal exit makes all of them durable at once (each directory fsynced once),
        so a group of commits costs one round of syncs.  Nothing may depend on a commit made in
        the block being durable before the block has exited."""

    def exists(digest: str) -> bool:
        """Whether the blob exists."""

    def digests() -> Iterator[str]:
        """Every stored blob's digest (a directory walk: disk pool only)."""

    def clear_staging() -> int:
        """Remove every staging file left by an earlier process; returns how many."""

    def check_free_space() -> int:
        """Bytes available to new blobs."""

    def release_spares(older_than: float | None = None) -> int:
        """Remove the files of deleted blobs kept (as spares for :meth:`open_staging`) longer
        than ``older_than`` seconds, by default the store's own limit; returns how many.  Called
        periodically, so that a deleted blob's space is free again within that limit."""


class IMetadataStore(Interface):
    """Buckets, objects, multipart uploads, parts and blob reference counts.

    Reads are cheap and may run on the reactor thread.  Mutations are atomic (one write batch,
    synced before returning) and may block: disk pool only, under the engine's commit lock.
    Mutations return the digests whose reference count dropped to zero, so the caller can delete
    those blobs *after* the metadata no longer points at them.
    """

    # reads
    def get_bucket(name: str) -> Bucket | None:
        """The bucket, or None."""

    def list_buckets() -> list[Bucket]:
        """All buckets in name order."""

    def bucket_is_empty(name: str) -> bool:
        """Whether the bucket holds no objects and no multipart uploads."""

    def get_object(bucket: str, key: str) -> ObjectRecord | None:
        """The current object record, or None."""

    def list_objects(
        bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage[ObjectRecord]:
        """One page of keys greater than ``start_after`` under ``prefix`` in S3 (UTF-8 byte) order,
        rolling keys that contain ``delimiter`` after the prefix into common prefixes."""

    def list_summaries(
        bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage[ObjectSummary]:
        """The page :meth:`list_objects` returns, with each record's listing fields only (what
        the listing APIs show; cheaper to read)."""

    def list_rows(bucket: str, prefix: str, start_after: str, max_keys: int) -> RowPage:
        """The page :meth:`list_summaries` returns without a delimiter, each entry the key and
        the listing row stored with its record (see the store's ``listing_row``), or the
        summary of a record stored without one."""

    def get_upload(bucket: str, key: str, upload_id: str) -> Upload | None:
        """The multipart upload, or None."""

    def list_parts(upload_id: str, after: int, max_parts: int) -> tuple[list[Part], bool]:
        """Parts numbered above ``after``, in order, and whether more remain."""

    def list_uploads(
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> UploadPage:
        """One page of in-progress uploads in (key, initiation) order."""

    def all_uploads() -> Iterator[Upload]:
        """Every upload in every bucket (used by the expiry task)."""

    def refcount(digest: str) -> int:
        """How many references the blob has."""

    # mutations: disk pool only, under the commit lock
    def create_bucket(bucket: Bucket) -> bool:
        """Record the bucket; False if it already existed."""

    def delete_bucket(name: str) -> None:
        """Remove an empty bucket; raises NoSuchBucket or BucketNotEmpty."""

    def put_object(record: ObjectRecord, condition: WriteCondition | None = None) -> list[str]:
        """Store (or replace) the object, adding references to its blobs.

        ``condition`` (a conditional write) is checked against the object being replaced in the
        same atomic step; raises PreconditionFailed, NoSuchKey or ConditionalRequestConflict."""

    def delete_object(bucket: str, key: str) -> tuple[bool, list[str]]:
        """Remove the object if present; returns (existed, released digests)."""

    def set_object_tags(bucket: str, key: str, tags: tuple[tuple[str, str], ...]) -> ObjectRecord:
        """Replace the current object's tags (no blob changes); returns the updated record.
        Raises NoSuchBucket or NoSuchKey."""

    def create_upload(upload: Upload) -> None:
        """Record a new multipart upload."""

    def put_part(bucket: str, key: str, part: Part) -> list[str]:
        """Record (or replace) a part; raises NoSuchUpload if the upload is gone."""

    def complete_upload(
        upload: Upload, record: ObjectRecord, condition: WriteCondition | None = None
    ) -> list[str]:
        """Atomically store ``record`` and remove the upload with all its parts.

        Raises NoSuchUpload if the upload is gone (e.g. aborted concurrently); ``condition`` is
        checked as for :meth:`put_object`, in the same atomic step."""

    def abort_upload(upload: Upload) -> list[str]:
        """Remove the upload and its parts; raises NoSuchUpload if it is gone."""

    def repair_refcounts() -> tuple[int, set[str]]:
        """Recompute every reference count from the object and part records, fix the stored
        counts, and return (how many were wrong, every referenced digest).  Disk pool only."""

    # small blobs: the bytes of blobs small enough to live beside the records that reference
    # them (written in the same atomic batch), keyed by digest like any blob
    def get_small_blob(digest: str) -> bytes | None:
        """The bytes of the small blob ``digest`` (durable state), or None."""

    def has_small_blob(digest: str) -> bool:
        """Whether the small blob exists, counting what the calling group has staged."""

    def put_small_blob(digest: str, data: bytes) -> None:
        """Store a small blob (a mutation: inside a group, part of its batch)."""

    def delete_small_blobs(digests: Iterable[str]) -> None:
        """Remove these small blobs where they exist (a mutation)."""

    def small_blob_digests() -> Iterator[str]:
        """Every small blob's digest."""

    def group() -> AbstractContextManager[None]:
        """A block whose mutations (by the calling thread, which holds the store's lock
        throughout) are written together as ONE atomic, synced batch when it exits normally.
        Inside the block mutations and ``refcount`` see the changes staged so far; other readers
        see none of them until the batch is written.  An exception discards them all."""

    def close() -> None:
        """Release the database.  Only after every thread using it has finished."""


class IAuthenticator(Interface):
    """Maps an access key id to its secret; the root pair today, users later."""

    def secret_for(access_key: str) -> str | None:
        """The secret key for ``access_key``, or None if unknown."""
