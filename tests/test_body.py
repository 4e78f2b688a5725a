"""The streamed body writer: two hashing lanes per batch, background fdatasyncs while the body
arrives, and no staging file left behind however the body ends."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.checksums import ALGORITHMS, new_checksum
from artifactd.http.body import (
    GIL_HELD_PIECE,
    HASH_HERE_MAX,
    BodyChecks,
    StagingSink,
    _Hashes,
)
from artifactd.storage.blobs import FileBlobStore, MemoryStaging, StagingFile
from artifactd.storage.engine import StagedBody
from artifactd.storage.layout import Layout
from artifactd.testing import ManualRunner, RecordingFileSystem

KiB = 1024


class Harness:
    """A StagingSink over a real blob store whose disk-pool jobs the test runs by hand."""

    def __init__(self, root: str, checks: BodyChecks | None = None, **sizes: int) -> None:
        sizes.setdefault("in_memory_max", -1)  # bodies go to staging files unless a test says
        self.fs = RecordingFileSystem()
        self.blobs = FileBlobStore(Layout(os.path.abspath(root)), self.fs)
        self.blobs.prepare()
        self.runner = ManualRunner()
        self.paused = 0
        self.resumed = 0
        self.sink = StagingSink(
            self.blobs,
            self.runner,
            checks or BodyChecks(max_size=1 << 40),
            self._pause,
            self._resume,
            **sizes,
        )

    def _pause(self) -> None:
        self.paused += 1

    def _resume(self) -> None:
        self.resumed += 1

    def staging_files(self) -> list[str]:
        return os.listdir(os.path.join(self.blobs._layout.staging))

    def datasyncs(self) -> int:
        return self.fs.operations().count("fdatasync_fd")


class StagingSinkTests(SynchronousTestCase):
    def harness(self, checks: BodyChecks | None = None, **sizes: int) -> Harness:
        return Harness(self.mktemp(), checks, **sizes)

    def test_small_bodies_staged_in_memory(self) -> None:
        """A body up to in_memory_max never reaches a file: up to hash_here_max it is hashed
        at once (no disk-pool job at all), above that in one job; a larger one is a file."""
        for size, jobs, in_memory in [(0, 0, True), (2 * KiB, 0, True), (3 * KiB, 1, True)]:
            h = self.harness(in_memory_max=3 * KiB, hash_here_max=2 * KiB)
            data = os.urandom(size)
            h.sink.write(data)
            results: list[StagedBody] = []
            h.sink.close().addCallback(results.append)
            self.assertEqual(len(h.runner.pending), jobs, size)
            h.runner.fire_all()
            (staged,) = results
            self.assertEqual(isinstance(staged.staging, MemoryStaging), in_memory)
            assert isinstance(staged.staging, MemoryStaging)
            self.assertEqual(staged.staging.data, data)
            self.assertEqual(staged.md5, hashlib.md5(data).hexdigest())
            self.assertEqual(staged.sha256, hashlib.sha256(data).hexdigest())
            self.assertEqual(h.staging_files(), [])
            self.assertEqual(h.fs.operations(), [])
        h = self.harness(in_memory_max=3 * KiB, hash_here_max=2 * KiB)
        h.sink.write(b"x" * (3 * KiB + 1))
        results = []
        h.sink.close().addCallback(results.append)
        h.runner.fire_all()
        self.assertIsInstance(results[0].staging, StagingFile)
        results[0].staging.discard()

    def test_small_body_digest_mismatch(self) -> None:
        """A small body's checks fail it as a file's would, on either path."""
        for size in (KiB, 3 * KiB):
            h = self.harness(
                BodyChecks(max_size=1 << 40, content_sha256="0" * 64),
                in_memory_max=3 * KiB,
                hash_here_max=2 * KiB,
            )
            h.sink.write(b"y" * size)
            failures: list[Failure] = []
            h.sink.close().addErrback(failures.append)
            h.runner.fire_all()
            (failure,) = failures
            failure.trap(errors.XAmzContentSHA256Mismatch)
            self.assertEqual(h.staging_files(), [])

    @given(st.lists(st.binary(min_size=1, max_size=5 * KiB), max_size=12))
    def test_digests_and_content(self, pieces: list[bytes]) -> None:
        """Whatever the split, the staged file holds the bytes and the digests are theirs, with
        each batch hashed in two lanes (two jobs queued per batch)."""
        h = self.harness(batch=4 * KiB, high_water=16 * KiB, low_water=4 * KiB, sync_every=8 * KiB)
        for piece in pieces:
            h.sink.write(piece)
            if len(h.runner.pending) == 2:  # a batch went out: both lanes at once
                h.runner.fire_all()
        results: list[StagedBody] = []
        h.sink.close().addCallback(results.append)
        h.runner.fire_all()
        data = b"".join(pieces)
        (staged,) = results
        self.assertEqual(staged.size, len(data))
        self.assertEqual(staged.md5, hashlib.md5(data).hexdigest())
        self.assertEqual(staged.sha256, hashlib.sha256(data).hexdigest())
        assert isinstance(staged.staging, StagingFile)
        with open(staged.staging.path, "rb") as f:
            self.assertEqual(f.read(), data)
        staged.staging.discard()

    def test_background_datasync(self) -> None:
        """Every sync_every bytes a datasync starts beside the writes; close waits for it before
        the final fsync."""
        h = self.harness(
            batch=4 * KiB,
            high_water=64 * KiB,
            low_water=4 * KiB,
            sync_every=4 * KiB,
            sync_in_commit_max=0,
        )
        h.sink.write(b"a" * 4 * KiB)
        h.sink.write(b"b" * 4 * KiB)
        self.assertEqual(len(h.runner.pending), 2)  # the first batch: both lanes at once
        h.runner.fire()
        h.runner.fire()
        self.assertEqual(len(h.runner.pending), 3)  # a datasync, and the next batch's lanes
        self.assertEqual(h.datasyncs(), 0)
        results: list[StagedBody] = []
        h.sink.close().addCallback(results.append)
        h.runner.fire_all()
        self.assertEqual(h.datasyncs(), 2)
        self.assertEqual(h.fs.operations()[-1], "fsync_fd")
        self.assertEqual(results[0].size, 8 * KiB)
        results[0].staging.discard()

    def test_small_body_left_for_the_commit_to_sync(self) -> None:
        """A body up to sync_in_commit_max is verified but not synced: its commit syncs it with
        the rest of its group.  A larger one is synced before the sink hands it over."""
        for size, synced in [(8 * KiB, False), (8 * KiB + 1, True)]:
            h = self.harness(batch=64 * KiB, sync_in_commit_max=8 * KiB)
            h.sink.write(b"s" * size)
            results: list[StagedBody] = []
            h.sink.close().addCallback(results.append)
            h.runner.fire_all()
            self.assertEqual(results[0].staging.synced, synced, size)
            self.assertEqual("fsync_fd" in h.fs.operations(), synced, size)
            results[0].staging.discard()

    def test_abort_waits_for_the_datasync(self) -> None:
        """A body abandoned while a datasync runs loses its staging file once the datasync is
        done, never before (the file descriptor stays valid for it)."""
        h = self.harness(batch=4 * KiB, high_water=64 * KiB, low_water=4 * KiB, sync_every=4 * KiB)
        h.sink.write(b"x" * 4 * KiB)
        h.runner.fire()
        h.runner.fire()
        self.assertEqual(len(h.runner.pending), 1)  # the datasync
        h.sink.abort()
        self.assertEqual(len(h.staging_files()), 1)
        h.runner.fire_all()
        self.assertEqual(h.datasyncs(), 1)
        self.assertEqual(h.staging_files(), [])

    def test_failed_lane_fails_the_body(self) -> None:
        """A write that fails in its lane fails the body with that error and leaves no file."""
        h = self.harness(batch=4 * KiB, high_water=64 * KiB, low_water=4 * KiB)
        h.sink.write(b"x" * 4 * KiB)
        h.runner.fire_all()
        self.assertEqual(len(h.staging_files()), 1)

        def broken(data: bytes | memoryview) -> None:
            raise OSError(28, "No space left on device")

        assert h.sink._staging is not None
        h.sink._staging.write = broken  # type: ignore[method-assign]
        h.sink.write(b"y" * 4 * KiB)
        failures: list[Failure] = []
        h.sink.close().addErrback(failures.append)
        h.runner.fire_all()
        self.assertEqual(len(failures), 1)
        self.assertIsInstance(failures[0].value, OSError)
        self.assertEqual(h.staging_files(), [])

    def test_size_cap(self) -> None:
        """Past the size cap, write raises EntityTooLarge."""
        h = Harness(self.mktemp())
        h.sink = StagingSink(h.blobs, h.runner, BodyChecks(max_size=10), lambda: None, lambda: None)
        h.sink.write(b"x" * 10)
        self.assertRaises(errors.EntityTooLarge, h.sink.write, b"y")


class _RecordingHash:
    """A hash object that notes the size of each update before passing it on."""

    def __init__(self, inner: Any, sizes: list[int]) -> None:
        self._inner = inner
        self._sizes = sizes

    def update(self, data: bytes | memoryview) -> None:
        self._sizes.append(len(data))
        self._inner.update(data)

    def hexdigest(self) -> str:
        return str(self._inner.hexdigest())


class HashHereTests(SynchronousTestCase):
    """Bodies hashed on the reactor thread: same digests, in pieces that keep the GIL."""

    @given(
        data=st.binary(max_size=3 * HASH_HERE_MAX),
        algorithm=st.sampled_from(sorted(ALGORITHMS)),
        split=st.integers(min_value=1, max_value=3),
    )
    def test_same_digests(self, data: bytes, algorithm: str, split: int) -> None:
        """Fed in one or more writes of any size, the digests are those of the whole body."""
        hashes = _Hashes(algorithm)
        step = max(1, len(data) // split)
        for start in range(0, len(data), step):
            hashes.update(data[start : start + step])
        whole = new_checksum(algorithm)
        whole.update(data)
        self.assertEqual(hashes.md5.hexdigest(), hashlib.md5(data).hexdigest())
        self.assertEqual(hashes.sha256.hexdigest(), hashlib.sha256(data).hexdigest())
        assert hashes.checksum is not None
        self.assertEqual(hashes.checksum.digest_b64(), whole.digest_b64())

    def test_small_bodies_in_pieces_that_keep_the_gil(self) -> None:
        """Up to HASH_HERE_MAX bytes, no update reaches hashlib's 2048-byte GIL threshold;
        beyond it the body goes in at once (hashing it is worth letting other threads run)."""
        for size, expected in ((HASH_HERE_MAX, None), (HASH_HERE_MAX + 1, [HASH_HERE_MAX + 1])):
            hashes = _Hashes(None)
            md5: list[int] = []
            sha256: list[int] = []
            hashes.md5 = _RecordingHash(hashes.md5, md5)  # type: ignore[assignment]
            hashes.sha256 = _RecordingHash(hashes.sha256, sha256)  # type: ignore[assignment]
            hashes.update(os.urandom(size))
            self.assertEqual(md5, sha256)
            self.assertEqual(sum(md5), size)
            if expected is None:
                self.assertLessEqual(max(md5), GIL_HELD_PIECE)
                self.assertLess(GIL_HELD_PIECE, 2048)
            else:
                self.assertEqual(md5, expected)
