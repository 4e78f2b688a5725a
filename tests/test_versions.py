"""Versions in never-versioned buckets: ListObjectVersions (every object one ``null`` version),
``versionId`` on object requests and ``VersionId`` in DeleteObjects, through the real site."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from urllib.parse import quote, unquote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.versioning import check_version_id, check_version_marker
from tests import strategies  # noqa: F401  (hypothesis profiles)
from tests.http_harness import Harness, Response, key_path, put_request, signed_request

S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def text(el: ET.Element, name: str) -> str | None:
    return el.findtext(S3 + name)


class VersionIdTests(SynchronousTestCase):
    def test_check_version_id(self) -> None:
        """No versionId and ``null`` pass; anything else, the empty string included, is 400
        InvalidArgument."""
        check_version_id({})
        check_version_id({"versionId": "null"})
        for value in ("", "NULL", "3HL4kqtJlcpXroDTDmJ", "null "):
            e = self.assertRaises(errors.InvalidArgument, check_version_id, {"versionId": value})
            self.assertEqual(e.extra["ArgumentName"], "versionId")

    def test_check_version_marker(self) -> None:
        """version-id-marker needs a key-marker, and can only be ``null``."""
        check_version_marker("", "")
        check_version_marker("k", "")
        check_version_marker("k", "null")
        self.assertRaises(errors.InvalidArgument, check_version_marker, "", "null")
        self.assertRaises(errors.InvalidArgument, check_version_marker, "k", "abc")


class VersionsApiTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")

    def put(self, *keys: str) -> None:
        for key in keys:
            self.assertEqual(self.h.send(put_request("bkt", key, key.encode())).status, 200)

    def versions(self, query: str = "") -> Response:
        return self.h.send(signed_request("GET", "/bkt?versions" + query))

    def assertError(self, response: Response, status: int, code: str) -> None:
        self.assertEqual(response.status, status, response.body)
        self.assertEqual(response.error()["Code"], code)


class ListObjectVersionsTests(VersionsApiTestCase):
    def test_shape(self) -> None:
        """Each object is one Version: VersionId null, IsLatest true, its ETag, size and owner;
        there are no delete markers."""
        self.put("a", "b/c")
        r = self.versions()
        self.assertEqual(r.status, 200)
        root = r.xml()
        self.assertEqual(root.tag, S3 + "ListVersionsResult")
        self.assertEqual(
            [(text(root, n) or "") for n in ("Name", "Prefix", "KeyMarker", "VersionIdMarker")],
            ["bkt", "", "", ""],
        )
        self.assertEqual((text(root, "MaxKeys"), text(root, "IsTruncated")), ("1000", "false"))
        self.assertIsNone(root.find(S3 + "NextKeyMarker"))
        self.assertEqual(root.findall(S3 + "DeleteMarker"), [])
        versions = root.findall(S3 + "Version")
        self.assertEqual([text(v, "Key") for v in versions], ["a", "b/c"])
        for v in versions:
            record = self.h.meta.get_object("bkt", text(v, "Key") or "")
            assert record is not None
            self.assertEqual(text(v, "VersionId"), "null")
            self.assertEqual(text(v, "IsLatest"), "true")
            self.assertEqual(text(v, "ETag"), f'"{record.etag}"')
            self.assertEqual(text(v, "Size"), str(record.size))
            self.assertEqual(text(v, "StorageClass"), "STANDARD")
            self.assertIsNotNone(v.find(f"{S3}Owner/{S3}ID"))

    @given(
        keys=st.lists(st.text(alphabet="ab/é", min_size=1, max_size=4), unique=True, max_size=8),
        page=st.integers(1, 4),
        delimiter=st.sampled_from(["", "/"]),
        prefix=st.sampled_from(["", "a", "b/"]),
    )
    def test_pages_cover_the_listing(
        self, keys: list[str], page: int, delimiter: str, prefix: str
    ) -> None:
        """Following NextKeyMarker/NextVersionIdMarker page by page yields exactly what one
        ListObjectsV2 lists (keys and common prefixes), in order, each once."""
        h = self.h = Harness(self.mktemp())
        h.create_bucket("bkt")
        self.put(*keys)
        base = f"&prefix={quote(prefix, safe='')}&delimiter={quote(delimiter, safe='')}"
        whole = h.send(signed_request("GET", "/bkt?list-type=2&max-keys=1000" + base)).xml()
        expected = [text(c, "Key") for c in whole.findall(S3 + "Contents")]
        expected_prefixes = [text(c, "Prefix") for c in whole.findall(S3 + "CommonPrefixes")]
        seen: list[str | None] = []
        prefixes: list[str | None] = []
        marker = ""
        for _ in range(len(keys) + 2):
            root = self.versions(f"&max-keys={page}{base}{marker}").xml()
            got = root.findall(S3 + "Version") + root.findall(S3 + "CommonPrefixes")
            self.assertLessEqual(len(got), page)
            seen.extend(text(v, "Key") for v in root.findall(S3 + "Version"))
            prefixes.extend(text(c, "Prefix") for c in root.findall(S3 + "CommonPrefixes"))
            if text(root, "IsTruncated") != "true":
                self.assertIsNone(root.find(S3 + "NextKeyMarker"))
                break
            next_key = text(root, "NextKeyMarker") or ""
            marker = f"&key-marker={quote(next_key, safe='')}"
            if root.find(S3 + "NextVersionIdMarker") is not None:
                self.assertEqual(text(root, "NextVersionIdMarker"), "null")
                marker += "&version-id-marker=null"
        else:
            self.fail("the pages never ended")
        self.assertEqual(seen, expected)
        self.assertEqual(sorted(prefixes, key=lambda p: (p or "").encode()), expected_prefixes)

    def test_url_encoding(self) -> None:
        """encoding-type=url encodes keys, prefix, delimiter and markers."""
        self.put("a b/1", "a b/2", "c+d")
        root = self.versions("&encoding-type=url&max-keys=1&key-marker=a%20b%2F1").xml()
        self.assertEqual(text(root, "EncodingType"), "url")
        self.assertEqual(text(root, "KeyMarker"), "a%20b/1")
        self.assertEqual([text(v, "Key") for v in root.findall(S3 + "Version")], ["a%20b/2"])
        self.assertEqual(text(root, "NextKeyMarker"), "a%20b/2")
        root = self.versions("&encoding-type=url&delimiter=%2F").xml()
        prefixes = [text(c, "Prefix") for c in root.findall(S3 + "CommonPrefixes")]
        self.assertEqual(prefixes, ["a%20b/"])
        self.assertEqual(
            [unquote(text(v, "Key") or "") for v in root.findall(S3 + "Version")], ["c+d"]
        )

    def test_common_prefix_page_end(self) -> None:
        """A page that ends on a common prefix names it as NextKeyMarker without a version id
        marker, and the next page starts after everything under it."""
        self.put("a/1", "a/2", "b")
        root = self.versions("&delimiter=/&max-keys=1").xml()
        self.assertEqual(text(root, "NextKeyMarker"), "a/")
        self.assertIsNone(root.find(S3 + "NextVersionIdMarker"))
        root = self.versions("&delimiter=/&max-keys=1&key-marker=a/").xml()
        self.assertEqual([text(v, "Key") for v in root.findall(S3 + "Version")], ["b"])

    def test_errors(self) -> None:
        """Bad markers and arguments are 400; a missing bucket 404; other methods, and
        ?versions on an object, 501."""
        self.put("k")
        for query, code in [
            ("&version-id-marker=null", "InvalidArgument"),
            ("&key-marker=k&version-id-marker=abc", "InvalidArgument"),
            ("&max-keys=-1", "InvalidArgument"),
            ("&encoding-type=xml", "InvalidArgument"),
        ]:
            with self.subTest(query):
                self.assertError(self.versions(query), 400, code)
        self.assertError(self.h.send(signed_request("GET", "/nobkt?versions")), 404, "NoSuchBucket")
        for method, target in [
            ("PUT", "/bkt?versions"),
            ("DELETE", "/bkt?versions"),
            ("GET", "/bkt/k?versions"),
        ]:
            self.assertError(self.h.send(signed_request(method, target)), 501, "NotImplemented")
        root = self.versions("&key-marker=k&version-id-marker=null").xml()
        self.assertEqual(root.findall(S3 + "Version"), [])


class VersionIdApiTests(VersionsApiTestCase):
    def test_object_requests(self) -> None:
        """GET, HEAD and DELETE take versionId=null as the object itself; another id is 400
        InvalidArgument and deletes nothing."""
        self.put("k")
        target = key_path("bkt", "k")
        self.assertEqual(self.h.send(signed_request("GET", target + "?versionId=null")).body, b"k")
        head = self.h.send(signed_request("HEAD", target + "?versionId=null"), head=True)
        self.assertEqual(head.status, 200)
        for method in ("GET", "DELETE"):
            for value in ("abc", ""):
                r = self.h.send(signed_request(method, f"{target}?versionId={value}"))
                self.assertError(r, 400, "InvalidArgument")
        self.assertIsNotNone(self.h.meta.get_object("bkt", "k"))
        deleted = self.h.send(signed_request("DELETE", target + "?versionId=null"))
        self.assertEqual(deleted.status, 204)
        self.assertIsNone(self.h.meta.get_object("bkt", "k"))

    def test_delete_objects_with_version_ids(self) -> None:
        """DeleteObjects deletes keys given VersionId null and echoes it; another VersionId is
        that key's InvalidArgument error, and the key stays."""
        self.put("a", "b", "c")
        body = (
            b"<Delete><Object><Key>a</Key><VersionId>null</VersionId></Object>"
            b"<Object><Key>b</Key><VersionId>bogus</VersionId></Object>"
            b"<Object><Key>c</Key></Object></Delete>"
        )
        r = self.h.send(signed_request("POST", "/bkt?delete", body))
        self.assertEqual(r.status, 200, r.body)
        root = r.xml()
        deleted = [(text(d, "Key"), text(d, "VersionId")) for d in root.findall(S3 + "Deleted")]
        self.assertEqual(deleted, [("a", "null"), ("c", None)])
        (error,) = root.findall(S3 + "Error")
        self.assertEqual(
            (text(error, "Key"), text(error, "VersionId"), text(error, "Code")),
            ("b", "bogus", "InvalidArgument"),
        )
        self.assertIsNotNone(self.h.meta.get_object("bkt", "b"))
        self.assertIsNone(self.h.meta.get_object("bkt", "a"))
