"""The storage engine: random operation sequences against a dict model, recovery, cancellation
and draining."""

from __future__ import annotations

import hashlib
import itertools
import os
from typing import Any

from attrs import define, field
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from twisted.internet.defer import CancelledError, Deferred
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.records import BlobRef, Bucket, ObjectRecord, Part, RecoveryReport, Upload
from artifactd.storage import keys as codec
from artifactd.storage.engine import Engine, StagedBody, blob_of
from artifactd.storage.layout import Layout
from artifactd.storage.metadata import KVMetadataStore
from artifactd.testing import ManualRunner, UnsyncedFileSystem, build_engine
from tests.strategies import bodies

BUCKETS = ["bkt-a", "bkt-b", "bkt-c"]  # the first two exist from the start
KEYS = ["k", "a/b", "a/c", "é", "k ", "+%"]


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stage(engine: Engine, data: bytes) -> StagedBody:
    """Write ``data`` to a new synced staging file, as the HTTP body path does."""
    staging = engine.blobs.open_staging()
    staging.write(data)
    staging.sync()
    return StagedBody(staging=staging, size=len(data), md5=md5(data), sha256=sha256(data))


def simple_record(bucket: str, key: str, body: StagedBody, when: float = 1.0) -> ObjectRecord:
    return ObjectRecord(
        bucket=bucket,
        key=key,
        size=body.size,
        etag=body.md5,
        sha256=body.sha256,
        last_modified=when,
        blobs=(blob_of(body),),
    )


def read_object(engine: Engine, record: ObjectRecord) -> bytes:
    """An object's bytes, read blob by blob as GET does."""
    out = []
    for ref in record.blobs:
        with engine.blobs.open_blob(ref.digest) as f:
            data = f.read()
        if len(data) != ref.size:
            raise AssertionError(f"blob {ref.digest} has {len(data)} bytes, not {ref.size}")
        out.append(data)
    return b"".join(out)


@define
class UploadModel:
    upload: Upload
    parts: dict[int, bytes] = field(factory=dict)


