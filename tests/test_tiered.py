"""Small blobs kept in the metadata store: committed in the group's one metadata batch with no
file and no fsync, read back like files, deduplicated, deleted and recovered like files."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.preconditions import WriteCondition
from artifactd.records import Bucket
from artifactd.storage.engine import Engine, StagedBody
from artifactd.storage.tiered import TieredBlobStore
from artifactd.testing import RecordingFileSystem, build_engine
from tests.test_engine import md5, read_object, sha256, simple_record, stage
from tests.test_group_commit import RecordingKV, run_concurrently

BUCKET = "bkt"


def staged_in_memory(engine: Engine, data: bytes) -> StagedBody:
    return StagedBody(engine.blobs.stage_bytes(data), len(data), md5(data), sha256(data))


class TieredTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fs = RecordingFileSystem()
        self.kv = RecordingKV(self.fs.calls)
        self.engine = build_engine(self.mktemp(), kv=self.kv, fs=self.fs, tiered=True)
        assert isinstance(self.engine.blobs, TieredBlobStore)
        self.tiered = self.engine.blobs
        self.assertTrue(self.engine.meta.create_bucket(Bucket(BUCKET, 1.0)))
        self.fs.calls.clear()

    def files(self) -> list[str]:
        return sorted(self.tiered._files.digests())

    def put(self, key: str, body: StagedBody) -> None:
        record = simple_record(BUCKET, key, body)
        self.assertEqual(self.successResultOf(self.engine.put_object(body, record)), record)

    def test_small_put_is_one_metadata_write(self) -> None:
        """A small body staged in memory: one synced batch holds blob and record; no file is
        created, synced or renamed, no directory synced."""
        data = b"small artifact"
        body = staged_in_memory(self.engine, data)
        self.put("k", body)
        self.assertEqual(self.fs.calls, [("kv_write", 3, 0)])  # blob, record, refcount
        self.assertEqual(self.files(), [])
        record = self.engine.meta.get_object(BUCKET, "k")
        assert record is not None
        self.assertEqual(read_object(self.engine, record), data)
        self.assertTrue(self.tiered.exists(sha256(data)))
        self.assertEqual(list(self.tiered.digests()), [sha256(data)])

    def test_large_or_file_bodies_stay_files(self) -> None:
        """Over small_max, or staged in a file, a blob is a file as before."""
        self.tiered.small_max = 8
        self.put("big", staged_in_memory(self.engine, b"more than eight"))
        self.put("file", stage(self.engine, b"tiny"))
        self.assertEqual(self.files(), sorted([sha256(b"more than eight"), sha256(b"tiny")]))
        self.assertEqual(list(self.engine.meta.small_blob_digests()), [])
        for key, data in (("big", b"more than eight"), ("file", b"tiny")):
            record = self.engine.meta.get_object(BUCKET, key)
            assert record is not None
            self.assertEqual(read_object(self.engine, record), data)

    def test_dedup_and_release(self) -> None:
        """Two objects with the same small content share one blob; it goes when the last
        reference goes, in a metadata batch."""
        data = b"shared"
        self.put("a", staged_in_memory(self.engine, data))
        self.put("b", staged_in_memory(self.engine, data))
        self.assertEqual(self.engine.meta.refcount(sha256(data)), 2)
        self.assertEqual(self.tiered.open_blob(sha256(data)).read(), data)  # now kept in memory
        self.successResultOf(self.engine.delete_object(BUCKET, "a"))
        self.assertTrue(self.tiered.exists(sha256(data)))
        self.successResultOf(self.engine.delete_object(BUCKET, "b"))
        self.assertFalse(self.tiered.exists(sha256(data)))
        self.assertRaises(FileNotFoundError, self.tiered.open_blob, sha256(data))

    def test_reads_kept_in_memory(self) -> None:
        """A small blob read once is read from memory after: the metadata store is not asked
        again; file blobs are not kept."""
        asked: list[str] = []
        get_small_blob = self.engine.meta.get_small_blob

        def counted(digest: str) -> bytes | None:
            asked.append(digest)
            return get_small_blob(digest)

        self.patch(self.engine.meta, "get_small_blob", counted)
        self.put("small", staged_in_memory(self.engine, b"small"))
        self.put("file", stage(self.engine, b"file"))
        for _ in range(3):
            for key, data in (("small", b"small"), ("file", b"file")):
                record = self.engine.meta.get_object(BUCKET, key)
                assert record is not None
                self.assertEqual(read_object(self.engine, record), data)
        self.assertEqual(asked, [sha256(b"small"), *[sha256(b"file")] * 3])
        self.assertEqual((len(self.tiered.recent), self.tiered.recent.weight), (1, 5))

    def test_file_blob_deletion_writes_no_metadata(self) -> None:
        """Deleting an object whose blob is a file costs its one record batch: the small tier
        writes nothing for a blob it does not hold."""
        self.put("file", stage(self.engine, b"in a file"))
        self.fs.calls.clear()
        self.successResultOf(self.engine.delete_object(BUCKET, "file"))
        self.assertEqual([c for c in self.fs.calls if c[0] == "kv_write"], [("kv_write", 0, 2)])
        self.assertEqual(self.files(), [])

    def test_small_content_of_a_referenced_file_blob_dedups_to_it(self) -> None:
        """Content already stored as a file (a data directory of an earlier version) and
        referenced: a small PUT of it references the file and stores no small blob; the disk is
        only looked at for a digest that is referenced."""
        data = b"once a file"
        self.put("file", stage(self.engine, data))
        self.fs.calls.clear()
        self.put("small", staged_in_memory(self.engine, data))
        self.assertEqual(list(self.engine.meta.small_blob_digests()), [])
        self.assertEqual(self.files(), [sha256(data)])
        self.assertEqual(self.engine.meta.refcount(sha256(data)), 2)
        record = self.engine.meta.get_object(BUCKET, "small")
        assert record is not None
        self.assertEqual(read_object(self.engine, record), data)
        looked: list[str] = []
        exists = self.tiered._files.exists

        def counted(digest: str) -> bool:
            looked.append(digest)
            return exists(digest)

        self.patch(self.tiered._files, "exists", counted)
        self.put("small 2", staged_in_memory(self.engine, data))
        self.assertEqual(looked, [sha256(data)])
        self.put("new", staged_in_memory(self.engine, b"never seen"))
        self.assertEqual(looked, [sha256(data)])  # an unreferenced digest: no look on disk

    def test_overwrite_releases_the_old_small_blob(self) -> None:
        self.put("k", staged_in_memory(self.engine, b"one"))
        self.put("k", staged_in_memory(self.engine, b"two"))
        self.assertEqual(list(self.engine.meta.small_blob_digests()), [sha256(b"two")])

    def test_failed_commit_in_a_group_keeps_a_shared_blob(self) -> None:
        """In one group, a PUT refused at commit (its condition fails) drops the small blob it
        staged; a later PUT of the same content in the same group stores it again, so the
        blob its record references exists once the group is durable."""
        self.put("exists", staged_in_memory(self.engine, b"old"))
        data = b"same content"
        first = staged_in_memory(self.engine, data)
        second = staged_in_memory(self.engine, data)
        refused = WriteCondition(if_none_match=True)
        results = run_concurrently(
            self.engine,
            [
                lambda: self.engine._commit(
                    self.engine._put_object_now,
                    first,
                    simple_record(BUCKET, "exists", first),
                    refused,
                ),
                lambda: self.engine._commit(
                    self.engine._put_object_now, second, simple_record(BUCKET, "new", second), None
                ),
            ],
        )
        self.assertIsInstance(results[0], errors.PreconditionFailed)
        record = self.engine.meta.get_object(BUCKET, "new")
        assert record is not None
        self.assertEqual(read_object(self.engine, record), data)
        self.assertEqual(self.engine.meta.refcount(sha256(data)), 1)

    def test_recovery_removes_orphan_small_blobs(self) -> None:
        """A small blob no record references (a crash between a delete's batches) is removed
        at start-up; referenced ones stay."""
        self.put("kept", staged_in_memory(self.engine, b"kept"))
        self.engine.meta.put_small_blob(sha256(b"orphan"), b"orphan")
        report = self.successResultOf(self.engine.recover())
        self.assertEqual(report.orphan_blobs_removed, 1)
        self.assertEqual(list(self.engine.meta.small_blob_digests()), [sha256(b"kept")])
        self.assertEqual(report.missing_blobs, ())


class TieredLevelDBTests(SynchronousTestCase):
    def test_survives_reopen(self) -> None:
        """Small blobs are in LevelDB: a reopened store reads them back."""
        root = self.mktemp()
        engine = build_engine(root, kv="leveldb", tiered=True)
        self.assertTrue(engine.meta.create_bucket(Bucket(BUCKET, 1.0)))
        data = os.urandom(1000)
        body = staged_in_memory(engine, data)
        self.successResultOf(engine.put_object(body, simple_record(BUCKET, "k", body)))
        engine.meta.close()
        engine = build_engine(root, kv="leveldb", tiered=True)
        self.addCleanup(engine.meta.close)
        record = engine.meta.get_object(BUCKET, "k")
        assert record is not None
        self.assertEqual(read_object(engine, record), data)
