"""Server-side copies: CopyObject and UploadPartCopy.

The header parsing is pure (:mod:`artifactd.http.copying`); the engine's copy methods run on a
real blob directory with in-memory metadata; the HTTP behaviour is driven through the real site
(:mod:`tests.http_harness`)."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from collections.abc import Mapping
from urllib.parse import quote

import attrs
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule, run_state_machine_as_test
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http import copying
from artifactd.http.actions import Target, classify
from artifactd.integrity import COMPOSITE, FULL_OBJECT
from artifactd.records import BlobRef, Bucket, ChecksumValue, ObjectRecord, Part, Upload
from artifactd.storage import copying as storage_copying
from artifactd.storage.engine import Engine
from artifactd.storage.kv import MemoryKV
from artifactd.storage.layout import Layout
from artifactd.storage.metadata import KVMetadataStore
from artifactd.testing import inline_runner
from tests import strategies
from tests.http_harness import (
    CountingBlobStore,
    Harness,
    Response,
    key_path,
    put_request,
    signed_request,
)
from tests.test_engine import BUCKETS, KEYS, EngineMachine, UploadModel, md5, sha256

MiB = 1024 * 1024


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def record(**changes: object) -> ObjectRecord:
    fields: dict[str, object] = {
        "bucket": "b",
        "key": "k",
        "size": 3,
        "etag": hashlib.md5(b"abc").hexdigest(),
        "sha256": hashlib.sha256(b"abc").hexdigest(),
        "last_modified": 1_000_000.0,
    }
    fields.update(changes)
    return ObjectRecord(**fields)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------- parsing
class CopySourceHeaderTests(SynchronousTestCase):
    """``x-amz-copy-source`` parsing."""

    @given(strategies.bucket_names(), strategies.keys(), st.booleans())
    def test_round_trip(self, bucket: str, key: str, slash: bool) -> None:
        """A source encoded as botocore encodes it (with or without a leading slash) parses back
        to its bucket and key."""
        header = ("/" if slash else "") + bucket + "/" + quote(key, safe="/~")
        self.assertEqual(copying.parse_copy_source(header), copying.CopySource(bucket, key))

    @given(strategies.bucket_names(), strategies.keys())
    def test_version_null_accepted(self, bucket: str, key: str) -> None:
        """``?versionId=null`` (every object's only version here) is accepted."""
        header = f"{bucket}/{quote(key, safe='/~')}?versionId=null"
        self.assertEqual(copying.parse_copy_source(header), copying.CopySource(bucket, key))

    def test_other_version_refused(self) -> None:
        """Any version id but ``null`` is InvalidArgument naming ``versionId``."""
        for value in ("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", ""):
            with self.assertRaises(errors.InvalidArgument) as caught:
                copying.parse_copy_source(f"bucket/key?versionId={value}")
            self.assertEqual(caught.exception.extra["ArgumentName"], "versionId")

    def test_question_mark_in_key(self) -> None:
        """An encoded ``?`` (``%3F``) belongs to the key; a literal one starts the query."""
        self.assertEqual(copying.parse_copy_source("b/what%3Fnow").key, "what?now")
        self.assertEqual(copying.parse_copy_source("b/what?now").key, "what")

    def test_malformed(self) -> None:
        """A header without both a bucket and a key, or not UTF-8 once decoded, is
        InvalidArgument naming ``x-amz-copy-source``."""
        for value in ("", "/", "bucket", "/bucket", "bucket/", "/bucket/", "//key", "b/%ff"):
            with self.assertRaises(errors.InvalidArgument) as caught:
                copying.parse_copy_source(value)
            self.assertEqual(caught.exception.extra["ArgumentName"], "x-amz-copy-source")


class CopyRangeTests(SynchronousTestCase):
    """``x-amz-copy-source-range`` parsing."""

    @given(st.integers(1, 10**12), st.data())
    def test_valid(self, size: int, data: st.DataObject) -> None:
        """``bytes=first-last`` within the source gives (first, last - first + 1)."""
        first = data.draw(st.integers(0, size - 1))
        last = data.draw(st.integers(first, size - 1))
        self.assertEqual(
            copying.parse_copy_range(f"bytes={first}-{last}", size), (first, last - first + 1)
        )

    @given(st.integers(0, 10**12), st.data())
    def test_past_the_end(self, size: int, data: st.DataObject) -> None:
        """A range ending at or past the end of the source is InvalidArgument naming the size."""
        last = data.draw(st.integers(size, size + 10**6))
        first = data.draw(st.integers(0, last))
        with self.assertRaises(errors.InvalidArgument) as caught:
            copying.parse_copy_range(f"bytes={first}-{last}", size)
        self.assertIn(f"size: {size}", caught.exception.message)

    def test_malformed(self) -> None:
        """Anything but ``bytes=first-last`` with first <= last is InvalidArgument."""
        for value in (
            "0-10",
            "bytes=0",
            "bytes=-5",
            "bytes=5-",
            "bytes=a-b",
            "bytes=0-2,4-6",
            "bytes=6-5",
            "bits=0-1",
            "",
        ):
            with self.assertRaises(errors.InvalidArgument) as caught:
                copying.parse_copy_range(value, 100)
            self.assertEqual(caught.exception.extra["ArgumentValue"], value)
            self.assertIn("must be of the form", caught.exception.message)

    def test_absent(self) -> None:
        """Without the header the whole source is copied."""
        self.assertEqual(copying.parse_copy_range(None, 42), (0, 42))


class DirectiveAndChecksumTests(SynchronousTestCase):
    """Metadata/tagging directives and the copy's checksum."""

    def test_directives(self) -> None:
        """COPY is the default; COPY and REPLACE are accepted; anything else InvalidArgument."""
        name = "x-amz-metadata-directive"
        self.assertEqual(copying.directive({}, name), "COPY")
        self.assertEqual(copying.directive({name: "REPLACE"}, name), "REPLACE")
        for bad in ("replace", "MOVE", ""):
            with self.assertRaises(errors.InvalidArgument):
                copying.directive({name: bad}, name)

    def test_checksum_kept(self) -> None:
        """A source's full-object checksum is copied as it is (nothing to compute)."""
        value = ChecksumValue("crc32", crc32_b64(b"abc"))
        source = record(checksum=value, checksum_type=FULL_OBJECT)
        self.assertEqual(copying.plan_checksum(source, None), (value, None))
        self.assertEqual(copying.plan_checksum(source, "crc32"), (value, None))

    def test_checksum_recomputed(self) -> None:
        """Another algorithm asked for, or a COMPOSITE source checksum, is computed again over
        the content; no checksum and none asked for gives none."""
        value = ChecksumValue("crc32", crc32_b64(b"abc"))
        source = record(checksum=value, checksum_type=FULL_OBJECT)
        self.assertEqual(copying.plan_checksum(source, "sha256"), (None, "sha256"))
        composite = record(checksum=ChecksumValue("sha1", "AAAA-2"), checksum_type=COMPOSITE)
        self.assertEqual(copying.plan_checksum(composite, None), (None, "sha1"))
        self.assertEqual(copying.plan_checksum(record(), None), (None, None))
        self.assertEqual(copying.plan_checksum(record(), "crc32c"), (None, "crc32c"))

    def test_unsupported_checksum_algorithm(self) -> None:
        """An unknown ``x-amz-checksum-algorithm`` is a 400, an unimplemented one a 501."""
        with self.assertRaises(errors.InvalidRequest):
            copying.requested_checksum({"x-amz-checksum-algorithm": "NOPE"})
        with self.assertRaises(errors.NotImplementedError_):
            copying.requested_checksum({"x-amz-checksum-algorithm": "MD5"})
        self.assertEqual(copying.requested_checksum({"x-amz-checksum-algorithm": "CRC32"}), "crc32")


class ClassifyTests(SynchronousTestCase):
    """``x-amz-copy-source`` makes a PUT a copy."""

    def test_copy_actions(self) -> None:
        """PUT with the header is CopyObject, or UploadPartCopy with uploadId/partNumber."""
        headers: Mapping[str, str] = {"x-amz-copy-source": "b/k"}
        self.assertEqual(classify("PUT", Target("b", "k", {}), headers), "CopyObject")
        part = Target("b", "k", {"uploadId": "u", "partNumber": "1"})
        self.assertEqual(classify("PUT", part, headers), "UploadPartCopy")
        self.assertEqual(classify("PUT", part, {}), "UploadPart")
        self.assertEqual(classify("PUT", Target("b", "k", {}), {}), "PutObject")


# ----------------------------------------------------------------------------- pieces
blob_sizes = st.lists(st.integers(0, 50), min_size=1, max_size=6)


class PiecesTests(SynchronousTestCase):
    """Mapping a byte range onto a manifest's blobs."""

    @given(blob_sizes, st.data())
    def test_pieces_cover_the_range(self, sizes: list[int], data: st.DataObject) -> None:
        """The pieces, read from the blobs, are exactly the range of the concatenation."""
        contents = [bytes([i]) * size for i, size in enumerate(sizes)]
        blobs = [BlobRef(str(i), size) for i, size in enumerate(sizes)]
        whole = b"".join(contents)
        start = data.draw(st.integers(0, len(whole)))
        length = data.draw(st.integers(0, len(whole) - start))
        got = b"".join(
            contents[int(p.digest)][p.offset : p.offset + p.length]
            for p in storage_copying.pieces(blobs, start, length)
        )
        self.assertEqual(got, whole[start : start + length])

    @given(blob_sizes, st.data())
    def test_whole_blob(self, sizes: list[int], data: st.DataObject) -> None:
        """``whole_blob`` finds a blob exactly when the range is that blob's bytes."""
        blobs = [BlobRef(str(i), size) for i, size in enumerate(sizes)]
        total = sum(sizes)
        start = data.draw(st.integers(0, total))
        length = data.draw(st.integers(0, total - start))
        found = storage_copying.whole_blob(blobs, start, length)
        offsets = [sum(sizes[:i]) for i in range(len(sizes))]
        exact = [
            b for b, offset in zip(blobs, offsets, strict=True)
            if offset == start and b.size == length
        ]  # fmt: skip
        if exact:
            self.assertIsNotNone(found)
            assert found is not None
            self.assertEqual((offsets[int(found.digest)], found.size), (start, length))
        else:
            self.assertIsNone(found)


# ------------------------------------------------------------------------------ engine
class EngineCopyTests(SynchronousTestCase):
    """The engine's copy methods on a real blob directory."""

    def setUp(self) -> None:
        self.layout = Layout(os.path.abspath(self.mktemp()))
        self.blobs = CountingBlobStore(self.layout)
        self.blobs.prepare()
        self.meta = KVMetadataStore(MemoryKV())
        self.engine = Engine(self.blobs, self.meta, inline_runner)
        self.successResultOf(self.engine.create_bucket(Bucket("b", 0.0)))

    def store(self, key: str, *chunks: bytes) -> ObjectRecord:
        """An object made of one blob per chunk (written directly into the blob store)."""
        refs = []
        for chunk in chunks:
            staging = self.blobs.open_staging()
            staging.write(chunk)
            staging.sync()
            digest = hashlib.sha256(chunk).hexdigest()
            self.blobs.commit(staging, digest)
            refs.append(BlobRef(digest, len(chunk)))
        whole = b"".join(chunks)
        rec = ObjectRecord(
            bucket="b",
            key=key,
            size=len(whole),
            etag=hashlib.md5(whole).hexdigest(),
            sha256=hashlib.sha256(whole).hexdigest(),
            last_modified=1.0,
            blobs=tuple(refs),
            parts_count=len(chunks) if len(chunks) > 1 else 0,
        )
        self.meta.put_object(rec)
        return rec

    def read(self, rec: ObjectRecord) -> bytes:
        out = b""
        for blob in rec.blobs:
            with self.blobs.open_blob(blob.digest) as f:
                out += f.read()
        return out

    def upload(self) -> Upload:
        upload = Upload(bucket="b", key="dst", upload_id="u1", initiated=1.0)
        self.successResultOf(self.engine.create_upload(upload))
        return upload

    def make_part(self, length: int) -> object:
        def make(blob: BlobRef, md5: str, checksum: str | None) -> Part:
            return Part("u1", 1, length, md5, blob, 2.0)

        return make

    def test_copy_object_references_blobs(self) -> None:
        """A copy adds a reference to each source blob and writes no byte; deleting the source
        leaves the copy whole."""
        source = self.store("src", b"a" * 100, b"b" * 50)
        before = sorted(self.blobs.digests())
        opened = self.blobs.staging_opened

        def make(md5: str | None, checksum: str | None) -> ObjectRecord:
            self.assertEqual(md5, hashlib.md5(b"a" * 100 + b"b" * 50).hexdigest())
            return ObjectRecord(
                bucket="b",
                key="dst",
                size=source.size,
                etag=md5 or "",
                sha256=source.sha256,
                last_modified=2.0,
                blobs=source.blobs,
            )

        copy = self.successResultOf(self.engine.copy_object(source, make, md5=True))
        self.assertEqual(sorted(self.blobs.digests()), before)
        self.assertEqual(self.blobs.staging_opened, opened)
        self.assertEqual([self.meta.refcount(b.digest) for b in source.blobs], [2, 2])
        self.successResultOf(self.engine.delete_object("b", "src"))
        self.assertEqual([self.meta.refcount(b.digest) for b in source.blobs], [1, 1])
        self.assertEqual(self.read(copy), b"a" * 100 + b"b" * 50)

    def test_copy_object_source_gone(self) -> None:
        """If the source's blobs lost their last reference before the commit, the copy is
        NoSuchKey naming the source, and nothing is stored."""
        source = self.store("src", b"gone")
        self.successResultOf(self.engine.delete_object("b", "src"))

        def make(md5: str | None, checksum: str | None) -> ObjectRecord:
            return ObjectRecord("b", "dst", 4, "e", source.sha256, 2.0, blobs=source.blobs)

        failure = self.failureResultOf(self.engine.copy_object(source, make), errors.NoSuchKey)
        self.assertEqual(failure.value.extra, {"Key": "src"})
        self.assertIsNone(self.meta.get_object("b", "dst"))

    def test_copy_part_whole_blob(self) -> None:
        """A range that is exactly one source blob becomes the part by reference."""
        source = self.store("src", b"x" * 70, b"y" * 30)
        upload = self.upload()
        before = sorted(self.blobs.digests())
        opened = self.blobs.staging_opened
        part = self.successResultOf(
            self.engine.copy_part(upload, source, 70, 30, self.make_part(30))  # type: ignore[arg-type]
        )
        self.assertEqual(part.blob, source.blobs[1])
        self.assertEqual(part.etag, hashlib.md5(b"y" * 30).hexdigest())
        self.assertEqual(sorted(self.blobs.digests()), before)
        self.assertEqual(self.blobs.staging_opened, opened)
        self.assertEqual(self.meta.refcount(source.blobs[1].digest), 2)

    def test_copy_part_across_blobs(self) -> None:
        """A range across blobs is written to a new blob holding exactly those bytes; no
        staging file is left behind."""
        source = self.store("src", b"x" * 70, b"y" * 30)
        upload = self.upload()
        part = self.successResultOf(
            self.engine.copy_part(upload, source, 60, 20, self.make_part(20))  # type: ignore[arg-type]
        )
        expected = b"x" * 10 + b"y" * 10
        self.assertEqual(part.blob, BlobRef(hashlib.sha256(expected).hexdigest(), 20))
        self.assertEqual(part.etag, hashlib.md5(expected).hexdigest())
        with self.blobs.open_blob(part.blob.digest) as f:
            self.assertEqual(f.read(), expected)
        self.assertEqual(self.meta.refcount(part.blob.digest), 1)
        self.assertEqual(os.listdir(self.layout.staging), [])

    def test_copy_part_reads_in_bounded_chunks(self) -> None:
        """A streamed range is read and written at most READ_SIZE bytes at a time."""
        data = os.urandom(2 * storage_copying.READ_SIZE + 12345)
        source = self.store("src", data)
        seen: list[int] = []
        digests = storage_copying.read_range(
            self.blobs,
            storage_copying.pieces(source.blobs, 7, len(data) - 7),
            md5=True,
            sha256=True,
            checksum_algorithm="crc32",
            sink=lambda chunk: seen.append(len(chunk)),
        )
        self.assertLessEqual(max(seen), storage_copying.READ_SIZE)
        self.assertEqual(sum(seen), len(data) - 7)
        self.assertEqual(digests.md5, hashlib.md5(data[7:]).hexdigest())
        self.assertEqual(digests.sha256, hashlib.sha256(data[7:]).hexdigest())
        self.assertEqual(digests.checksum, crc32_b64(data[7:]))

    def test_copy_part_failure_leaves_no_staging(self) -> None:
        """If a source blob vanished, the part copy is NoSuchKey and its staging file is gone."""
        source = self.store("src", b"x" * 70, b"y" * 30)
        upload = self.upload()
        os.unlink(self.layout.blob(source.blobs[1].digest))
        self.failureResultOf(
            self.engine.copy_part(upload, source, 60, 20, self.make_part(20)),  # type: ignore[arg-type]
            errors.NoSuchKey,
        )
        self.assertEqual(os.listdir(self.layout.staging), [])
        self.assertEqual(self.meta.list_parts("u1", 0, 10), ([], False))


# -------------------------------------------------------------------------------- HTTP
def copy_request(
    bucket: str, key: str, source: str, headers: Mapping[str, str] | None = None, query: str = ""
) -> bytes:
    return signed_request(
        "PUT",
        key_path(bucket, key) + query,
        headers={"x-amz-copy-source": source, **(headers or {})},
    )


class CopyObjectHTTPTests(SynchronousTestCase):
    """CopyObject through the real site."""

    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("src")
        self.h.create_bucket("dst")

    def put(self, key: str, data: bytes, headers: Mapping[str, str] | None = None) -> Response:
        response = self.h.send(put_request("src", key, data, headers=headers))
        self.assertEqual(response.status, 200, response.body)
        return response

    def copy(self, source: str, key: str = "copy", **headers: str) -> Response:
        return self.h.send(copy_request("dst", key, source, headers))

    def assertError(self, response: Response, status: int, code: str) -> dict[str, str]:
        self.assertEqual((response.status, response.error()["Code"]), (status, code))
        return response.error()

    def test_copy_keeps_content_and_metadata(self) -> None:
        """A COPY-directive copy has the source's bytes, digest, content type, stored headers
        and user metadata, answers CopyObjectResult, and creates no blob file."""
        data = os.urandom(3000)
        put = self.put(
            "a/src key+",
            data,
            {
                "Content-Type": "text/plain",
                "Cache-Control": "max-age=60",
                "x-amz-meta-colour": "blue",
            },
        )
        blobs = self.h.blob_files()
        opened = self.h.blobs.staging_opened
        response = self.copy(
            quote("src/a/src key+", safe="/~"),
            "b/copied",
            **{
                "Content-Type": "ignored/with-copy",
                "x-amz-meta-colour": "ignored",
            },
        )
        self.assertEqual(response.status, 200, response.body)
        root = response.xml()
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        self.assertEqual(root.tag, ns + "CopyObjectResult")
        self.assertEqual(root.findtext(ns + "ETag"), f'"{hashlib.md5(data).hexdigest()}"')
        self.assertEqual(root.findtext(ns + "LastModified"), "2026-11-28T01:23:45.000Z")
        self.assertEqual(response.header("x-artifactd-digest"), put.header("x-artifactd-digest"))
        self.assertEqual(self.h.blob_files(), blobs)
        self.assertEqual(self.h.blobs.staging_opened, opened)
        got = self.h.get("dst", "b/copied")
        self.assertEqual(got.body, data)
        self.assertEqual(got.header("content-type"), "text/plain")
        self.assertEqual(got.header("cache-control"), "max-age=60")
        self.assertEqual(got.header("x-amz-meta-colour"), "blue")
        self.assertEqual(got.header("x-artifactd-digest"), put.header("x-artifactd-digest"))

    def test_replace_takes_request_metadata(self) -> None:
        """REPLACE takes content type, stored headers and metadata from the request only."""
        self.put("k", b"data", {"Content-Type": "text/plain", "x-amz-meta-old": "1"})
        response = self.copy(
            "/src/k",
            **{
                "x-amz-metadata-directive": "REPLACE",
                "Content-Type": "application/json",
                "Content-Disposition": "attachment",
                "x-amz-meta-new": "2",
            },
        )
        self.assertEqual(response.status, 200, response.body)
        got = self.h.get("dst", "copy")
        self.assertEqual(got.body, b"data")
        self.assertEqual(got.header("content-type"), "application/json")
        self.assertEqual(got.header("content-disposition"), "attachment")
        self.assertEqual(got.header("x-amz-meta-new"), "2")
        self.assertIsNone(got.header("x-amz-meta-old"))

    def test_self_copy(self) -> None:
        """Copying an object onto itself needs REPLACE (400 InvalidRequest otherwise), which
        then changes its metadata in place."""
        self.put("k", b"data", {"x-amz-meta-a": "1"})
        refused = self.h.send(copy_request("src", "k", "src/k"))
        error = self.assertError(refused, 400, "InvalidRequest")
        self.assertIn("copy an object to itself", error["Message"])
        response = self.h.send(
            copy_request(
                "src", "k", "src/k", {"x-amz-metadata-directive": "REPLACE", "x-amz-meta-a": "2"}
            )
        )
        self.assertEqual(response.status, 200, response.body)
        got = self.h.get("src", "k")
        self.assertEqual((got.body, got.header("x-amz-meta-a")), (b"data", "2"))

    def test_missing_source(self) -> None:
        """A missing source key is 404 NoSuchKey naming the source; a missing source bucket
        404 NoSuchBucket naming it; a missing destination bucket 404 NoSuchBucket."""
        error = self.assertError(self.copy("src/nope"), 404, "NoSuchKey")
        self.assertEqual((error["Key"], error["Resource"]), ("nope", "/src/nope"))
        error = self.assertError(self.copy("nobucket/k"), 404, "NoSuchBucket")
        self.assertEqual(error["BucketName"], "nobucket")
        self.put("k", b"x")
        error = self.assertError(
            self.h.send(copy_request("gone", "k", "src/k")), 404, "NoSuchBucket"
        )
        self.assertEqual(error["BucketName"], "gone")

    def test_bad_headers(self) -> None:
        """A malformed source, a version id other than null and an unknown directive are 400
        InvalidArgument; ``versionId=null`` is accepted."""
        self.put("k", b"x")
        self.assertError(self.copy("src"), 400, "InvalidArgument")
        self.assertError(self.copy("src/k?versionId=abc"), 400, "InvalidArgument")
        self.assertEqual(self.copy("src/k?versionId=null").status, 200)
        self.assertError(
            self.copy("src/k", **{"x-amz-metadata-directive": "MOVE"}), 400, "InvalidArgument"
        )

    def test_source_conditions(self) -> None:
        """The x-amz-copy-source-if-* conditions are checked against the source: 412 when one
        fails, a copy when all hold."""
        put = self.put("k", b"x")
        etag = put.header("etag") or ""
        past, future = "Sat, 01 Jan 2000 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"
        failing = [
            {"x-amz-copy-source-if-match": '"0123"'},
            {"x-amz-copy-source-if-none-match": etag},
            {"x-amz-copy-source-if-unmodified-since": past},
            {"x-amz-copy-source-if-modified-since": "Sun, 29 Nov 2026 00:00:00 GMT"},
        ]
        for headers in failing:
            self.assertError(self.copy("src/k", **headers), 412, "PreconditionFailed")
        holding = [
            {"x-amz-copy-source-if-match": etag},
            {"x-amz-copy-source-if-none-match": '"0123"'},
            {"x-amz-copy-source-if-unmodified-since": future},
            {"x-amz-copy-source-if-modified-since": past},
            {"x-amz-copy-source-if-match": etag, "x-amz-copy-source-if-unmodified-since": past},
        ]
        for headers in holding:
            self.assertEqual(self.copy("src/k", **headers).status, 200)
        self.assertIsNone(self.h.meta.get_object("dst", "never"))

    def test_conditional_write(self) -> None:
        """``If-None-Match: *`` refuses a copy onto an existing key (412), not onto a free one."""
        self.put("k", b"x")
        self.assertEqual(self.copy("src/k", **{"If-None-Match": "*"}).status, 200)
        self.assertError(self.copy("src/k", **{"If-None-Match": "*"}), 412, "PreconditionFailed")

    def test_multipart_source(self) -> None:
        """A copy of a multipart object references its blobs, gets the MD5 of the content as its
        ETag and reads as one part, as S3's single-part copy does."""
        parts = [os.urandom(5 * MiB), os.urandom(1000)]
        complete_multipart(self.h, "src", "mp", parts)
        blobs = self.h.blob_files()
        response = self.copy("src/mp")
        self.assertEqual(response.status, 200, response.body)
        whole = b"".join(parts)
        etag = f'"{hashlib.md5(whole).hexdigest()}"'
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        self.assertEqual(response.xml().findtext(ns + "ETag"), etag)
        self.assertEqual(self.h.blob_files(), blobs)
        got = self.h.get("dst", "copy")
        self.assertEqual((got.body, got.header("etag")), (whole, etag))
        copied = self.h.meta.get_object("dst", "copy")
        assert copied is not None
        self.assertEqual(copied.parts_count, 0)
        part = self.h.send(signed_request("GET", key_path("dst", "copy") + "?partNumber=1"))
        self.assertIn(part.status, (200, 206))
        self.assertEqual(part.body, whole)
        self.assertIsNone(part.header("x-amz-mp-parts-count"))

    @given(
        source=st.one_of(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40),
            st.sampled_from(["src/k", "/src/k", "src/k?versionId=", "src//k", "src/%00"]),
        ),
        directive=st.sampled_from([None, "COPY", "REPLACE", "bogus"]),
    )
    def test_arbitrary_source_headers(self, source: str, directive: str | None) -> None:
        """Any x-amz-copy-source value is a copy or an S3 error document, never a 500."""
        if self.h.meta.get_object("src", "k") is None:
            self.put("k", b"x")
        headers = {"x-amz-metadata-directive": directive} if directive else {}
        response = self.h.send(copy_request("dst", "copy", source, headers))
        if response.status != 200:
            self.assertLess(response.status, 500)
            self.assertIn("Code", response.error())
        self.assertEqual(self.h.staging_files(), [])

    def test_checksums(self) -> None:
        """The source's checksum is copied; ``x-amz-checksum-algorithm`` computes another; both
        are in CopyObjectResult."""
        self.put("k", b"hello", {"x-amz-checksum-crc32": crc32_b64(b"hello")})
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        kept = self.copy("src/k", "one")
        self.assertEqual(kept.xml().findtext(ns + "ChecksumCRC32"), crc32_b64(b"hello"))
        self.assertEqual(kept.xml().findtext(ns + "ChecksumType"), FULL_OBJECT)
        other = self.copy("src/k", "two", **{"x-amz-checksum-algorithm": "SHA256"})
        self.assertEqual(other.xml().findtext(ns + "ChecksumSHA256"), sha256_b64(b"hello"))
        got = self.h.get("dst", "two", {"x-amz-checksum-mode": "ENABLED"})
        self.assertEqual(got.header("x-amz-checksum-sha256"), sha256_b64(b"hello"))


