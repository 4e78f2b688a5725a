"""Object tagging: the pure codecs and limits (:mod:`artifactd.http.tagging`), the tags on the
object record, and Put/Get/DeleteObjectTagging and ``x-amz-tagging`` through the real site."""

from __future__ import annotations

import json
import re
from urllib.parse import quote, quote_plus, urlencode

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http import tagging
from artifactd.records import ObjectRecord
from artifactd.storage import keys
from artifactd.testing import ManualRunner
from tests import strategies  # noqa: F401  (hypothesis profiles)
from tests.http_harness import (
    Harness,
    Response,
    key_path,
    put_request,
    signed_request,
    split_head,
)
from tests.test_api_errors import hostile_documents

WIDE = "\U00020000"  # a CJK letter outside the BMP: two UTF-16 code units
# Characters S3 allows in tag keys and values, in every class the rule names.
_TAG_CHARS = st.sampled_from([*"aZ09_.:/=+@- ", "é", "ключ", "鍵", "٣", "\u2003", WIDE])
tag_keys = (
    st.lists(_TAG_CHARS, min_size=1, max_size=20)
    .map("".join)
    .filter(lambda k: not k.startswith("aws:"))
)
tag_values = st.lists(_TAG_CHARS, max_size=30).map("".join)
tag_sets = st.dictionaries(tag_keys, tag_values, max_size=tagging.MAX_TAGS)


def document(pairs: list[tuple[str, str]], namespace: bool = True) -> bytes:
    ns = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"' if namespace else ""
    tags = "".join(f"<Tag><Key>{k}</Key><Value>{v}</Value></Tag>" for k, v in pairs)
    return f"<Tagging{ns}><TagSet>{tags}</TagSet></Tagging>".encode()


class HeaderTests(SynchronousTestCase):
    @given(tags=tag_sets, plus=st.booleans())
    def test_round_trip(self, tags: dict[str, str], plus: bool) -> None:
        """Any valid tag set, URL-encoded as clients encode it (``%20`` or ``+`` for a space),
        parses back to itself, in key order."""
        raw = urlencode(tags, quote_via=quote_plus if plus else quote).encode()
        self.assertEqual(tagging.parse_header(raw), tuple(sorted(tags.items())))

    def test_forms(self) -> None:
        """Empty pairs are skipped, a key alone has the empty value, ``+`` is a space."""
        for raw, tags in [
            (b"", ()),
            (b"&&", ()),
            (b"k", (("k", ""),)),
            (b"k=", (("k", ""),)),
            (b"b=2&&a=1&", (("a", "1"), ("b", "2"))),
            (b"a+b=c%20d", (("a b", "c d"),)),
            (b"k=a%3Db", (("k", "a=b"),)),
            (b"%E9%8D%B5=%F0%A0%80%80", (("鍵", WIDE),)),
        ]:
            self.assertEqual(tagging.parse_header(raw), tags, raw)

    def test_malformed(self) -> None:
        """An empty key, a second ``=``, bad UTF-8 and a repeated key are InvalidArgument with
        S3's message."""
        for raw in (b"=v", b"a=b=c", b"a=1&a=2", b"a&a", b"%ff=1", b"k=%C3"):
            e = self.assertRaises(errors.InvalidArgument, tagging.parse_header, raw)
            self.assertEqual(e.message, tagging.HEADER_ERROR, raw)


