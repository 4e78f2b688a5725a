"""Bad input gets the S3 error document, never a 500 or a traceback, and leaves nothing behind.

Driven through the real site (``tests.http_harness``): the gate, the API resource and the error
rendering all take part."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.names import MAX_KEY_BYTES
from tests import strategies
from tests.http_harness import (
    NOW,
    Harness,
    Response,
    key_path,
    put_request,
    serialise,
    sign,
    signed_request,
    split_head,
)

LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<ROOT><ITEM><FIELD>&lol9;</FIELD></ITEM></ROOT>"""


def hostile_documents(root: str, item: str, field: str) -> dict[str, bytes]:
    """Malformed and hostile variants of a request document ``<root><item><field>``."""
    r, i, f = root.encode(), item.encode(), field.encode()

    def doc(text: bytes) -> bytes:
        return text.replace(b"ROOT", r).replace(b"ITEM", i).replace(b"FIELD", f)

    return {
        "empty": b"",
        "whitespace": b"  \r\n ",
        "not xml": b"this is not xml",
        "binary": bytes(range(256)),
        "truncated": doc(b"<ROOT><ITEM><FIELD>1</FIELD>"),
        "mismatched": doc(b"<ROOT><ITEM><FIELD>1</ITEM></FIELD></ROOT>"),
        "wrong root": doc(b"<Other><ITEM><FIELD>1</FIELD></ITEM></Other>"),
        "two roots": doc(b"<ROOT/><ROOT/>"),
        "bad encoding": doc(
            b'<?xml version="1.0" encoding="UTF-8"?><ROOT><FIELD>\xff</FIELD></ROOT>'
        ),
        "billion laughs": doc(BILLION_LAUGHS),
        "quadratic blowup": doc(
            b'<!DOCTYPE ROOT [<!ENTITY a "'
            + b"x" * 50_000
            + b'">]><ROOT><ITEM><FIELD>'
            + b"&a;" * 2_000
            + b"</FIELD></ITEM></ROOT>"
        ),
        "external entity": doc(
            b'<?xml version="1.0"?><!DOCTYPE ROOT [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
            b"<ROOT><ITEM><FIELD>&xxe;</FIELD></ITEM></ROOT>"
        ),
        "parameter entity": doc(
            b'<!DOCTYPE ROOT [<!ENTITY % p SYSTEM "http://example.invalid/x.dtd"> %p;]>'
            b"<ROOT><ITEM><FIELD>1</FIELD></ITEM></ROOT>"
        ),
        "external dtd": doc(
            b'<!DOCTYPE ROOT SYSTEM "http://example.invalid/x.dtd">'
            b"<ROOT><ITEM><FIELD>1</FIELD></ITEM></ROOT>"
        ),
        "internal dtd": doc(
            b"<!DOCTYPE ROOT [<!ELEMENT ROOT ANY>]><ROOT><ITEM><FIELD>1</FIELD></ITEM></ROOT>"
        ),
        "undefined entity": doc(b"<ROOT><ITEM><FIELD>&nope;</FIELD></ITEM></ROOT>"),
        "deep nesting": doc(b"<ROOT>" + b"<ITEM>" * 10_000 + b"</ITEM>" * 10_000 + b"</ROOT>"),
        "deep nesting of junk": doc(b"<ROOT>" + b"<x>" * 10_000 + b"</x>" * 10_000 + b"</ROOT>"),
        "no items": doc(b"<ROOT></ROOT>"),
        "item without field": doc(b"<ROOT><ITEM></ITEM></ROOT>"),
    }


class ApiErrorTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        self.assertEqual(self.h.send(put_request("bkt", "obj", b"0123456789")).status, 200)

    def assertS3Error(
        self, response: Response, status: int, code: str, *, head: bool = False
    ) -> dict[str, str]:
        """An S3 error: the status, application/xml, and (unless HEAD) an ``<Error>`` body
        with Code, Message and RequestId (matching the x-amz-request-id header)."""
        self.assertNotEqual(response.status, 500, response.body)
        self.assertNotIn(b"Traceback", response.body)
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.header("content-type"), "application/xml")
        request_id = response.header("x-amz-request-id")
        self.assertTrue(request_id)
        if head:
            self.assertEqual(response.body, b"")
            return {}
        root = ET.fromstring(response.body)
        self.assertEqual(root.tag, "Error")
        error = {child.tag: child.text or "" for child in root}
        self.assertEqual(error.get("Code"), code, response.body)
        self.assertTrue(error.get("Message"))
        self.assertEqual(error.get("RequestId"), request_id)
        return error

    def assertUnchanged(self) -> None:
        """Only the fixture's bucket and object exist; nothing is staged."""
        self.assertEqual([b.name for b in self.h.meta.list_buckets()], ["bkt"])
        page = self.h.meta.list_objects("bkt", "", "", "", 1000)
        self.assertEqual([o.key for o in page.objects], ["obj"])
        self.assertEqual(self.h.staging_files(), [])
        self.assertEqual(len(self.h.blob_files()), 1)


def invalid_bucket_names() -> st.SearchStrategy[str]:
    """Bucket names S3 refuses, each invalid by construction (and never containing '/')."""
    valid = strategies.bucket_names()
    bad_char = st.sampled_from([*"ABCXYZ_ !$&'()*+,;=:@~%\"<>\\^`{|}é日", "\U0001f600"])
    return st.one_of(
        st.text(LOWER, min_size=1, max_size=2),  # too short
        st.text(LOWER, min_size=64, max_size=100),  # too long
        st.builds(  # a forbidden character somewhere
            lambda name, i, c: name[: i % (len(name) + 1)] + c + name[i % (len(name) + 1) :],
            valid,
            st.integers(min_value=0),
            bad_char,
        ),
        st.builds(lambda n, e: e + n, valid, st.sampled_from([".", "-"])),  # bad first char
        st.builds(lambda n, e: n + e, valid, st.sampled_from([".", "-"])),  # bad last char
        st.builds(  # forbidden adjacent pairs
            lambda a, sep, b: a + sep + b,
            st.text(LOWER, min_size=1, max_size=10),
            st.sampled_from(["..", ".-", "-."]),
            st.text(LOWER, min_size=1, max_size=10),
        ),
        st.builds(  # IPv4 addresses
            lambda a, b, c, d: f"{a}.{b}.{c}.{d}", *[st.integers(0, 255)] * 4
        ),
        st.builds(lambda p, n: p + n, st.sampled_from(["xn--", "sthree-"]), valid),
        st.builds(lambda n, s: n + s, valid, st.sampled_from(["-s3alias", "--ol-s3"])),
        st.sampled_from([".", "..", "...", "a..b", "UPPER", "under_score"]),
    )


class BucketNameTests(ApiErrorTestCase):
    @given(name=invalid_bucket_names())
    def test_invalid_bucket_names(self, name: str) -> None:
        """CreateBucket with an invalid name gives 400 InvalidBucketName and creates nothing."""
        response = self.h.send(signed_request("PUT", key_path(name)))
        error = self.assertS3Error(response, 400, "InvalidBucketName")
        self.assertEqual(error.get("BucketName"), name)
        self.assertUnchanged()

    @given(name=strategies.bucket_names())
    def test_valid_bucket_names(self, name: str) -> None:
        """CreateBucket with a valid name succeeds (the invalid-name test is not vacuous)."""
        response = self.h.send(signed_request("PUT", key_path(name)))
        self.assertIn(response.status, (200, 409))
        self.assertIsNotNone(self.h.meta.get_bucket(name))


