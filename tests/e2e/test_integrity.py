# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Flexible checksums and conditional writes end to end: boto3 with its default configuration
(and the AWS CLI) against a real ``twistd -n artifactd``, over plain HTTP and over TLS, where
boto3 sends bodies as aws-chunked with a CRC32 trailer and validates the checksums of GETs."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import zlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from awscrt import checksums as crt  # type: ignore[import-untyped]
from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import ClientError
from botocore.httpchecksum import StreamingChecksumBody

from tests.e2e.support import BIN, Boto3TestCase, MiB, run, scratch

AWS = os.path.join(BIN, "aws")
AWS_CONFIG = """\
[default]
region = us-east-1
output = json
retry_mode = standard
max_attempts = 1
s3 =
    addressing_style = path
"""
ALGORITHMS = ("CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256")


def digest(algorithm: str, data: bytes) -> bytes:
    """The raw checksum, computed here (zlib, awscrt, hashlib)."""
    name = algorithm.lower()
    if name == "crc32":
        return zlib.crc32(data).to_bytes(4, "big")
    if name == "crc32c":
        return int(crt.crc32c(data)).to_bytes(4, "big")
    if name == "crc64nvme":
        return int(crt.crc64nvme(data)).to_bytes(8, "big")
    return hashlib.new(name, data).digest()


def b64(algorithm: str, data: bytes) -> str:
    return base64.b64encode(digest(algorithm, data)).decode()


def composite(algorithm: str, parts: list[bytes]) -> str:
    """S3's COMPOSITE checksum: the checksum of the concatenated part checksums, then -N."""
    return f"{b64(algorithm, b''.join(digest(algorithm, p) for p in parts))}-{len(parts)}"


