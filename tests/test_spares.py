"""Spare files: deleted blobs' files kept for large uploads to write over
(``artifactd.storage.spares`` and its use by ``FileBlobStore``)."""

from __future__ import annotations

import hashlib
import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.storage.blobs import FileBlobStore
from artifactd.storage.layout import Layout
from artifactd.storage.spares import Spare, SparePool


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def move(path: str, spare: str) -> bool:
    """The rename a store without readers does."""
    os.replace(path, spare)
    return True


def write(path: str, data: bytes) -> str:
    with open(path, "wb") as f:
        f.write(data)
    return path


class SparePoolTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.dir = tempfile.mkdtemp(dir=os.getcwd())
        self.staging = os.path.join(self.dir, "staging")
        os.mkdir(self.staging)
        self.clock = FakeClock()

    def pool(self, **options: object) -> SparePool:
        defaults: dict[str, object] = {"min_size": 10, "clock": self.clock}
        defaults.update(options)
        return SparePool(self.staging, 30.0, **defaults)  # type: ignore[arg-type]

    def blob(self, size: int, name: str | None = None) -> str:
        return write(os.path.join(self.dir, name or f"blob-{size}"), b"x" * size)

    def test_an_offered_file_moves_into_the_directory(self) -> None:
        pool = self.pool()
        path = self.blob(100)
        self.assertTrue(pool.offer(path, move))
        self.assertFalse(os.path.exists(path))
        [spare] = pool.spares
        self.assertEqual(os.path.dirname(spare.path), self.staging)
        self.assertEqual((spare.size, spare.since), (100, self.clock.now))
        self.assertEqual(os.path.getsize(spare.path), 100)
        self.assertEqual(pool.total, 100)

    def test_files_it_does_not_want_stay_where_they_are(self) -> None:
        """Too small, linked elsewhere too, larger than the pool, missing, refused by the move (a
        reader has it open), or the filesystem short of space: ``offer`` says no and leaves the
        file alone."""
        pool = self.pool(max_bytes=1000)
        small = self.blob(9)
        linked = self.blob(100)
        os.link(linked, linked + ".other")
        huge = self.blob(1001)
        for path in (small, linked, huge):
            self.assertFalse(pool.offer(path, move))
            self.assertTrue(os.path.exists(path))
        self.assertFalse(pool.offer(os.path.join(self.dir, "missing"), move))
        refused = self.blob(100, "read")
        self.assertFalse(pool.offer(refused, lambda path, spare: False))  # a reader has it
        self.assertTrue(os.path.exists(refused))
        full = self.pool(reserve=1.01)  # never that much free
        ok = self.blob(100, "ok")
        self.assertFalse(full.offer(ok, move))
        self.assertTrue(os.path.exists(ok))
        self.assertEqual(os.listdir(self.staging), [])

    def test_the_oldest_go_when_there_are_too_many(self) -> None:
        pool = self.pool(max_files=2, max_bytes=250)
        first = self.blob(100, "a")
        self.assertTrue(pool.offer(first, move))
        [oldest] = pool.spares
        self.clock.now += 1
        self.assertTrue(pool.offer(self.blob(100, "b"), move))
        self.clock.now += 1
        self.assertTrue(pool.offer(self.blob(100, "c"), move))  # three files, 300 bytes: one goes
        self.assertEqual([s.since for s in pool.spares], [1001.0, 1002.0])
        self.assertFalse(os.path.exists(oldest.path))
        self.assertEqual(len(os.listdir(self.staging)), 2)
        self.assertTrue(pool.offer(self.blob(240, "d"), move))  # 440 bytes: both older go
        self.assertEqual([s.size for s in pool.spares], [240])
        self.assertEqual(len(os.listdir(self.staging)), 1)

    def test_release_removes_those_kept_too_long(self) -> None:
        pool = self.pool()
        pool.offer(self.blob(100, "a"), move)
        self.clock.now += 20
        pool.offer(self.blob(100, "b"), move)
        self.clock.now += 10
        self.assertEqual(pool.release(30.0), 1)
        self.assertEqual([s.since for s in pool.spares], [1020.0])
        self.assertEqual(len(os.listdir(self.staging)), 1)
        self.assertEqual(pool.release(0), 1)
        self.assertEqual((pool.spares, os.listdir(self.staging)), ([], []))

    def test_take_gives_the_closest_in_size(self) -> None:
        pool = self.pool()
        for size in (100, 300, 150):
            pool.offer(self.blob(size), move)
        self.assertIsNone(pool.take(9))  # below min_size: a new file
        self.assertIsNone(pool.take(40))  # every spare more than twice the body
        spare = pool.take(140)
        assert spare is not None
        self.assertEqual(spare.size, 150)
        self.assertTrue(os.path.exists(spare.path))  # the caller's now
        self.assertEqual(sorted(s.size for s in pool.spares), [100, 300])
        bigger = pool.take(1000)  # none as large: the closest (written past its end)
        assert bigger is not None
        self.assertEqual(bigger.size, 300)

    def test_the_newest_among_equals(self) -> None:
        pool = self.pool()
        pool.offer(self.blob(100, "a"), move)
        self.clock.now += 1
        pool.offer(self.blob(100, "b"), move)
        spare = pool.take(100)
        assert spare is not None
        self.assertEqual(spare.since, 1001.0)

    @settings(max_examples=200, deadline=None)
    @given(sizes=st.lists(st.integers(1, 10_000), max_size=8), size=st.integers(0, 12_000))
    def test_take_picks_what_the_rule_says(self, sizes: list[int], size: int) -> None:
        """A model of ``take``: among spares at most twice the body, the smallest difference."""
        pool = SparePool(self.staging, 30.0, min_size=10, max_files=100, max_bytes=10**9)
        pool._spares.extend(Spare(f"/nowhere/{i}", s, float(i)) for i, s in enumerate(sizes))
        fitting = [s for s in sizes if s <= 2 * size] if size >= 10 else []
        spare = pool.take(size)
        if not fitting:
            self.assertIsNone(spare)
            self.assertEqual(len(pool.spares), len(sizes))
        else:
            assert spare is not None
            self.assertEqual(abs(spare.size - size), min(abs(s - size) for s in fitting))
            self.assertEqual(len(pool.spares), len(sizes) - 1)


