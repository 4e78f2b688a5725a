"""The storage engine: the only writer of blobs and metadata.

It runs every blocking step in the disk threadpool and serialises the commit steps (rename a blob
into place, write the metadata batch, delete released blobs) under one lock, so a blob is never
deleted while a concurrent commit is making a new reference to it.

Group commit: commits that arrive while another group is being made durable queue up, and the
next thread to take the lock runs every queued commit as one group: their renames, then one
fsync of each directory they touched, then ONE synced metadata batch holding all their changes,
then the deletion of the blobs they released.  No commit's caller hears back before its group is
durable, so concurrent writers share the cost of the syncs without weakening any guarantee.

Ordering guarantee: a blob is durable (fsynced file, renamed, directory fsynced) before the
metadata batch that references it is written; metadata that drops the last reference to a blob is
durable before the blob file is removed.  A crash at any point leaves at worst an orphan blob or a
stale staging file, which :meth:`Engine.recover` removes.

Commits are shielded: cancelling the Deferred a caller holds (the API resource cancels handlers
when the client disconnects) does not stop a commit that has begun, and :meth:`Engine.drain`
waits for all of them.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterable
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from attrs import define, frozen
from twisted.internet.defer import Deferred, DeferredList, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from artifactd import errors
from artifactd.checksums import new_checksum
from artifactd.interfaces import IBlobStore, IMetadataStore, IStagingFile
from artifactd.preconditions import WriteCondition
from artifactd.records import BlobRef, Bucket, ObjectRecord, Part, RecoveryReport, Upload
from artifactd.storage import copying

P = ParamSpec("P")
T = TypeVar("T")

READ_SIZE = 1024 * 1024


class Runner(Protocol):
    """Runs a blocking callable somewhere else (the disk threadpool) and returns a Deferred."""

    def __call__(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]: ...


@frozen
class StagedBody:
    """A request body fully written to a staging file (synced, or synced by its commit), with
    its digests."""

    staging: IStagingFile
    size: int
    md5: str  # hex
    sha256: str  # hex


@define
class _Commit(Generic[T]):
    """One queued commit: ``work`` runs inside a group, under the commit lock.  A commit queued
    from the reactor thread carries the ``deferred`` to fire there once its group is durable."""

    work: Callable[[], T]
    done: bool = False
    result: T | None = None
    error: BaseException | None = None
    deferred: Deferred[T] | None = None


class Engine:
    log = Logger()

    def __init__(
        self,
        blobs: IBlobStore,
        meta: IMetadataStore,
        run: Runner,
        call_from_thread: Callable[..., object] | None = None,
    ) -> None:
        self.blobs = blobs
        self.meta = meta
        self._run = run
        # With call_from_thread (the reactor's), commits that are nothing but a commit are
        # queued straight from the reactor thread and run by one committer thread, which hands
        # each group's results back in one call: no disk-pool thread per write waits for the
        # commit lock, and the reactor shares the GIL with one thread instead of dozens.
        self._call_from_thread = call_from_thread
        self._committer: threading.Thread | None = None
        self._wakeup = threading.Event()
        self._stopping = False
        self._commit_lock = threading.Lock()
        self._queue_lock = threading.Lock()
        self._queue: list[_Commit[Any]] = []
        self._released: list[str] = []  # digests released by the group running now
        self._inflight: set[Deferred[Any]] = set()
        self.closed = False
        self.groups = 0  # groups made durable, and the commits in them (for tests and benches)
        self.grouped_commits = 0

    # ------------------------------------------------------------ plumbing
    def _submit(self, f: Callable[..., T], *args: object) -> Deferred[T]:
        """Run ``f`` in the disk pool, tracked and shielded from the caller's cancellation."""
        if self.closed:
            return fail(errors.ServiceUnavailable())
        return self._track(self._run(f, *args))

    def _submit_commit(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        """``f(*args, **kwargs)`` as a commit: queued for the committer thread when there is
        one, else run in the disk pool as :meth:`_commit`.  Tracked and shielded like
        :meth:`_submit`."""
        if self._call_from_thread is None:
            return self._submit(self._commit, f, *args, **kwargs)
        if self.closed:
            return fail(errors.ServiceUnavailable())
        inner: Deferred[T] = Deferred()
        item: _Commit[T] = _Commit(lambda: f(*args, **kwargs), deferred=inner)
        with self._queue_lock:
            self._queue.append(item)
        if self._committer is None:
            self._committer = threading.Thread(
                target=self._committer_main, name="artifactd-commit", daemon=True
            )
            self._committer.start()
        self._wakeup.set()
        return self._track(inner)

    def _committer_main(self) -> None:
        """The committer thread: run everything queued as one group, hand the results back,
        sleep until more is queued."""
        while True:
            self._wakeup.wait()
            self._wakeup.clear()  # before taking the queue: a commit queued after it wakes us
            with self._commit_lock:
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                if batch:
                    self._run_group(batch)
            self._deliver(batch)
            if self._stopping:
                with self._queue_lock:
                    if not self._queue:
                        return

    def _deliver(self, batch: list[_Commit[Any]]) -> None:
        """Hand the results of a durable group's reactor-queued commits back, in one call."""
        queued = [item for item in batch if item.deferred is not None]
        if queued:
            assert self._call_from_thread is not None
            self._call_from_thread(_fire, queued)

    def stop(self) -> None:
        """Stop the committer thread once the commits queued so far are done (blocks; after
        :meth:`close` has drained)."""
        committer, self._committer = self._committer, None
        if committer is not None:
            self._stopping = True
            self._wakeup.set()
            committer.join()

    def _track(self, inner: Deferred[T]) -> Deferred[T]:
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
        """Commit lock held: delete these blobs once the group is durable, if still unused."""
        self._released.extend(digests)

    def _commit(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Disk pool: run ``f`` as part of a group under the commit lock and return its result
        (or raise its exception) once the group is durable."""
        item: _Commit[T] = _Commit(lambda: f(*args, **kwargs))
        with self._queue_lock:
            self._queue.append(item)
        with self._commit_lock:
            if not item.done:  # nobody ran it yet: lead a group of everything queued
                with self._queue_lock:
                    batch, self._queue = self._queue, []
                self._run_group(batch)
                self._deliver(batch)  # commits the reactor queued may be in it
        if item.error is not None:
            raise item.error
        return item.result  # type: ignore[return-value]

    def _run_group(self, batch: list[_Commit[Any]]) -> None:
        self._released = []
        try:
            with self.meta.group(), self.blobs.group():
                for item in batch:
                    try:
                        item.result = item.work()
                    except BaseException as e:  # this commit fails alone; the others go on
                        item.error = e
        except BaseException as e:  # the group's syncs failed: none of it is durable
            for item in batch:
                if item.error is None:
                    item.error, item.result = e, None
        else:
            self.groups += 1
            self.grouped_commits += len(batch)
            self._delete_unused(self._released)
        finally:
            self._released = []
            for item in batch:
                item.done = True

    def _delete_unused(self, digests: list[str]) -> None:
        """Delete the released blobs that no durable record references (the group may have
        given a released blob a new reference)."""
        unused = [d for d in dict.fromkeys(digests) if self.meta.refcount(d) <= 0]
        if not unused:
            return
        try:
            with self.meta.group(), self.blobs.group():  # small blobs go in one metadata batch
                for digest in unused:
                    self.blobs.delete(digest)
        except Exception:  # the records are durable; an orphan blob is removed at next start
            self.log.failure("could not delete released blobs")

    # ------------------------------------------------------------- buckets
    def create_bucket(self, bucket: Bucket) -> Deferred[bool]:
        return self._submit_commit(self.meta.create_bucket, bucket)

    def delete_bucket(self, name: str) -> Deferred[None]:
        return self._submit_commit(self.meta.delete_bucket, name)

    # ------------------------------------------------------------- objects
    def put_object(
        self, body: StagedBody, record: ObjectRecord, condition: WriteCondition | None = None
    ) -> Deferred[ObjectRecord]:
        """Make the staged body the object described by ``record`` (whose ``blobs`` must be the
        single blob of ``body``), if the conditional write ``condition`` holds at that moment."""
        return self._submit_commit(self._put_object_now, body, record, condition)

    def _put_object_now(
        self, body: StagedBody, record: ObjectRecord, condition: WriteCondition | None
    ) -> ObjectRecord:
        self.blobs.commit(body.staging, body.sha256)
        try:
            released = self.meta.put_object(record, condition)
        except BaseException:
            if self.meta.refcount(body.sha256) == 0:
                self.blobs.delete(body.sha256)
            raise
        self._release(released)
        return record

    def delete_object(self, bucket: str, key: str) -> Deferred[bool]:
        return self._submit_commit(self._delete_object_now, bucket, key)

    def _delete_object_now(self, bucket: str, key: str) -> bool:
        existed, released = self.meta.delete_object(bucket, key)
        self._release(released)
        return existed

    def set_object_tags(
        self, bucket: str, key: str, tags: tuple[tuple[str, str], ...]
    ) -> Deferred[ObjectRecord]:
        """Replace the tags of the object ``bucket``/``key`` in one synced metadata batch (disk
        pool, under the commit lock); fires with the updated record, or fails with NoSuchKey."""
        return self._submit_commit(self.meta.set_object_tags, bucket, key, tags)

    def discard(self, staging: IStagingFile) -> Deferred[None]:
        """Delete a staging file that will not be committed."""
        return self._submit(staging.discard)

    # ----------------------------------------------------------- multipart
    def create_upload(self, upload: Upload) -> Deferred[None]:
        return self._submit_commit(self.meta.create_upload, upload)

    def put_part(self, body: StagedBody, upload: Upload, part: Part) -> Deferred[Part]:
        return self._submit_commit(self._put_part_now, body, upload, part)

    def _put_part(self, body: StagedBody, upload: Upload, part: Part) -> Part:
        return self._commit(self._put_part_now, body, upload, part)

    def _put_part_now(self, body: StagedBody, upload: Upload, part: Part) -> Part:
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
        self,
        upload: Upload,
        parts: list[Part],
        make_record: Callable[[str, str | None], ObjectRecord],
        *,
        checksum_algorithm: str | None = None,
        condition: WriteCondition | None = None,
    ) -> Deferred[ObjectRecord]:
        """Hash the parts in order (disk pool, outside the commit lock), then atomically store the
        manifest object built by ``make_record(sha256_hex, checksum_b64)`` and drop the upload.

        ``checksum_b64`` is the ``checksum_algorithm`` checksum of the whole content, computed in
        the same pass (None without an algorithm): the FULL_OBJECT checksum of a multipart object.
        ``make_record`` runs in the disk pool and may raise an S3 error to refuse the upload;
        ``condition`` is checked in the metadata store's atomic step."""
        return self._submit(
            self._complete_upload, upload, parts, make_record, checksum_algorithm, condition
        )

    def _complete_upload(
        self,
        upload: Upload,
        parts: list[Part],
        make_record: Callable[[str, str | None], ObjectRecord],
        checksum_algorithm: str | None,
        condition: WriteCondition | None,
    ) -> ObjectRecord:
        sha = hashlib.sha256()
        checksum = new_checksum(checksum_algorithm) if checksum_algorithm else None
        try:
            for part in parts:
                with self.blobs.open_blob(part.blob.digest) as f:
                    while chunk := f.read(READ_SIZE):
                        sha.update(chunk)
                        if checksum is not None:
                            checksum.update(chunk)
        except FileNotFoundError:
            raise errors.InvalidPart(extra={"UploadId": upload.upload_id}) from None
        record = make_record(sha.hexdigest(), checksum.digest_b64() if checksum else None)
        self._commit(self._store_completed, upload, record, condition)
        return record

    def _store_completed(
        self, upload: Upload, record: ObjectRecord, condition: WriteCondition | None
    ) -> None:
        self._release(self.meta.complete_upload(upload, record, condition))

    def abort_upload(self, upload: Upload) -> Deferred[None]:
        return self._submit(self._abort_upload, upload)

    def _abort_upload(self, upload: Upload) -> None:
        self._commit(lambda: self._release(self.meta.abort_upload(upload)))

    # -------------------------------------------------------------- copies
    def copy_object(
        self,
        source: ObjectRecord,
        make_record: Callable[[str | None, str | None], ObjectRecord],
        *,
        md5: bool = False,
        checksum_algorithm: str | None = None,
        condition: WriteCondition | None = None,
    ) -> Deferred[ObjectRecord]:
        """Store the record ``make_record(md5_hex, checksum_b64)`` builds over ``source``'s
        blobs: no byte is written, each blob gains a reference.

        With ``md5`` or ``checksum_algorithm`` the source's bytes are read once (disk pool,
        outside the commit lock) to compute them; otherwise both arguments are None.  Under the
        commit lock the record's blobs must still be referenced (NoSuchKey naming the source if
        it was deleted or replaced meanwhile), and ``condition`` is checked in the metadata
        store's atomic step."""
        return self._submit(
            self._copy_object, source, make_record, md5, checksum_algorithm, condition
        )

    def _copy_object(
        self,
        source: ObjectRecord,
        make_record: Callable[[str | None, str | None], ObjectRecord],
        md5: bool,
        checksum_algorithm: str | None,
        condition: WriteCondition | None,
    ) -> ObjectRecord:
        md5_hex: str | None = None
        checksum: str | None = None
        if md5 or checksum_algorithm:
            digests = self._read_source(
                source,
                copying.pieces(source.blobs, 0, source.size),
                md5=md5,
                checksum_algorithm=checksum_algorithm,
            )
            md5_hex, checksum = digests.md5, digests.checksum
        record = make_record(md5_hex, checksum)
        self._commit(self._store_copy, source, record, condition)
        return record

    def _store_copy(
        self, source: ObjectRecord, record: ObjectRecord, condition: WriteCondition | None
    ) -> None:
        self._require_referenced(source, record.blobs)
        self._release(self.meta.put_object(record, condition))

    def copy_part(
        self,
        upload: Upload,
        source: ObjectRecord,
        start: int,
        length: int,
        make_part: Callable[[BlobRef, str, str | None], Part],
        *,
        known_md5: str | None = None,
        checksum_algorithm: str | None = None,
        known_checksum: str | None = None,
    ) -> Deferred[Part]:
        """Make ``[start, start + length)`` of ``source`` the part ``make_part(blob, md5_hex,
        checksum_b64)`` builds.

        A range that is exactly one of the source's blobs becomes the part by reference (no byte
        written; it is read only when its MD5 or the ``checksum_algorithm`` checksum is not
        given as ``known_md5`` / ``known_checksum``).  Any other range is streamed, a
        :data:`~artifactd.storage.copying.READ_SIZE` at a time, into a staging file that is
        synced and committed as a new blob, exactly as an uploaded part's body.  Disk pool
        (reads and writes outside the commit lock, the commit under it)."""
        return self._submit(
            self._copy_part,
            upload,
            source,
            start,
            length,
            make_part,
            known_md5,
            checksum_algorithm,
            known_checksum,
        )

    def _copy_part(
        self,
        upload: Upload,
        source: ObjectRecord,
        start: int,
        length: int,
        make_part: Callable[[BlobRef, str, str | None], Part],
        known_md5: str | None,
        checksum_algorithm: str | None,
        known_checksum: str | None,
    ) -> Part:
        selected = copying.pieces(source.blobs, start, length)
        blob = copying.whole_blob(source.blobs, start, length)
        if blob is not None:
            md5_hex, checksum = known_md5, known_checksum if checksum_algorithm else None
            if md5_hex is None or (checksum_algorithm and checksum is None):
                digests = self._read_source(
                    source, selected, md5=True, checksum_algorithm=checksum_algorithm
                )
                md5_hex, checksum = digests.md5, digests.checksum
            assert md5_hex is not None
            part = make_part(blob, md5_hex, checksum)
            self._commit(self._store_part_copy, upload, source, blob, part)
            return part
        staging = self.blobs.open_staging(length)
        try:
            digests = self._read_source(
                source,
                selected,
                md5=True,
                sha256=True,
                checksum_algorithm=checksum_algorithm,
                sink=staging.write,
            )
            staging.sync()
        except BaseException:
            staging.discard()
            raise
        assert digests.md5 is not None and digests.sha256 is not None
        body = StagedBody(staging, digests.size, digests.md5, digests.sha256)
        try:
            part = make_part(BlobRef(body.sha256, body.size), body.md5, digests.checksum)
        except BaseException:
            staging.discard()
            raise
        return self._put_part(body, upload, part)

    def _read_source(
        self,
        source: ObjectRecord,
        selected: list[copying.Piece],
        *,
        md5: bool = False,
        sha256: bool = False,
        checksum_algorithm: str | None = None,
        sink: Callable[[bytes], None] | None = None,
    ) -> copying.Digests:
        try:
            return copying.read_range(
                self.blobs,
                selected,
                md5=md5,
                sha256=sha256,
                checksum_algorithm=checksum_algorithm,
                sink=sink,
            )
        except FileNotFoundError:  # deleted (with its object) since the request was admitted
            raise _source_missing(source) from None

    def _store_part_copy(
        self, upload: Upload, source: ObjectRecord, blob: BlobRef, part: Part
    ) -> None:
        self._require_referenced(source, (blob,))
        self._release(self.meta.put_part(upload.bucket, upload.key, part))

    def _require_referenced(self, source: ObjectRecord, blobs: Iterable[BlobRef]) -> None:
        """Commit lock held: every blob in ``blobs`` is still referenced (so its file exists
        and cannot be deleted before the new reference is written)."""
        if any(self.meta.refcount(blob.digest) <= 0 for blob in blobs):
            raise _source_missing(source)

    # ------------------------------------------------------------ recovery
    def recover(self) -> Deferred[RecoveryReport]:
        """Remove stale staging files, repair reference counts and delete orphan blobs."""
        return self._submit(self._recover)

    def _recover(self) -> RecoveryReport:
        return self._commit(self._recover_now)

    def _recover_now(self) -> RecoveryReport:
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


def _fire(items: list[_Commit[Any]]) -> None:
    """Reactor thread: fire the Deferreds of a durable group's commits."""
    for item in items:
        assert item.deferred is not None
        if item.error is not None:
            item.deferred.errback(Failure(item.error))
        else:
            item.deferred.callback(item.result)


def _source_missing(source: ObjectRecord) -> errors.S3Error:
    return errors.NoSuchKey(resource=f"/{source.bucket}/{source.key}", extra={"Key": source.key})


def blob_of(body: StagedBody) -> BlobRef:
    return BlobRef(digest=body.sha256, size=body.size)
