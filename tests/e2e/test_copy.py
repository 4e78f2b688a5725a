# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Server-side copies against a real ``twistd -n artifactd``, over plain HTTP and TLS: boto3's
``copy_object``, ``upload_part_copy`` and managed ``copy`` (UploadPartCopy above its threshold),
and the AWS CLI's ``aws s3 cp`` / ``aws s3 mv`` between buckets.

Copies within the store must not rewrite bytes: each test that copies whole objects or
blob-aligned ranges counts the blob files in the daemon's data directory before and after."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import subprocess

from boto3.s3.transfer import TransferConfig

from tests.e2e.support import BIN, Boto3TestCase, DaemonTestCase, MiB, random_file, run, scratch
from tests.e2e.test_awscli import AWS_CONFIG

AWS = os.path.join(BIN, "aws")

KEYS = ["plain", "with space/and+plus", "unicodé/鍵", "question?hash#amp&", "100%"]

# 5 MiB parts: a 12 MiB object is three parts (5, 5, 2 MiB) on upload and on copy alike
SMALL_PARTS = TransferConfig(
    multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, use_threads=False
)


class Boto3CopyHTTPTests(Boto3TestCase):
    """boto3 copies over plain HTTP."""

    # ------------------------------------------------------------- helpers
    def blob_files(self) -> int:
        """How many blob files the daemon stores."""
        return sum(
            len(files) for _, _, files in os.walk(os.path.join(self.daemon.data_dir, "blobs"))
        )

    def digest(self, bucket: str, key: str) -> str:
        head = self.s3.head_object(Bucket=bucket, Key=key)
        value: str = head["ResponseMetadata"]["HTTPHeaders"]["x-artifactd-digest"]
        return value

    def body(self, bucket: str, key: str) -> bytes:
        data: bytes = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return data

    def actions(self, bucket: str) -> list[str]:
        return [
            e["action"]
            for e in self.daemon.events()
            if e.get("namespace") == "artifactd.access" and e.get("bucket") == bucket
        ]

    # ---------------------------------------------------------- CopyObject
    def test_copy_object_copies_metadata(self) -> None:
        """copy_object (COPY directive) gives each key, across buckets, the source's bytes,
        digest, ETag, content type and metadata, and creates no blob file."""
        src, dst = self.new_bucket(), self.new_bucket()
        data = os.urandom(100_000)
        for key in KEYS:
            self.s3.put_object(
                Bucket=src,
                Key=key,
                Body=data,
                ContentType="text/x-artifact",
                CacheControl="no-cache",
                Metadata={"build": "42"},
            )
        before = self.blob_files()
        for key in KEYS:
            result = self.s3.copy_object(
                Bucket=dst, Key=key + ".copy", CopySource={"Bucket": src, "Key": key}
            )
            self.assertEqual(
                result["CopyObjectResult"]["ETag"], f'"{hashlib.md5(data).hexdigest()}"'
            )
            self.assertIsInstance(result["CopyObjectResult"]["LastModified"], datetime.datetime)
        self.assertEqual(self.blob_files(), before)
        for key in KEYS:
            got = self.s3.get_object(Bucket=dst, Key=key + ".copy")
            self.assertEqual(got["Body"].read(), data)
            self.assertEqual(got["ContentType"], "text/x-artifact")
            self.assertEqual(got["CacheControl"], "no-cache")
            self.assertEqual(got["Metadata"], {"build": "42"})
            self.assertEqual(self.digest(dst, key + ".copy"), self.digest(src, key))

    def test_copy_object_replace(self) -> None:
        """MetadataDirective=REPLACE takes content type and metadata from the request; copying
        an object onto itself needs it (InvalidRequest otherwise)."""
        bucket = self.new_bucket()
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"payload", Metadata={"a": "1"})
        self.assertS3Error(
            "InvalidRequest",
            400,
            self.s3.copy_object,
            Bucket=bucket,
            Key="k",
            CopySource={"Bucket": bucket, "Key": "k"},
        )
        self.s3.copy_object(
            Bucket=bucket,
            Key="k",
            CopySource={"Bucket": bucket, "Key": "k"},
            MetadataDirective="REPLACE",
            ContentType="application/json",
            Metadata={"b": "2"},
        )
        got = self.s3.get_object(Bucket=bucket, Key="k")
        self.assertEqual(got["Body"].read(), b"payload")
        self.assertEqual((got["ContentType"], got["Metadata"]), ("application/json", {"b": "2"}))

    def test_copy_object_tags(self) -> None:
        """Tags are copied by default; TaggingDirective=REPLACE takes them from Tagging."""
        bucket = self.new_bucket()
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"t", Tagging="team=build&tier=1")
        self.s3.copy_object(Bucket=bucket, Key="same", CopySource=f"{bucket}/k")
        self.s3.copy_object(
            Bucket=bucket,
            Key="new",
            CopySource=f"{bucket}/k",
            TaggingDirective="REPLACE",
            Tagging="owner=ci",
        )

        def tags(key: str) -> dict[str, str]:
            found = self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
            return {t["Key"]: t["Value"] for t in found}

        self.assertEqual(tags("same"), {"team": "build", "tier": "1"})
        self.assertEqual(tags("new"), {"owner": "ci"})

    def test_copy_object_conditions(self) -> None:
        """CopySourceIf* conditions: 412 PreconditionFailed when one fails, a copy when all
        hold."""
        bucket = self.new_bucket()
        etag = self.s3.put_object(Bucket=bucket, Key="k", Body=b"x")["ETag"]
        source = {"Bucket": bucket, "Key": "k"}
        past = datetime.datetime(2001, 1, 1, tzinfo=datetime.UTC)
        future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=1)
        for failing in [
            {"CopySourceIfMatch": '"00000000000000000000000000000000"'},
            {"CopySourceIfNoneMatch": etag},
            {"CopySourceIfUnmodifiedSince": past},
            {"CopySourceIfModifiedSince": future},
        ]:
            self.assertS3Error(
                "PreconditionFailed",
                412,
                self.s3.copy_object,
                Bucket=bucket,
                Key="copy",
                CopySource=source,
                **failing,
            )
        self.assertS3Error("404", 404, self.s3.head_object, Bucket=bucket, Key="copy")
        self.s3.copy_object(
            Bucket=bucket,
            Key="copy",
            CopySource=source,
            CopySourceIfMatch=etag,
            CopySourceIfModifiedSince=past,
            CopySourceIfUnmodifiedSince=future,
        )
        self.assertEqual(self.body(bucket, "copy"), b"x")

    def test_copy_object_errors(self) -> None:
        """A missing source key or bucket is 404 (NoSuchKey naming the key, NoSuchBucket), a
        version id other than null 400; ``VersionId: null`` copies."""
        bucket = self.new_bucket()
        e = self.assertS3Error(
            "NoSuchKey",
            404,
            self.s3.copy_object,
            Bucket=bucket,
            Key="k",
            CopySource={"Bucket": bucket, "Key": "missing"},
        )
        self.assertEqual(e.response["Error"]["Key"], "missing")
        self.assertS3Error(
            "NoSuchBucket",
            404,
            self.s3.copy_object,
            Bucket=bucket,
            Key="k",
            CopySource={"Bucket": "no-such-bucket-here", "Key": "k"},
        )
        self.s3.put_object(Bucket=bucket, Key="src", Body=b"v")
        self.assertS3Error(
            "InvalidArgument",
            400,
            self.s3.copy_object,
            Bucket=bucket,
            Key="k",
            CopySource={"Bucket": bucket, "Key": "src", "VersionId": "3sL4kqtJlcpXroDT"},
        )
        self.s3.copy_object(
            Bucket=bucket, Key="k", CopySource={"Bucket": bucket, "Key": "src", "VersionId": "null"}
        )
        self.assertEqual(self.body(bucket, "k"), b"v")

    def test_copy_object_checksums(self) -> None:
        """A source's checksum is copied; ChecksumAlgorithm computes another for the copy."""
        bucket = self.new_bucket()
        put = self.s3.put_object(Bucket=bucket, Key="k", Body=b"hello", ChecksumAlgorithm="SHA256")
        copied = self.s3.copy_object(Bucket=bucket, Key="same", CopySource=f"{bucket}/k")
        self.assertEqual(copied["CopyObjectResult"]["ChecksumSHA256"], put["ChecksumSHA256"])
        other = self.s3.copy_object(
            Bucket=bucket, Key="other", CopySource=f"{bucket}/k", ChecksumAlgorithm="CRC32C"
        )
        head = self.s3.head_object(Bucket=bucket, Key="other", ChecksumMode="ENABLED")
        self.assertEqual(head["ChecksumCRC32C"], other["CopyObjectResult"]["ChecksumCRC32C"])
        got = self.s3.get_object(Bucket=bucket, Key="other", ChecksumMode="ENABLED")
        self.assertEqual(got["Body"].read(), b"hello")  # botocore validated the CRC32C

    def test_copy_object_multipart_source(self) -> None:
        """copy_object of a multipart object writes no blob and gives the copy the MD5 of the
        content as its ETag."""
        bucket = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big")
            random_file(path, 12 * MiB)
            self.s3.upload_file(path, bucket, "mp", Config=SMALL_PARTS)
            with open(path, "rb") as f:
                md5 = hashlib.md5(f.read()).hexdigest()
        self.assertTrue(self.s3.head_object(Bucket=bucket, Key="mp")["ETag"].endswith('-3"'))
        before = self.blob_files()
        result = self.s3.copy_object(Bucket=bucket, Key="copy", CopySource=f"{bucket}/mp")
        self.assertEqual(result["CopyObjectResult"]["ETag"], f'"{md5}"')
        self.assertEqual(self.blob_files(), before)
        self.assertEqual(self.digest(bucket, "copy"), self.digest(bucket, "mp"))
        self.assertEqual(hashlib.md5(self.body(bucket, "copy")).hexdigest(), md5)

    # ------------------------------------------------------ UploadPartCopy
    def test_managed_copy_aligned_with_parts(self) -> None:
        """``s3.copy`` above its threshold copies with UploadPartCopy; parts aligned with the
        source's parts are referenced, so no blob file is written."""
        bucket = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big")
            digest = random_file(path, 12 * MiB)
            self.s3.upload_file(path, bucket, "src", Config=SMALL_PARTS)
        before = self.blob_files()
        self.s3.copy({"Bucket": bucket, "Key": "src"}, bucket, "dst", Config=SMALL_PARTS)
        self.assertEqual(self.blob_files(), before)
        self.assertEqual(hashlib.sha256(self.body(bucket, "dst")).hexdigest(), digest)
        self.assertEqual(self.digest(bucket, "dst"), f"sha256:{digest}")
        self.assertEqual(self.actions(bucket).count("UploadPartCopy"), 3)

    def test_managed_copy_single_part_source(self) -> None:
        """``s3.copy`` of a 12 MiB single-part object copies byte ranges into new part blobs and
        the result has the source's bytes and digest."""
        src, dst = self.new_bucket(), self.new_bucket()
        data = os.urandom(12 * MiB)
        self.s3.put_object(Bucket=src, Key="one", Body=data)
        self.s3.copy({"Bucket": src, "Key": "one"}, dst, "copied", Config=SMALL_PARTS)
        self.assertEqual(self.body(dst, "copied"), data)
        self.assertEqual(self.digest(dst, "copied"), self.digest(src, "one"))
        self.assertEqual(self.actions(dst).count("UploadPartCopy"), 3)
        self.assertEqual(self.s3.head_object(Bucket=dst, Key="copied")["ETag"][-3:], '-3"')

    def test_upload_part_copy_ranges(self) -> None:
        """upload_part_copy with CopySourceRange copies those bytes; CopyPartResult has each
        range's MD5; bad ranges are InvalidArgument."""
        bucket = self.new_bucket()
        data = os.urandom(7 * MiB)
        self.s3.put_object(Bucket=bucket, Key="src", Body=data)
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key="dst")["UploadId"]
        ranges = [(1 * MiB, 6 * MiB - 1), (0, 99)]
        etags = []
        for number, (first, last) in enumerate(ranges, 1):
            result = self.s3.upload_part_copy(
                Bucket=bucket,
                Key="dst",
                UploadId=upload_id,
                PartNumber=number,
                CopySource={"Bucket": bucket, "Key": "src"},
                CopySourceRange=f"bytes={first}-{last}",
            )["CopyPartResult"]
            self.assertEqual(result["ETag"], f'"{hashlib.md5(data[first : last + 1]).hexdigest()}"')
            etags.append(result["ETag"])
        for bad in ("bytes=0-", f"bytes=0-{7 * MiB}", "0-10"):
            self.assertS3Error(
                "InvalidArgument",
                400,
                self.s3.upload_part_copy,
                Bucket=bucket,
                Key="dst",
                UploadId=upload_id,
                PartNumber=3,
                CopySource={"Bucket": bucket, "Key": "src"},
                CopySourceRange=bad,
            )
        self.s3.complete_multipart_upload(
            Bucket=bucket,
            Key="dst",
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
            },
        )
        self.assertEqual(self.body(bucket, "dst"), data[1 * MiB : 6 * MiB] + data[:100])