class IntegrityHTTPTests(Boto3TestCase):
    """Over plain HTTP (checksums in headers)."""

    # ---------------------------------------------------------------- single uploads
    def test_put_object_each_algorithm(self) -> None:
        """put_object with each ChecksumAlgorithm stores the checksum; get_object/head_object
        with ChecksumMode=ENABLED return it (botocore validates the GET body against it); a
        ranged GET in checksum mode works and carries none."""
        name = self.new_bucket()
        data = os.urandom(300_000)
        for algorithm in ALGORITHMS:
            with self.subTest(algorithm):
                field = f"Checksum{algorithm}"
                want = b64(algorithm, data)
                put = self.s3.put_object(
                    Bucket=name, Key=algorithm, Body=data, ChecksumAlgorithm=algorithm
                )
                self.assertEqual(put[field], want)
                self.assertEqual(put["ChecksumType"], "FULL_OBJECT")
                head = self.s3.head_object(Bucket=name, Key=algorithm, ChecksumMode="ENABLED")
                self.assertEqual((head[field], head["ChecksumType"]), (want, "FULL_OBJECT"))
                self.assertNotIn(field, self.s3.head_object(Bucket=name, Key=algorithm))
                got = self.s3.get_object(Bucket=name, Key=algorithm, ChecksumMode="ENABLED")
                self.assertEqual((got[field], got["ChecksumType"]), (want, "FULL_OBJECT"))
                self.assertIsInstance(got["Body"], StreamingChecksumBody)  # validated
                self.assertEqual(got["Body"].read(), data)
                ranged = self.s3.get_object(
                    Bucket=name, Key=algorithm, Range="bytes=100-199", ChecksumMode="ENABLED"
                )
                self.assertEqual(ranged["ResponseMetadata"]["HTTPStatusCode"], 206)
                self.assertNotIn(field, ranged)
                self.assertEqual(ranged["Body"].read(), data[100:200])

    def test_default_checksum_is_stored(self) -> None:
        """A plain put_object (boto3's default CRC32) is reported and validated on GET."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"default checksum")
        got = self.s3.get_object(Bucket=name, Key="k", ChecksumMode="ENABLED")
        self.assertEqual(got["ChecksumCRC32"], b64("CRC32", b"default checksum"))
        self.assertIsInstance(got["Body"], StreamingChecksumBody)
        self.assertEqual(got["Body"].read(), b"default checksum")

    def test_wrong_checksum_is_refused(self) -> None:
        """A checksum that does not match the body is BadDigest and stores nothing."""
        name = self.new_bucket()
        self.assertS3Error(
            "BadDigest",
            400,
            self.s3.put_object,
            Bucket=name,
            Key="k",
            Body=b"body",
            ChecksumSHA256=b64("SHA256", b"other"),
        )
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 0)

    # ---------------------------------------------------------------------- multipart
    def test_upload_file_composite(self) -> None:
        """upload_file in 8 MiB parts (boto3's default CRC32) gives a COMPOSITE object
        checksum, crc32(crc1 || crc2 || crc3)-3, reported by head_object in checksum mode."""
        name = self.new_bucket()
        data = os.urandom(20 * MiB)
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big.bin")
            with open(path, "wb") as f:
                f.write(data)
            config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
            self.s3.upload_file(path, name, "big.bin", Config=config)
        parts = [data[i : i + 8 * MiB] for i in range(0, len(data), 8 * MiB)]
        head = self.s3.head_object(Bucket=name, Key="big.bin", ChecksumMode="ENABLED")
        self.assertEqual(head["ChecksumCRC32"], composite("CRC32", parts))
        self.assertEqual(head["ChecksumType"], "COMPOSITE")
        self.assertTrue(head["ETag"].endswith('-3"'))
        got = self.s3.get_object(Bucket=name, Key="big.bin", ChecksumMode="ENABLED")
        self.assertEqual(hashlib.sha256(got["Body"].read()).digest(), hashlib.sha256(data).digest())
        part = self.s3.head_object(
            Bucket=name, Key="big.bin", ChecksumMode="ENABLED", Range="bytes=0-9"
        )
        self.assertNotIn("ChecksumCRC32", part)

    def test_upload_file_full_object(self) -> None:
        """upload_file given the whole file's CRC32 (s3transfer then asks for a FULL_OBJECT
        upload) stores that checksum; a wrong one fails the upload and stores nothing."""
        name = self.new_bucket()
        data = os.urandom(17 * MiB)
        config = TransferConfig(multipart_threshold=8 * MiB, multipart_chunksize=8 * MiB)
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big.bin")
            with open(path, "wb") as f:
                f.write(data)
            wrong = {"ChecksumCRC32": b64("CRC32", data[1:])}
            e = self.assertRaises(
                S3UploadFailedError,
                self.s3.upload_file,
                path,
                name,
                "bad.bin",
                ExtraArgs=wrong,
                Config=config,
            )
            self.assertIn("BadDigest", str(e))
            right = {"ChecksumCRC32": b64("CRC32", data)}
            self.s3.upload_file(path, name, "big.bin", ExtraArgs=right, Config=config)
        self.assertEqual(self.s3.list_objects_v2(Bucket=name)["KeyCount"], 1)
        head = self.s3.head_object(Bucket=name, Key="big.bin", ChecksumMode="ENABLED")
        self.assertEqual(
            (head["ChecksumCRC32"], head["ChecksumType"]), (right["ChecksumCRC32"], "FULL_OBJECT")
        )
        got = self.s3.get_object(Bucket=name, Key="big.bin", ChecksumMode="ENABLED")
        self.assertIsInstance(got["Body"], StreamingChecksumBody)
        self.assertEqual(got["Body"].read(), data)

    def test_full_object_multipart(self) -> None:
        """A CRC64NVME upload (FULL_OBJECT): ListParts shows part checksums, Complete returns
        the checksum of the whole content, and get_object validates it."""
        name = self.new_bucket()
        created = self.s3.create_multipart_upload(
            Bucket=name, Key="full", ChecksumAlgorithm="CRC64NVME"
        )
        self.assertEqual(
            (created["ChecksumAlgorithm"], created["ChecksumType"]), ("CRC64NVME", "FULL_OBJECT")
        )
        ids = {"Bucket": name, "Key": "full", "UploadId": created["UploadId"]}
        datas = [os.urandom(5 * MiB), os.urandom(1234)]
        listed: list[dict[str, Any]] = []
        for number, data in enumerate(datas, 1):
            response = self.s3.upload_part(
                PartNumber=number, Body=data, ChecksumAlgorithm="CRC64NVME", **ids
            )
            self.assertEqual(response["ChecksumCRC64NVME"], b64("CRC64NVME", data))
            listed.append(
                {
                    "PartNumber": number,
                    "ETag": response["ETag"],
                    "ChecksumCRC64NVME": response["ChecksumCRC64NVME"],
                }
            )
        parts = self.s3.list_parts(**ids)
        self.assertEqual(parts["ChecksumAlgorithm"], "CRC64NVME")
        self.assertEqual(
            [p["ChecksumCRC64NVME"] for p in parts["Parts"]], [b64("CRC64NVME", d) for d in datas]
        )
        whole = b"".join(datas)
        done = self.s3.complete_multipart_upload(MultipartUpload={"Parts": listed}, **ids)
        self.assertEqual(done["ChecksumCRC64NVME"], b64("CRC64NVME", whole))
        self.assertEqual(done["ChecksumType"], "FULL_OBJECT")
        got = self.s3.get_object(Bucket=name, Key="full", ChecksumMode="ENABLED")
        self.assertEqual(got["ChecksumCRC64NVME"], b64("CRC64NVME", whole))
        self.assertIsInstance(got["Body"], StreamingChecksumBody)
        self.assertEqual(got["Body"].read(), whole)

    # ------------------------------------------------------------- conditional writes
    def test_conditional_put(self) -> None:
        """IfNoneMatch='*' creates once then is 412; IfMatch with a wrong ETag is 412, with the
        current one it replaces."""
        name = self.new_bucket()
        first = self.s3.put_object(Bucket=name, Key="lock", Body=b"one", IfNoneMatch="*")
        self.assertS3Error(
            "PreconditionFailed",
            412,
            self.s3.put_object,
            Bucket=name,
            Key="lock",
            Body=b"two",
            IfNoneMatch="*",
        )
        self.assertS3Error(
            "PreconditionFailed",
            412,
            self.s3.put_object,
            Bucket=name,
            Key="lock",
            Body=b"two",
            IfMatch='"0123456789abcdef0123456789abcdef"',
        )
        self.assertS3Error(
            "NoSuchKey", 404, self.s3.put_object, Bucket=name, Key="none", Body=b"x", IfMatch="*"
        )
        self.s3.put_object(Bucket=name, Key="lock", Body=b"three", IfMatch=first["ETag"])
        body = self.s3.get_object(Bucket=name, Key="lock")["Body"].read()
        self.assertEqual(body, b"three")

    def test_concurrent_create_only_puts(self) -> None:
        """Of 12 concurrent IfNoneMatch='*' puts of one key (a lock file), exactly one wins."""
        name = self.new_bucket()

        def attempt(i: int) -> str:
            client = self.daemon.client()
            try:
                client.put_object(
                    Bucket=name, Key="state.lock", Body=f"holder {i}".encode(), IfNoneMatch="*"
                )
            except ClientError as e:
                return str(e.response["Error"]["Code"])
            return "won"

        with ThreadPoolExecutor(max_workers=12) as pool:
            outcomes = list(pool.map(attempt, range(12)))
        self.assertEqual(outcomes.count("won"), 1, outcomes)
        self.assertEqual(set(outcomes) - {"won"}, {"PreconditionFailed"})
        holder = self.s3.get_object(Bucket=name, Key="state.lock")["Body"].read()
        self.assertEqual(holder, f"holder {outcomes.index('won')}".encode())

    def test_conditional_complete(self) -> None:
        """complete_multipart_upload with IfNoneMatch='*' is 412 when the key exists, and the
        upload can still be completed without it."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="k", Body=b"exists")
        upload_id = self.s3.create_multipart_upload(Bucket=name, Key="k")["UploadId"]
        ids = {"Bucket": name, "Key": "k", "UploadId": upload_id}
        etag = self.s3.upload_part(PartNumber=1, Body=b"part", **ids)["ETag"]
        parts = {"Parts": [{"PartNumber": 1, "ETag": etag}]}
        self.assertS3Error(
            "PreconditionFailed",
            412,
            self.s3.complete_multipart_upload,
            MultipartUpload=parts,
            IfNoneMatch="*",
            **ids,
        )
        self.s3.complete_multipart_upload(MultipartUpload=parts, **ids)
        self.assertEqual(self.s3.get_object(Bucket=name, Key="k")["Body"].read(), b"part")

    # ------------------------------------------------------------------------ AWS CLI
    def test_awscli_checksum_algorithm(self) -> None:
        """``aws s3api put-object --checksum-algorithm SHA256`` stores the checksum and
        ``head-object --checksum-mode ENABLED`` returns it."""
        name = self.new_bucket()
        env = self.daemon.client_env()
        if not os.path.exists(env["AWS_CONFIG_FILE"]):
            with open(env["AWS_CONFIG_FILE"], "w", encoding="utf-8") as f:
                f.write(AWS_CONFIG)
        data = os.urandom(100_000)

        def api(*args: str) -> Any:
            argv = [AWS, "--endpoint-url", self.daemon.endpoint_url, "s3api", *args]
            return json.loads(run(argv, env).stdout)

        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "file.bin")
            with open(path, "wb") as out:
                out.write(data)
            put = api(
                "put-object", "--bucket", name, "--key", "k", "--body", path,
                "--checksum-algorithm", "SHA256",
            )  # fmt: skip
        self.assertEqual(put["ChecksumSHA256"], b64("SHA256", data))
        head = api("head-object", "--bucket", name, "--key", "k", "--checksum-mode", "ENABLED")
        self.assertEqual(head["ChecksumSHA256"], b64("SHA256", data))
        self.assertEqual(head["ChecksumType"], "FULL_OBJECT")


class IntegrityTLSTests(IntegrityHTTPTests):
    """Over TLS: bodies are aws-chunked with the checksum in a trailer."""

    tls = True
