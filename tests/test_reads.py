# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The object read path: the pure choices of :mod:`artifactd.http.reads` (partNumber, ranges,
``response-*`` overrides) and GetObject/HeadObject through the real site (``tests.http_harness``)
with conditional headers, overrides, part numbers and multiple ranges."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import itertools
import xml.etree.ElementTree as ET
import zlib
from urllib.parse import quote

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http import reads
from artifactd.records import BlobRef, ObjectRecord
from tests import strategies  # noqa: F401  (registers the hypothesis profiles)
from tests.http_harness import NOW, Harness, Response, key_path, put_request, signed_request

MiB = 1024 * 1024
OVERRIDE_HEADERS = dict(reads.RESPONSE_OVERRIDES)


def record_of(sizes: list[int]) -> ObjectRecord:
    """A multipart record with parts of ``sizes`` (a simple one when ``sizes`` is empty)."""
    blobs = tuple(BlobRef(f"{i:064x}", size) for i, size in enumerate(sizes))
    return ObjectRecord(
        bucket="b",
        key="k",
        size=sum(sizes),
        etag=f"e-{len(sizes)}",
        sha256="0" * 64,
        last_modified=0.0,
        blobs=blobs,
        parts_count=len(sizes),
    )


def xml_error(response: Response) -> dict[str, str]:
    return {c.tag: c.text or "" for c in ET.fromstring(response.body)}


def pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


# ------------------------------------------------------------------------------ pure
class PartNumberTests(SynchronousTestCase):
    @given(st.integers(1, 10000))
    def test_valid(self, number: int) -> None:
        """Integers 1..10000 are part numbers."""
        self.assertEqual(reads.part_number({"partNumber": str(number)}), number)

    @given(st.text() | st.integers().map(str) | st.just("9" * 5000))
    def test_anything_else_is_invalid_argument(self, raw: str) -> None:
        """Any other value is InvalidArgument naming partNumber, never another exception."""
        try:
            number = reads.part_number({"partNumber": raw})
        except errors.InvalidArgument as e:
            self.assertEqual(e.extra["ArgumentName"], "partNumber")
            self.assertEqual(e.extra["ArgumentValue"], raw)
        else:
            self.assertEqual(str(number), raw.lstrip("0") or "0")
            self.assertTrue(1 <= (number or 0) <= 10000)

    def test_absent(self) -> None:
        """No partNumber argument: None."""
        self.assertIsNone(reads.part_number({}))


class SelectTests(SynchronousTestCase):
    @given(st.lists(st.integers(0, 50), min_size=1, max_size=12), st.data())
    def test_parts_tile_the_object(self, sizes: list[int], data: st.DataObject) -> None:
        """Part N of a multipart object is exactly its bytes, a 206 with parts count."""
        record = record_of(sizes)
        number = data.draw(st.integers(1, len(sizes)))
        selection = reads.select(record, None, number)
        start = sum(sizes[: number - 1])
        self.assertEqual((selection.start, selection.length), (start, sizes[number - 1]))
        self.assertEqual(selection.parts_count, len(sizes))
        self.assertEqual(selection.body, reads.PART)
        if sizes[number - 1]:
            end = start + sizes[number - 1] - 1
            self.assertEqual(selection.content_range, f"bytes {start}-{end}/{sum(sizes)}")
            self.assertEqual(selection.status, 206)
        else:
            self.assertEqual(selection.status, 200)

    @given(st.lists(st.integers(0, 50), max_size=12), st.integers(1, 10000))
    def test_past_the_last_part(self, sizes: list[int], extra: int) -> None:
        """A part number past the last part is 416 InvalidPartNumber with the actual count."""
        record = record_of(sizes)
        count = max(1, len(sizes))
        e = self.assertRaises(errors.InvalidPartNumber, reads.select, record, None, count + extra)
        self.assertEqual(e.status, 416)
        self.assertEqual(e.extra["ActualPartCount"], str(count))

    def test_simple_object_part_one(self) -> None:
        """A simple object's part 1 is all of it, a 206 without a parts count; an empty one
        is a plain 200."""
        record = attrs.evolve(record_of([]), size=10, blobs=(BlobRef("a" * 64, 10),))
        selection = reads.select(record, None, 1)
        self.assertEqual(
            (selection.start, selection.length, selection.content_range, selection.parts_count),
            (0, 10, "bytes 0-9/10", None),
        )
        self.assertEqual(selection.body, reads.WHOLE)
        self.assertEqual(reads.select(record_of([]), None, 1).status, 200)

    def test_part_and_range(self) -> None:
        """partNumber together with a Range header is 400 InvalidRequest."""
        e = self.assertRaises(errors.InvalidRequest, reads.select, record_of([5]), "bytes=0-1", 1)
        self.assertEqual(e.status, 400)

    def test_manifest_mismatch_is_a_bug(self) -> None:
        """A multipart record whose blobs are not one per part is refused loudly."""
        record = attrs.evolve(record_of([1, 2]), parts_count=3)
        self.assertRaises(RuntimeError, reads.select, record, None, 1)

    @given(
        st.integers(0, 100),
        st.lists(st.tuples(st.integers(0, 200), st.integers(0, 200)), min_size=2, max_size=5),
    )
    def test_multiple_ranges_return_the_object(
        self, size: int, ranges: list[tuple[int, int]]
    ) -> None:
        """A multi-range header is ignored: the whole object, 200, as S3 answers."""
        header = "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
        selection = reads.select(record_of([size]), header, None)
        self.assertEqual((selection.start, selection.length, selection.status), (0, size, 200))