class KeyLengthTests(ApiErrorTestCase):
    @given(
        filler=st.sampled_from(["a", "/", "é", "日", "\U0001f600", "%", "+"]),
        extra=st.integers(min_value=1, max_value=200),
        method=st.sampled_from(["GET", "HEAD", "DELETE", "PUT", "POST-uploads"]),
    )
    def test_key_too_long(self, filler: str, extra: int, method: str) -> None:
        """A key over 1024 UTF-8 bytes gives 400 KeyTooLongError, whatever the action."""
        width = len(filler.encode())
        key = "k" + filler * ((MAX_KEY_BYTES + extra) // width + 1)
        self.assertGreater(len(key.encode()), MAX_KEY_BYTES)
        target = key_path("bkt", key)
        if method == "PUT":
            raw = put_request("bkt", key, b"body bytes", expect=True)
            head, _body = split_head(raw)
            opened = self.h.blobs.staging_opened
            conn = self.h.connect()
            conn.feed(head)
            response = conn.response()
            self.assertEqual(response.interim, [])
            self.assertEqual(self.h.blobs.staging_opened, opened)
        elif method == "POST-uploads":
            response = self.h.send(signed_request("POST", target + "?uploads"))
        else:
            response = self.h.send(signed_request(method, target), head=method == "HEAD")
        self.assertS3Error(response, 400, "KeyTooLongError", head=method == "HEAD")

    @given(prefix=strategies.keys(max_bytes=100), suffix=strategies.keys(max_bytes=100))
    def test_nul_in_key(self, prefix: str, suffix: str) -> None:
        """A key holding NUL is refused with 400 InvalidArgument before any body is staged."""
        key = prefix + "\x00" + suffix
        opened = self.h.blobs.staging_opened
        response = self.h.send(put_request("bkt", key, b"body"))
        self.assertS3Error(response, 400, "InvalidArgument")
        self.assertEqual(self.h.blobs.staging_opened, opened)
        self.assertIsNone(self.h.meta.get_object("bkt", key))
        self.assertUnchanged()

    def test_key_of_1024_bytes(self) -> None:
        """A key of exactly 1024 UTF-8 bytes is accepted."""
        key = "日" * 341 + "a"
        self.assertEqual(len(key.encode()), MAX_KEY_BYTES)
        self.assertEqual(self.h.send(put_request("bkt", key, b"x")).status, 200)
        self.assertEqual(self.h.get("bkt", key).body, b"x")


class XmlBodyTests(ApiErrorTestCase):
    def setUp(self) -> None:
        super().setUp()
        response = self.h.send(signed_request("POST", key_path("bkt", "mp") + "?uploads"))
        self.assertEqual(response.status, 200, response.body)
        self.upload_id = response.xml().findtext("{*}UploadId")
        self.assertTrue(self.upload_id)

    def assertUploadIntact(self) -> None:
        self.assertIsNotNone(self.h.meta.get_upload("bkt", "mp", self.upload_id or ""))
        self.assertIsNone(self.h.meta.get_object("bkt", "mp"))
        self.assertUnchanged()

    def delete_objects(self, body: bytes) -> Response:
        return self.h.send(signed_request("POST", "/bkt?delete", body))

    def complete(self, body: bytes) -> Response:
        target = key_path("bkt", "mp") + f"?uploadId={self.upload_id}"
        return self.h.send(signed_request("POST", target, body))

    def test_delete_objects_hostile(self) -> None:
        """Malformed or hostile DeleteObjects XML gives 400 MalformedXML and deletes nothing."""
        for name, body in hostile_documents("Delete", "Object", "Key").items():
            with self.subTest(name):
                self.assertS3Error(self.delete_objects(body), 400, "MalformedXML")
                self.assertUploadIntact()

    def test_complete_hostile(self) -> None:
        """Hostile CompleteMultipartUpload XML gives 400 MalformedXML; the upload stays."""
        for name, body in hostile_documents(
            "CompleteMultipartUpload", "Part", "PartNumber"
        ).items():
            with self.subTest(name):
                self.assertS3Error(self.complete(body), 400, "MalformedXML")
                self.assertUploadIntact()

    @given(body=st.binary(max_size=300))
    def test_delete_objects_random_bytes(self, body: bytes) -> None:
        """Random bytes as a DeleteObjects body give 400 MalformedXML."""
        self.assertS3Error(self.delete_objects(body), 400, "MalformedXML")

    @given(data=st.data())
    def test_truncated_documents(self, data: Any) -> None:
        """Every proper prefix of a valid document gives 400 MalformedXML, for both actions."""
        delete = b"<Delete><Object><Key>obj</Key></Object></Delete>"
        complete = (
            b'<CompleteMultipartUpload><Part><ETag>"x"</ETag>'
            b"<PartNumber>1</PartNumber></Part></CompleteMultipartUpload>"
        )
        cut = data.draw(st.integers(min_value=0, max_value=len(delete) - 1))
        self.assertS3Error(self.delete_objects(delete[:cut]), 400, "MalformedXML")
        cut = data.draw(st.integers(min_value=0, max_value=len(complete) - 1))
        self.assertS3Error(self.complete(complete[:cut]), 400, "MalformedXML")
        self.assertUploadIntact()

    def test_non_ascii_digits(self) -> None:
        """Non-ASCII digits in part numbers and max-keys give S3 errors, not a 500."""
        for digit in ("\u00b2", "\u0661", "\uff11"):
            body = (
                f"<CompleteMultipartUpload><Part><PartNumber>{digit}</PartNumber>"
                '<ETag>"x"</ETag></Part></CompleteMultipartUpload>'
            ).encode()
            self.assertS3Error(self.complete(body), 400, "MalformedXML")
            quoted = quote(digit)
            response = self.h.send(signed_request("GET", f"/bkt?max-keys={quoted}"))
            self.assertS3Error(response, 400, "InvalidArgument")
            query = f"?partNumber={quoted}&uploadId={self.upload_id}"
            response = self.h.send(put_request("bkt", "mp", b"abc", query=query))
            self.assertS3Error(response, 400, "InvalidArgument")
        self.assertUploadIntact()

    def test_valid_documents_accepted(self) -> None:
        """The well-formed documents the hostile ones derive from are accepted."""
        response = self.delete_objects(b"<Delete><Object><Key>other</Key></Object></Delete>")
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(
            response.xml().tag, "{http://s3.amazonaws.com/doc/2006-03-01/}DeleteResult"
        )

    def test_oversized_document(self) -> None:
        """An XML body over the 4 MiB cap is refused before it is read."""
        target = "/bkt?delete"
        size = 4 * 1024 * 1024 + 1
        headers = sign(
            "POST",
            target,
            {"Content-Length": str(size), "Expect": "100-continue"},
            payload=b"x" * size,
        )
        conn = self.h.connect()
        conn.feed(serialise("POST", target, headers))
        response = conn.response()
        self.assertS3Error(response, 400, "MaxMessageLengthExceeded")
        self.assertEqual(response.interim, [])
        self.assertUploadIntact()


class RangeTests(ApiErrorTestCase):
    def get(self, range_header: str, method: str = "GET") -> Response:
        raw = signed_request(method, key_path("bkt", "obj"), headers={"Range": range_header})
        return self.h.send(raw, head=method == "HEAD")

    def test_unsatisfiable(self) -> None:
        """A range starting past the end, or a zero suffix, gives 416 InvalidRange."""
        for header in ("bytes=10-", "bytes=10-20", "bytes=999999999999999999999-", "bytes=-0"):
            with self.subTest(header):
                error = self.assertS3Error(self.get(header), 416, "InvalidRange")
                self.assertEqual(error.get("ActualObjectSize"), "10")
                self.assertS3Error(self.get(header, "HEAD"), 416, "InvalidRange", head=True)

    def test_ignored(self) -> None:
        """A malformed or multi-range header is ignored: 200 with the whole object."""
        for header in (
            "bytes=5-2",
            "bytes=a-b",
            "bytes=0-1,3-4",
            "items=0-1",
            "bytes=",
            "0-1",
            "bytes=-",
            "bytes=--1",
            "bytes=1-2-3",
        ):
            with self.subTest(header):
                response = self.get(header)
                self.assertEqual((response.status, response.body), (200, b"0123456789"))
                self.assertIsNone(response.header("content-range"))

    def test_satisfiable(self) -> None:
        """Satisfiable ranges give 206 with Content-Range and no full-object checksum."""
        for header, body, content_range in [
            ("bytes=0-0", b"0", "bytes 0-0/10"),
            ("bytes=2-5", b"2345", "bytes 2-5/10"),
            ("bytes=7-", b"789", "bytes 7-9/10"),
            ("bytes=8-100", b"89", "bytes 8-9/10"),
            ("bytes=-3", b"789", "bytes 7-9/10"),
            ("bytes=-30", b"0123456789", "bytes 0-9/10"),
        ]:
            with self.subTest(header):
                response = self.get(header)
                self.assertEqual((response.status, response.body), (206, body))
                self.assertEqual(response.header("content-range"), content_range)
                self.assertEqual(response.header("content-length"), str(len(body)))
                names = [k.lower() for k, _ in response.headers]
                self.assertFalse([n for n in names if n.startswith(b"x-amz-checksum-")])


class SubresourceTests(ApiErrorTestCase):
    def test_unknown_subresources(self) -> None:
        """?acl, ?policy and the rest give 501 NotImplemented (object ?tagging and bucket
        ?versions are implemented: tests/test_tagging.py, tests/test_versions.py)."""
        for sub in ("acl", "policy", "cors", "lifecycle", "torrent", "attributes", "restore"):
            for target in (f"/bkt?{sub}", f"/bkt/obj?{sub}", f"/bkt/obj?{sub}=&x=1"):
                for method in ("GET", "DELETE", "HEAD"):
                    with self.subTest(f"{method} {target}"):
                        response = self.h.send(
                            signed_request(method, target), head=method == "HEAD"
                        )
                        self.assertS3Error(response, 501, "NotImplemented", head=method == "HEAD")
                with self.subTest(f"PUT {target}"):
                    raw = signed_request("PUT", target, b"<Tagging/>", {"Expect": "100-continue"})
                    head, _ = split_head(raw)
                    conn = self.h.connect()
                    conn.feed(head)
                    response = conn.response()
                    self.assertS3Error(response, 501, "NotImplemented")
                    self.assertEqual(response.interim, [])
                    self.assertEqual(response.header("connection"), "close")
        self.assertEqual(self.h.get("bkt", "obj").body, b"0123456789")
        self.assertUnchanged()


class SignatureTests(ApiErrorTestCase):
    def check(self, raw: bytes, status: int, code: str) -> None:
        self.assertS3Error(self.h.send(raw), status, code)
        self.assertUnchanged()

    def test_missing(self) -> None:
        """A request without credentials gives 403 AccessDenied."""
        for method, target in [
            ("GET", "/"),
            ("GET", "/bkt"),
            ("GET", "/bkt/obj"),
            ("DELETE", "/bkt/obj"),
            ("PUT", "/newbucket"),
        ]:
            self.check(serialise(method, target, [("Host", "s3.test")]), 403, "AccessDenied")
        raw = serialise("PUT", "/bkt/new", [("Host", "s3.test"), ("Content-Length", "3")], b"abc")
        self.check(raw, 403, "AccessDenied")

    def test_wrong_secret(self) -> None:
        """A signature made with the wrong secret gives 403 SignatureDoesNotMatch."""
        headers = sign("GET", "/bkt/obj", secret_key="wrong secret")
        self.check(serialise("GET", "/bkt/obj", headers), 403, "SignatureDoesNotMatch")
        self.check(
            put_request("bkt", "new", b"abc", secret_key="wrong"), 403, "SignatureDoesNotMatch"
        )

    def test_unknown_access_key(self) -> None:
        """An unknown access key gives 403 InvalidAccessKeyId."""
        headers = sign("GET", "/bkt/obj", access_key="AKIDUNKNOWN000000000")
        self.check(serialise("GET", "/bkt/obj", headers), 403, "InvalidAccessKeyId")

    def test_forged(self) -> None:
        """A signed request altered afterwards gives 403 SignatureDoesNotMatch."""
        headers = sign("GET", "/bkt/obj")
        self.check(serialise("GET", "/bkt/other", headers), 403, "SignatureDoesNotMatch")
        self.check(serialise("DELETE", "/bkt/obj", headers), 403, "SignatureDoesNotMatch")
        self.check(serialise("GET", "/bkt/obj?acl=", headers), 501, "NotImplemented")
        self.check(serialise("GET", "/bkt/obj?x=1", headers), 403, "SignatureDoesNotMatch")
        meta = sign("PUT", "/bkt/new", {"x-amz-meta-a": "1", "Content-Length": "3"}, payload=b"abc")
        forged = [(k, "2" if k.lower() == "x-amz-meta-a" else v) for k, v in meta]
        self.check(serialise("PUT", "/bkt/new", forged, b"abc"), 403, "SignatureDoesNotMatch")
        auth = [(k, v[:-4] + "0000" if k == "Authorization" else v) for k, v in headers]
        self.check(serialise("GET", "/bkt/obj", auth), 403, "SignatureDoesNotMatch")

    def test_unsigned_amz_header(self) -> None:
        """An x-amz-* header added after signing gives 403 AccessDenied."""
        headers = [*sign("GET", "/bkt/obj"), ("x-amz-meta-late", "1")]
        self.check(serialise("GET", "/bkt/obj", headers), 403, "AccessDenied")

    def test_skewed(self) -> None:
        """A request signed an hour away from the server clock gives 403 RequestTimeTooSkewed."""
        import datetime

        for delta in (-1, 1):
            when = NOW + datetime.timedelta(hours=delta)
            headers = sign("GET", "/bkt/obj", when=when)
            self.check(serialise("GET", "/bkt/obj", headers), 403, "RequestTimeTooSkewed")

    def test_malformed_authorization(self) -> None:
        """A garbled Authorization header gives a 4xx S3 error, not a 500."""
        for value in (
            "AWS4-HMAC-SHA256",
            "AWS4-HMAC-SHA256 Credential=",
            "Bearer x",
            "\x7f",
            "AWS4-HMAC-SHA256 Credential=a/b/c/d/e, SignedHeaders=host, Signature=zz",
        ):
            headers = [
                (k, value if k == "Authorization" else v) for k, v in sign("GET", "/bkt/obj")
            ]
            response = self.h.send(serialise("GET", "/bkt/obj", headers))
            self.assertS3Error(response, response.status, response.error()["Code"])
            self.assertIn(response.status, (400, 403))


class MethodTests(ApiErrorTestCase):
    def test_unsupported_methods(self) -> None:
        """Methods an S3 resource does not support give 405 MethodNotAllowed XML."""
        for method, target in [
            ("PATCH", "/bkt/obj"),
            ("OPTIONS", "/bkt/obj"),
            ("BREW", "/bkt/obj"),
            ("POST", "/bkt/obj"),
            ("POST", "/bkt"),
            ("PATCH", "/bkt"),
            ("PUT", "/"),
            ("POST", "/"),
            ("DELETE", "/"),
        ]:
            with self.subTest(f"{method} {target}"):
                response = self.h.send(signed_request(method, target))
                error = self.assertS3Error(response, 405, "MethodNotAllowed")
                self.assertEqual(error.get("Method"), method)
        self.assertUnchanged()


class MissingResourceTests(ApiErrorTestCase):
    def test_no_such_key(self) -> None:
        """A GET for a missing key gives 404 NoSuchKey naming the key, resource and request."""
        response = self.h.get("bkt", "dir/missing key")
        error = self.assertS3Error(response, 404, "NoSuchKey")
        self.assertEqual(error.get("Key"), "dir/missing key")
        self.assertEqual(error.get("Resource"), "/bkt/dir/missing key")
        response = self.h.send(signed_request("HEAD", key_path("bkt", "missing")), head=True)
        self.assertS3Error(response, 404, "NoSuchKey", head=True)

    def test_no_such_bucket(self) -> None:
        """Requests on a missing bucket give 404 NoSuchBucket."""
        for method, target in [
            ("GET", "/nobucket"),
            ("GET", "/nobucket/k"),
            ("DELETE", "/nobucket"),
            ("DELETE", "/nobucket/k"),
        ]:
            with self.subTest(f"{method} {target}"):
                error = self.assertS3Error(
                    self.h.send(signed_request(method, target)), 404, "NoSuchBucket"
                )
                self.assertEqual(error.get("BucketName"), "nobucket")
        self.assertUnchanged()

    def test_no_such_upload(self) -> None:
        """Part operations on an unknown upload give 404 NoSuchUpload."""
        response = self.h.send(signed_request("GET", "/bkt/obj?uploadId=nope"))
        self.assertS3Error(response, 404, "NoSuchUpload")
        body = (
            b"<CompleteMultipartUpload><Part><ETag>x</ETag><PartNumber>1</PartNumber></Part>"
            b"</CompleteMultipartUpload>"
        )
        response = self.h.send(signed_request("POST", "/bkt/obj?uploadId=nope", body))
        self.assertS3Error(response, 404, "NoSuchUpload")
        target = "/bkt/obj?partNumber=1&uploadId=nope"
        headers = sign(
            "PUT", target, {"Content-Length": "3", "Expect": "100-continue"}, payload=b"abc"
        )
        conn = self.h.connect()
        conn.feed(split_head(serialise("PUT", target, headers, b"abc"))[0])
        response = conn.response()
        self.assertS3Error(response, 404, "NoSuchUpload")
        self.assertEqual(response.interim, [])
        self.assertUnchanged()

    @given(key=strategies.keys(controls=True, max_bytes=MAX_KEY_BYTES - len("missing/")))
    def test_error_documents_always_parse(self, key: str) -> None:
        """The NoSuchKey document parses as XML whatever characters the key holds."""
        response = self.h.get("bkt", "missing/" + key)
        self.assertS3Error(response, 404, "NoSuchKey")

    def test_non_utf8_path(self) -> None:
        """A path that is not UTF-8 once percent-decoded gives 400 InvalidURI XML."""
        for method in ("GET", "DELETE"):
            response = self.h.send(signed_request(method, "/bkt/%FF"))
            self.assertS3Error(response, 400, "InvalidURI")
        head, _ = split_head(put_request("bkt", "x", b"abc", expect=True))
        head = head.replace(b"PUT /bkt/x ", b"PUT /bkt/%C3%28 ", 1)
        conn = self.h.connect()
        conn.feed(head)
        response = conn.response()
        self.assertS3Error(response, 400, "InvalidURI")
        self.assertEqual(response.interim, [])
        self.assertUnchanged()

    def test_non_utf8_query(self) -> None:
        """A query that is not UTF-8 once percent-decoded gives 400 InvalidURI XML."""
        response = self.h.send(signed_request("GET", "/bkt?prefix=%FF"))
        self.assertS3Error(response, 400, "InvalidURI")


LIST_ARGUMENTS = [
    "list-type",
    "prefix",
    "delimiter",
    "marker",
    "start-after",
    "continuation-token",
    "max-keys",
    "encoding-type",
    "fetch-owner",
    "uploads",
    "key-marker",
    "upload-id-marker",
    "max-uploads",
    "location",
    "versioning",
]
printable = st.text(st.characters(codec="utf-8", exclude_categories=["Cc"]), max_size=12)


class ArgumentFuzzTests(ApiErrorTestCase):
    @given(
        args=st.dictionaries(
            st.sampled_from(LIST_ARGUMENTS),
            printable | st.sampled_from(["", "0", "2", "-1", "url", "1001", "x" * 20]),
            max_size=5,
        )
    )
    def test_bucket_get_arguments(self, args: dict[str, str]) -> None:
        """Any bucket GET arguments give a 200 XML document or a 4xx S3 error, never a 500."""
        query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in args.items())
        response = self.h.send(signed_request("GET", f"/bkt?{query}"))
        self.assertNotEqual(response.status, 500, response.body)
        root = response.xml()
        if response.status == 200:
            self.assertNotEqual(root.tag, "Error")
        else:
            self.assertS3Error(response, response.status, root.findtext("Code") or "?")
            self.assertTrue(400 <= response.status < 500)

    @given(
        number=printable | st.integers(-5, 10_005).map(str),
        upload_id=printable,
    )
    def test_part_arguments(self, number: str, upload_id: str) -> None:
        """Any partNumber / uploadId on UploadPart gives an S3 error before the body is read."""
        query = f"?partNumber={quote(number, safe='')}&uploadId={quote(upload_id, safe='')}"
        raw = put_request("bkt", "obj", b"abc", expect=True, query=query)
        conn = self.h.connect()
        conn.feed(split_head(raw)[0])
        response = conn.response()
        error = self.assertS3Error(response, response.status, response.error()["Code"])
        self.assertIn(error["Code"], ("InvalidArgument", "NoSuchUpload"))
        self.assertEqual(response.interim, [])
        self.assertUnchanged()
