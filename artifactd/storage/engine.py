"""The storage engine: the only writer of blobs and metadata.

It runs every blocking step in the disk threadpool and serialises the commit steps (rename a blob
into place, write the metadata batch, delete released blobs) under one lock, so a blob is never
deleted while a concurrent commit is making a new reference to it.

Ordering guarantee: a blob is durable (fsynced file, renamed, directory fsynced) before the
metadata batch that references it is written; metadata that drops the last reference to a blob is
durable before the blob file is removed.  A crash at any point leaves at worst an orphan blob or a
stale staging file, which :meth:`Engine.recover` removes.

Commits are shielded: cancelling the Deferred a caller holds (Klein cancels handlers when the
client disconnects) does not stop a commit that has begun, and :meth:`Engine.drain` waits for all
of them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, Protocol, TypeVar

from attrs import frozen
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from artifactd import errors
from artifactd.interfaces import IBlobStore, IMetadataStore, IStagingFile
from artifactd.records import BlobRef, Bucket, ObjectRecord, Part, RecoveryReport, Upload

P = ParamSpec("P")
T = TypeVar("T")

READ_SIZE = 1024 * 1024


class Runner(Protocol):
    """Runs a blocking callable somewhere else (the disk threadpool) and returns a Deferred."""

    def __call__(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


@frozen
class StagedBody:
    """A request body fully written to a synced staging file, with its digests."""

    staging: IStagingFile
    size: int
    md5: str  # hex
    sha256: str  # hex


class Engine:
    log = Logger()

    def __init__(self, blobs: IBlobStore, meta: IMetadataStore, run: Runner) -> None:
        self.blobs = blobs
        self.meta = meta
        self._run = run
        self._commit_lock = threading.Lock()
        self._inflight: set[Deferred[Any]] = set()
        self.closed = False

    # ------------------------------------------------------------ plumbing
    def _submit(self, f: Callable[..., T], *args: object) -> Deferred[T]:
        """Run ``f`` in the disk pool, tracked and shielded from the caller's cancellation."""
        if self.closed:
            return fail(errors.ServiceUnavailable())
        inner: Deferred[T] = self._run(f, *args)
        self._inflight.add(inner)
        outer: Deferred[T] = Deferred()

        def relay(result: T | Failure) -> None:
            self._inflight.discard(inner)
            if outer.called:  # the caller cancelled; the commit finished regardless
                if isinstance(result, Failure):
                    self.log.failure("commit finished after its caller gave up", result)
                return
            if isinstance(result, Failure):
                outer.errback(result)
            else:
                outer.callback(result)

        inner.addBoth(relay)
        return outer

    def drain(self) -> Deferred[Any]:
        """Fires once every commit begun so far has finished."""
        return DeferredList(list(self._inflight), consumeErrors=True)

    def close(self) -> Deferred[Any]:
        """Refuse new work (ServiceUnavailable) and fire once every commit begun has finished."""
        self.closed = True
        return self.drain()

    def _release(self, digests: Iterable[str]) -> None:
        for digest in digests:
            self.blobs.delete(digest)

    # ------------------------------------------------------------- buckets
    def create_bucket(self, bucket: Bucket) -> Deferred[bool]:
        return self._submit(self._locked, self.meta.create_bucket, bucket)

    def delete_bucket(self, name: str) -> Deferred[None]:
        return self._submit(self._locked, self.meta.delete_bucket, name)

    def _locked(self, f: Callable[..., T], *args: object) -> T:
        with self._commit_lock:
            return f(*args)

    # ------------------------------------------------------------- objects
    def put_object(self, body: StagedBody, record: ObjectRecord) -> Deferred[ObjectRecord]:
        """Make the staged body the object described by ``record`` (whose ``blobs`` must be the
        single blob of ``body``)."""
        return self._submit(self._put_object, body, record)

    def _put_object(self, body: StagedBody, record: ObjectRecord) -> ObjectRecord:
        with self._commit_lock:
            self.blobs.commit(body.staging, body.sha256)
            try:
                released = self.meta.put_object(record)
            except BaseException:
                if self.meta.refcount(body.sha256) == 0:
                    self.blobs.delete(body.sha256)
                raise
            self._release(released)
        return record

    def delete_object(self, bucket: str, key: str) -> Deferred[bool]:
        return self._submit(self._delete_object, bucket, key)

    def _delete_object(self, bucket: str, key: str) -> bool:
        with self._commit_lock:
            existed, released = self.meta.delete_object(bucket, key)
            self._release(released)
        return existed

    def discard(self, staging: IStagingFile) -> Deferred[None]:
        """Delete a staging file that will not be committed."""
        return self._submit(staging.discard)

    # ----------------------------------------------------------- multipart
    def create_upload(self, upload: Upload) -> Deferred[None]:
        return self._submit(self._locked, self.meta.create_upload, upload)

    def put_part(self, body: StagedBody, upload: Upload, part: Part) -> Deferred[Part]:
        return self._submit(self._put_part, body, upload, part)

    def _put_part(self, body: StagedBody, upload: Upload, part: Part) -> Part:
        with self._commit_lock:
            self.blobs.commit(body.staging, body.sha256)
            try:
                released = self.meta.put_part(upload.bucket, upload.key, part)
            except BaseException:
                if self.meta.refcount(body.sha256) == 0:
                    self.blobs.delete(body.sha256)
                raise
            self._release(released)
        return part

    def complete_upload(
        self, upload: Upload, parts: list[Part], make_record: Callable[[str], ObjectRecord]
    ) -> Deferred[ObjectRecord]:
        """Hash the parts in order (disk pool, outside the commit lock), then atomically store the
        manifest object built by ``make_record(sha256_hex)`` and drop the upload."""
        return self._submit(self._complete_upload, upload, parts, make_record)

    def _complete_upload(
        self, upload: Upload, parts: list[Part], make_record: Callable[[str], ObjectRecord]
    ) -> ObjectRecord:
        sha = hashlib.sha256()
        try:
            for part in parts:
                with self.blobs.open_blob(part.blob.digest) as f:
                    while chunk := f.read(READ_SIZE):
                        sha.update(chunk)
        except FileNotFoundError:
            raise errors.InvalidPart(extra={"UploadId": upload.upload_id}) from None
        record = make_record(sha.hexdigest())
        with self._commit_lock:
            released = self.meta.complete_upload(upload, record)
            self._release(released)
        return record

    def abort_upload(self, upload: Upload) -> Deferred[None]:
        return self._submit(self._abort_upload, upload)

    def _abort_upload(self, upload: Upload) -> None:
        with self._commit_lock:
            self._release(self.meta.abort_upload(upload))

    # ------------------------------------------------------------ recovery
    def recover(self) -> Deferred[RecoveryReport]:
        """Remove stale staging files, repair reference counts and delete orphan blobs."""
        return self._submit(self._recover)

    def _recover(self) -> RecoveryReport:
        with self._commit_lock:
            staging = self.blobs.clear_staging()
            fixed, referenced = self.meta.repair_refcounts()
            orphans = 0
            present: set[str] = set()
            for digest in self.blobs.digests():
                if digest in referenced:
                    present.add(digest)
                else:
                    self.blobs.delete(digest)
                    orphans += 1
            missing = tuple(sorted(referenced - present))
        return RecoveryReport(
            staging_removed=staging,
            orphan_blobs_removed=orphans,
            refcounts_fixed=fixed,
            missing_blobs=missing,
        )


def blob_of(body: StagedBody) -> BlobRef:
    return BlobRef(digest=body.sha256, size=body.size)