class LimitTests(SynchronousTestCase):
    def test_count(self) -> None:
        """Ten tags are allowed; eleven are 400 BadRequest."""
        ten = [(f"k{i}", "v") for i in range(10)]
        self.assertEqual(len(tagging.check_tags(ten)), 10)
        e = self.assertRaises(errors.BadRequest, tagging.check_tags, [*ten, ("k10", "v")])
        self.assertEqual((e.status, e.message), (400, "Object tags cannot be greater than 10"))

    def test_lengths_in_utf16_units(self) -> None:
        """Keys up to 128 and values up to 256 UTF-16 code units; an emoji counts two."""
        for key, value in [("k" * 128, "v"), (WIDE * 64, "v"), ("k", "v" * 256), ("k", WIDE * 128)]:
            self.assertEqual(tagging.check_tags([(key, value)]), ((key, value),))
        for key, value, which in [
            ("k" * 129, "v", "TagKey"),
            (WIDE * 64 + "k", "v", "TagKey"),
            ("k", "v" * 257, "TagValue"),
            ("k", WIDE * 128 + "v", "TagValue"),
        ]:
            e = self.assertRaises(errors.InvalidTag, tagging.check_tags, [(key, value)])
            self.assertIn(which, e.message)

    def test_characters(self) -> None:
        """Letters, numbers and spaces of any script and ``_ . : / = + @ -`` are allowed;
        anything else, an empty key and the reserved ``aws:`` prefix are InvalidTag."""
        ok = [("ключ 鍵 ٣", "a_b.c:d/e=f+g@h-i"), ("AWS:upper", "")]
        self.assertEqual(tagging.check_tags(ok), tuple(sorted(ok)))
        for key, value in [
            ("", "v"),
            ("aws:thing", "v"),
            ("a,b", "v"),
            ("k", "<v>"),
            ("k", "tab\there"),
            ("k", "new\nline"),
            ("k&", "v"),
            ("k", "(x)"),
            ("k", "\U0001f600"),  # an emoji is a symbol, not a letter
        ]:
            self.assertRaises(errors.InvalidTag, tagging.check_tags, [(key, value)])


class DocumentTests(SynchronousTestCase):
    @given(tags=tag_sets)
    def test_round_trip(self, tags: dict[str, str]) -> None:
        """The GetObjectTagging document of any tag set parses back to the same set."""
        ordered = tuple(sorted(tags.items()))
        self.assertEqual(tagging.parse_document(tagging.document(ordered)), ordered)

    def test_shapes(self) -> None:
        """With or without S3's namespace; an empty TagSet is the empty tag set."""
        pairs = [("b", "2"), ("a", "")]
        for namespace in (True, False):
            self.assertEqual(
                tagging.parse_document(document(pairs, namespace)), (("a", ""), ("b", "2"))
            )
        self.assertEqual(tagging.parse_document(b"<Tagging><TagSet/></Tagging>"), ())

    def test_malformed(self) -> None:
        """Documents not of the Tagging shape are MalformedXML; a repeated key is InvalidTag."""
        for body in (
            b"<Tagging/>",
            b"<Tagging><TagSet/><TagSet/></Tagging>",
            b"<Tagging><TagSet/><Extra/></Tagging>",
            b"<Tagging><TagSet><Tag><Key>k</Key></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Tag><Value>v</Value></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Tag><Key>k</Key><Value>v</Value><X/></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Tag><Key><b>k</b></Key><Value>v</Value></Tag></TagSet></Tagging>",
            b"<Tagging><TagSet><Other/></TagSet></Tagging>",
            b"<Tags><TagSet/></Tags>",
            *(
                body
                for name, body in hostile_documents("Tagging", "TagSet", "Tag").items()
                if name != "item without field"  # an empty TagSet: valid, no tags
            ),
        ):
            self.assertRaises(errors.MalformedXML, tagging.parse_document, body)
        e = self.assertRaises(
            errors.InvalidTag, tagging.parse_document, document([("k", "1"), ("k", "2")])
        )
        self.assertEqual(e.message, "Cannot provide multiple Tags with the same key")


class RecordTests(SynchronousTestCase):
    def test_codec(self) -> None:
        """Tags survive the object and upload codecs; records written before tags existed
        decode with none."""
        record = ObjectRecord("b", "k", 1, "e", "s", 1.0, tags=(("a", "1"), ("b", "")))
        self.assertEqual(keys.decode_object(keys.encode_object(record)), record)
        old = json.loads(keys.encode_object(record))
        del old["tags"]
        self.assertEqual(keys.decode_object(json.dumps(old).encode()).tags, ())


class TaggingApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        self.assertEqual(self.h.send(put_request("bkt", "obj", b"0123456789")).status, 200)

    def send(self, method: str, target: str, body: bytes = b"") -> Response:
        return self.h.send(signed_request(method, target, body), head=method == "HEAD")

    def tags(self, key: str = "obj") -> tuple[tuple[str, str], ...]:
        record = self.h.meta.get_object("bkt", key)
        assert record is not None
        return record.tags

    def assertError(self, response: Response, status: int, code: str) -> None:
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.error()["Code"], code)

    def test_put_get_delete(self) -> None:
        """PutObjectTagging replaces the set (200), GetObjectTagging returns it in key order,
        DeleteObjectTagging removes it (204); the object's bytes are untouched."""
        target = key_path("bkt", "obj") + "?tagging"
        empty = self.send("GET", target)
        self.assertEqual(empty.status, 200)
        self.assertEqual([el.tag.split("}")[1] for el in empty.xml().iter()], ["Tagging", "TagSet"])
        self.assertEqual(self.send("PUT", target, document([("z", "26"), ("a", "1")])).status, 200)
        got = self.send("GET", target)
        self.assertEqual(got.header("content-type"), "application/xml")
        self.assertEqual(tagging.parse_document(got.body), (("a", "1"), ("z", "26")))
        self.assertEqual(self.send("PUT", target, document([("n", "")])).status, 200)
        self.assertEqual(self.tags(), (("n", ""),))
        deleted = self.send("DELETE", target)
        self.assertEqual((deleted.status, deleted.body), (204, b""))
        self.assertEqual(self.tags(), ())
        self.assertEqual(self.h.get("bkt", "obj").body, b"0123456789")

    def test_tagging_count(self) -> None:
        """GET and HEAD answer x-amz-tagging-count when the object has tags, and not otherwise."""
        self.assertIsNone(self.h.get("bkt", "obj").header("x-amz-tagging-count"))
        self.send("PUT", key_path("bkt", "obj") + "?tagging", document([("a", "1"), ("b", "2")]))
        self.assertEqual(self.h.get("bkt", "obj").header("x-amz-tagging-count"), "2")
        head = self.send("HEAD", key_path("bkt", "obj"))
        self.assertEqual(head.header("x-amz-tagging-count"), "2")

    def test_put_object_with_tagging(self) -> None:
        """x-amz-tagging on PutObject tags the new object; overwriting without it clears them."""
        r = self.h.send(put_request("bkt", "t", b"x", headers={"x-amz-tagging": "b=2&a=one+1"}))
        self.assertEqual(r.status, 200)
        self.assertEqual(self.tags("t"), (("a", "one 1"), ("b", "2")))
        self.assertEqual(self.h.send(put_request("bkt", "t", b"y")).status, 200)
        self.assertEqual(self.tags("t"), ())

    def test_bad_tagging_header_refused_before_body(self) -> None:
        """A malformed or over-limit x-amz-tagging is refused from the head (no 100 Continue,
        nothing staged) and the existing object is unchanged."""
        for value, status, code in [
            ("a=1&a=2", 400, "InvalidArgument"),
            ("k=<>", 400, "InvalidTag"),
            ("&".join(f"k{i}=v" for i in range(11)), 400, "BadRequest"),
        ]:
            raw = put_request("bkt", "obj", b"new", headers={"x-amz-tagging": value}, expect=True)
            head, _ = split_head(raw)
            conn = self.h.connect()
            conn.feed(head)
            response = conn.response()
            self.assertError(response, status, code)
            self.assertEqual(response.interim, [])
        self.assertEqual(self.h.blobs.staging_opened, 1)  # the setUp PUT only
        self.assertEqual(self.h.get("bkt", "obj").body, b"0123456789")
        self.assertEqual(self.tags(), ())

    def test_multipart_tags_at_completion(self) -> None:
        """x-amz-tagging on CreateMultipartUpload is kept on the upload and given to the object
        when it completes; a bad one refuses the upload."""
        target = key_path("bkt", "mp")
        created = self.h.send(
            signed_request("POST", target + "?uploads", headers={"x-amz-tagging": "stage=beta"})
        )
        self.assertEqual(created.status, 200)
        upload_id = created.xml().findtext("{*}UploadId")
        assert upload_id is not None
        part = self.h.send(
            put_request("bkt", "mp", b"part", query=f"?partNumber=1&uploadId={upload_id}")
        )
        body = (
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber>"
            f"<ETag>{part.header('etag')}</ETag></Part></CompleteMultipartUpload>"
        ).encode()
        done = self.h.send(signed_request("POST", f"{target}?uploadId={upload_id}", body))
        self.assertEqual(done.status, 200, done.body)
        self.assertEqual(self.tags("mp"), (("stage", "beta"),))
        refused = self.h.send(
            signed_request("POST", target + "?uploads", headers={"x-amz-tagging": "=x"})
        )
        self.assertError(refused, 400, "InvalidArgument")
        self.assertEqual(self.h.meta.list_uploads("bkt", "", "", "", "", 10).uploads, ())

    def test_errors(self) -> None:
        """Missing object or bucket, bad documents and bad tags are S3 errors; the tags stay."""
        self.send("PUT", key_path("bkt", "obj") + "?tagging", document([("keep", "1")]))
        target = key_path("bkt", "obj") + "?tagging"
        for method, path, body, status, code in [
            ("GET", key_path("bkt", "nope") + "?tagging", b"", 404, "NoSuchKey"),
            ("PUT", key_path("bkt", "nope") + "?tagging", document([]), 404, "NoSuchKey"),
            ("DELETE", key_path("bkt", "nope") + "?tagging", b"", 404, "NoSuchKey"),
            ("GET", key_path("nobkt", "obj") + "?tagging", b"", 404, "NoSuchBucket"),
            ("PUT", target, b"<Tagging>", 400, "MalformedXML"),
            ("PUT", target, b"", 400, "MalformedXML"),
            ("PUT", target, document([("aws:x", "1")]), 400, "InvalidTag"),
            ("PUT", target, document([(f"k{i}", "v") for i in range(11)]), 400, "BadRequest"),
            ("PUT", target, document([("k", "1"), ("k", "2")]), 400, "InvalidTag"),
            ("GET", target + "&versionId=3HL4kqtJlcpXroDTDmJ", b"", 400, "InvalidArgument"),
            ("PUT", key_path("bkt") + "?tagging", document([]), 501, "NotImplemented"),
            ("GET", key_path("bkt") + "?tagging", b"", 501, "NotImplemented"),
            ("DELETE", key_path("bkt") + "?tagging", b"", 501, "NotImplemented"),
        ]:
            with self.subTest(f"{method} {path}"):
                self.assertError(self.send(method, path, body), status, code)
        self.assertEqual(self.tags(), (("keep", "1"),))

    def test_null_version(self) -> None:
        """versionId=null names the one version of an object in a never-versioned bucket."""
        target = key_path("bkt", "obj") + "?tagging&versionId=null"
        self.assertEqual(self.send("PUT", target, document([("v", "null")])).status, 200)
        self.assertEqual(tagging.parse_document(self.send("GET", target).body), (("v", "null"),))

    def test_commit_in_disk_pool(self) -> None:
        """PutObjectTagging writes through the engine's disk pool: nothing changes until the
        pool runs the batch."""
        runner = ManualRunner()
        h = Harness(self.mktemp(), runner=runner)
        h.create_bucket("bkt")
        h.send(put_request("bkt", "obj", b"x"))
        conn = h.connect()
        conn.feed(signed_request("PUT", key_path("bkt", "obj") + "?tagging", document([("a", "")])))
        self.assertEqual(len(runner.pending), 1)
        record = h.meta.get_object("bkt", "obj")
        assert record is not None
        self.assertEqual(record.tags, ())
        h.settle()
        self.assertEqual(conn.response().status, 200)
        record = h.meta.get_object("bkt", "obj")
        assert record is not None
        self.assertEqual(record.tags, (("a", ""),))

    def test_error_document_escapes_echoed_tags(self) -> None:
        """An invalid tag echoed in the error document keeps the document well-formed."""
        bad = "k\x01"
        raw = f"{quote(bad)}=1".encode()
        e = self.assertRaises(errors.InvalidTag, tagging.parse_header, raw)
        self.assertEqual(e.extra["TagKey"], bad)
        r = self.h.send(put_request("bkt", "o2", b"x", headers={"x-amz-tagging": raw.decode()}))
        self.assertError(r, 400, "InvalidTag")
        self.assertTrue(re.search(rb"<TagKey>k%01</TagKey>", r.body), r.body)