def complete_multipart(h: Harness, bucket: str, key: str, parts: list[bytes]) -> Response:
    """Upload ``parts`` as a multipart upload of ``bucket``/``key`` and complete it."""
    upload_id = create_upload(h, bucket, key)
    etags = [upload_part(h, bucket, key, upload_id, n, p) for n, p in enumerate(parts, 1)]
    return complete(h, bucket, key, upload_id, etags)


def create_upload(h: Harness, bucket: str, key: str) -> str:
    created = h.send(signed_request("POST", key_path(bucket, key) + "?uploads"))
    assert created.status == 200, created.body
    upload_id = created.xml().findtext("{http://s3.amazonaws.com/doc/2006-03-01/}UploadId")
    assert upload_id
    return upload_id


def upload_part(h: Harness, bucket: str, key: str, upload_id: str, n: int, data: bytes) -> str:
    response = h.send(put_request(bucket, key, data, query=f"?partNumber={n}&uploadId={upload_id}"))
    assert response.status == 200, response.body
    return response.header("etag") or ""


def complete(h: Harness, bucket: str, key: str, upload_id: str, etags: list[str]) -> Response:
    body = (
        "<CompleteMultipartUpload>"
        + "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{e}</ETag></Part>"
            for n, e in enumerate(etags, 1)
        )
        + "</CompleteMultipartUpload>"
    ).encode()
    response = h.send(
        signed_request("POST", key_path(bucket, key) + f"?uploadId={upload_id}", body)
    )
    assert response.status == 200, response.body
    return response


