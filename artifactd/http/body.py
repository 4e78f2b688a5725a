"""Request bodies: decoded, hashed and written to a staging file off the reactor thread.

Reactor thread: :meth:`StagingSink.write` only queues bytes.  Queued bytes are handed to the disk
pool in batches of about 1 MiB, one batch in flight at a time (so order is kept), in two jobs that
run on two cores at once (hashlib releases the GIL): one updates MD5, the other SHA-256 and the
optional checksum and appends to the staging file.  When more than ``high_water`` bytes are queued
the transport is paused; it is resumed once the queue falls under ``low_water``.  Memory per upload
is therefore bounded by ``high_water`` plus one batch.

A body of at most ``in_memory_max`` bytes never reaches a file here: it is hashed (on the
reactor thread when tiny) and staged in memory with :meth:`IBlobStore.stage_bytes`.

Every ``sync_every`` bytes written, an fdatasync of the staging file starts beside the writes, so
the disk writes while the body is still arriving and the fsync before the commit has only the
last stretch left to flush (otherwise the page cache holds a whole large body dirty until then).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.python.failure import Failure

from artifactd import errors
from artifactd.checksums import Checksum, new_checksum
from artifactd.integrity import check_trailer_value
from artifactd.interfaces import IBlobStore, IStagingFile
from artifactd.storage.engine import Runner, StagedBody

BATCH = 1024 * 1024
HIGH_WATER = 8 * 1024 * 1024
LOW_WATER = 2 * 1024 * 1024
SYNC_EVERY = 32 * 1024 * 1024
SYNC_IN_COMMIT_MAX = 256 * 1024  # bodies up to this size are fsynced by their group commit
IN_MEMORY_MAX = 64 * 1024  # bodies up to this size are staged in memory, never in a file
HASH_HERE_MAX = 16 * 1024  # ... and up to this size hashed on the reactor thread (< 40 us)
GIL_HELD_PIECE = 2047
"""The most bytes hashlib hashes in one update without letting go of the GIL (it does for
2048 or more).  On the reactor thread, letting go for the microseconds a small body takes to
hash only lets a waiting thread (the committer, under load) run first, and the reactor then waits
for the GIL behind it: small bodies are hashed here in pieces of at most this size."""


class _Hashes:
    """The digests of one body, updated by one thread at a time per digest: the reactor thread
    (bodies of up to ``HASH_HERE_MAX`` bytes), the disk pool, or a :class:`DirectReceive`'s
    reader (SHA-256 and the checksum) beside its MD5 lane."""

    def __init__(self, checksum_algorithm: str | None) -> None:
        self.md5 = hashlib.md5()
        self.sha256 = hashlib.sha256()
        self.checksum: Checksum | None = (
            new_checksum(checksum_algorithm) if checksum_algorithm else None
        )

    def update(self, data: bytes | memoryview) -> None:
        """All the digests over ``data``: up to ``HASH_HERE_MAX`` bytes (the reactor thread's
        share) in pieces that keep the GIL (``GIL_HELD_PIECE``), more at once, letting go of the
        GIL while it is hashed."""
        view = memoryview(data)
        step = GIL_HELD_PIECE if len(view) <= HASH_HERE_MAX else len(view)
        for start in range(0, len(view), step):
            piece = view[start : start + step]
            self.md5.update(piece)
            self.update_others(piece)

    def staged(self, staging: IStagingFile, size: int) -> StagedBody:
        """The staged body these are the digests of."""
        return StagedBody(
            staging=staging, size=size, md5=self.md5.hexdigest(), sha256=self.sha256.hexdigest()
        )

    def update_others(self, data: bytes | memoryview) -> None:
        """Everything but MD5, which another thread may be updating meanwhile."""
        self.sha256.update(data)
        if self.checksum is not None:
            self.checksum.update(data)


class BodyChecks:
    """What the finished body must match; every mismatch is the S3 error for it."""

    def __init__(
        self,
        *,
        content_md5: str | None = None,
        content_sha256: str | None = None,
        checksum_algorithm: str | None = None,
        checksum_value: str | None = None,
        expected_size: int | None = None,
        max_size: int,
    ) -> None:
        self.content_md5 = content_md5
        self.content_sha256 = content_sha256
        self.checksum_algorithm = checksum_algorithm
        self.checksum_value = checksum_value
        self.expected_size = expected_size
        self.max_size = max_size

    def verify(self, size: int, hashes: _Hashes, trailer_value: str | None) -> None:
        if self.expected_size is not None and size != self.expected_size:
            raise errors.IncompleteBody()
        md5 = base64.b64encode(hashes.md5.digest()).decode()
        if self.content_md5 is not None and md5 != self.content_md5:
            raise errors.BadDigest(extra={"ExpectedDigest": self.content_md5})
        if self.content_sha256 is not None and hashes.sha256.hexdigest() != self.content_sha256:
            raise errors.XAmzContentSHA256Mismatch(
                extra={
                    "ClientComputedContentSHA256": self.content_sha256,
                    "S3ComputedContentSHA256": hashes.sha256.hexdigest(),
                }
            )
        if trailer_value is not None and self.checksum_algorithm is not None:
            check_trailer_value(self.checksum_algorithm, trailer_value)
        expected = trailer_value if trailer_value is not None else self.checksum_value
        checksum = hashes.checksum
        if checksum is not None and expected is not None and checksum.digest_b64() != expected:
            name = (self.checksum_algorithm or "").upper()
            raise errors.BadDigest(
                f"The {name} you specified did not match the calculated checksum."
            )


class StagingSink:
    """Streams one request body into a new staging file.

    ``write`` and ``close`` are called on the reactor thread; hashing and file writes happen in
    the disk pool via ``run``.  ``pause`` / ``resume`` stop and restart reading from the socket.
    """

    def __init__(
        self,
        blobs: IBlobStore,
        run: Runner,
        checks: BodyChecks,
        pause: Callable[[], None],
        resume: Callable[[], None],
        *,
        batch: int = BATCH,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
        sync_every: int = SYNC_EVERY,
        sync_in_commit_max: int = SYNC_IN_COMMIT_MAX,
        in_memory_max: int = IN_MEMORY_MAX,
        hash_here_max: int = HASH_HERE_MAX,
    ) -> None:
        self._blobs = blobs
        self._run = run
        self._checks = checks
        self._pause = pause
        self._resume = resume
        self._batch = batch
        self._high = high_water
        self._low = low_water
        self._sync_every = sync_every
        self._sync_in_commit_max = sync_in_commit_max
        self._in_memory_max = in_memory_max
        self._hash_here_max = hash_here_max
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._inflight: Deferred[list[None]] | None = None
        self._syncing: Deferred[None] | None = None  # a background fdatasync
        self._unsynced = 0
        self._paused = False
        self._staging: IStagingFile | None = None
        self._hashes = _Hashes(checks.checksum_algorithm)
        self._error: Failure | None = None
        self._closing: Deferred[StagedBody] | None = None
        self._trailer_value: str | None = None
        self._aborted = False
        self.received = 0

    # reactor thread -------------------------------------------------------
    def write(self, data: bytes) -> None:
        """Queue decoded body bytes; raises EntityTooLarge past the size cap."""
        if self._error is not None or self._aborted or not data:
            return
        self.received += len(data)
        if self.received > self._checks.max_size:
            raise errors.EntityTooLarge(extra={"MaxSizeAllowed": str(self._checks.max_size)})
        self._pending.append(bytes(data))
        self._pending_bytes += len(data)
        if self._pending_bytes >= self._batch and self._inflight is None:
            self._flush()
        if self._pending_bytes > self._high and not self._paused:
            self._paused = True
            self._pause()

    def set_trailer_checksum(self, value: str | None) -> None:
        self._trailer_value = value

    def close(self) -> Deferred[StagedBody]:
        """Write what is queued, fsync, verify the digests (one disk-pool job after any batch in
        flight); fires with the staged body or fails with the S3 error (the staging file is then
        already removed)."""
        assert self._closing is None
        self._closing = Deferred()
        self._maybe_finish()
        return self._closing

    def abort(self) -> None:
        """The request is gone: remove the staging file once the jobs in flight are done."""
        self._aborted = True
        self._pending = []
        self._pending_bytes = 0
        self._unpause()
        if self._idle():
            self._discard()

    # internals -------------------------------------------------------------
    def _flush(self) -> None:
        data = self._pending
        self._pending = []
        size = self._pending_bytes
        self._pending_bytes = 0
        lanes = [self._run(self._hash_md5, data), self._run(self._write_batch, data)]
        d = gatherResults(lanes, consumeErrors=True)
        d.addErrback(_first_error)
        self._inflight = d
        d.addCallbacks(self._batch_done, self._batch_failed, callbackArgs=(size,))

    def _hash_md5(self, pieces: list[bytes]) -> None:  # disk pool, beside _write_batch
        for piece in pieces:
            self._hashes.md5.update(piece)

    def _write_batch(self, pieces: list[bytes]) -> None:  # disk pool, beside _hash_md5
        data = pieces[0] if len(pieces) == 1 else b"".join(pieces)
        if self._staging is None:
            self._staging = self._blobs.open_staging(self._checks.expected_size)
        self._hashes.update_others(data)
        self._staging.write(data)

    def _idle(self) -> bool:
        return self._inflight is None and self._syncing is None

    def _batch_done(self, _: object, size: int) -> None:
        self._inflight = None
        if self._aborted:
            if self._idle():
                self._discard()
            return
        if self._pending_bytes < self._low:
            self._unpause()
        self._unsynced += size
        if self._unsynced >= self._sync_every and self._syncing is None:
            self._start_datasync()
        if self._pending_bytes >= self._batch:
            self._flush()
        else:
            self._maybe_finish()

    def _batch_failed(self, failure: Failure) -> None:
        self._inflight = None
        self._error = failure
        self._pending = []
        self._pending_bytes = 0
        self._unpause()
        if self._aborted:
            if self._idle():
                self._discard()
        else:
            self._maybe_finish()

    def _start_datasync(self) -> None:
        staging = self._staging
        if staging is None:
            return
        self._unsynced = 0
        d = self._run(staging.datasync)
        self._syncing = d

        def done(result: object) -> None:
            self._syncing = None
            if isinstance(result, Failure) and self._error is None:
                self._error = result
            if self._aborted:
                if self._idle():
                    self._discard()
            else:
                self._maybe_finish()

        d.addBoth(done)

    def _unpause(self) -> None:
        if self._paused:
            self._paused = False
            self._resume()

    def _maybe_finish(self) -> None:
        if self._closing is None or self._closing.called or not self._idle():
            return
        if self._error is not None:
            self._fail(self._error)
            return
        pieces, self._pending, self._pending_bytes = self._pending, [], 0
        if self._staging is None and self.received <= self._in_memory_max:
            # a small body, all of it still queued: staged in memory (the blob store may keep
            # it with the metadata), hashed here if tiny, else in one disk-pool job
            data = b"".join(pieces)
            if self.received <= self._hash_here_max:
                try:
                    body = self._stage_in_memory(data)
                except Exception:
                    self._fail(Failure())
                else:
                    self._closing.callback(body)
                return
            d = self._run(self._stage_in_memory, data)
        else:
            # the rest of the body is written, synced and verified in ONE disk-pool job
            d = self._run(self._write_and_finish, pieces)
        d.addCallbacks(self._closing.callback, self._fail)

    def _stage_in_memory(self, data: bytes) -> StagedBody:  # reactor thread or disk pool
        self._hashes.update(data)
        self._checks.verify(self.received, self._hashes, self._trailer_value)
        return self._hashes.staged(self._blobs.stage_bytes(data), self.received)

    def _write_and_finish(self, pieces: list[bytes]) -> StagedBody:  # disk pool
        if pieces:
            self._hash_md5(pieces)
            self._write_batch(pieces)
        return self._finish()

    def _finish(self) -> StagedBody:  # disk pool
        if self._staging is None:
            self._staging = self._blobs.open_staging(self._checks.expected_size)
        self._checks.verify(self.received, self._hashes, self._trailer_value)
        if self.received > self._sync_in_commit_max:
            self._staging.sync()
        # else the commit syncs it, together with the other commits of its group
        return self._hashes.staged(self._staging, self.received)

    def _fail(self, failure: Failure) -> None:
        self._discard()
        assert self._closing is not None
        if not self._closing.called:
            self._closing.errback(failure)

    def _discard(self) -> None:
        staging, self._staging = self._staging, None
        if staging is not None:
            self._run(staging.discard).addErrback(lambda f: None)

    @property
    def checksum(self) -> str | None:
        """The checksum value computed (base64), after close."""
        return self._hashes.checksum.digest_b64() if self._hashes.checksum else None


def _first_error(failure: Failure) -> Failure:
    """The failure of the lane that failed, out of gatherResults' FirstError."""
    failure.trap(FirstError)
    assert isinstance(failure.value, FirstError)
    first: Failure = failure.value.subFailure
    return first


class MemorySink:
    """A small body (request XML) kept in memory up to ``cap`` bytes, hashed inline."""

    def __init__(self, checks: BodyChecks) -> None:
        self._checks = checks
        self._chunks: list[bytes] = []
        self._hashes = _Hashes(checks.checksum_algorithm)
        self.received = 0
        self._trailer_value: str | None = None

    def write(self, data: bytes) -> None:
        self.received += len(data)
        if self.received > self._checks.max_size:
            raise errors.MaxMessageLengthExceeded(
                extra={"MaxMessageLengthBytes": str(self._checks.max_size)}
            )
        self._chunks.append(bytes(data))
        self._hashes.update(data)

    def set_trailer_checksum(self, value: str | None) -> None:
        self._trailer_value = value

    def close(self) -> Deferred[bytes]:
        try:
            self._checks.verify(self.received, self._hashes, self._trailer_value)
        except errors.S3Error:
            return fail()
        return succeed(b"".join(self._chunks))

    def abort(self) -> None:
        self._chunks = []