class OverrideTests(SynchronousTestCase):
    def test_each_parameter(self) -> None:
        """Each response-* parameter names the header it replaces, in a fixed order."""
        query = {parameter: f"v-{parameter}" for parameter in OVERRIDE_HEADERS}
        self.assertEqual(
            reads.response_overrides(query),
            [(header, f"v-{parameter}") for parameter, header in reads.RESPONSE_OVERRIDES],
        )

    def test_empty_and_unknown_ignored(self) -> None:
        """An empty value and unknown response-* parameters change nothing."""
        self.assertEqual(
            reads.response_overrides({"response-content-type": "", "response-x": "y"}), []
        )

    @given(st.text(min_size=1))
    def test_header_values(self, value: str) -> None:
        """A value is sent as given when ISO-8859-1 can carry it (no controls but tab), else
        it is InvalidArgument naming the parameter."""
        query = {"response-content-disposition": value}
        sendable = all(c == "\t" or " " <= c <= "~" or "\x80" <= c <= "\xff" for c in value)
        if sendable:
            self.assertEqual(reads.response_overrides(query), [("content-disposition", value)])
        else:
            e = self.assertRaises(errors.InvalidArgument, reads.response_overrides, query)
            self.assertEqual(e.extra["ArgumentName"], "response-content-disposition")


# ------------------------------------------------------------------------------ HTTP
class ReadTestCase(SynchronousTestCase):
    DATA = pattern(1000)

    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        stored = self.h.send(
            put_request(
                "bkt",
                "obj",
                self.DATA,
                headers={"Cache-Control": "max-age=5", "Expires": "Thu, 01 Dec 2033 16:00:00 GMT"},
            )
        )
        self.assertEqual(stored.status, 200, stored.body)
        self.etag = f'"{hashlib.md5(self.DATA).hexdigest()}"'

    def request(self, method: str, key: str = "obj", query: str = "", **headers: str) -> Response:
        raw = signed_request(method, key_path("bkt", key) + query, headers=headers)
        return self.h.send(raw, head=method == "HEAD")


