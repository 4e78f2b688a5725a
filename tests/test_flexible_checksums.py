# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Flexible checksums through the real site: stored on upload, reported on GET/HEAD only in
checksum mode and never on a range, and multipart COMPOSITE / FULL_OBJECT checksums."""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
import zlib

from awscrt import checksums as crt  # type: ignore[import-untyped]
from twisted.trial.unittest import SynchronousTestCase

from tests.http_harness import Harness, Response, key_path, put_request, signed_request

MiB = 1024 * 1024
FIRST = bytes(range(256)) * (5 * MiB // 256)  # a minimal non-last part
SECOND = b"the last part may be small"


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def reference(algorithm: str, data: bytes) -> str:
    """Each algorithm as the client computes it (zlib, awscrt, hashlib)."""
    if algorithm == "crc32":
        return b64(zlib.crc32(data).to_bytes(4, "big"))
    if algorithm == "crc32c":
        return b64(crt.crc32c(data).to_bytes(4, "big"))
    if algorithm == "crc64nvme":
        return b64(crt.crc64nvme(data).to_bytes(8, "big"))
    return b64(hashlib.new(algorithm, data).digest())


def xml_of(response: Response) -> dict[str, str]:
    """Top-level children of an XML document by local name."""
    return {c.tag.rsplit("}", 1)[-1]: c.text or "" for c in ET.fromstring(response.body)}


class ChecksumTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")

    def get(self, key: str, method: str = "GET", **headers: str) -> Response:
        return self.h.send(
            signed_request(method, key_path("bkt", key), headers=headers), head=method == "HEAD"
        )

    def assertError(self, response: Response, status: int, code: str) -> dict[str, str]:
        self.assertEqual(response.status, status, response.body)
        error = xml_of(response)
        self.assertEqual(error["Code"], code, response.body)
        return error

    def checksum_headers(self, response: Response) -> dict[str, str]:
        return {
            k.decode().lower(): v.decode()
            for k, v in response.headers
            if k.lower().startswith(b"x-amz-checksum-")
        }


class SingleUploadTests(ChecksumTestCase):
    def test_each_algorithm(self) -> None:
        """A PUT's checksum (header or aws-chunked trailer) is stored and reported on GET and
        HEAD only with x-amz-checksum-mode: ENABLED, with its type; never on a range."""
        data = b"hello flexible checksums" * 1000
        for algorithm in ("crc32", "crc32c", "crc64nvme", "sha1", "sha256"):
            with self.subTest(algorithm):
                value = reference(algorithm, data)
                put = self.h.send(
                    put_request(
                        "bkt", algorithm, data, headers={f"x-amz-checksum-{algorithm}": value}
                    )
                )
                self.assertEqual(put.status, 200, put.body)
                reported = {
                    f"x-amz-checksum-{algorithm}": value,
                    "x-amz-checksum-type": "FULL_OBJECT",
                }
                self.assertEqual(self.checksum_headers(put), reported)
                self.assertEqual(self.checksum_headers(self.get(algorithm)), {})
                for method in ("GET", "HEAD"):
                    got = self.get(algorithm, method, **{"x-amz-checksum-mode": "ENABLED"})
                    self.assertEqual(got.status, 200)
                    self.assertEqual(self.checksum_headers(got), reported)
                ranged = self.get(
                    algorithm, **{"x-amz-checksum-mode": "ENABLED", "Range": "bytes=0-"}
                )
                self.assertEqual((ranged.status, ranged.body), (206, data))
                self.assertEqual(self.checksum_headers(ranged), {})

    def test_trailer_and_computed(self) -> None:
        """The aws-chunked CRC32 trailer, and an algorithm named only by
        x-amz-sdk-checksum-algorithm, are stored as computed."""
        data = b"trailer" * 5000
        self.assertEqual(
            self.h.send(put_request("bkt", "t", data, encoding="aws-chunked")).status, 200
        )
        sdk = put_request("bkt", "s", data, headers={"x-amz-sdk-checksum-algorithm": "SHA256"})
        self.assertEqual(self.h.send(sdk).status, 200)
        mode = {"x-amz-checksum-mode": "ENABLED"}
        self.assertEqual(
            self.checksum_headers(self.get("t", **mode))["x-amz-checksum-crc32"],
            reference("crc32", data),
        )
        self.assertEqual(
            self.checksum_headers(self.get("s", **mode))["x-amz-checksum-sha256"],
            reference("sha256", data),
        )

    def test_refused_uploads_store_nothing(self) -> None:
        """Wrong, malformed, multiple and unsupported checksums are refused and store nothing."""
        data = b"payload"
        cases = [
            ({"x-amz-checksum-sha1": reference("sha1", b"other")}, 400, "BadDigest"),
            ({"x-amz-checksum-sha1": "c2hh"}, 400, "InvalidRequest"),
            (
                {
                    "x-amz-checksum-crc32": reference("crc32", data),
                    "x-amz-checksum-sha1": reference("sha1", data),
                },
                400,
                "InvalidRequest",
            ),
            (
                {
                    "x-amz-checksum-crc32": reference("crc32", data),
                    "x-amz-sdk-checksum-algorithm": "SHA1",
                },
                400,
                "InvalidRequest",
            ),
            ({"x-amz-checksum-sha512": "AAAA"}, 501, "NotImplemented"),
            ({"Content-MD5": b64(hashlib.md5(b"other").digest())}, 400, "BadDigest"),
        ]
        for headers, status, code in cases:
            with self.subTest(headers):
                self.assertError(
                    self.h.send(put_request("bkt", "k", data, headers=headers)), status, code
                )
        self.assertIsNone(self.h.meta.get_object("bkt", "k"))
        self.assertEqual(self.h.staging_files(), [])
        self.assertEqual(self.h.blob_files(), [])


class SmallBodyTests(ChecksumTestCase):
    def test_delete_objects_body_verified(self) -> None:
        """A DeleteObjects document is checked against Content-MD5 and x-amz-checksum-*: a
        mismatch is BadDigest, a malformed value InvalidRequest, and nothing is deleted."""
        self.assertEqual(self.h.send(put_request("bkt", "a", b"x")).status, 200)
        xml = b"<Delete><Object><Key>a</Key></Object></Delete>"
        for headers, code in (
            ({"Content-MD5": b64(hashlib.md5(b"other").digest())}, "BadDigest"),
            ({"x-amz-checksum-crc32": reference("crc32", b"other")}, "BadDigest"),
            ({"x-amz-checksum-crc32": "bad"}, "InvalidRequest"),
        ):
            with self.subTest(headers):
                response = self.h.send(signed_request("POST", "/bkt?delete", xml, headers))
                self.assertError(response, 400, code)
        self.assertIsNotNone(self.h.meta.get_object("bkt", "a"))
        good = {"x-amz-checksum-crc32": reference("crc32", xml)}
        self.assertEqual(self.h.send(signed_request("POST", "/bkt?delete", xml, good)).status, 200)
        self.assertIsNone(self.h.meta.get_object("bkt", "a"))


class MultipartTests(ChecksumTestCase):
    def create(self, **headers: str) -> tuple[str, Response]:
        response = self.h.send(
            signed_request("POST", key_path("bkt", "mp") + "?uploads", headers=headers)
        )
        self.assertEqual(response.status, 200, response.body)
        return xml_of(response)["UploadId"], response

    def part(self, upload_id: str, number: int, data: bytes, **headers: str) -> Response:
        query = f"?partNumber={number}&uploadId={upload_id}"
        return self.h.send(put_request("bkt", "mp", data, headers=headers, query=query))

    def complete(
        self, upload_id: str, parts: list[tuple[int, str, dict[str, str]]], **headers: str
    ) -> Response:
        body = "".join(
            f"<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag>"
            + "".join(f"<{name}>{value}</{name}>" for name, value in checksums.items())
            + "</Part>"
            for n, etag, checksums in parts
        )
        xml = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
        target = key_path("bkt", "mp") + f"?uploadId={upload_id}"
        return self.h.send(signed_request("POST", target, xml, headers))

    def test_composite(self) -> None:
        """CRC32 COMPOSITE: parts carry their checksums (UploadPart, ListParts), Complete
        returns crc32(crc1 || crc2)-2, GET/HEAD in checksum mode report it and partNumber-less
        ranges never do."""
        upload_id, created = self.create(**{"x-amz-checksum-algorithm": "CRC32"})
        self.assertEqual(created.header("x-amz-checksum-algorithm"), "CRC32")
        self.assertEqual(created.header("x-amz-checksum-type"), "COMPOSITE")
        values = [reference("crc32", FIRST), reference("crc32", SECOND)]
        etags = []
        for n, (data, value) in enumerate(zip((FIRST, SECOND), values, strict=True), 1):
            response = self.part(upload_id, n, data, **{"x-amz-checksum-crc32": value})
            self.assertEqual(response.status, 200, response.body)
            self.assertEqual(response.header("x-amz-checksum-crc32"), value)
            etags.append(response.header("etag") or "")
        listed = self.h.send(
            signed_request("GET", key_path("bkt", "mp") + f"?uploadId={upload_id}")
        )
        root = ET.fromstring(listed.body)
        self.assertEqual(root.findtext("{*}ChecksumAlgorithm"), "CRC32")
        self.assertEqual(root.findtext("{*}ChecksumType"), "COMPOSITE")
        self.assertEqual([p.findtext("{*}ChecksumCRC32") for p in root.iterfind("{*}Part")], values)
        parts = [(n, etags[n - 1], {"ChecksumCRC32": values[n - 1]}) for n in (1, 2)]
        done = self.complete(upload_id, parts)
        self.assertEqual(done.status, 200, done.body)
        raw = b"".join(base64.b64decode(v) for v in values)
        want = f"{b64(zlib.crc32(raw).to_bytes(4, 'big'))}-2"
        self.assertEqual(xml_of(done)["ChecksumCRC32"], want)
        self.assertEqual(xml_of(done)["ChecksumType"], "COMPOSITE")
        mode = {"x-amz-checksum-mode": "ENABLED"}
        for method in ("GET", "HEAD"):
            got = self.get("mp", method, **mode)
            self.assertEqual(
                self.checksum_headers(got),
                {"x-amz-checksum-crc32": want, "x-amz-checksum-type": "COMPOSITE"},
            )
        self.assertEqual(self.checksum_headers(self.get("mp", Range="bytes=1-", **mode)), {})
        listing = ET.fromstring(self.h.send(signed_request("GET", "/bkt?list-type=2")).body)
        contents = listing.find("{*}Contents")
        assert contents is not None
        self.assertEqual(contents.findtext("{*}ChecksumAlgorithm"), "CRC32")
        self.assertEqual(contents.findtext("{*}ChecksumType"), "COMPOSITE")

    def test_full_object(self) -> None:
        """CRC64NVME (FULL_OBJECT by default) and CRC32 FULL_OBJECT: a part sent without a
        checksum has it computed, and the object checksum is that of the whole content,
        checked against the value sent on Complete."""
        for algorithm, declared in (
            ("crc64nvme", {}),
            ("crc32", {"x-amz-checksum-type": "FULL_OBJECT"}),
        ):
            with self.subTest(algorithm):
                self.successResultOf(self.h.engine.delete_object("bkt", "mp"))
                upload_id, created = self.create(
                    **{"x-amz-checksum-algorithm": algorithm.upper(), **declared}
                )
                self.assertEqual(created.header("x-amz-checksum-type"), "FULL_OBJECT")
                first = self.part(
                    upload_id,
                    1,
                    FIRST,
                    **{f"x-amz-checksum-{algorithm}": reference(algorithm, FIRST)},
                )
                second = self.part(upload_id, 2, SECOND)  # no checksum: computed
                self.assertEqual(
                    second.header(f"x-amz-checksum-{algorithm}"), reference(algorithm, SECOND)
                )
                whole = reference(algorithm, FIRST + SECOND)
                parts: list[tuple[int, str, dict[str, str]]] = [
                    (1, first.header("etag") or "", {}),
                    (2, second.header("etag") or "", {}),
                ]
                wrong = reference(algorithm, SECOND + FIRST)
                self.assertError(
                    self.complete(upload_id, parts, **{f"x-amz-checksum-{algorithm}": wrong}),
                    400,
                    "BadDigest",
                )
                self.assertIsNone(self.h.meta.get_object("bkt", "mp"))
                done = self.complete(upload_id, parts, **{f"x-amz-checksum-{algorithm}": whole})
                self.assertEqual(done.status, 200, done.body)
                self.assertEqual(xml_of(done)[f"Checksum{algorithm.upper()}"], whole)
                self.assertEqual(xml_of(done)["ChecksumType"], "FULL_OBJECT")
                got = self.get("mp", **{"x-amz-checksum-mode": "ENABLED"})
                self.assertEqual(got.body, FIRST + SECOND)
                self.assertEqual(
                    self.checksum_headers(got),
                    {f"x-amz-checksum-{algorithm}": whole, "x-amz-checksum-type": "FULL_OBJECT"},
                )

    def test_refusals(self) -> None:
        """A COMPOSITE upload refuses parts without (or with another) checksum, a Complete that
        omits or misstates a part checksum, and a bad Content-MD5 on the XML; nothing is
        stored and the upload survives."""
        upload_id, _ = self.create(**{"x-amz-checksum-algorithm": "SHA256"})
        error = self.assertError(self.part(upload_id, 1, SECOND), 400, "InvalidRequest")
        self.assertIn(
            "expected checksum Type: sha256, actual checksum Type: null", error["Message"]
        )
        other = self.part(
            upload_id, 1, SECOND, **{"x-amz-checksum-crc32": reference("crc32", SECOND)}
        )
        self.assertError(other, 400, "InvalidRequest")
        self.assertEqual(self.h.staging_files(), [])
        good = self.part(
            upload_id, 1, SECOND, **{"x-amz-checksum-sha256": reference("sha256", SECOND)}
        )
        etag = good.header("etag") or ""
        self.assertError(self.complete(upload_id, [(1, etag, {})]), 400, "InvalidRequest")
        wrong = {"ChecksumSHA256": reference("sha256", b"x")}
        self.assertError(self.complete(upload_id, [(1, etag, wrong)]), 400, "InvalidPart")
        right = {"ChecksumSHA256": reference("sha256", SECOND)}
        md5 = {"Content-MD5": b64(hashlib.md5(b"not the body").digest())}
        self.assertError(self.complete(upload_id, [(1, etag, right)], **md5), 400, "BadDigest")
        self.assertIsNone(self.h.meta.get_object("bkt", "mp"))
        self.assertEqual(self.complete(upload_id, [(1, etag, right)]).status, 200)

    def test_create_refusals(self) -> None:
        """Invalid algorithm/type combinations are refused at CreateMultipartUpload."""
        for headers in (
            {"x-amz-checksum-algorithm": "SHA1", "x-amz-checksum-type": "FULL_OBJECT"},
            {"x-amz-checksum-algorithm": "CRC64NVME", "x-amz-checksum-type": "COMPOSITE"},
            {"x-amz-checksum-type": "COMPOSITE"},
            {"x-amz-checksum-algorithm": "MD4"},
        ):
            with self.subTest(headers):
                response = self.h.send(
                    signed_request("POST", key_path("bkt", "mp") + "?uploads", headers=headers)
                )
                self.assertError(response, 400, "InvalidRequest")
        self.assertEqual(list(self.h.meta.all_uploads()), [])

    def test_without_algorithm(self) -> None:
        """An upload that declared no algorithm keeps its parts' checksums (echoed and listed,
        checked on Complete) but the object gets none."""
        upload_id, created = self.create()
        self.assertIsNone(created.header("x-amz-checksum-type"))
        value = reference("crc32", SECOND)
        response = self.part(upload_id, 1, SECOND, **{"x-amz-checksum-crc32": value})
        self.assertEqual(response.header("x-amz-checksum-crc32"), value)
        etag = response.header("etag") or ""
        self.assertError(
            self.complete(upload_id, [(1, etag, {"ChecksumCRC32": reference("crc32", b"")})]),
            400,
            "InvalidPart",
        )
        done = self.complete(upload_id, [(1, etag, {"ChecksumCRC32": value})])
        self.assertEqual(done.status, 200, done.body)
        self.assertNotIn("ChecksumCRC32", xml_of(done))
        self.assertEqual(
            self.checksum_headers(self.get("mp", **{"x-amz-checksum-mode": "ENABLED"})), {}
        )
