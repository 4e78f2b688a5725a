# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The object read path with boto3 (default configuration) against a real ``twistd -n
artifactd``, over HTTP and TLS: conditional GetObject/HeadObject, download_file of a multipart
object (s3transfer's ranged GETs carry If-Match), GetObject/HeadObject with PartNumber, the
``Response*`` header overrides (also in presigned URLs) and multiple-range requests."""

from __future__ import annotations

import datetime
import email.utils
import hashlib
import os
import ssl
import threading
import urllib.request
from typing import Any

from boto3.s3.transfer import TransferConfig
from s3transfer.exceptions import S3DownloadFailedError  # type: ignore[import-untyped]

from tests.e2e.support import Boto3TestCase, MiB, file_sha256, random_file, scratch

DAY = datetime.timedelta(days=1)


class ObjectReadsHTTPTests(Boto3TestCase):
    """Reads with boto3 over plain HTTP."""

    # ------------------------------------------------------------- helpers
    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.daemon.tls:
            return None
        return ssl.create_default_context(cafile=self.daemon.cert_path)

    def multipart(self, bucket: str, key: str, sizes: list[int]) -> list[bytes]:
        """A completed multipart upload of parts of ``sizes`` bytes (low-level calls)."""
        upload_id = self.s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        parts = [os.urandom(size) for size in sizes]
        etags = [
            self.s3.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=n, Body=data
            )["ETag"]
            for n, data in enumerate(parts, 1)
        ]
        self.s3.complete_multipart_upload(
            Bucket=bucket,
            Key=key,
            UploadId=upload_id,
            MultipartUpload={
                "Parts": [{"PartNumber": n, "ETag": e} for n, e in enumerate(etags, 1)]
            },
        )
        return parts

    def stored(self, bucket: str, key: str, data: bytes) -> tuple[str, datetime.datetime]:
        """Put ``data``; its ETag (quoted) and Last-Modified."""
        self.s3.put_object(Bucket=bucket, Key=key, Body=data, CacheControl="max-age=9")
        head = self.s3.head_object(Bucket=bucket, Key=key)
        return head["ETag"], head["LastModified"]

    # ----------------------------------------------------------- conditions
    def test_conditional_get_object(self) -> None:
        """GetObject with each conditional header: the object when it holds, 412
        PreconditionFailed (If-Match, If-Unmodified-Since) or 304 (If-None-Match,
        If-Modified-Since) when it does not; a future If-Modified-Since is ignored."""
        name = self.new_bucket()
        etag, modified = self.stored(name, "k", b"conditional body")
        get = self.s3.get_object
        held: list[dict[str, Any]] = [
            {"IfMatch": etag},
            {"IfMatch": etag.strip('"')},
            {"IfMatch": f'"0", {etag}'},
            {"IfMatch": "*"},
            {"IfNoneMatch": '"0"'},
            {"IfModifiedSince": modified - DAY},
            {"IfModifiedSince": modified + DAY},  # in the future: invalid, ignored
            {"IfUnmodifiedSince": modified},
            {"IfUnmodifiedSince": modified + DAY},
            {"IfMatch": etag, "IfUnmodifiedSince": modified - DAY},  # If-Match wins
        ]
        for conditions in held:
            response = get(Bucket=name, Key="k", **conditions)
            self.assertEqual(response["Body"].read(), b"conditional body", conditions)
        failed: list[dict[str, Any]] = [
            {"IfMatch": '"0"'},
            {"IfUnmodifiedSince": modified - DAY},
            {"IfMatch": '"0"', "IfNoneMatch": etag},  # 412 before 304
        ]
        for conditions in failed:
            e = self.assertS3Error(
                "PreconditionFailed", 412, get, Bucket=name, Key="k", **conditions
            )
            self.assertIn(e.response["Error"]["Condition"], ("If-Match", "If-Unmodified-Since"))
        not_modified: list[dict[str, Any]] = [
            {"IfNoneMatch": etag},
            {"IfNoneMatch": "*"},
            {"IfModifiedSince": modified},
            {"IfNoneMatch": etag, "IfModifiedSince": modified - DAY},  # If-None-Match wins
        ]
        for conditions in not_modified:
            e = self.assertS3Error("304", 304, get, Bucket=name, Key="k", **conditions)
            headers = e.response["ResponseMetadata"]["HTTPHeaders"]
            self.assertEqual(headers["etag"], etag)
            self.assertEqual(email.utils.parsedate_to_datetime(headers["last-modified"]), modified)
            self.assertEqual(headers["cache-control"], "max-age=9")
            self.assertNotIn("content-length", headers)

    def test_conditional_head_object(self) -> None:
        """HeadObject answers the same conditions with bare 200, 412 and 304 responses."""
        name = self.new_bucket()
        etag, modified = self.stored(name, "k", b"head body")
        head = self.s3.head_object
        for conditions in (
            {"IfMatch": etag},
            {"IfNoneMatch": '"0"'},
            {"IfModifiedSince": modified - DAY},
            {"IfUnmodifiedSince": modified},
        ):
            self.assertEqual(head(Bucket=name, Key="k", **conditions)["ContentLength"], 9)
        for conditions in ({"IfMatch": '"0"'}, {"IfUnmodifiedSince": modified - DAY}):
            self.assertS3Error("412", 412, head, Bucket=name, Key="k", **conditions)
        for conditions in ({"IfNoneMatch": etag}, {"IfModifiedSince": modified}):
            self.assertS3Error("304", 304, head, Bucket=name, Key="k", **conditions)
        self.assertS3Error("404", 404, head, Bucket=name, Key="missing", IfMatch=etag)

    # ------------------------------------------------------------ download
    def test_download_file_multipart(self) -> None:
        """download_file of a three-part object in 4 MiB ranges: every ranged GET carries
        If-Match with the object's ETag, and the file is the object."""
        name = self.new_bucket()
        parts = self.multipart(name, "big", [5 * MiB, 5 * MiB, 123_457])
        whole = b"".join(parts)
        sent: list[Any] = []
        self.s3.meta.events.register(
            "before-send.s3.GetObject", lambda request, **_: sent.append(request)
        )
        config = TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB)
        etag = self.s3.head_object(Bucket=name, Key="big")["ETag"]
        with scratch(self.daemon.workdir) as tmp:
            target = os.path.join(tmp, "out.bin")
            self.s3.download_file(name, "big", target, Config=config)
            self.assertEqual(file_sha256(target), hashlib.sha256(whole).hexdigest())
        ranged = [r for r in sent if "Range" in r.headers]
        self.assertEqual(len(ranged), 3)  # 10 MiB + 120 KiB in 4 MiB pieces
        if_match = {bytes(r.headers.get("If-Match", b"")).decode() for r in ranged}
        self.assertEqual(if_match, {etag})

    def test_download_racing_an_overwrite_fails(self) -> None:
        """An overwrite during download_file makes its ranged GETs fail If-Match: the download
        fails (S3DownloadFailedError) instead of mixing old and new bytes."""
        name = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            source = os.path.join(tmp, "in.bin")
            random_file(source, 12 * MiB)
            config = TransferConfig(multipart_threshold=4 * MiB, multipart_chunksize=4 * MiB)
            self.s3.upload_file(source, name, "racy", Config=config)
            other = self.daemon.client()
            lock = threading.Lock()
            overwritten: list[bool] = []

            def overwrite(request: Any, **_: Any) -> None:
                with lock:
                    if not overwritten:
                        other.put_object(Bucket=name, Key="racy", Body=b"new contents")
                        overwritten.append(True)

            self.s3.meta.events.register("before-send.s3.GetObject", overwrite)
            target = os.path.join(tmp, "out.bin")
            self.assertRaises(
                S3DownloadFailedError, self.s3.download_file, name, "racy", target, Config=config
            )
            self.assertFalse(os.path.exists(target))
        self.assertEqual(
            self.s3.get_object(Bucket=name, Key="racy")["Body"].read(), b"new contents"
        )

    # ---------------------------------------------------------- part number
    def test_get_object_part_number(self) -> None:
        """get_object/head_object(PartNumber=N) give part N: 206, ContentRange, PartsCount;
        past the last part is 416 InvalidPartNumber; with Range it is 400 InvalidRequest."""
        name = self.new_bucket()
        parts = self.multipart(name, "mp", [5 * MiB, 5 * MiB + 1, 1000])
        total = sum(len(p) for p in parts)
        start = 0
        for number, data in enumerate(parts, 1):
            got = self.s3.get_object(Bucket=name, Key="mp", PartNumber=number)
            self.assertEqual(self.status(got), 206)
            self.assertEqual(got["Body"].read(), data)
            expected_range = f"bytes {start}-{start + len(data) - 1}/{total}"
            self.assertEqual(
                (got["ContentRange"], got["ContentLength"], got["PartsCount"]),
                (expected_range, len(data), 3),
            )
            head = self.s3.head_object(Bucket=name, Key="mp", PartNumber=number)
            self.assertEqual(
                (self.status(head), head["ContentLength"], head["PartsCount"]),
                (206, len(data), 3),
            )
            start += len(data)
        self.assertNotIn("PartsCount", self.s3.head_object(Bucket=name, Key="mp"))
        e = self.assertS3Error(
            "InvalidPartNumber", 416, self.s3.get_object, Bucket=name, Key="mp", PartNumber=4
        )
        self.assertEqual(e.response["Error"]["ActualPartCount"], "3")
        self.assertS3Error("416", 416, self.s3.head_object, Bucket=name, Key="mp", PartNumber=4)
        self.assertS3Error(
            "InvalidRequest",
            400,
            self.s3.get_object,
            Bucket=name,
            Key="mp",
            PartNumber=1,
            Range="bytes=0-9",
        )
        self.assertS3Error(
            "InvalidArgument", 400, self.s3.get_object, Bucket=name, Key="mp", PartNumber=10001
        )

    def test_simple_object_part_number(self) -> None:
        """A simple object is one part: PartNumber=1 is all of it, PartNumber=2 is 416."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="one", Body=b"0123456789")
        got = self.s3.get_object(Bucket=name, Key="one", PartNumber=1)
        self.assertEqual((self.status(got), got["Body"].read()), (206, b"0123456789"))
        self.assertEqual(got["ContentRange"], "bytes 0-9/10")
        self.assertNotIn("PartsCount", got)
        self.assertS3Error(
            "InvalidPartNumber", 416, self.s3.get_object, Bucket=name, Key="one", PartNumber=2
        )

    # ------------------------------------------------------------- overrides
    def test_response_overrides(self) -> None:
        """Response* parameters replace the headers of GetObject and HeadObject."""
        name = self.new_bucket()
        self.s3.put_object(
            Bucket=name, Key="doc", Body=b"{}", ContentType="application/json", CacheControl="x"
        )
        expires = datetime.datetime(2031, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
        overrides = {
            "ResponseContentType": "text/plain; charset=utf-8",
            "ResponseContentLanguage": "fr-CA",
            "ResponseExpires": expires,
            "ResponseCacheControl": "no-store",
            "ResponseContentDisposition": 'attachment; filename="r\u00e9sum\u00e9.json"',
            "ResponseContentEncoding": "identity",
        }
        for call in (self.s3.get_object, self.s3.head_object):
            response = call(Bucket=name, Key="doc", **overrides)
            self.assertEqual(response["ContentType"], "text/plain; charset=utf-8")
            self.assertEqual(response["ContentLanguage"], "fr-CA")
            self.assertEqual(response["CacheControl"], "no-store")
            self.assertEqual(
                response["ContentDisposition"], 'attachment; filename="r\u00e9sum\u00e9.json"'
            )
            self.assertEqual(response["ContentEncoding"], "identity")
            self.assertEqual(
                email.utils.parsedate_to_datetime(self.headers(response)["expires"]), expires
            )
        plain = self.s3.head_object(Bucket=name, Key="doc")
        self.assertEqual((plain["ContentType"], plain["CacheControl"]), ("application/json", "x"))

    def test_presigned_download_name(self) -> None:
        """A presigned URL with ResponseContentDisposition downloads under the name asked for."""
        name = self.new_bucket()
        self.s3.put_object(Bucket=name, Key="build/artifact-1234", Body=b"artifact")
        url = self.daemon.client(signature_version="s3v4").generate_presigned_url(
            "get_object",
            Params={
                "Bucket": name,
                "Key": "build/artifact-1234",
                "ResponseContentDisposition": 'attachment; filename="artifact.tar.gz"',
                "ResponseContentType": "application/gzip",
            },
            ExpiresIn=300,
        )
        with urllib.request.urlopen(url, context=self.ssl_context(), timeout=10) as response:
            self.assertEqual(response.read(), b"artifact")
            self.assertEqual(
                response.headers["Content-Disposition"], 'attachment; filename="artifact.tar.gz"'
            )
            self.assertEqual(response.headers["Content-Type"], "application/gzip")

    # --------------------------------------------------------------- ranges
    def test_multiple_ranges(self) -> None:
        """A multi-range request is answered as S3 answers it: 200 with the whole object."""
        name = self.new_bucket()
        data = os.urandom(100)
        self.s3.put_object(Bucket=name, Key="r", Body=data)
        for spec in ("bytes=0-1,5-6", "bytes=0-1, 200-300", "bytes=-5,10-"):
            got = self.s3.get_object(Bucket=name, Key="r", Range=spec)
            self.assertEqual(self.status(got), 200, spec)
            self.assertEqual(got["Body"].read(), data, spec)
            self.assertNotIn("ContentRange", got)

    # ------------------------------------------------- large bodies (sendfile)
    def open_presigned(self, bucket: str, key: str, headers: dict[str, str] | None = None) -> Any:
        url = self.daemon.client(signature_version="s3v4").generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=300
        )
        request = urllib.request.Request(url, headers=headers or {})
        return urllib.request.urlopen(request, context=self.ssl_context(), timeout=60)

    def test_slow_reader_gets_every_byte(self) -> None:
        """A reader slower than the daemon fills the socket again and again (over plain TCP the
        daemon then spills through the transport and goes back to sendfile): the body is whole,
        across the blobs of a multipart object, and the access event counts every byte."""
        name = self.new_bucket()
        parts = self.multipart(name, "big", [5 * MiB, 5 * MiB, 3 * MiB])
        data = b"".join(parts)
        with self.open_presigned(name, "big") as response:
            got = bytearray()
            while piece := response.read(256 * 1024):
                got += piece
                if len(got) < 4 * MiB:
                    threading.Event().wait(0.002)
        self.assertEqual(hashlib.sha256(got).hexdigest(), hashlib.sha256(data).hexdigest())
        access = [
            e
            for e in self.daemon.events()
            if e.get("namespace") == "artifactd.access" and e.get("key") == "big"
        ]
        self.assertEqual(access[-1]["bytes_out"], len(data))

    def test_large_ranges(self) -> None:
        """Ranges spanning blob boundaries of a multipart object come back exact."""
        name = self.new_bucket()
        data = b"".join(self.multipart(name, "big", [5 * MiB, 5 * MiB, 1 * MiB]))
        for first, last in [(0, 11 * MiB - 1), (5 * MiB - 10, 10 * MiB + 9), (7, 7 * MiB)]:
            with self.open_presigned(name, "big", {"Range": f"bytes={first}-{last}"}) as r:
                self.assertEqual(r.status, 206)
                self.assertEqual(r.read(), data[first : last + 1], (first, last))

    def test_reader_leaving_mid_body(self) -> None:
        """A client that hangs up mid-download costs the daemon nothing: no error is logged and
        the next request is served."""
        name = self.new_bucket()
        data = os.urandom(24 * MiB)
        self.s3.put_object(Bucket=name, Key="big", Body=data)
        for _ in range(3):
            response = self.open_presigned(name, "big")
            response.read(MiB)
            response.close()
        got = self.s3.get_object(Bucket=name, Key="big")["Body"].read()
        self.assertEqual(got, data)


class ObjectReadsTLSTests(ObjectReadsHTTPTests):
    """The same reads over HTTPS."""

    tls = True