class ConditionalHTTPTests(ReadTestCase):
    LAST_MODIFIED = int(NOW.timestamp())

    @given(
        st.sampled_from(["GET", "HEAD"]),
        st.none() | st.sampled_from(["match", "other", "*", "weak", "match-in-list"]),
        st.none() | st.sampled_from(["match", "other", "*", "weak", "match-in-list"]),
        st.none() | st.integers(-3, 3),
        st.none() | st.integers(-3, 3),
    )
    def test_status(
        self,
        method: str,
        if_match: str | None,
        if_none_match: str | None,
        modified: int | None,
        unmodified: int | None,
    ) -> None:
        """GET and HEAD answer 200, 304 or 412 per RFC 7232 §6 for every combination of the
        four headers; a 304 has no body and carries the validators; a 412 names the header."""
        tags = {
            "match": self.etag,
            "other": '"0123"',
            "*": "*",
            "weak": f"W/{self.etag}",
            "match-in-list": f'"a", {self.etag}, "b"',
        }
        headers: dict[str, str] = {}
        if if_match is not None:
            headers["If-Match"] = tags[if_match]
        if if_none_match is not None:
            headers["If-None-Match"] = tags[if_none_match]
        if modified is not None:
            headers["If-Modified-Since"] = email.utils.formatdate(
                self.LAST_MODIFIED + modified, usegmt=True
            )
        if unmodified is not None:
            headers["If-Unmodified-Since"] = email.utils.formatdate(
                self.LAST_MODIFIED + unmodified, usegmt=True
            )
        expected = 200
        if if_match is not None:
            if if_match in ("other", "weak"):
                expected = 412
        elif unmodified is not None and unmodified < 0:
            expected = 412
        if expected == 200:
            if if_none_match is not None:
                if if_none_match != "other":
                    expected = 304
            elif modified == 0:
                # the harness clock is at Last-Modified: a later date is in the future, ignored
                expected = 304
        response = self.request(method, **headers)
        self.assertEqual(response.status, expected, (headers, response))
        if expected == 304:
            self.assertEqual(response.body, b"")
            self.assertEqual(response.header("etag"), self.etag)
            self.assertEqual(
                response.header("last-modified"),
                email.utils.formatdate(self.LAST_MODIFIED, usegmt=True),
            )
            self.assertEqual(response.header("cache-control"), "max-age=5")
            self.assertEqual(response.header("expires"), "Thu, 01 Dec 2033 16:00:00 GMT")
            self.assertIsNone(response.header("content-type"))
            self.assertIsNone(response.header("content-length"))
        elif expected == 412 and method == "GET":
            self.assertEqual(xml_error(response)["Code"], "PreconditionFailed")
        elif expected == 412:
            self.assertEqual(response.body, b"")
        elif method == "GET":
            self.assertEqual(response.body, self.DATA)

    def test_past_modified_since(self) -> None:
        """An object changed after If-Modified-Since is sent; one unchanged since is 304."""
        self.h.clock.advance(100)
        before = email.utils.formatdate(self.LAST_MODIFIED - 1, usegmt=True)
        at = email.utils.formatdate(self.LAST_MODIFIED, usegmt=True)
        self.assertEqual(self.request("GET", **{"If-Modified-Since": before}).status, 200)
        self.assertEqual(self.request("GET", **{"If-Modified-Since": at}).status, 304)
        later = email.utils.formatdate(self.LAST_MODIFIED + 50, usegmt=True)
        self.assertEqual(self.request("GET", **{"If-Modified-Since": later}).status, 304)

    def test_conditions_before_range_and_part(self) -> None:
        """Conditions are evaluated before the Range or partNumber they would apply to."""
        unsatisfiable = {"Range": "bytes=5000-"}
        self.assertEqual(
            self.request("GET", **{"If-None-Match": self.etag}, **unsatisfiable).status, 304
        )
        self.assertEqual(self.request("GET", **{"If-Match": '"x"'}, **unsatisfiable).status, 412)
        self.assertEqual(
            self.request("GET", "obj", "?partNumber=9", **{"If-Match": '"x"'}).status, 412
        )
        ranged = self.request("GET", **{"If-Match": self.etag, "Range": "bytes=1-3"})
        self.assertEqual((ranged.status, ranged.body), (206, self.DATA[1:4]))

    def test_connection_survives_304(self) -> None:
        """A 304 ends cleanly: the next request on the connection is answered."""
        conn = self.h.connect()
        conn.feed(
            signed_request("GET", key_path("bkt", "obj"), headers={"If-None-Match": self.etag})
            + signed_request("GET", key_path("bkt", "obj"))
        )
        self.h.settle()
        first, second = conn.responses()
        self.assertEqual((first.status, first.body), (304, b""))
        self.assertEqual((second.status, second.body), (200, self.DATA))

    def test_missing_key(self) -> None:
        """HEAD of a missing key is a bare 404; GET is the NoSuchKey document; conditions do
        not turn either into a 412."""
        head = self.request("HEAD", "missing", **{"If-Match": '"x"'})
        self.assertEqual((head.status, head.body), (404, b""))
        get = self.request("GET", "missing", **{"If-Match": '"x"'})
        self.assertEqual(get.status, 404)
        error = xml_error(get)
        self.assertEqual((error["Code"], error["Key"]), ("NoSuchKey", "missing"))


