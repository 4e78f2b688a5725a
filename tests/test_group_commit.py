"""Group commit: concurrent commits share one round of directory fsyncs and one synced metadata
batch, in the order that keeps every acknowledged write durable; and the overlay that stages a
group's metadata changes reads like the store it will be written to."""

from __future__ import annotations

import hashlib
import queue
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.preconditions import WriteCondition
from artifactd.records import Bucket
from artifactd.storage.engine import Engine, StagedBody
from artifactd.storage.kv import MemoryKV, Overlay
from artifactd.testing import RecordingFileSystem, build_engine
from tests.test_engine import md5, simple_record, stage
from tests.test_engine import sha256 as sha

BUCKET = "bkt"


class RecordingKV(MemoryKV):
    """A MemoryKV that appends each batch written to the file system's call log, so the order of
    blob syncs and the metadata write can be checked in one list."""

    def __init__(self, calls: list[tuple[object, ...]]) -> None:
        super().__init__()
        self.calls = calls

    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
        self.calls.append(("kv_write", len(puts), len(deletes)))
        super().write(puts, deletes)


def run_concurrently(engine: Engine, works: list[Callable[[], Any]]) -> list[Any]:
    """Run each of ``works`` (engine disk-pool calls) in its own thread while the commit lock is
    held, wait until all have queued, then release the lock: they all land in one group."""
    results: list[Any] = [None] * len(works)

    def call(i: int) -> None:
        try:
            results[i] = works[i]()
        except BaseException as e:
            results[i] = e

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(works))]
    with engine._commit_lock:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(engine._queue) < len(works):
            if time.monotonic() > deadline:
                raise AssertionError("commits did not queue")
            time.sleep(0.001)
    for t in threads:
        t.join(10)
    return results


class GroupCommitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.fs = RecordingFileSystem()
        self.kv = RecordingKV(self.fs.calls)
        self.engine = build_engine(self.mktemp(), kv=self.kv, fs=self.fs)
        self.assertTrue(self.engine.meta.create_bucket(Bucket(BUCKET, 1.0)))
        self.fs.calls.clear()

    def put(self, key: str, data: bytes, condition: WriteCondition | None = None) -> Any:
        body = stage(self.engine, data)
        record = simple_record(BUCKET, key, body)
        return lambda: self.engine._commit(self.engine._put_object_now, body, record, condition)

    def test_concurrent_puts_share_one_group(self) -> None:
        """Eight concurrent PUTs: one group, one metadata write, each directory fsynced once,
        and every rename and directory fsync before the metadata write."""
        self.fs.calls.clear()
        works = [self.put(f"k{i}", f"body {i}".encode()) for i in range(8)]
        self.fs.calls.clear()
        results = run_concurrently(self.engine, works)
        self.assertEqual([r.key for r in results], [f"k{i}" for i in range(8)])
        self.assertEqual((self.engine.groups, self.engine.grouped_commits), (1, 8))
        ops = self.fs.operations()
        self.assertEqual(ops.count("kv_write"), 1)
        self.assertEqual(ops.count("replace"), 8)
        write_at = ops.index("kv_write")
        self.assertEqual(ops[write_at + 1 :], [])
        synced = [c[1] for c in self.fs.calls if c[0] == "fsync_dir"]
        self.assertEqual(len(synced), len(set(synced)))
        for call in self.fs.calls:
            if call[0] == "replace":
                self.assertIn(str(call[2]).rsplit("/", 1)[0], synced)
        for i in range(8):
            record = self.engine.meta.get_object(BUCKET, f"k{i}")
            assert record is not None
            with self.engine.blobs.open_blob(record.sha256) as f:
                self.assertEqual(f.read(), f"body {i}".encode())

    def test_unsynced_bodies_synced_by_their_group(self) -> None:
        """Bodies the HTTP path left unsynced are fsynced by their group: after their renames,
        alongside the directories, and before the metadata write; outside a group a commit
        syncs first and renames after."""
        bodies = []
        for i in range(4):
            staging = self.engine.blobs.open_staging()
            staging.write(f"unsynced {i}".encode())
            bodies.append((staging, stage_digest(f"unsynced {i}".encode())))
        self.fs.calls.clear()

        def commit(staging: Any, digest: str, key: str) -> Callable[[], Any]:
            body = StagedBody(staging, len(key), "0" * 32, digest)
            return lambda: self.engine._commit(
                self.engine._put_object_now, body, simple_record(BUCKET, key, body), None
            )

        run_concurrently(self.engine, [commit(s, d, f"u{i}") for i, (s, d) in enumerate(bodies)])
        ops = self.fs.operations()
        self.assertEqual(ops.count("fsync_fd"), 4)
        last_replace = max(i for i, op in enumerate(ops) if op == "replace")
        first_fsync = ops.index("fsync_fd")
        self.assertLess(last_replace, first_fsync)
        self.assertLess(
            max(i for i, op in enumerate(ops) if op == "fsync_fd"), ops.index("kv_write")
        )
        self.assertTrue(all(s.synced for s, _ in bodies))

        staging = self.engine.blobs.open_staging()
        staging.write(b"alone")
        self.fs.calls.clear()
        self.engine.blobs.commit(staging, stage_digest(b"alone"))
        ops = self.fs.operations()
        self.assertLess(ops.index("fsync_fd"), ops.index("replace"))

    def test_failed_commit_fails_alone(self) -> None:
        """A conditional PUT that fails in a group changes nothing and leaves no blob; the others
        in the group succeed."""
        existing = stage(self.engine, b"old")
        self.engine._commit(
            self.engine._put_object_now, existing, simple_record(BUCKET, "taken", existing), None
        )
        works = [
            self.put("free", b"new 1"),
            self.put("taken", b"new 2", WriteCondition(if_none_match=True)),
            self.put("other", b"new 3"),
        ]
        results = run_concurrently(self.engine, works)
        self.assertEqual(results[0].key, "free")
        self.assertIsInstance(results[1], errors.PreconditionFailed)
        self.assertEqual(results[2].key, "other")
        taken = self.engine.meta.get_object(BUCKET, "taken")
        assert taken is not None
        self.assertEqual(taken.sha256, existing.sha256)
        self.assertFalse(self.engine.blobs.exists(stage_digest(b"new 2")))

    def test_released_blob_reused_in_the_same_group(self) -> None:
        """One commit drops the last reference to a blob and another in the same group stores
        the same content again: the blob survives the group."""
        first = stage(self.engine, b"shared")
        self.engine._commit(
            self.engine._put_object_now, first, simple_record(BUCKET, "a", first), None
        )
        replace_a = self.put("a", b"something else")
        again = self.put("b", b"shared")
        run_concurrently(self.engine, [replace_a, again])
        self.assertTrue(self.engine.blobs.exists(first.sha256))
        self.assertEqual(self.engine.meta.refcount(first.sha256), 1)

    def test_released_blobs_deleted_after_the_metadata_write(self) -> None:
        """Blobs released by a group are unlinked only after its metadata batch is written."""
        body = stage(self.engine, b"going")
        self.engine._commit(
            self.engine._put_object_now, body, simple_record(BUCKET, "gone", body), None
        )
        self.fs.calls.clear()
        run_concurrently(
            self.engine,
            [
                lambda: self.engine._commit(self.engine._delete_object_now, BUCKET, "gone"),
                self.put("x", b"x"),
            ],
        )
        ops = self.fs.operations()
        self.assertLess(ops.index("kv_write"), ops.index("unlink"))
        self.assertFalse(self.engine.blobs.exists(body.sha256))

    def test_failed_metadata_write_fails_the_group(self) -> None:
        """If the group's metadata batch cannot be written, every commit in it fails and none
        is visible."""

        def broken(puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
            raise OSError("disk gone")

        works = [self.put("p", b"p"), self.put("q", b"q")]
        self.kv.write = broken  # type: ignore[method-assign]
        results = run_concurrently(self.engine, works)
        self.assertTrue(all(isinstance(r, OSError) for r in results), results)
        self.assertIsNone(self.engine.meta.get_object(BUCKET, "p"))
        self.assertIsNone(self.engine.meta.get_object(BUCKET, "q"))


def stage_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _bytes(alphabet: list[bytes], min_size: int, max_size: int) -> st.SearchStrategy[bytes]:
    return st.lists(st.sampled_from(alphabet), min_size=min_size, max_size=max_size).map(b"".join)


_keys = _bytes([b"a", b"b", b"\x00", b"\xff"], 1, 3)


class OverlayTests(SynchronousTestCase):
    @given(
        st.dictionaries(_keys, st.binary(max_size=2)),
        st.lists(
            st.tuples(st.booleans(), _keys, st.binary(max_size=2)),
            max_size=20,
        ),
        _bytes([b"a", b"b", b"\x00"], 0, 2),
        _bytes([b"a", b"b", b"\x00", b"\xff"], 0, 3),
    )
    def test_reads_like_the_flushed_store(
        self,
        base: dict[bytes, bytes],
        changes: list[tuple[bool, bytes, bytes]],
        prefix: bytes,
        start: bytes,
    ) -> None:
        """get and scan through the overlay equal get and scan of the store after flush, and
        the store is untouched until then."""
        store = MemoryKV()
        store.write(base, set())
        overlay = Overlay(store)
        for is_put, key, value in changes:
            overlay.write({key: value} if is_put else {}, set() if is_put else {key})
        seen = list(overlay.scan(prefix, start))
        got = {k: overlay.get(k) for k in set(base) | {c[1] for c in changes}}
        self.assertEqual(list(store.scan(b"")), sorted(base.items()))
        writes = store.writes
        overlay.flush()
        self.assertEqual(store.writes, writes + (1 if changes else 0))
        self.assertEqual(seen, list(store.scan(prefix, start)))
        self.assertEqual(got, {k: store.get(k) for k in got})


class CountingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.gets: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.gets.append(key)
        return super().get(key)


class OverlayReadTests(SynchronousTestCase):
    def test_a_key_is_read_from_the_base_once_per_group(self) -> None:
        """Within one group a key is read from the store once, whatever is written over it
        meanwhile; after the flush the store is read again."""
        store = CountingKV()
        store.write({b"bucket": b"b", b"count": b"1"}, set())
        overlay = Overlay(store)
        for _ in range(3):
            self.assertEqual(overlay.get(b"bucket"), b"b")
            self.assertIsNone(overlay.get(b"missing"))
        self.assertEqual(overlay.get(b"count"), b"1")
        overlay.write({b"count": b"2", b"missing": b"now"}, {b"bucket"})
        self.assertEqual(
            [overlay.get(k) for k in (b"bucket", b"count", b"missing")], [None, b"2", b"now"]
        )
        self.assertEqual(sorted(store.gets), [b"bucket", b"count", b"missing"])
        overlay.flush()
        self.assertEqual(overlay.get(b"count"), b"2")
        self.assertIsNone(overlay.get(b"bucket"))
        self.assertEqual(store.gets[3:], [b"count", b"bucket"])


class CommitterTests(SynchronousTestCase):
    """With the reactor's ``callFromThread``, commits queued from the reactor thread are run by
    one committer thread, a group at a time, and come back in one call per group."""

    def setUp(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., Any], tuple[Any, ...]]] = queue.Queue()
        engine = build_engine(self.mktemp(), tiered=True)
        self.engine = Engine(
            engine.blobs,
            engine.meta,
            engine._run,
            call_from_thread=lambda f, *args: self.calls.put((f, args)),
        )
        self.addCleanup(self.engine.stop)

    def deliver(self) -> int:
        """Run the next call the committer handed to the 'reactor'; how many commits it fired."""
        f, args = self.calls.get(timeout=10)
        f(*args)
        return len(args[0])

    def test_queued_commits_are_grouped_and_delivered_together(self) -> None:
        created = self.engine.create_bucket(Bucket(BUCKET, 1.0))
        self.assertEqual(self.deliver(), 1)
        self.assertTrue(self.successResultOf(created))
        bodies = [
            StagedBody(self.engine.blobs.stage_bytes(b"%d" % i), 1, md5(b"%d" % i), sha(b"%d" % i))
            for i in range(8)
        ]
        with self.engine._commit_lock:  # the committer waits: all eight queue up meanwhile
            puts = [
                self.engine.put_object(body, simple_record(BUCKET, f"k{i}", body))
                for i, body in enumerate(bodies)
            ]
            refused = self.engine.put_object(
                bodies[0],
                simple_record(BUCKET, "k0", bodies[0]),
                WriteCondition(if_none_match=True),
            )
            self.assertNoResult(puts[0])
        fired = 0
        while fired < 9:
            fired += self.deliver()
        self.assertEqual([self.successResultOf(d).key for d in puts], [f"k{i}" for i in range(8)])
        self.failureResultOf(refused, errors.PreconditionFailed)
        self.assertLessEqual(self.engine.groups, 3)  # the bucket, then one or two for the rest
        self.assertEqual(self.engine.grouped_commits, 10)

    def test_closed_engine_refuses_and_stops(self) -> None:
        self.successResultOf(self.engine.close())
        self.failureResultOf(
            self.engine.create_bucket(Bucket(BUCKET, 1.0)), errors.ServiceUnavailable
        )
        self.engine.stop()
        self.assertIsNone(self.engine._committer)