class EngineMachine(RuleBasedStateMachine):
    """Drives an Engine (inline runner, MemoryKV, real FileBlobStore) against a dict model."""

    def __init__(self, case: SynchronousTestCase, tiered: bool = False) -> None:
        super().__init__()
        self.case = case
        self.root = os.path.abspath(case.mktemp())
        # fsync order is test_durable's business; here it would only make the disk the bottleneck
        self.engine = build_engine(self.root, fs=UnsyncedFileSystem(), tiered=tiered)
        self.tiered = tiered
        self.layout = Layout(self.root)
        self.buckets: set[str] = set()
        # (bucket, key) -> the contents of the object's blobs, in order
        self.objects: dict[tuple[str, str], tuple[bytes, ...]] = {}
        self.uploads: dict[str, UploadModel] = {}
        self.finished: list[Upload] = []
        self.ticks = itertools.count(1)

    def teardown(self) -> None:
        # The data directory stays in _trial_temp (trial clears it on the next run): removing
        # it costs more than the whole example on a busy disk.
        self.engine.meta.close()

    # --------------------------------------------------------------- helpers
    def ok(self, d: Deferred[Any]) -> Any:
        return self.case.successResultOf(d)

    def refused(self, d: Deferred[Any], error: type[Exception]) -> None:
        self.case.failureResultOf(d, error)

    def bucket_in_use(self, bucket: str) -> bool:
        return any(b == bucket for b, _ in self.objects) or any(
            u.upload.bucket == bucket for u in self.uploads.values()
        )

    def referenced(self) -> dict[str, int]:
        """Digest -> number of references, from the model."""
        counts: dict[str, int] = {}
        contents = [c for blobs in self.objects.values() for c in blobs] + [
            c for u in self.uploads.values() for c in u.parts.values()
        ]
        for content in contents:
            counts[sha256(content)] = counts.get(sha256(content), 0) + 1
        return counts

    def stage(self, data: bytes) -> StagedBody:
        """A staged body; on a tiered engine, bodies of even length are staged in memory (kept
        with the metadata), odd ones in files, so both tiers are exercised."""
        if self.tiered and len(data) % 2 == 0:
            staging = self.engine.blobs.stage_bytes(data)
            return StagedBody(staging, len(data), md5(data), sha256(data))
        return stage(self.engine, data)

    # ----------------------------------------------------------------- rules
    @initialize()
    def create_first_buckets(self) -> None:
        for bucket in BUCKETS[:2]:
            self.create_bucket(bucket)

    @rule(bucket=st.sampled_from(BUCKETS))
    def create_bucket(self, bucket: str) -> None:
        created = self.ok(self.engine.create_bucket(Bucket(bucket, next(self.ticks))))
        self.case.assertEqual(created, bucket not in self.buckets)
        self.buckets.add(bucket)

    @rule(bucket=st.sampled_from(BUCKETS))
    def delete_bucket(self, bucket: str) -> None:
        d = self.engine.delete_bucket(bucket)
        if bucket not in self.buckets:
            self.refused(d, errors.NoSuchBucket)
        elif self.bucket_in_use(bucket):
            self.refused(d, errors.BucketNotEmpty)
        else:
            self.ok(d)
            self.buckets.remove(bucket)

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS), data=bodies(64))
    def put(self, bucket: str, key: str, data: bytes) -> None:
        body = self.stage(data)
        record = simple_record(bucket, key, body, next(self.ticks))
        d = self.engine.put_object(body, record)
        if bucket not in self.buckets:
            self.refused(d, errors.NoSuchBucket)
            return
        self.case.assertEqual(self.ok(d), record)
        self.objects[bucket, key] = (data,)

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def delete(self, bucket: str, key: str) -> None:
        existed = self.ok(self.engine.delete_object(bucket, key))
        self.case.assertEqual(existed, (bucket, key) in self.objects)
        self.objects.pop((bucket, key), None)

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def get(self, bucket: str, key: str) -> None:
        record = self.engine.meta.get_object(bucket, key)
        if (bucket, key) not in self.objects:
            self.case.assertIsNone(record)
            return
        assert record is not None
        expected = b"".join(self.objects[bucket, key])
        self.case.assertEqual(read_object(self.engine, record), expected)
        self.case.assertEqual((record.size, record.sha256), (len(expected), sha256(expected)))

    @rule(bucket=st.sampled_from(BUCKETS), max_keys=st.integers(1, 4))
    def list_keys(self, bucket: str, max_keys: int) -> None:
        expected = sorted((k for b, k in self.objects if b == bucket), key=str.encode)
        listed: list[str] = []
        marker = ""
        while True:
            page = self.engine.meta.list_objects(bucket, "", "", marker, max_keys)
            listed.extend(o.key for o in page.objects)
            if not page.is_truncated:
                break
            assert page.next_marker is not None
            marker = page.next_marker
        self.case.assertEqual(listed, expected)

    @rule(bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def create_upload(self, bucket: str, key: str) -> None:
        tick = next(self.ticks)
        upload = Upload(bucket, key, f"{tick:08x}", float(tick))
        d = self.engine.create_upload(upload)
        if bucket not in self.buckets:
            self.refused(d, errors.NoSuchBucket)
            return
        self.ok(d)
        self.uploads[upload.upload_id] = UploadModel(upload)

    @precondition(lambda self: self.uploads)
    @rule(data=st.data(), number=st.integers(1, 4), content=bodies(64))
    def upload_part(self, data: st.DataObject, number: int, content: bytes) -> None:
        model = self.uploads[data.draw(st.sampled_from(sorted(self.uploads)), label="upload")]
        self.put_part(model, number, content)

    def put_part(self, model: UploadModel, number: int, content: bytes) -> None:
        body = self.stage(content)
        part = Part(
            model.upload.upload_id, number, body.size, body.md5, blob_of(body), next(self.ticks)
        )
        self.case.assertEqual(self.ok(self.engine.put_part(body, model.upload, part)), part)
        model.parts[number] = content

    @precondition(lambda self: self.finished)
    @rule(data=st.data(), content=bodies(64))
    def upload_part_too_late(self, data: st.DataObject, content: bytes) -> None:
        upload = data.draw(st.sampled_from(self.finished), label="finished upload")
        body = self.stage(content)
        part = Part(upload.upload_id, 1, body.size, body.md5, blob_of(body), next(self.ticks))
        self.refused(self.engine.put_part(body, upload, part), errors.NoSuchUpload)

    @precondition(lambda self: any(u.parts for u in self.uploads.values()))
    @rule(data=st.data())
    def complete_some(self, data: st.DataObject) -> None:
        self.complete(data, every_part=False)

    @precondition(lambda self: any(u.parts for u in self.uploads.values()))
    @rule(data=st.data())
    def complete_all(self, data: st.DataObject) -> None:
        self.complete(data, every_part=True)

    def complete(self, data: st.DataObject, every_part: bool, upload_id: str | None = None) -> None:
        """Complete an upload (``upload_id`` or a random one) with a random non-empty subset of
        its parts (in order), or all of them."""
        if upload_id is None:
            ids = sorted(uid for uid, u in self.uploads.items() if u.parts)
            upload_id = data.draw(st.sampled_from(ids), label="upload")
        model = self.uploads[upload_id]
        upload = model.upload
        stored, more = self.engine.meta.list_parts(upload.upload_id, 0, 10_000)
        self.case.assertFalse(more)
        self.case.assertEqual([p.part_number for p in stored], sorted(model.parts))
        chosen = (
            stored
            if every_part
            else data.draw(
                st.lists(st.sampled_from(stored), min_size=1, unique=True).map(
                    lambda ps: sorted(ps, key=lambda p: p.part_number)
                ),
                label="parts",
            )
        )
        contents = tuple(model.parts[p.part_number] for p in chosen)
        tick = next(self.ticks)

        def make_record(digest: str, _checksum: str | None) -> ObjectRecord:
            return ObjectRecord(
                bucket=upload.bucket,
                key=upload.key,
                size=sum(p.size for p in chosen),
                etag=md5(b"".join(bytes.fromhex(p.etag) for p in chosen)) + f"-{len(chosen)}",
                sha256=digest,
                last_modified=float(tick),
                blobs=tuple(p.blob for p in chosen),
                parts_count=len(chosen),
            )

        record = self.ok(self.engine.complete_upload(upload, chosen, make_record))
        self.case.assertEqual(record.sha256, sha256(b"".join(contents)))
        del self.uploads[upload.upload_id]
        self.finished.append(upload)
        self.objects[upload.bucket, upload.key] = contents

    @rule(
        bucket=st.sampled_from(BUCKETS),
        key=st.sampled_from(KEYS),
        contents=st.lists(bodies(64), min_size=1, max_size=4),
        data=st.data(),
    )
    def multipart_put(
        self, bucket: str, key: str, contents: list[bytes], data: st.DataObject
    ) -> None:
        """A whole multipart upload in one step, so that completions are frequent."""
        self.create_upload(bucket, key)
        if bucket not in self.buckets:
            return
        upload_id = max(self.uploads)  # ids grow with the tick: this is the new one
        for number, content in enumerate(contents, start=1):
            self.put_part(self.uploads[upload_id], number, content)
        self.complete(data, every_part=False, upload_id=upload_id)

    @precondition(lambda self: self.uploads)
    @rule(data=st.data())
    def abort(self, data: st.DataObject) -> None:
        model = self.uploads.pop(data.draw(st.sampled_from(sorted(self.uploads)), label="upload"))
        self.ok(self.engine.abort_upload(model.upload))
        self.finished.append(model.upload)

    @precondition(lambda self: self.finished)
    @rule(data=st.data())
    def abort_too_late(self, data: st.DataObject) -> None:
        upload = data.draw(st.sampled_from(self.finished), label="finished upload")
        self.refused(self.engine.abort_upload(upload), errors.NoSuchUpload)

    # ------------------------------------------------------------ invariants
    @invariant()
    def visible_objects_match_model(self) -> None:
        """The buckets and the keys in each are exactly the model's."""
        self.case.assertEqual(
            [b.name for b in self.engine.meta.list_buckets()], sorted(self.buckets)
        )
        for bucket in self.buckets:
            page = self.engine.meta.list_objects(bucket, "", "", "", 1000)
            self.case.assertEqual(
                [o.key for o in page.objects],
                sorted((k for b, k in self.objects if b == bucket), key=str.encode),
            )

    @invariant()
    def blobs_match_references(self) -> None:
        """Blob files on disk are exactly the referenced contents, each stored once under its
        digest, with stored reference counts equal to the model's (no orphans, none missing)."""
        referenced = self.referenced()
        on_disk = sorted(self.engine.blobs.digests())
        self.case.assertEqual(on_disk, sorted(referenced))
        for digest, count in referenced.items():
            with self.engine.blobs.open_blob(digest) as f:
                self.case.assertEqual(sha256(f.read()), digest)
            self.case.assertEqual(self.engine.meta.refcount(digest), count)
        # repair finds nothing to repair, and no stale count rows exist
        self.case.assertEqual(self.engine.meta.repair_refcounts(), (0, set(referenced)))

    @invariant()
    def no_staging_left(self) -> None:
        """Every staged body ends up as a blob or is removed: staging/ is empty."""
        self.case.assertEqual(os.listdir(self.layout.staging), [])

    @invariant()
    def uploads_match_model(self) -> None:
        """The in-progress uploads are exactly the model's."""
        self.case.assertEqual(
            sorted(u.upload_id for u in self.engine.meta.all_uploads()), sorted(self.uploads)
        )


class EngineStateMachineTests(SynchronousTestCase):
    def test_random_operations(self) -> None:
        """Random operation sequences keep engine, model, blobs and refcounts in agreement."""
        case = self

        class Machine(EngineMachine):
            def __init__(self) -> None:
                super().__init__(case)

        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=2 * settings().max_examples, stateful_step_count=50),
        )

    def test_random_operations_tiered(self) -> None:
        """The same with small blobs kept in the metadata store beside files (as the daemon
        runs): the tiers are indistinguishable to every operation, recovery included."""
        case = self

        class Machine(EngineMachine):
            def __init__(self) -> None:
                super().__init__(case, tiered=True)

        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=settings().max_examples, stateful_step_count=50),
        )


class RecoveryTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.engine = build_engine(self.mktemp())
        self.addCleanup(self.engine.meta.close)
        self.successResultOf(self.engine.create_bucket(Bucket("bkt", 1.0)))

    def test_recover_cleans_up(self) -> None:
        """recover() removes stale staging and orphans, fixes counts, reports missing blobs."""
        engine = self.engine
        kept = stage(engine, b"kept")
        self.successResultOf(engine.put_object(kept, simple_record("bkt", "kept", kept)))
        # an orphan: a blob committed by a process that crashed before its metadata batch
        orphan = stage(engine, b"orphan")
        self.assertTrue(engine.blobs.commit(orphan.staging, orphan.sha256))
        # stale staging files from requests in flight at the crash
        engine.blobs.open_staging().write(b"half a body")
        stage(engine, b"a whole body")
        # a record whose blob is gone, and a count that is wrong
        lost = BlobRef(sha256(b"lost"), 4)
        meta = engine.meta
        assert isinstance(meta, KVMetadataStore)
        meta.put_object(
            ObjectRecord("bkt", "lost", 4, md5(b"lost"), lost.digest, 1.0, blobs=(lost,))
        )
        meta._kv.write({codec.refcount_key(kept.sha256): b"5"}, set())

        report = self.successResultOf(engine.recover())

        self.assertEqual(
            report,
            RecoveryReport(
                staging_removed=2,
                orphan_blobs_removed=1,
                refcounts_fixed=1,
                missing_blobs=(lost.digest,),
            ),
        )
        self.assertEqual(sorted(engine.blobs.digests()), [kept.sha256])
        self.assertFalse(engine.blobs.exists(orphan.sha256))
        self.assertEqual(engine.meta.refcount(kept.sha256), 1)
        self.assertEqual(
            self.successResultOf(engine.recover()), RecoveryReport(missing_blobs=(lost.digest,))
        )

    def test_recover_clean_store(self) -> None:
        """recover() on a consistent store changes nothing and reports nothing."""
        body = stage(self.engine, b"data")
        self.successResultOf(self.engine.put_object(body, simple_record("bkt", "k", body)))
        self.assertEqual(self.successResultOf(self.engine.recover()), RecoveryReport())
        self.assertEqual(list(self.engine.blobs.digests()), [body.sha256])

    def test_deleting_object_with_missing_blob(self) -> None:
        """Deleting an object whose blob recovery found missing succeeds and drops the count."""
        lost = BlobRef(sha256(b"lost"), 4)
        self.engine.meta.put_object(
            ObjectRecord("bkt", "lost", 4, md5(b"lost"), lost.digest, 1.0, blobs=(lost,))
        )
        self.assertTrue(self.successResultOf(self.engine.delete_object("bkt", "lost")))
        self.assertEqual(self.engine.meta.refcount(lost.digest), 0)


class CommitLifecycleTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.runner = ManualRunner()
        self.engine = build_engine(self.mktemp(), run=self.runner)
        self.addCleanup(self.engine.meta.close)
        self.engine.create_bucket(Bucket("bkt", 1.0))
        self.runner.fire_all()

    def put(self, key: str, data: bytes, bucket: str = "bkt") -> Deferred[ObjectRecord]:
        body = stage(self.engine, data)
        return self.engine.put_object(body, simple_record(bucket, key, body))

    def test_cancel_does_not_stop_commit(self) -> None:
        """Cancelling put_object's Deferred fails it at once, but the commit still happens."""
        d = self.put("k", b"survives")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertIsNone(self.engine.meta.get_object("bkt", "k"))
        self.runner.fire_all()
        record = self.engine.meta.get_object("bkt", "k")
        assert record is not None
        self.assertEqual(read_object(self.engine, record), b"survives")

    def test_cancelled_commit_failure_is_logged(self) -> None:
        """A commit that fails after its caller cancelled is logged, not lost silently."""
        d = self.put("k", b"x", bucket="missing")
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.runner.fire_all()
        self.assertEqual(len(self.flushLoggedErrors(errors.NoSuchBucket)), 1)
        self.assertEqual(list(self.engine.blobs.digests()), [])

    def test_result_relayed(self) -> None:
        """Without cancellation, the caller gets the commit's result once it has run."""
        d = self.put("k", b"x")
        self.assertNoResult(d)
        self.runner.fire_all()
        self.assertEqual(self.successResultOf(d).key, "k")

    def test_drain_waits_for_commits(self) -> None:
        """drain() fires once every commit begun before it, cancelled or failed, has finished."""
        first = self.put("a", b"1")
        second = self.put("b", b"2", bucket="missing")
        first.cancel()
        drained = self.engine.drain()
        self.assertNoResult(drained)
        self.runner.fire()
        self.assertNoResult(drained)
        self.runner.fire()
        self.successResultOf(drained)
        self.failureResultOf(first, CancelledError)
        self.failureResultOf(second, errors.NoSuchBucket)
        self.assertIsNotNone(self.engine.meta.get_object("bkt", "a"))

    def test_drain_when_idle(self) -> None:
        """drain() with nothing in flight fires at once."""
        self.successResultOf(self.engine.drain())


