# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""boto3 (default client configuration) against a real ``twistd -n artifactd``, over plain HTTP
and over TLS, where boto3 sends PutObject/UploadPart bodies as aws-chunked with a CRC32 trailer."""

from __future__ import annotations

import base64
import datetime
import email.utils
import hashlib
import os
import ssl
import urllib.error
import urllib.request
import zlib
from typing import Any
from urllib.parse import unquote_plus

from boto3.s3.transfer import TransferConfig
from botocore import UNSIGNED

from tests.e2e.support import (
    Boto3TestCase,
    MiB,
    boto3_client,
    file_sha256,
    random_file,
    scratch,
)

# Keys that exercise URL encoding, XML escaping and path handling on the way in and out.
SPECIAL_KEYS = [
    "plus+sign",
    "percent%20literal",
    "100%",
    "with space",
    "  leading and trailing spaces  ",
    "unicodé/ключ/鍵/😀",
    "double//slash",
    "trailing/",
    "/leading-slash",
    "a+b c%2Fd",
    "tilde~star*(paren)!",
    "question?hash#amp&eq=",
    "quote\"apos'<lt>&amp;",
    "semi;colon:comma,at@dollar$",
    "dots/../up",
    "./dot",
]

# 25 keys whose UTF-8 byte order differs from their UTF-16 order (U+FF01 < U+1F600 in UTF-8).
PAGING_KEYS = [f"k{i:02d}" for i in range(20)] + ["é", "\uff01", "\U0001f600", "Z", "a b"]

# Headers a GET and a HEAD of the same object may legitimately differ in.
PER_RESPONSE_HEADERS = {"date", "x-amz-request-id", "x-amz-id-2", "transfer-encoding"}


def utf8_sorted(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda k: k.encode("utf-8"))


def b64md5(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


class Boto3HTTPTests(Boto3TestCase):
    """boto3 over plain HTTP (signed payloads)."""

    # ------------------------------------------------------------- helpers
    def body(self, bucket: str, key: str, **kwargs: Any) -> bytes:
        data: bytes = self.s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"].read()
        return data

    def capture_requests(self, operation: str) -> list[Any]:
        """The prepared requests boto3 sends for ``operation`` from now on."""
        sent: list[Any] = []
        self.s3.meta.events.register(
            f"before-send.s3.{operation}", lambda request, **_: sent.append(request)
        )
        return sent

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.daemon.tls:
            return None
        return ssl.create_default_context(cafile=self.daemon.cert_path)

    # ------------------------------------------------------------- buckets
    def test_list_buckets(self) -> None:
        """ListBuckets lists every created bucket with its creation date and an owner."""
        names = sorted(self.new_bucket() for _ in range(2))
        response = self.s3.list_buckets()
        listed = {b["Name"]: b for b in response["Buckets"]}
        for name in names:
            self.assertIn(name, listed)
            self.assertIsInstance(listed[name]["CreationDate"], datetime.datetime)
        self.assertIn("ID", response["Owner"])

    def test_create_bucket_invalid_names(self) -> None:
        """CreateBucket refuses names that break S3's naming rules with InvalidBucketName."""
        for name in [
            "ab",
            "x" * 64,
            "UPPERCASE",
            "under_score",
            "-leading-dash",
            "trailing-dash-",
            "double..dot",
            "dot.-dash",
            "192.168.1.1",
            "xn--punycode",
        ]:
            self.assertS3Error("InvalidBucketName", 400, self.s3.create_bucket, Bucket=name)
        names = {b["Name"] for b in self.s3.list_buckets()["Buckets"]}
        self.assertNotIn("ab", names)

    def test_create_existing_bucket(self) -> None:
        """Creating a bucket twice answers BucketAlreadyOwnedByYou (409)."""
        name = self.new_bucket()
        self.assertS3Error("BucketAlreadyOwnedByYou", 409, self.s3.create_bucket, Bucket=name)

    def test_head_bucket(self) -> None:
        """HeadBucket is 200 with the region for a bucket, 404 for a missing one."""
        name = self.new_bucket()
        response = self.s3.head_bucket(Bucket=name)
        self.assertEqual(self.status(response), 200)
        self.assertEqual(self.headers(response)["x-amz-bucket-region"], "us-east-1")
        self.assertS3Error("404", 404, self.s3.head_bucket, Bucket=name + "-missing")

    def test_delete_bucket(self) -> None:
        """DeleteBucket refuses a non-empty bucket (BucketNotEmpty 409), then deletes it (204)."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"x")
        self.assertS3Error("BucketNotEmpty", 409, self.s3.delete_bucket, Bucket=name)
        self.assertEqual(self.body(name, "k"), b"x")
        self.s3.delete_object(Bucket=name, Key="k")
        self.assertEqual(self.status(self.s3.delete_bucket(Bucket=name)), 204)
        self.assertS3Error("404", 404, self.s3.head_bucket, Bucket=name)
        self.assertS3Error("NoSuchBucket", 404, self.s3.delete_bucket, Bucket=name)

    def test_bucket_with_open_upload_is_not_empty(self) -> None:
        """A bucket holding only an unfinished multipart upload cannot be deleted."""
        name = self.new_bucket()
        upload = self.s3.create_multipart_upload(Bucket=name, Key="pending")
        self.assertS3Error("BucketNotEmpty", 409, self.s3.delete_bucket, Bucket=name)
        self.s3.abort_multipart_upload(Bucket=name, Key="pending", UploadId=upload["UploadId"])
        self.s3.delete_bucket(Bucket=name)

    # ------------------------------------------------------------- objects
    def test_put_object_with_type_metadata_and_md5(self) -> None:
        """PutObject stores the body, Content-Type, lower-cased metadata; its ETag is the MD5."""
        name = self.new_bucket()
        data = b"artifact contents\n" * 100
        response = self.s3.put_object(
            Bucket=name,
            Key="dist/app.tar.gz",
            Body=data,
            ContentType="application/gzip",
            Metadata={"Build-Id": "42", "commit": "abc123"},
            ContentMD5=b64md5(data),
        )
        self.assertEqual(response["ETag"], f'"{hashlib.md5(data).hexdigest()}"')
        got = self.s3.get_object(Bucket=name, Key="dist/app.tar.gz")
        self.assertEqual(got["Body"].read(), data)
        self.assertEqual(got["ContentType"], "application/gzip")
        self.assertEqual(got["Metadata"], {"build-id": "42", "commit": "abc123"})
        self.assertEqual(got["ContentLength"], len(data))

    def test_put_object_wrong_md5(self) -> None:
        """A Content-MD5 that does not match the body is BadDigest and stores nothing."""
        name = self.new_bucket()
        wrong = b64md5(b"something else")
        self.assertS3Error(
            "BadDigest",
            400,
            self.s3.put_object,
            Bucket=name,
            Key="new",
            Body=b"x",
            ContentMD5=wrong,
        )
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=name, Key="new")
        self.s3.put_object(Bucket=name, Key="old", Body=b"original")
        self.assertS3Error(
            "BadDigest",
            400,
            self.s3.put_object,
            Bucket=name,
            Key="old",
            Body=b"y",
            ContentMD5=wrong,
        )
        self.assertEqual(self.body(name, "old"), b"original")
        listed = self.s3.list_objects_v2(Bucket=name)["Contents"]
        self.assertEqual([(o["Key"], o["Size"]) for o in listed], [("old", 8)])

    def test_get_and_head_headers_identical(self) -> None:
        """GetObject and HeadObject send the same headers: type, length, ETag, dates, digest."""
        name = self.new_bucket()
        data = os.urandom(3000)
        before = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
        self.s3.put_object(
            Bucket=name,
            Key="obj",
            Body=data,
            ContentType="application/x-thing",
            Metadata={"a": "1", "b": "two words"},
            CacheControl="max-age=60",
            ContentDisposition='attachment; filename="obj.bin"',
        )
        get = self.s3.get_object(Bucket=name, Key="obj")
        self.assertEqual(get["Body"].read(), data)
        # get_object sends x-amz-checksum-mode: ENABLED by default; ask HEAD for the same
        head = self.s3.head_object(Bucket=name, Key="obj", ChecksumMode="ENABLED")
        get_headers = {k: v for k, v in self.headers(get).items() if k not in PER_RESPONSE_HEADERS}
        head_headers = {
            k: v for k, v in self.headers(head).items() if k not in PER_RESPONSE_HEADERS
        }
        self.assertEqual(get_headers, head_headers)
        self.assertEqual(get_headers["content-type"], "application/x-thing")
        self.assertEqual(get_headers["content-length"], str(len(data)))
        self.assertEqual(get_headers["etag"], f'"{hashlib.md5(data).hexdigest()}"')
        self.assertEqual(get_headers["x-amz-meta-a"], "1")
        self.assertEqual(get_headers["x-amz-meta-b"], "two words")
        self.assertEqual(get_headers["cache-control"], "max-age=60")
        self.assertEqual(get_headers["content-disposition"], 'attachment; filename="obj.bin"')
        self.assertEqual(
            get_headers["x-artifactd-digest"], f"sha256:{hashlib.sha256(data).hexdigest()}"
        )
        self.assertNotIn("content-encoding", get_headers)
        modified = email.utils.parsedate_to_datetime(get_headers["last-modified"])
        now = datetime.datetime.now(datetime.UTC)
        self.assertTrue(before <= modified <= now, (before, modified, now))
        self.assertEqual(head["ContentLength"], len(data))

    def test_missing_object(self) -> None:
        """GetObject of a missing key is NoSuchKey; HeadObject is a bare 404."""
        name = self.new_bucket()
        self.assertS3Error("NoSuchKey", 404, self.s3.get_object, Bucket=name, Key="nope")
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=name, Key="nope")
        self.assertS3Error("NoSuchBucket", 404, self.s3.get_object, Bucket=name + "x", Key="k")

    def test_empty_object(self) -> None:
        """A zero-byte object round-trips with Content-Length 0 and the MD5 of nothing."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="empty", Body=b"")
        got = self.s3.get_object(Bucket=name, Key="empty")
        self.assertEqual(got["Body"].read(), b"")
        self.assertEqual(got["ContentLength"], 0)
        self.assertEqual(got["ETag"], f'"{hashlib.md5(b"").hexdigest()}"')

    def test_range_reads(self) -> None:
        """bytes=a-b, a- and -n are 206 with Content-Range; a start past the end is 416."""
        name = self.new_bucket()
        data = bytes(range(256)) * 40
        size = len(data)
        self.s3.put_object(Bucket=name, Key="r", Body=data)
        cases = [
            ("bytes=0-0", 0, 0),
            ("bytes=10-19", 10, 19),
            ("bytes=100-", 100, size - 1),
            ("bytes=-7", size - 7, size - 1),
            ("bytes=5000-99999", 5000, size - 1),
            (f"bytes=-{size + 10}", 0, size - 1),
        ]
        for spec, first, last in cases:
            got = self.s3.get_object(Bucket=name, Key="r", Range=spec)
            self.assertEqual(self.status(got), 206, spec)
            self.assertEqual(got["ContentRange"], f"bytes {first}-{last}/{size}", spec)
            self.assertEqual(got["ContentLength"], last - first + 1, spec)
            self.assertEqual(got["Body"].read(), data[first : last + 1], spec)
            checksums = [h for h in self.headers(got) if h.startswith("x-amz-checksum-")]
            self.assertEqual(checksums, [], spec)
        for spec in (f"bytes={size}-", f"bytes={size + 100}-{size + 200}"):
            e = self.assertS3Error(
                "InvalidRange", 416, self.s3.get_object, Bucket=name, Key="r", Range=spec
            )
            self.assertEqual(e.response["Error"].get("ActualObjectSize"), str(size))

    def test_overwrite_and_shared_contents(self) -> None:
        """Overwriting replaces an object; keys sharing contents survive each other's deletion."""
        name = self.new_bucket()
        shared = os.urandom(70_000)
        self.s3.put_object(Bucket=name, Key="a", Body=shared)
        self.s3.put_object(Bucket=name, Key="b", Body=shared)
        self.s3.put_object(Bucket=name, Key="a", Body=b"replaced")
        self.assertEqual(self.body(name, "a"), b"replaced")
        self.assertEqual(self.body(name, "b"), shared)
        self.s3.put_object(Bucket=name, Key="c", Body=shared)
        self.s3.delete_object(Bucket=name, Key="b")
        self.assertEqual(self.body(name, "c"), shared)
        self.s3.put_object(Bucket=name, Key="c", Body=shared)
        self.assertEqual(self.body(name, "c"), shared)
        self.s3.delete_object(Bucket=name, Key="c")
        self.s3.put_object(Bucket=name, Key="d", Body=shared)
        self.assertEqual(self.body(name, "d"), shared)

    def test_conditional_get(self) -> None:
        """If-Match / If-None-Match on GetObject answer 412 / 304 (s3transfer sends If-Match)."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"v1")
        etag = self.s3.head_object(Bucket=name, Key="k")["ETag"]
        self.assertEqual(self.body(name, "k", IfMatch=etag), b"v1")
        self.assertS3Error(
            "PreconditionFailed", 412, self.s3.get_object, Bucket=name, Key="k", IfMatch='"0"'
        )
        self.assertS3Error("304", 304, self.s3.get_object, Bucket=name, Key="k", IfNoneMatch=etag)

    def test_delete_object_idempotent(self) -> None:
        """DeleteObject answers 204 for an existing key and again for a missing one."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="gone", Body=b"x")
        self.assertEqual(self.status(self.s3.delete_object(Bucket=name, Key="gone")), 204)
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=name, Key="gone")
        self.assertEqual(self.status(self.s3.delete_object(Bucket=name, Key="gone")), 204)
        self.assertEqual(self.status(self.s3.delete_object(Bucket=name, Key="never")), 204)

    def test_delete_objects(self) -> None:
        """DeleteObjects deletes the named keys (missing ones count as deleted) and keeps others."""
        name = self.new_bucket()
        for key in ("a", "b", "c", "d e+f", "x&<y>'\"ü"):
            self.s3.put_object(Bucket=name, Key=key, Body=key.encode())
        doomed = ["a", "d e+f", "missing", "x&<y>'\"ü"]
        response = self.s3.delete_objects(
            Bucket=name, Delete={"Objects": [{"Key": k} for k in doomed]}
        )
        self.assertEqual(sorted(d["Key"] for d in response["Deleted"]), sorted(doomed))
        self.assertEqual(response.get("Errors", []), [])
        keys = [o["Key"] for o in self.s3.list_objects_v2(Bucket=name)["Contents"]]
        self.assertEqual(keys, ["b", "c"])
        quiet = self.s3.delete_objects(
            Bucket=name, Delete={"Objects": [{"Key": "b"}], "Quiet": True}
        )
        self.assertEqual(quiet.get("Deleted", []), [])
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 1)

    # --------------------------------------------------------------- keys
    def test_special_keys_round_trip(self) -> None:
        """Keys with +, %, spaces, unicode, //, ./.., a trailing or leading / round-trip."""
        name = self.new_bucket()
        for key in SPECIAL_KEYS:
            self.s3.put_object(Bucket=name, Key=key, Body=key.encode("utf-8"))
        for key in SPECIAL_KEYS:
            self.assertEqual(self.body(name, key), key.encode("utf-8"), key)
            head = self.s3.head_object(Bucket=name, Key=key)
            self.assertEqual(head["ContentLength"], len(key.encode("utf-8")), key)
        listed = [o["Key"] for o in self.s3.list_objects_v2(Bucket=name)["Contents"]]
        self.assertEqual(listed, utf8_sorted(SPECIAL_KEYS))
        for key in SPECIAL_KEYS:
            page = self.s3.list_objects_v2(Bucket=name, Prefix=key)
            self.assertIn(key, [o["Key"] for o in page["Contents"]], key)
        for key in SPECIAL_KEYS:
            self.s3.delete_object(Bucket=name, Key=key)
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    def test_key_length_limit(self) -> None:
        """A 1024-byte key (ASCII or multi-byte) is accepted; 1025 bytes is KeyTooLongError."""
        name = self.new_bucket()
        for key in ("k/" + "x" * 1022, "é" * 512):
            self.assertEqual(len(key.encode()), 1024)
            self.s3.put_object(Bucket=name, Key=key, Body=b"long")
            self.assertEqual(self.body(name, key), b"long")
        for key in ("x" * 1025, "é" * 512 + "x"):
            self.assertS3Error(
                "KeyTooLongError", 400, self.s3.put_object, Bucket=name, Key=key, Body=b"!"
            )
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 2)

    # ------------------------------------------------------------ listings
    def put_keys(self, bucket: str, keys: list[str]) -> None:
        for key in keys:
            self.s3.put_object(Bucket=bucket, Key=key, Body=b"")

    def test_list_v2_prefix_and_delimiter(self) -> None:
        """ListObjectsV2 with a prefix and '/' returns direct children and CommonPrefixes."""
        name = self.new_bucket()
        self.put_keys(name, ["a/1", "a/2", "a/b/3", "a/b/4", "a/c/5", "b/6", "c", "a"])
        top = self.s3.list_objects_v2(Bucket=name, Delimiter="/")
        self.assertEqual([o["Key"] for o in top["Contents"]], ["a", "c"])
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["a/", "b/"])
        self.assertEqual(top["KeyCount"], 4)
        sub = self.s3.list_objects_v2(Bucket=name, Prefix="a/", Delimiter="/")
        self.assertEqual([o["Key"] for o in sub["Contents"]], ["a/1", "a/2"])
        self.assertEqual([p["Prefix"] for p in sub["CommonPrefixes"]], ["a/b/", "a/c/"])
        self.assertEqual(sub["Prefix"], "a/")
        self.assertEqual(sub["Delimiter"], "/")
        self.assertFalse(sub["IsTruncated"])
        flat = self.s3.list_objects_v2(Bucket=name, Prefix="a/b")
        self.assertEqual([o["Key"] for o in flat["Contents"]], ["a/b/3", "a/b/4"])
        self.assertNotIn("CommonPrefixes", flat)
        none = self.s3.list_objects_v2(Bucket=name, Prefix="zzz")
        self.assertEqual((none["KeyCount"], none.get("Contents")), (0, None))

    def test_list_v1_prefix_and_delimiter(self) -> None:
        """ListObjects (v1) with a prefix and '/' returns direct children and CommonPrefixes."""
        name = self.new_bucket()
        self.put_keys(name, ["a/1", "a/2", "a/b/3", "b/6", "c"])
        top = self.s3.list_objects(Bucket=name, Delimiter="/")
        self.assertEqual([o["Key"] for o in top["Contents"]], ["c"])
        self.assertEqual([p["Prefix"] for p in top["CommonPrefixes"]], ["a/", "b/"])
        sub = self.s3.list_objects(Bucket=name, Prefix="a/", Delimiter="/")
        self.assertEqual([o["Key"] for o in sub["Contents"]], ["a/1", "a/2"])
        self.assertEqual([p["Prefix"] for p in sub["CommonPrefixes"]], ["a/b/"])
        self.assertIn("Owner", sub["Contents"][0])

    def test_list_v2_paging(self) -> None:
        """The ListObjectsV2 paginator (page size 7) yields each of 25 keys once, in UTF-8 order."""
        name = self.new_bucket()
        self.put_keys(name, PAGING_KEYS)
        pages = list(
            self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=name, PaginationConfig={"PageSize": 7}
            )
        )
        self.assertEqual([p["KeyCount"] for p in pages], [7, 7, 7, 4])
        self.assertEqual([p["IsTruncated"] for p in pages], [True, True, True, False])
        keys = [o["Key"] for p in pages for o in p["Contents"]]
        self.assertEqual(keys, utf8_sorted(PAGING_KEYS))
        first = self.s3.list_objects_v2(Bucket=name, MaxKeys=7)
        self.assertEqual((first["KeyCount"], first["MaxKeys"], first["IsTruncated"]), (7, 7, True))
        second = self.s3.list_objects_v2(
            Bucket=name, MaxKeys=7, ContinuationToken=first["NextContinuationToken"]
        )
        self.assertEqual(second["ContinuationToken"], first["NextContinuationToken"])
        self.assertEqual([o["Key"] for o in second["Contents"]], utf8_sorted(PAGING_KEYS)[7:14])

    def test_list_v1_paging(self) -> None:
        """The ListObjects paginator (page size 7) yields each of 25 keys once, in UTF-8 order."""
        name = self.new_bucket()
        self.put_keys(name, PAGING_KEYS)
        pages = list(
            self.s3.get_paginator("list_objects").paginate(
                Bucket=name, PaginationConfig={"PageSize": 7}
            )
        )
        self.assertEqual([len(p["Contents"]) for p in pages], [7, 7, 7, 4])
        keys = [o["Key"] for p in pages for o in p["Contents"]]
        self.assertEqual(keys, utf8_sorted(PAGING_KEYS))
        marked = self.s3.list_objects(Bucket=name, Marker="k10", MaxKeys=3)
        self.assertEqual([o["Key"] for o in marked["Contents"]], ["k11", "k12", "k13"])
        self.assertEqual(marked["Marker"], "k10")
        self.assertTrue(marked["IsTruncated"])

    def test_paging_with_delimiter(self) -> None:
        """Paging a delimited listing yields every key and common prefix exactly once."""
        name = self.new_bucket()
        keys = [f"d{i}/x" for i in range(5)] + [f"f{i}" for i in range(5)] + ["d2/y", "d2/z"]
        self.put_keys(name, keys)
        for operation in ("list_objects_v2", "list_objects"):
            pages = list(
                self.s3.get_paginator(operation).paginate(
                    Bucket=name, Delimiter="/", PaginationConfig={"PageSize": 3}
                )
            )
            objects = [o["Key"] for p in pages for o in p.get("Contents", [])]
            prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
            self.assertEqual(objects, [f"f{i}" for i in range(5)], operation)
            self.assertEqual(prefixes, [f"d{i}/" for i in range(5)], operation)

    def test_start_after(self) -> None:
        """StartAfter lists only keys after it, whether or not it exists itself."""
        name = self.new_bucket()
        self.put_keys(name, PAGING_KEYS)
        ordered = utf8_sorted(PAGING_KEYS)
        for start in ("k05", "k05a", "é", ""):
            response = self.s3.list_objects_v2(Bucket=name, StartAfter=start)
            expected = [k for k in ordered if k.encode() > start.encode()]
            self.assertEqual([o["Key"] for o in response.get("Contents", [])], expected, start)
        response = self.s3.list_objects_v2(Bucket=name, StartAfter="\U0001f600")
        self.assertEqual(response["KeyCount"], 0)

    def test_encoding_type_url(self) -> None:
        """With EncodingType=url, keys, prefixes and StartAfter come back percent-encoded."""
        name = self.new_bucket()
        keys = ["dir one/a+b", "dir one/c%d", "dir one/é ü", "dir one/sub dir/x", "plain"]
        self.put_keys(name, keys)
        response = self.s3.list_objects_v2(
            Bucket=name,
            Prefix="dir one/",
            Delimiter="/",
            StartAfter="dir one/a",
            EncodingType="url",
        )
        self.assertEqual(response["EncodingType"], "url")
        raw_keys = [o["Key"] for o in response["Contents"]]
        raw_prefixes = [p["Prefix"] for p in response["CommonPrefixes"]]
        for raw in [*raw_keys, *raw_prefixes, response["Prefix"], response["StartAfter"]]:
            self.assertTrue(raw.isascii() and " " not in raw, raw)
        self.assertEqual(
            [unquote_plus(k) for k in raw_keys], ["dir one/a+b", "dir one/c%d", "dir one/é ü"]
        )
        self.assertNotIn("+", "".join(raw_keys))
        self.assertEqual([unquote_plus(p) for p in raw_prefixes], ["dir one/sub dir/"])
        self.assertEqual(unquote_plus(response["Prefix"]), "dir one/")
        self.assertEqual(unquote_plus(response["StartAfter"]), "dir one/a")
        v1 = self.s3.list_objects(Bucket=name, Prefix="dir one/c", EncodingType="url")
        self.assertEqual([unquote_plus(o["Key"]) for o in v1["Contents"]], ["dir one/c%d"])
        # boto3's own default (encoding-type=url, decoded for the caller) gives the keys back.
        decoded = self.s3.list_objects_v2(Bucket=name)
        self.assertEqual([o["Key"] for o in decoded["Contents"]], utf8_sorted(keys))

    # ----------------------------------------------------------- multipart
    def test_upload_file_multipart(self) -> None:
        """upload_file of 20 MiB in 8 MiB parts gives ETag '-3' and the whole-file sha256."""
        name = self.new_bucket()
        config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "in.bin")
            digest = random_file(source, 20 * MiB)
            self.s3.upload_file(source, name, "big/in.bin", Config=config)
            head = self.s3.head_object(Bucket=name, Key="big/in.bin")
            self.assertTrue(head["ETag"].endswith('-3"'), head["ETag"])
            self.assertEqual(head["ContentLength"], 20 * MiB)
            self.assertEqual(self.headers(head)["x-artifactd-digest"], f"sha256:{digest}")
            target = os.path.join(tmp, "out.bin")
            self.s3.download_file(name, "big/in.bin", target, Config=config)
            self.assertEqual(file_sha256(target), digest)

    def start_upload(self, bucket: str, key: str, **kwargs: Any) -> str:
        upload_id: str = self.s3.create_multipart_upload(Bucket=bucket, Key=key, **kwargs)[
            "UploadId"
        ]
        return upload_id

    def upload_part(self, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
        etag: str = self.s3.upload_part(
            Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=data
        )["ETag"]
        self.assertEqual(etag, f'"{hashlib.md5(data).hexdigest()}"')
        return etag

    def test_multipart_low_level(self) -> None:
        """Create, upload parts, ListParts, ListMultipartUploads by prefix, then complete."""
        name = self.new_bucket()
        upload_id = self.start_upload(
            name, "mp/obj", ContentType="application/x-mp", Metadata={"stage": "final"}
        )
        other = self.start_upload(name, "elsewhere/obj")
        parts = [os.urandom(5 * MiB), os.urandom(1000)]
        etags = [self.upload_part(name, "mp/obj", upload_id, n, d) for n, d in enumerate(parts, 1)]
        listed = self.s3.list_parts(Bucket=name, Key="mp/obj", UploadId=upload_id)
        self.assertEqual(
            [(p["PartNumber"], p["ETag"], p["Size"]) for p in listed["Parts"]],
            [(1, etags[0], 5 * MiB), (2, etags[1], 1000)],
        )
        uploads = self.s3.list_multipart_uploads(Bucket=name, Prefix="mp/")
        self.assertEqual(
            [(u["Key"], u["UploadId"]) for u in uploads["Uploads"]], [("mp/obj", upload_id)]
        )
        everything = self.s3.list_multipart_uploads(Bucket=name)
        self.assertEqual(
            sorted(u["UploadId"] for u in everything["Uploads"]), sorted([upload_id, other])
        )
        done = self.s3.complete_multipart_upload(
            Bucket=name,
            Key="mp/obj",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
            },
        )
        expected = hashlib.md5(b"".join(hashlib.md5(p).digest() for p in parts)).hexdigest()
        self.assertEqual(done["ETag"], f'"{expected}-2"')
        got = self.s3.get_object(Bucket=name, Key="mp/obj")
        self.assertEqual(got["Body"].read(), b"".join(parts))
        self.assertEqual(got["ContentType"], "application/x-mp")
        self.assertEqual(got["Metadata"], {"stage": "final"})
        self.assertEqual(
            self.headers(got)["x-artifactd-digest"],
            f"sha256:{hashlib.sha256(b''.join(parts)).hexdigest()}",
        )
        boundary = 5 * MiB
        across = self.s3.get_object(
            Bucket=name, Key="mp/obj", Range=f"bytes={boundary - 10}-{boundary + 9}"
        )
        self.assertEqual(across["Body"].read(), parts[0][-10:] + parts[1][:10])
        remaining = self.s3.list_multipart_uploads(Bucket=name)
        self.assertEqual([u["UploadId"] for u in remaining["Uploads"]], [other])
        self.assertS3Error(
            "NoSuchUpload", 404, self.s3.list_parts, Bucket=name, Key="mp/obj", UploadId=upload_id
        )

    def test_part_uploaded_twice(self) -> None:
        """Uploading a part number again replaces the part; completion uses the latest."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        self.upload_part(name, "k", upload_id, 1, b"first version")
        etag = self.upload_part(name, "k", upload_id, 1, b"second")
        parts = self.s3.list_parts(Bucket=name, Key="k", UploadId=upload_id)["Parts"]
        self.assertEqual([(p["PartNumber"], p["ETag"], p["Size"]) for p in parts], [(1, etag, 6)])
        self.s3.complete_multipart_upload(
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        self.assertEqual(self.body(name, "k"), b"second")

    def test_complete_with_wrong_etag(self) -> None:
        """CompleteMultipartUpload naming a part with the wrong ETag is InvalidPart."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        self.upload_part(name, "k", upload_id, 1, b"only part")
        self.assertS3Error(
            "InvalidPart",
            400,
            self.s3.complete_multipart_upload,
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": '"' + "0" * 32 + '"'}]},
        )
        self.assertS3Error(
            "InvalidPart",
            400,
            self.s3.complete_multipart_upload,
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": '"' + "0" * 32 + '"'}]},
        )
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=name, Key="k")

    def test_complete_out_of_order(self) -> None:
        """CompleteMultipartUpload listing parts out of order is InvalidPartOrder."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        etags = [self.upload_part(name, "k", upload_id, n, os.urandom(5 * MiB)) for n in (1, 2)]
        self.assertS3Error(
            "InvalidPartOrder",
            400,
            self.s3.complete_multipart_upload,
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": 2, "ETag": etags[1]}, {"PartNumber": 1, "ETag": etags[0]}]
            },
        )
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=name, Key="k")

    def test_complete_with_small_part(self) -> None:
        """A part under 5 MiB that is not the last one makes the completion EntityTooSmall."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        etags = [self.upload_part(name, "k", upload_id, n, b"tiny" * 256) for n in (1, 2)]
        self.assertS3Error(
            "EntityTooSmall",
            400,
            self.s3.complete_multipart_upload,
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in [(1, etags[0]), (2, etags[1])]]
            },
        )
        # A single small part is fine: it is also the last one.
        done = self.s3.complete_multipart_upload(
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 2, "ETag": etags[1]}]},
        )
        self.assertTrue(done["ETag"].endswith('-1"'))
        self.assertEqual(self.body(name, "k"), b"tiny" * 256)

    def test_abort(self) -> None:
        """After AbortMultipartUpload, UploadPart, ListParts and Complete are NoSuchUpload."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        etag = self.upload_part(name, "k", upload_id, 1, b"part")
        response = self.s3.abort_multipart_upload(Bucket=name, Key="k", UploadId=upload_id)
        self.assertEqual(self.status(response), 204)
        ids = dict(Bucket=name, Key="k", UploadId=upload_id)
        self.assertS3Error("NoSuchUpload", 404, self.s3.upload_part, PartNumber=2, Body=b"x", **ids)
        self.assertS3Error("NoSuchUpload", 404, self.s3.list_parts, **ids)
        self.assertS3Error(
            "NoSuchUpload",
            404,
            self.s3.complete_multipart_upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            **ids,
        )
        self.assertS3Error("NoSuchUpload", 404, self.s3.abort_multipart_upload, **ids)
        self.assertEqual(self.s3.list_multipart_uploads(Bucket=name).get("Uploads", []), [])
        self.s3.delete_bucket(Bucket=name)

    # ------------------------------------------------------------- framing
    def test_stored_bytes_are_the_payload(self) -> None:
        """Objects store exactly the payload bytes, never aws-chunked framing, at any size."""
        name = self.new_bucket()
        sent = self.capture_requests("PutObject")
        for size in (1, 11, 0x20000 - 1, 0x20000, 0x20000 + 1, 3 * 0x20000 + 17):
            data = os.urandom(size)
            response = self.s3.put_object(Bucket=name, Key=f"s{size}", Body=data)
            self.assertEqual(response["ETag"], f'"{hashlib.md5(data).hexdigest()}"', size)
            self.assertEqual(
                self.headers(response).get("x-amz-checksum-crc32"), crc32_b64(data), size
            )
            got = self.s3.get_object(Bucket=name, Key=f"s{size}")
            self.assertEqual(got["ContentLength"], size)
            self.assertEqual(got["Body"].read(), data, size)
            self.assertEqual(
                self.headers(got)["x-artifactd-digest"],
                f"sha256:{hashlib.sha256(data).hexdigest()}",
            )
            self.assertNotIn("content-encoding", self.headers(got))
        content_sha256 = sent[-1].headers["x-amz-content-sha256"]
        if self.tls:
            self.assertEqual(content_sha256, b"STREAMING-UNSIGNED-PAYLOAD-TRAILER")
            self.assertIn(b"aws-chunked", sent[-1].headers["Content-Encoding"])
        else:
            self.assertEqual(len(content_sha256), 64)

    def test_content_encoding_kept_without_aws_chunked(self) -> None:
        """A user Content-Encoding is stored, without the aws-chunked transfer coding."""
        name = self.new_bucket()
        data = zlib.compress(b"z" * 5000)
        self.s3.put_object(Bucket=name, Key="gz", Body=data, ContentEncoding="gzip")
        head = self.s3.head_object(Bucket=name, Key="gz")
        self.assertEqual(head["ContentEncoding"], "gzip")
        self.assertEqual(self.body(name, "gz"), data)

    def test_upload_part_stores_payload(self) -> None:
        """UploadPart stores exactly the payload (its ETag is its MD5) over either transport."""
        name = self.new_bucket()
        upload_id = self.start_upload(name, "k")
        data = os.urandom(0x20000 * 2 + 5)
        etag = self.upload_part(name, "k", upload_id, 1, data)
        self.s3.complete_multipart_upload(
            Bucket=name,
            Key="k",
            UploadId=upload_id,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        self.assertEqual(self.body(name, "k"), data)

    # -------------------------------------------------------------- auth
    def test_wrong_secret_key(self) -> None:
        """A request signed with the wrong secret key is SignatureDoesNotMatch (403)."""
        name = self.new_bucket()
        access, _ = self.daemon.credentials()
        bad = boto3_client(self.daemon, access, "not-the-secret")
        self.assertS3Error("SignatureDoesNotMatch", 403, bad.list_buckets)
        self.assertS3Error(
            "SignatureDoesNotMatch", 403, bad.put_object, Bucket=name, Key="k", Body=b"x" * 1000
        )
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    def test_unknown_access_key(self) -> None:
        """A request from an unknown access key is InvalidAccessKeyId (403)."""
        _, secret = self.daemon.credentials()
        bad = boto3_client(self.daemon, "AKNOTAREALKEY0000000", secret)
        self.assertS3Error("InvalidAccessKeyId", 403, bad.list_buckets)

    def test_unsigned_request(self) -> None:
        """An unsigned request is AccessDenied (403), for reads and for uploads."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"secret stuff")
        anonymous = boto3_client(self.daemon, "x", "y", signature_version=UNSIGNED)
        self.assertS3Error("AccessDenied", 403, anonymous.list_buckets)
        self.assertS3Error("AccessDenied", 403, anonymous.get_object, Bucket=name, Key="k")
        self.assertS3Error(
            "AccessDenied", 403, anonymous.put_object, Bucket=name, Key="k", Body=b"overwritten"
        )
        self.assertEqual(self.body(name, "k"), b"secret stuff")

    def presigner(self) -> Any:
        """A client that presigns with SigV4 (boto3 presigns with SigV2 unless told otherwise)."""
        return self.daemon.client(signature_version="s3v4")

    def test_presigned_get(self) -> None:
        """A SigV4 presigned GET URL fetches the object with urllib; a tampered one is refused."""
        name = self.new_bucket()
        key = "pre signed/ü+x.txt"
        self.s3.put_object(Bucket=name, Key=key, Body=b"presigned body", ContentType="text/plain")
        url = self.presigner().generate_presigned_url(
            "get_object", Params={"Bucket": name, "Key": key}, ExpiresIn=300
        )
        self.assertIn("X-Amz-Signature=", url)
        with urllib.request.urlopen(url, context=self.ssl_context(), timeout=10) as response:
            self.assertEqual(response.status, 200)
            self.assertEqual(response.read(), b"presigned body")
            self.assertEqual(response.headers["Content-Type"], "text/plain")
        signature = url.rsplit("X-Amz-Signature=", 1)[1]
        tampered = url.replace(signature, signature[::-1])
        e = self.assertRaises(
            urllib.error.HTTPError,
            urllib.request.urlopen,
            tampered,
            context=self.ssl_context(),
            timeout=10,
        )
        with e:
            self.assertEqual(e.code, 403)
            self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", e.read())

    def test_presigned_get_default_config(self) -> None:
        """A legacy SigV2 presigned URL (boto3's default presigner) gets a clear error naming
        SigV4, never the object."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"v2")
        url = self.s3.generate_presigned_url(
            "get_object", Params={"Bucket": name, "Key": "k"}, ExpiresIn=300
        )
        self.assertIn("AWSAccessKeyId=", url)
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(url, context=self.ssl_context(), timeout=10)
        with e.exception as error:
            self.assertEqual(error.code, 400)
            body = error.read()
        self.assertIn(b"<Code>InvalidRequest</Code>", body)
        self.assertIn(b"AWS4-HMAC-SHA256", body)

    def test_presigned_put(self) -> None:
        """A SigV4 presigned PUT URL uploads with urllib (UNSIGNED-PAYLOAD)."""
        name = self.new_bucket()
        url = self.presigner().generate_presigned_url(
            "put_object", Params={"Bucket": name, "Key": "up"}, ExpiresIn=300
        )
        request = urllib.request.Request(url, data=b"uploaded", method="PUT")
        with urllib.request.urlopen(request, context=self.ssl_context(), timeout=10) as response:
            self.assertEqual(response.status, 200)
        self.assertEqual(self.body(name, "up"), b"uploaded")

    def test_early_rejection_reaches_client(self) -> None:
        """An upload refused from its headers gets its error response even if the body was sent."""
        name = self.new_bucket()
        for _ in range(20):
            request = urllib.request.Request(
                f"{self.daemon.endpoint_url}/{name}/k", data=b"body sent at once", method="PUT"
            )
            e = self.assertRaises(
                urllib.error.HTTPError,
                urllib.request.urlopen,
                request,
                context=self.ssl_context(),
                timeout=10,
            )
            with e:
                self.assertEqual(e.code, 403)
                self.assertIn(b"<Code>AccessDenied</Code>", e.read())
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)


class Boto3TLSTests(Boto3HTTPTests):
    """boto3 over HTTPS: PutObject and UploadPart bodies are aws-chunked with a CRC32 trailer."""

    tls = True