class OverrideHTTPTests(ReadTestCase):
    def test_each_override(self) -> None:
        """Each response-* parameter replaces its header on GET and HEAD, stored or not."""
        values = {
            "response-content-type": "text/plain; charset=utf-8",
            "response-content-language": "de-CH",
            "response-expires": "Wed, 21 Oct 2015 07:28:00 GMT",
            "response-cache-control": "no-cache, no-store",
            "response-content-disposition": 'attachment; filename="r\u00e9sum\u00e9 1.txt"',
            "response-content-encoding": "gzip",
        }
        for parameter, value in values.items():
            for method in ("GET", "HEAD"):
                query = f"?{parameter}={quote(value, safe='')}"
                response = self.request(method, "obj", query)
                self.assertEqual(response.status, 200, (parameter, response))
                self.assertEqual(response.header(OVERRIDE_HEADERS[parameter]), value, parameter)
                if method == "GET":
                    self.assertEqual(response.body, self.DATA)

    def test_all_together_with_range(self) -> None:
        """Overrides combine with each other and with a Range."""
        query = "?" + "&".join(f"{p}=x{i}" for i, p in enumerate(OVERRIDE_HEADERS))
        response = self.request("GET", "obj", query, Range="bytes=0-9")
        self.assertEqual((response.status, response.body), (206, self.DATA[:10]))
        for i, header in enumerate(OVERRIDE_HEADERS.values()):
            self.assertEqual(response.header(header), f"x{i}")

    def test_unsendable_value(self) -> None:
        """A value with control characters or beyond ISO-8859-1 is 400 InvalidArgument."""
        for value in ("a\r\nx-injected: 1", "\u20ac", "\x00"):
            query = f"?response-content-type={quote(value, safe='')}"
            response = self.request("GET", "obj", query)
            self.assertEqual(response.status, 400, value)
            self.assertIsNone(response.header("x-injected"))
            error = xml_error(response)
            self.assertEqual(error["Code"], "InvalidArgument")
            self.assertEqual(error["ArgumentName"], "response-content-type")

    def test_not_on_304(self) -> None:
        """A 304 carries the stored validators, not the overrides."""
        response = self.request(
            "GET", "obj", "?response-cache-control=private", **{"If-None-Match": self.etag}
        )
        self.assertEqual(response.status, 304)
        self.assertEqual(response.header("cache-control"), "max-age=5")


class MultipleRangeHTTPTests(ReadTestCase):
    @given(st.lists(st.tuples(st.integers(0, 2000), st.integers(0, 2000)), min_size=2, max_size=4))
    def test_whole_object(self, ranges: list[tuple[int, int]]) -> None:
        """Range with several byte ranges is answered 200 with the whole object."""
        header = "bytes=" + ",".join(f"{a}-{b}" for a, b in ranges)
        response = self.request("GET", Range=header)
        self.assertEqual((response.status, response.body), (200, self.DATA))
        self.assertIsNone(response.header("content-range"))


