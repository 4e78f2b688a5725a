# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""minio-py (MinIO's Python SDK, default settings: it finds the bucket region with
GetBucketLocation, lists with ListObjectsV2 and ``encoding-type=url``, uploads unknown-length
streams as parallel multipart uploads and deletes in batches with DeleteObjects) against a real
``twistd -n artifactd``, over plain HTTP and over TLS."""

from __future__ import annotations

import datetime
import hashlib
import io
import os
import ssl
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, ComposeSource, CopySource, Tags
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from tests.e2e.support import DaemonTestCase, MiB, file_sha256, random_file

KEYS = [
    "top.txt",
    "dir/a.txt",
    "dir/b.txt",
    "dir/sub/c.txt",
    "other/d.txt",
    "with space/\u00fcn\u00efc\u00f6d\u00e9 +plus%.txt",
]


class MinioHTTPTests(DaemonTestCase):
    """minio-py over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        daemon = self.daemon
        access, secret = daemon.credentials()
        http_client = None
        if daemon.tls:
            http_client = urllib3.PoolManager(ca_certs=daemon.cert_path)
            self.addCleanup(http_client.clear)
        self.minio = Minio(
            f"127.0.0.1:{daemon.port}",
            access_key=access,
            secret_key=secret,
            secure=daemon.tls,
            http_client=http_client,
        )
        self.s3 = daemon.client()

    # ------------------------------------------------------------- helpers
    def new_bucket(self) -> str:
        name = self.bucket_name()
        self.minio.make_bucket(name)
        return name

    def read(self, bucket: str, key: str, **kwargs: Any) -> bytes:
        response = self.minio.get_object(bucket, key, **kwargs)
        try:
            data: bytes = response.read()
        finally:
            response.close()
            response.release_conn()
        return data

    def put(self, bucket: str, key: str, data: bytes, **kwargs: Any) -> Any:
        return self.minio.put_object(bucket, key, io.BytesIO(data), len(data), **kwargs)

    def urlopen(self, request: urllib.request.Request | str) -> Any:
        context = None
        if self.daemon.tls:
            context = ssl.create_default_context(cafile=self.daemon.cert_path)
        return urllib.request.urlopen(request, context=context, timeout=60)

    def assertS3Error(self, code: str, call: Any, *args: Any, **kwargs: Any) -> S3Error:
        e: S3Error = self.assertRaises(S3Error, call, *args, **kwargs)
        self.assertEqual(e.code, code, e)
        return e

    # ------------------------------------------------------------- buckets
    def test_buckets(self) -> None:
        """make_bucket, bucket_exists (true and false), list_buckets, remove_bucket; making an
        existing bucket is BucketAlreadyOwnedByYou."""
        bucket = self.new_bucket()
        self.assertTrue(self.minio.bucket_exists(bucket))
        self.assertFalse(self.minio.bucket_exists(bucket + "-missing"))
        listed = {b.name: b for b in self.minio.list_buckets()}
        self.assertIn(bucket, listed)
        self.assertIsInstance(listed[bucket].creation_date, datetime.datetime)
        self.assertS3Error("BucketAlreadyOwnedByYou", self.minio.make_bucket, bucket)
        self.minio.remove_bucket(bucket)
        self.assertFalse(self.minio.bucket_exists(bucket))

    # ------------------------------------------------------------- uploads
    def test_put_object_with_length(self) -> None:
        """put_object with a known length stores the bytes, content type and user metadata;
        the ETag is the MD5."""
        bucket = self.new_bucket()
        data = os.urandom(1000)
        result = self.put(
            bucket,
            "obj",
            data,
            content_type="text/plain",
            metadata={"x-amz-meta-colour": "blue", "Shade": "dark"},
        )
        self.assertEqual(result.etag, hashlib.md5(data).hexdigest())
        self.assertEqual(self.read(bucket, "obj"), data)
        stat = self.minio.stat_object(bucket, "obj")
        self.assertEqual((stat.size, stat.etag), (1000, result.etag))
        self.assertEqual(stat.content_type, "text/plain")
        assert stat.metadata is not None
        self.assertEqual(stat.metadata["x-amz-meta-colour"], "blue")
        self.assertEqual(stat.metadata["x-amz-meta-shade"], "dark")
        head = self.s3.head_object(Bucket=bucket, Key="obj")
        self.assertEqual(head["Metadata"], {"colour": "blue", "shade": "dark"})
        empty = self.put(bucket, "empty", b"")
        self.assertEqual(empty.etag, hashlib.md5(b"").hexdigest())
        self.assertEqual(self.read(bucket, "empty"), b"")

    def test_put_object_unknown_length(self) -> None:
        """put_object with length=-1 and a part_size streams a multipart upload (parts sent in
        parallel); the object reads back whole with a multipart ETag."""
        bucket = self.new_bucket()
        data = os.urandom(12 * MiB + 123)
        result = self.minio.put_object(
            bucket, "stream", io.BytesIO(data), length=-1, part_size=5 * MiB
        )
        self.assertTrue((result.etag or "").endswith("-3"), result.etag)
        self.assertEqual(self.read(bucket, "stream"), data)
        self.assertEqual(self.minio.stat_object(bucket, "stream").size, len(data))
        uploads = self.s3.list_multipart_uploads(Bucket=bucket)
        self.assertEqual(uploads.get("Uploads", []), [])

    def test_fput_fget_object(self) -> None:
        """fput_object uploads a 12 MiB file (multipart); fget_object writes it back intact."""
        bucket = self.new_bucket()
        workdir = self.mktemp()
        os.makedirs(workdir)
        source = os.path.join(workdir, "source.bin")
        digest = random_file(source, 12 * MiB)
        result = self.minio.fput_object(bucket, "dir/file.bin", source)
        self.assertIn("-", result.etag)
        target = os.path.join(workdir, "target.bin")
        self.minio.fget_object(bucket, "dir/file.bin", target)
        self.assertEqual(file_sha256(target), digest)
        self.assertEqual(os.path.getsize(target), 12 * MiB)
        self.assertEqual(
            sorted(os.listdir(workdir)), ["source.bin", "target.bin"]
        )  # minio's .part.minio temporary file was renamed into place

    # ------------------------------------------------------------- reading
    def test_get_object_ranges(self) -> None:
        """get_object with offset and/or length returns exactly those bytes."""
        bucket = self.new_bucket()
        data = bytes(range(256)) * 100
        self.put(bucket, "r", data)
        for offset, length in [(0, 1), (100, 50), (25_000, 0), (25_599, 1), (0, 0), (10, 30_000)]:
            end = len(data) if length == 0 else offset + length
            got = self.read(bucket, "r", offset=offset, length=length)
            self.assertEqual(got, data[offset:end], (offset, length))
        self.assertS3Error("InvalidRange", self.read, bucket, "r", offset=len(data), length=1)

    def test_stat_object(self) -> None:
        """stat_object reports size, ETag and modification time; a missing key is NoSuchKey
        (from the HEAD's status) and a missing bucket NoSuchBucket."""
        bucket = self.new_bucket()
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self.put(bucket, "k", b"12345")
        stat = self.minio.stat_object(bucket, "k")
        self.assertEqual((stat.size, stat.etag), (5, hashlib.md5(b"12345").hexdigest()))
        assert stat.last_modified is not None
        self.assertGreaterEqual(stat.last_modified, before - datetime.timedelta(seconds=5))
        self.assertS3Error("NoSuchKey", self.minio.stat_object, bucket, "missing")
        self.assertS3Error("NoSuchKey", self.read, bucket, "missing")
        self.assertS3Error("NoSuchBucket", self.read, bucket + "-missing", "k")

    def test_list_objects(self) -> None:
        """list_objects, recursive or not, with and without a prefix and start_after, with V2
        (the default) and V1, returns the keys in order with their sizes and directories."""
        bucket = self.new_bucket()
        for key in KEYS:
            self.put(bucket, key, key.encode())
        for v1 in (False, True):

            def names(**kwargs: Any) -> list[str]:
                listed = self.minio.list_objects(bucket, use_api_v1=v1, **kwargs)  # noqa: B023
                return [o.object_name for o in listed]

            # minio-py yields a page's objects, then its common prefixes.
            self.assertEqual(names(recursive=True), sorted(KEYS, key=str.encode))
            self.assertEqual(names(), ["top.txt", "dir/", "other/", "with space/"])
            self.assertEqual(names(prefix="dir/"), ["dir/a.txt", "dir/b.txt", "dir/sub/"])
            self.assertEqual(
                names(prefix="dir/", recursive=True), ["dir/a.txt", "dir/b.txt", "dir/sub/c.txt"]
            )
            self.assertEqual(names(prefix="nothing/"), [])
            if not v1:
                self.assertEqual(
                    names(recursive=True, start_after="dir/b.txt"),
                    ["dir/sub/c.txt", "other/d.txt", "top.txt", KEYS[-1]],
                )
        objects = {o.object_name: o for o in self.minio.list_objects(bucket, recursive=True)}
        for key in KEYS:
            self.assertEqual(objects[key].size, len(key.encode()))
            self.assertEqual(objects[key].etag, hashlib.md5(key.encode()).hexdigest())
            self.assertFalse(objects[key].is_dir)

    # ------------------------------------------------------------ deleting
    def test_remove_object(self) -> None:
        """remove_object deletes a key; removing a missing key succeeds (S3's 204)."""
        bucket = self.new_bucket()
        self.put(bucket, "gone", b"x")
        self.minio.remove_object(bucket, "gone")
        self.assertS3Error("NoSuchKey", self.minio.stat_object, bucket, "gone")
        self.minio.remove_object(bucket, "never-there")

    def test_many_objects(self) -> None:
        """With more than 1000 keys, list_objects (V2 and V1) follows the continuation through
        a second page, and remove_objects deletes them all (two DeleteObjects requests), missing
        keys included, reporting no errors."""
        bucket = self.new_bucket()
        keys = [f"batch/{i:04d}" for i in range(1005)]
        with ThreadPoolExecutor(8) as pool:  # boto3 clients are thread-safe
            list(pool.map(lambda k: self.s3.put_object(Bucket=bucket, Key=k, Body=b""), keys))
        self.put(bucket, "keep", b"k")
        for v1 in (False, True):
            listed = self.minio.list_objects(bucket, prefix="batch/", recursive=True, use_api_v1=v1)
            self.assertEqual([o.object_name for o in listed], keys)
        doomed = [DeleteObject(k) for k in [*keys, "missing", *KEYS[-1:]]]
        errors = list(self.minio.remove_objects(bucket, doomed))
        self.assertEqual(errors, [])
        self.assertEqual([o.object_name for o in self.minio.list_objects(bucket)], ["keep"])

    # ----------------------------------------------------------- presigned
    def test_presigned_get_object(self) -> None:
        """A presigned GET URL fetches the object with urllib; an expired one is refused with
        AccessDenied."""
        bucket = self.new_bucket()
        key = KEYS[-1]
        self.put(bucket, key, b"presigned body")
        url = self.minio.presigned_get_object(bucket, key, expires=datetime.timedelta(hours=1))
        with self.urlopen(url) as response:
            self.assertEqual(response.read(), b"presigned body")
        url = self.minio.presigned_get_object(
            bucket,
            key,
            expires=datetime.timedelta(seconds=60),
            request_date=datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=2),
        )
        e = self.assertRaises(urllib.error.HTTPError, self.urlopen, url)
        self.assertEqual(e.code, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", e.read())
        e.close()

    def test_presigned_response_overrides(self) -> None:
        """A presigned GET URL with response-content-type / response-content-disposition gets
        those response headers."""
        bucket = self.new_bucket()
        self.put(bucket, "k", b"body")
        url = self.minio.presigned_get_object(
            bucket,
            "k",
            response_headers={
                "response-content-type": "text/x-test",
                "response-content-disposition": 'attachment; filename="k.txt"',
            },
        )
        with self.urlopen(url) as response:
            self.assertEqual(response.read(), b"body")
            self.assertEqual(response.headers["Content-Type"], "text/x-test")
            self.assertEqual(
                response.headers["Content-Disposition"], 'attachment; filename="k.txt"'
            )

    def test_presigned_put_object(self) -> None:
        """A presigned PUT URL uploads with urllib."""
        bucket = self.new_bucket()
        url = self.minio.presigned_put_object(bucket, "up", expires=datetime.timedelta(hours=1))
        request = urllib.request.Request(url, data=b"uploaded", method="PUT")
        with self.urlopen(request) as response:
            self.assertEqual(response.status, 200)
        self.assertEqual(self.read(bucket, "up"), b"uploaded")

    # ---------------------------------------------------------------- copy
    def test_copy_object(self) -> None:
        """copy_object copies server-side, keeping or replacing the metadata."""
        bucket = self.new_bucket()
        self.put(bucket, "src", b"copy me", metadata={"x-amz-meta-a": "1"})
        self.minio.copy_object(bucket, "same", CopySource(bucket, "src"))
        self.assertEqual(self.read(bucket, "same"), b"copy me")
        metadata = self.minio.stat_object(bucket, "same").metadata
        assert metadata is not None
        self.assertEqual(metadata["x-amz-meta-a"], "1")
        self.minio.copy_object(
            bucket,
            "replaced",
            CopySource(bucket, "src"),
            metadata={"x-amz-meta-b": "2"},
            metadata_directive=REPLACE,
        )
        metadata = self.minio.stat_object(bucket, "replaced").metadata
        assert metadata is not None
        self.assertEqual(metadata.get("x-amz-meta-b"), "2")
        self.assertNotIn("x-amz-meta-a", metadata)

    def test_compose_object(self) -> None:
        """compose_object joins whole objects and byte ranges on the server (UploadPartCopy
        with x-amz-copy-source-range)."""
        bucket = self.new_bucket()
        first = os.urandom(6 * MiB)
        tail = b"the tail"
        self.put(bucket, "first", first)
        self.put(bucket, "tail", tail)
        sources = [
            ComposeSource(bucket, "first"),
            ComposeSource(bucket, "first", offset=10, length=5 * MiB + 1),
            ComposeSource(bucket, "tail"),
        ]
        result = self.minio.compose_object(bucket, "composed", sources)
        self.assertTrue((result.etag or "").endswith("-3"), result.etag)
        self.assertEqual(self.read(bucket, "composed"), first + first[10 : 10 + 5 * MiB + 1] + tail)

    # ------------------------------------------------------------- tagging
    def test_object_tags(self) -> None:
        """Tags given to put_object come back from get_object_tags; set_object_tags replaces
        them and delete_object_tags removes them."""
        bucket = self.new_bucket()
        tags = Tags.new_object_tags()
        tags["env"] = "prod"
        tags["team"] = "a b+c=d"
        self.put(bucket, "tagged", b"x", tags=tags)
        self.assertEqual(self.minio.get_object_tags(bucket, "tagged"), tags)
        replacement = Tags.new_object_tags()
        replacement["k"] = "v"
        self.minio.set_object_tags(bucket, "tagged", replacement)
        self.assertEqual(self.minio.get_object_tags(bucket, "tagged"), replacement)
        self.minio.delete_object_tags(bucket, "tagged")
        self.assertIsNone(self.minio.get_object_tags(bucket, "tagged"))


class MinioTLSTests(MinioHTTPTests):
    """minio-py over TLS (urllib3 verifying the daemon's certificate)."""

    tls = True