class BlobStoreSpareTests(SynchronousTestCase):
    """``FileBlobStore`` keeps deleted blobs' files as spares and writes over them."""

    def setUp(self) -> None:
        self.layout = Layout(tempfile.mkdtemp(dir=os.getcwd()))
        self.blobs = self.store()

    def store(self, spare_seconds: float = 30.0) -> FileBlobStore:
        blobs = FileBlobStore(self.layout, spare_seconds=spare_seconds)
        blobs.prepare()
        if blobs.spares is not None:
            blobs.spares.min_size = 1
        return blobs

    def put(self, data: bytes, blobs: FileBlobStore | None = None) -> str:
        blobs = blobs or self.blobs
        digest = hashlib.sha256(data).hexdigest()
        staging = blobs.open_staging(len(data))
        staging.write(data)
        blobs.commit(staging, digest)
        return digest

    def read(self, digest: str) -> bytes:
        with self.blobs.open_blob(digest) as f:
            return f.read()

    def spare_files(self) -> list[str]:
        return [n for n in os.listdir(self.layout.staging) if n.startswith("spare-")]

    def test_a_deleted_blob_becomes_a_spare_and_the_next_body_writes_over_it(self) -> None:
        old = self.put(b"a" * 5000)
        inode = os.stat(self.layout.blob(old)).st_ino
        self.blobs.delete(old)
        self.assertFalse(self.blobs.exists(old))
        self.assertEqual(len(self.spare_files()), 1)
        new_data = b"b" * 4000  # shorter: the old bytes past it must not stay
        new = self.put(new_data)
        self.assertEqual(os.stat(self.layout.blob(new)).st_ino, inode)  # the same file
        self.assertEqual(self.read(new), new_data)
        self.assertEqual(self.spare_files(), [])

    def test_a_longer_body_extends_a_spare(self) -> None:
        old = self.put(b"a" * 3000)
        self.blobs.delete(old)
        new_data = os.urandom(5000)
        self.assertEqual(self.read(self.put(new_data)), new_data)

    def test_a_spare_is_cut_to_the_bytes_written_before_it_is_synced_or_committed(self) -> None:
        """Even a body shorter than the size it was opened for leaves none of the spare's old
        bytes in its blob: they are cut before the fsync (else a crash could bring them back)
        and by the commit itself (in a group the sync comes after the rename)."""
        for in_group in (False, True):
            old = self.put(os.urandom(5000))
            self.blobs.delete(old)
            data = os.urandom(3000)
            digest = hashlib.sha256(data).hexdigest()
            staging = self.blobs.open_staging(5000)
            staging.write(data)
            if in_group:
                with self.blobs.group():
                    self.blobs.commit(staging, digest)
                    self.assertEqual(os.path.getsize(self.layout.blob(digest)), 3000)
            else:
                staging.sync()
                self.assertEqual(os.path.getsize(staging.path), 3000)
                self.blobs.commit(staging, digest)
            self.assertEqual(self.read(digest), data)

    def test_a_blob_being_read_is_removed_not_kept(self) -> None:
        """A reader keeps reading the deleted blob's own bytes: its file is never written over."""
        data = os.urandom(5000)
        old = self.put(data)
        reader = self.blobs.open_blob(old)
        self.addCleanup(reader.close)
        first = reader.read(1000)
        self.blobs.delete(old)
        self.assertEqual(self.spare_files(), [])
        self.put(os.urandom(5000))
        self.assertEqual(first + reader.read(), data)

    def test_a_closed_reader_no_longer_holds_the_blob(self) -> None:
        old = self.put(b"a" * 5000)
        with self.blobs.open_blob(old) as f:
            f.read()
        with self.assertRaises(FileNotFoundError):
            self.blobs.open_blob("0" * 64)
        self.blobs.delete(old)
        self.assertEqual(len(self.spare_files()), 1)

    def test_an_unknown_size_or_a_small_body_gets_a_new_file(self) -> None:
        self.blobs.delete(self.put(b"a" * 5000))
        [spare] = self.spare_files()
        for size in (None, 0):
            staging = self.blobs.open_staging(size)
            self.assertNotIn(spare, staging.path)
            staging.discard()
        self.assertEqual(self.spare_files(), [spare])

    def test_no_spares_with_spare_seconds_zero(self) -> None:
        blobs = self.store(spare_seconds=0)
        self.assertIsNone(blobs.spares)
        old = self.put(b"a" * 5000, blobs)
        blobs.delete(old)
        self.assertEqual(os.listdir(self.layout.staging), [])
        self.assertEqual(blobs.release_spares(), 0)

    def test_release_and_recovery_remove_spares(self) -> None:
        self.blobs.delete(self.put(b"a" * 5000))
        self.assertEqual(self.blobs.release_spares(), 0)  # not kept 30 s yet
        self.assertEqual(self.blobs.release_spares(0), 1)
        self.assertEqual(self.spare_files(), [])
        self.blobs.delete(self.put(b"b" * 5000))
        restarted = self.store()
        self.assertEqual(restarted.clear_staging(), 1)
        self.assertEqual(os.listdir(self.layout.staging), [])

    def test_free_space_counts_spares(self) -> None:
        """What the filesystem has free, and the spares' bytes (new blobs may use them)."""
        fixed = os.statvfs_result((4096, 4096, 1000, 500, 400, 100, 50, 50, 0, 255))
        self.patch(os, "statvfs", lambda path: fixed)
        self.blobs.delete(self.put(b"a" * 5000))
        self.assertEqual(self.blobs.check_free_space(), 400 * 4096 + 5000)