class Boto3CopyTLSTests(Boto3CopyHTTPTests):
    """boto3 copies over HTTPS."""

    tls = True


class AwsCliCopyHTTPTests(DaemonTestCase):
    """``aws s3 cp`` and ``aws s3 mv`` between buckets over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        self.env = self.daemon.client_env()
        config = self.env["AWS_CONFIG_FILE"]
        if not os.path.exists(config):
            with open(config, "w", encoding="utf-8") as f:
                f.write(AWS_CONFIG)
        self.s3 = self.daemon.client()

    def aws(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run([AWS, "--endpoint-url", self.daemon.endpoint_url, *args], self.env)

    def new_bucket(self) -> str:
        name = self.bucket_name()
        self.s3.create_bucket(Bucket=name)
        return name

    def actions(self, bucket: str) -> list[str]:
        return [
            e["action"]
            for e in self.daemon.events()
            if e.get("namespace") == "artifactd.access" and e.get("bucket") == bucket
        ]

    def test_cp_between_buckets(self) -> None:
        """``aws s3 cp s3://a/x s3://b/y`` copies a small object with CopyObject and a 12 MiB
        one with UploadPartCopy; both arrive whole, with their content type."""
        src, dst = self.new_bucket(), self.new_bucket()
        small, big = os.urandom(1000), os.urandom(12 * MiB)
        self.s3.put_object(Bucket=src, Key="dir/small.txt", Body=small, ContentType="text/plain")
        self.s3.put_object(Bucket=src, Key="big file.bin", Body=big)
        self.aws("s3", "cp", f"s3://{src}/dir/small.txt", f"s3://{dst}/copied/small.txt")
        self.aws("s3", "cp", f"s3://{src}/big file.bin", f"s3://{dst}/big copy.bin")
        got = self.s3.get_object(Bucket=dst, Key="copied/small.txt")
        self.assertEqual((got["Body"].read(), got["ContentType"]), (small, "text/plain"))
        self.assertEqual(self.s3.get_object(Bucket=dst, Key="big copy.bin")["Body"].read(), big)
        actions = self.actions(dst)
        self.assertIn("CopyObject", actions)
        self.assertIn("UploadPartCopy", actions)
        listing = json.loads(
            self.aws("s3api", "list-objects-v2", "--bucket", src).stdout
        )  # the sources are untouched
        self.assertEqual(len(listing["Contents"]), 2)

    def test_mv_between_buckets(self) -> None:
        """``aws s3 mv`` copies then deletes: the object is only at its new key."""
        src, dst = self.new_bucket(), self.new_bucket()
        data = os.urandom(5000)
        self.s3.put_object(Bucket=src, Key="moving", Body=data)
        self.aws("s3", "mv", f"s3://{src}/moving", f"s3://{dst}/moved")
        self.assertEqual(self.s3.get_object(Bucket=dst, Key="moved")["Body"].read(), data)
        self.assertNotIn("Contents", self.s3.list_objects_v2(Bucket=src))


class AwsCliCopyTLSTests(AwsCliCopyHTTPTests):
    """``aws s3 cp`` / ``mv`` between buckets over HTTPS."""

    tls = True