class UploadPartCopyHTTPTests(SynchronousTestCase):
    """UploadPartCopy through the real site."""

    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        self.parts = [os.urandom(5 * MiB), os.urandom(3 * MiB)]
        complete_multipart(self.h, "bkt", "src", self.parts)
        self.upload_id = create_upload(self.h, "bkt", "dst")

    def part_copy(self, n: int, byte_range: str | None = None, source: str = "bkt/src") -> Response:
        headers = {"x-amz-copy-source-range": byte_range} if byte_range else {}
        return self.h.send(
            copy_request(
                "bkt", "dst", source, headers, query=f"?partNumber={n}&uploadId={self.upload_id}"
            )
        )

    def test_ranges_and_complete(self) -> None:
        """Parts copied from ranges (one aligned with a source blob, one across blobs) answer
        CopyPartResult with each range's MD5, and complete into those bytes; only the range
        across blobs writes a new blob."""
        whole = b"".join(self.parts)
        blobs = set(self.h.blob_files())
        aligned = self.part_copy(1, f"bytes=0-{5 * MiB - 1}")
        self.assertEqual(aligned.status, 200, aligned.body)
        self.assertEqual(set(self.h.blob_files()), blobs)
        across = self.part_copy(2, f"bytes={5 * MiB - 10}-{5 * MiB + 9}")
        self.assertEqual(across.status, 200, across.body)
        self.assertEqual(len(set(self.h.blob_files()) - blobs), 1)
        self.assertEqual(self.h.staging_files(), [])
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        etags = []
        for response, data in [
            (aligned, whole[: 5 * MiB]),
            (across, whole[5 * MiB - 10 : 5 * MiB + 10]),
        ]:
            root = response.xml()
            self.assertEqual(root.tag, ns + "CopyPartResult")
            self.assertEqual(root.findtext(ns + "ETag"), f'"{hashlib.md5(data).hexdigest()}"')
            self.assertIsNotNone(root.findtext(ns + "LastModified"))
            etags.append(root.findtext(ns + "ETag") or "")
        complete(self.h, "bkt", "dst", self.upload_id, etags)
        got = self.h.get("bkt", "dst")
        self.assertEqual(got.body, whole[: 5 * MiB] + whole[5 * MiB - 10 : 5 * MiB + 10])

    def test_whole_source(self) -> None:
        """Without a range the whole source is the part."""
        response = self.part_copy(1)
        self.assertEqual(response.status, 200, response.body)
        listed = self.h.meta.list_parts(self.upload_id, 0, 10)[0]
        self.assertEqual([p.size for p in listed], [8 * MiB])

    def test_errors(self) -> None:
        """Bad ranges are 400 InvalidArgument, a missing source 404 NoSuchKey, a missing upload
        404 NoSuchUpload, a bad part number 400 InvalidArgument; nothing is stored."""
        blobs = self.h.blob_files()
        cases = [
            (self.part_copy(1, "bytes=0-"), 400, "InvalidArgument"),
            (self.part_copy(1, "bytes=5-1"), 400, "InvalidArgument"),
            (self.part_copy(1, f"bytes=0-{8 * MiB}"), 400, "InvalidArgument"),
            (self.part_copy(1, source="bkt/none"), 404, "NoSuchKey"),
            (self.part_copy(0), 400, "InvalidArgument"),
            (self.part_copy(10001), 400, "InvalidArgument"),
        ]
        for response, status, code in cases:
            self.assertEqual((response.status, response.error()["Code"]), (status, code))
        missing = self.h.send(
            copy_request("bkt", "dst", "bkt/src", query="?partNumber=1&uploadId=nope")
        )
        self.assertEqual((missing.status, missing.error()["Code"]), (404, "NoSuchUpload"))
        self.assertEqual(self.h.meta.list_parts(self.upload_id, 0, 10), ([], False))
        self.assertEqual(self.h.blob_files(), blobs)

    @given(
        value=st.one_of(
            st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30),
            st.builds(
                "bytes={}-{}".format,
                st.integers(0, 9 * MiB),
                st.integers(0, 9 * MiB),
            ),
        )
    )
    def test_arbitrary_ranges(self, value: str) -> None:
        """Any x-amz-copy-source-range is a part or an S3 error document, never a 500."""
        response = self.part_copy(1, value)
        if response.status != 200:
            self.assertLess(response.status, 500)
            self.assertEqual(response.error()["Code"], "InvalidArgument")
        self.assertEqual(self.h.staging_files(), [])

    def test_checksum_upload(self) -> None:
        """A part copied into an upload with a checksum algorithm gets that checksum, reported
        in CopyPartResult."""
        created = self.h.send(
            signed_request(
                "POST",
                key_path("bkt", "ck") + "?uploads",
                headers={"x-amz-checksum-algorithm": "CRC32"},
            )
        )
        upload_id = created.xml().findtext("{http://s3.amazonaws.com/doc/2006-03-01/}UploadId")
        response = self.h.send(
            copy_request(
                "bkt",
                "ck",
                "bkt/src",
                {"x-amz-copy-source-range": "bytes=0-99"},
                query=f"?partNumber=1&uploadId={upload_id}",
            )
        )
        self.assertEqual(response.status, 200, response.body)
        ns = "{http://s3.amazonaws.com/doc/2006-03-01/}"
        self.assertEqual(
            response.xml().findtext(ns + "ChecksumCRC32"), crc32_b64(self.parts[0][:100])
        )