class PartNumberHTTPTests(ReadTestCase):
    SIZES = (5 * MiB, 5 * MiB + 3, 1234)

    def upload(self, key: str, checksum: bool = False) -> list[bytes]:
        """A completed multipart upload of three parts (CRC32 COMPOSITE when ``checksum``)."""
        headers = {"x-amz-checksum-algorithm": "CRC32"} if checksum else {}
        created = self.h.send(
            signed_request("POST", key_path("bkt", key) + "?uploads", headers=headers)
        )
        upload_id = {c.tag.rsplit("}")[-1]: c.text for c in ET.fromstring(created.body)}["UploadId"]
        parts = [pattern(size, seed) for seed, size in enumerate(self.SIZES)]
        body = ""
        for number, data in enumerate(parts, 1):
            extra = {"x-amz-checksum-crc32": crc32_b64(data)} if checksum else {}
            query = f"?partNumber={number}&uploadId={upload_id}"
            sent = self.h.send(put_request("bkt", key, data, headers=extra, query=query))
            self.assertEqual(sent.status, 200, sent.body)
            listed = f"<ChecksumCRC32>{crc32_b64(data)}</ChecksumCRC32>" if checksum else ""
            body += (
                f"<Part><PartNumber>{number}</PartNumber>"
                f"<ETag>{sent.header('etag')}</ETag>{listed}</Part>"
            )
        xml = f"<CompleteMultipartUpload>{body}</CompleteMultipartUpload>".encode()
        done = self.h.send(
            signed_request("POST", key_path("bkt", key) + f"?uploadId={upload_id}", xml)
        )
        self.assertEqual(done.status, 200, done.body)
        return parts

    def test_each_part(self) -> None:
        """GET ?partNumber=N is part N's bytes: 206, Content-Range, x-amz-mp-parts-count; HEAD
        gives the same headers; past the last part is 416 InvalidPartNumber."""
        parts = self.upload("mp")
        whole = b"".join(parts)
        starts = [0, *itertools.accumulate(len(p) for p in parts)]
        for number, data in enumerate(parts, 1):
            got = self.request("GET", "mp", f"?partNumber={number}")
            head = self.request("HEAD", "mp", f"?partNumber={number}")
            self.assertEqual(got.status, 206)
            self.assertEqual(got.body, data, number)
            start = starts[number - 1]
            expected = {
                "content-range": f"bytes {start}-{start + len(data) - 1}/{len(whole)}",
                "content-length": str(len(data)),
                "x-amz-mp-parts-count": "3",
            }
            for response in (got, head):
                self.assertEqual({k: response.header(k) for k in expected}, expected)
                self.assertTrue((response.header("etag") or "").endswith('-3"'))
            self.assertEqual(head.status, 206)
            self.assertEqual(head.body, b"")
        plain = self.request("GET", "mp")
        self.assertEqual((plain.status, plain.body), (200, whole))
        self.assertIsNone(plain.header("x-amz-mp-parts-count"))
        for method in ("GET", "HEAD"):
            beyond = self.request(method, "mp", "?partNumber=4")
            self.assertEqual(beyond.status, 416)
        error = xml_error(self.request("GET", "mp", "?partNumber=4"))
        self.assertEqual(
            (error["Code"], error["PartNumberRequested"], error["ActualPartCount"]),
            ("InvalidPartNumber", "4", "3"),
        )

    def test_part_checksum(self) -> None:
        """In checksum mode a part read reports that part's own checksum, never the object's."""
        parts = self.upload("mpc", checksum=True)
        for number, data in enumerate(parts, 1):
            response = self.request(
                "GET", "mpc", f"?partNumber={number}", **{"x-amz-checksum-mode": "ENABLED"}
            )
            self.assertEqual(response.header("x-amz-checksum-crc32"), crc32_b64(data))
        ranged = self.request(
            "GET", "mpc", "", Range="bytes=0-9", **{"x-amz-checksum-mode": "ENABLED"}
        )
        self.assertIsNone(ranged.header("x-amz-checksum-crc32"))

    def test_simple_object(self) -> None:
        """A simple object's partNumber=1 is a 206 of all of it without a parts count;
        partNumber=2 is 416 InvalidPartNumber."""
        response = self.request("GET", "obj", "?partNumber=1")
        self.assertEqual((response.status, response.body), (206, self.DATA))
        self.assertEqual(response.header("content-range"), f"bytes 0-999/{len(self.DATA)}")
        self.assertIsNone(response.header("x-amz-mp-parts-count"))
        self.assertEqual(
            xml_error(self.request("GET", "obj", "?partNumber=2"))["Code"], "InvalidPartNumber"
        )

    def test_empty_object(self) -> None:
        """partNumber=1 of an empty object is a 200 with no body and no Content-Range."""
        self.assertEqual(self.h.send(put_request("bkt", "empty", b"")).status, 200)
        response = self.request("GET", "empty", "?partNumber=1")
        self.assertEqual((response.status, response.body), (200, b""))
        self.assertIsNone(response.header("content-range"))

    def test_invalid_part_numbers(self) -> None:
        """partNumber 0, 10001, negative, empty, non-numeric or huge is 400 InvalidArgument."""
        for raw in ("0", "10001", "-1", "", "one", "1.0", "9" * 5000, "%F0%9F%98%80"):
            response = self.request("GET", "obj", f"?partNumber={raw}")
            self.assertEqual(response.status, 400, raw)
            self.assertEqual(xml_error(response)["Code"], "InvalidArgument", raw)
            self.assertEqual(self.request("HEAD", "obj", f"?partNumber={raw}").status, 400)

    def test_with_range(self) -> None:
        """partNumber together with Range is 400 InvalidRequest."""
        response = self.request("GET", "obj", "?partNumber=1", Range="bytes=0-1")
        self.assertEqual(response.status, 400)
        self.assertEqual(xml_error(response)["Code"], "InvalidRequest")


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