class CompletionRaceTests(SynchronousTestCase):
    def test_part_replaced_while_completing(self) -> None:
        """A part replaced while completing fails with InvalidPart, not a dangling blob."""
        engine = build_engine(self.mktemp())
        self.addCleanup(engine.meta.close)
        self.successResultOf(engine.create_bucket(Bucket("bkt", 1.0)))
        upload = Upload("bkt", "k", "u1", 1.0)
        self.successResultOf(engine.create_upload(upload))
        old = stage(engine, b"old part")
        first = Part("u1", 1, old.size, old.md5, blob_of(old), 1.0)
        self.successResultOf(engine.put_part(old, upload, first))

        def make_record(digest: str, _checksum: str | None) -> ObjectRecord:
            # Runs in the disk pool after hashing, outside the commit lock: the window in which
            # another thread can replace the part.
            new = stage(engine, b"new part")
            replacement = Part("u1", 1, new.size, new.md5, blob_of(new), 2.0)
            self.successResultOf(engine.put_part(new, upload, replacement))
            return ObjectRecord(
                "bkt", "k", old.size, old.md5 + "-1", digest, 3.0, blobs=(first.blob,)
            )

        d = engine.complete_upload(upload, [first], make_record)
        self.failureResultOf(d, errors.InvalidPart)
        self.assertIsNone(engine.meta.get_object("bkt", "k"))
        self.assertIsNotNone(engine.meta.get_upload("bkt", "k", "u1"))
        self.assertEqual(list(engine.blobs.digests()), [sha256(b"new part")])