# ------------------------------------------------------------------------ state machine
class CopyMachine(EngineMachine):
    """The engine state machine of ``tests.test_engine`` with copies mixed in: CopyObject and
    UploadPartCopy must keep blobs, reference counts and contents in agreement with the model
    (a copy's blobs are the source's contents; a part copied from a range holds those bytes)."""

    def source(self, data: st.DataObject) -> tuple[tuple[str, str], ObjectRecord]:
        name = data.draw(st.sampled_from(sorted(self.objects)), label="source")
        found = self.engine.meta.get_object(*name)
        assert found is not None
        return name, found

    def copy_record(self, source: ObjectRecord, bucket: str, key: str) -> object:
        tick = float(next(self.ticks))

        def make(md5_hex: str | None, checksum: str | None) -> ObjectRecord:
            etag = md5_hex if md5_hex is not None else source.etag
            return attrs.evolve(
                source, bucket=bucket, key=key, etag=etag, last_modified=tick, parts_count=0
            )

        return make

    @precondition(lambda self: self.objects)
    @rule(data=st.data(), bucket=st.sampled_from(BUCKETS), key=st.sampled_from(KEYS))
    def copy_object(self, data: st.DataObject, bucket: str, key: str) -> None:
        name, source = self.source(data)
        d = self.engine.copy_object(
            source,
            self.copy_record(source, bucket, key),  # type: ignore[arg-type]
            md5=not copying.is_plain_md5(source),
        )
        if bucket not in self.buckets:
            self.refused(d, errors.NoSuchBucket)
            return
        record = self.ok(d)
        whole = b"".join(self.objects[name])
        self.case.assertEqual((record.etag, record.blobs), (md5(whole), source.blobs))
        self.objects[bucket, key] = self.objects[name]

    @precondition(lambda self: self.objects and self.buckets)
    @rule(data=st.data(), key=st.sampled_from(KEYS))
    def copy_deleted_source(self, data: st.DataObject, key: str) -> None:
        """A copy whose source was deleted after it was looked up succeeds only while every
        source blob is still referenced by something else; otherwise it is NoSuchKey."""
        name, source = self.source(data)
        contents = self.objects[name]
        self.delete(*name)
        bucket = data.draw(st.sampled_from(sorted(self.buckets)), label="bucket")
        d = self.engine.copy_object(
            source,
            self.copy_record(source, bucket, key),  # type: ignore[arg-type]
            md5=not copying.is_plain_md5(source),
        )
        if all(sha256(c) in self.referenced() for c in contents):
            self.ok(d)
            self.objects[bucket, key] = contents
        else:
            self.refused(d, errors.NoSuchKey)

    @precondition(lambda self: self.objects and self.uploads)
    @rule(data=st.data(), number=st.integers(1, 4))
    def copy_part(self, data: st.DataObject, number: int) -> None:
        model = self.uploads[data.draw(st.sampled_from(sorted(self.uploads)), label="upload")]
        self.copy_part_into(data, model, number)

    @precondition(lambda self: self.objects)
    @rule(
        data=st.data(),
        bucket=st.sampled_from(BUCKETS),
        key=st.sampled_from(KEYS),
        count=st.integers(1, 3),
    )
    def multipart_copy(self, data: st.DataObject, bucket: str, key: str, count: int) -> None:
        """A whole upload of copied parts in one step, so that such completions are frequent."""
        self.create_upload(bucket, key)
        if bucket not in self.buckets:
            return
        upload_id = max(self.uploads)  # ids grow with the tick: this is the new one
        for number in range(1, count + 1):
            self.copy_part_into(data, self.uploads[upload_id], number)
        self.complete(data, every_part=True, upload_id=upload_id)

    def copy_part_into(self, data: st.DataObject, model: UploadModel, number: int) -> None:
        name, source = self.source(data)
        whole = b"".join(self.objects[name])
        start = data.draw(st.integers(0, len(whole)), label="start")
        length = data.draw(st.integers(0, len(whole) - start), label="length")
        tick = float(next(self.ticks))

        def make_part(blob: BlobRef, md5_hex: str, checksum: str | None) -> Part:
            return Part(model.upload.upload_id, number, length, md5_hex, blob, tick)

        part = self.ok(self.engine.copy_part(model.upload, source, start, length, make_part))
        expected = whole[start : start + length]
        self.case.assertEqual((part.etag, part.blob.digest), (md5(expected), sha256(expected)))
        model.parts[number] = expected


class CopyStateMachineTests(SynchronousTestCase):
    def test_random_operations_with_copies(self) -> None:
        """Random sequences of puts, multipart uploads, deletes and copies keep engine, model,
        blobs and reference counts in agreement."""
        case = self

        class Machine(CopyMachine):
            def __init__(self) -> None:
                super().__init__(case)

        run_state_machine_as_test(
            Machine,
            settings=settings(max_examples=2 * settings().max_examples, stateful_step_count=50),
        )
