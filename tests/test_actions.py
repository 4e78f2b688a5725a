"""Request classification (:mod:`artifactd.http.actions`): how a raw URI becomes a bucket, key and
query, and which S3 action a request is."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.actions import UNSUPPORTED_SUBRESOURCES, Target, classify, parse_target
from tests import strategies


def target(uri: str, base_path: str = "") -> Target:
    return parse_target(uri.encode(), base_path)[0]


class ParseTargetTests(SynchronousTestCase):
    def test_shapes(self) -> None:
        """``/``, ``/b``, ``/b/`` and ``/b/k`` address the service, the bucket and the object."""
        for uri, bucket, key in [
            ("/", None, None),
            ("/bkt", "bkt", None),
            ("/bkt/", "bkt", None),
            ("/bkt/k", "bkt", "k"),
            ("/bkt?list-type=2", "bkt", None),
            ("/bkt/?list-type=2", "bkt", None),
        ]:
            t = target(uri)
            self.assertEqual((t.bucket, t.key), (bucket, key), uri)

    def test_slashes_kept(self) -> None:
        """``//``, leading, trailing and repeated slashes in keys are kept as sent."""
        for uri, key in [
            ("/bkt/a//b", "a//b"),
            ("/bkt/dir/", "dir/"),
            ("/bkt//lead", "/lead"),
            ("/bkt///", "//"),
            ("/bkt/a/./b/../c", "a/./b/../c"),
            ("/bkt/..%2F..%2Fetc", "../../etc"),
        ]:
            self.assertEqual(target(uri).key, key, uri)

    def test_percent_decoded_once(self) -> None:
        """%2F becomes ``/`` and %25 becomes ``%``, exactly once."""
        self.assertEqual(target("/bkt/a%2Fb").key, "a/b")
        self.assertEqual(target("/bkt/a%252Fb").key, "a%2Fb")
        self.assertEqual(target("/bkt/100%25").key, "100%")
        self.assertEqual(target("/bkt/%E6%97%A5%20x").key, "日 x")
        self.assertEqual(target("/b%6Bt/k").bucket, "bkt")

    def test_plus_is_plus(self) -> None:
        """``+`` is a literal plus in paths and queries (never a space); %2B is a plus too."""
        self.assertEqual(target("/bkt/a+b").key, "a+b")
        self.assertEqual(target("/bkt/a%2Bb").key, "a+b")
        self.assertEqual(target("/bkt?prefix=a+b").query["prefix"], "a+b")
        self.assertEqual(target("/bkt?prefix=a%2Bb%20c").query["prefix"], "a+b c")

    def test_query(self) -> None:
        """Query names without ``=`` are present with an empty value; the first value wins."""
        t = target("/bkt/k?uploads&x=1&x=2&&y=&acl")
        self.assertEqual(dict(t.query), {"uploads": "", "x": "1", "y": "", "acl": ""})

    def test_raw_parts_returned(self) -> None:
        """The raw path and query come back unchanged (SigV4 is checked against them)."""
        _, raw_path, raw_query = parse_target(b"/bkt/a%2Fb+c?prefix=x%2By&list-type=2", "")
        self.assertEqual((raw_path, raw_query), (b"/bkt/a%2Fb+c", b"prefix=x%2By&list-type=2"))
        _, raw_path, raw_query = parse_target(b"/s3/bkt/k?a", "/s3")
        self.assertEqual((raw_path, raw_query), (b"/s3/bkt/k", b"a"))

    def test_invalid_uri(self) -> None:
        """A path or query that is not UTF-8 once decoded, or a relative path, is InvalidURI."""
        for uri in (b"/bkt/%FF", b"/%C3%28", b"/bkt?prefix=%FF", b"/bkt?%FE=1", b"bkt/k", b"*"):
            self.assertRaises(errors.InvalidURI, parse_target, uri, "")

    def test_base_path(self) -> None:
        """Below a base path the same shapes apply; other paths are refused."""
        for base in ("/s3", "/s3/"):
            self.assertEqual((target("/s3", base).bucket, target("/s3", base).key), (None, None))
            self.assertIsNone(target("/s3/", base).bucket)
            self.assertEqual(target("/s3/bkt", base).bucket, "bkt")
            t = target("/s3/bkt/a//b/", base)
            self.assertEqual((t.bucket, t.key), ("bkt", "a//b/"))
            for uri in ("/", "/bkt/k", "/s3x/bkt", "/other/s3/bkt"):
                self.assertRaises(errors.NoSuchBucket, parse_target, uri.encode(), base)
        nested = target("/api/s3/bkt/k", "/api/s3")
        self.assertEqual((nested.bucket, nested.key), ("bkt", "k"))

    def test_resource(self) -> None:
        """A target's resource is the S3 resource string."""
        self.assertEqual(target("/").resource, "/")
        self.assertEqual(target("/bkt").resource, "/bkt")
        self.assertEqual(target("/bkt/a//b").resource, "/bkt/a//b")

    @given(
        bucket=strategies.bucket_names(),
        key=strategies.keys(controls=True),
        safe=st.sampled_from(["/~", "/", "", "~"]),
        base=st.sampled_from(["", "/s3", "/a/b"]),
    )
    def test_round_trip(self, bucket: str, key: str, safe: str, base: str) -> None:
        """Any key, percent-encoded the way any client does it, parses back to itself."""
        uri = f"{base}/{bucket}/{quote(key, safe=safe)}"
        t = target(uri, base)
        self.assertEqual((t.bucket, t.key), (bucket, key))

    @given(name=st.text(min_size=1, max_size=20), value=st.text(max_size=20))
    def test_query_round_trip(self, name: str, value: str) -> None:
        """Any query name and value, percent-encoded, parse back to themselves."""
        t = target(f"/bkt?{quote(name, safe='')}={quote(value, safe='')}")
        self.assertEqual(dict(t.query), {name: value})


NO_HEADERS: dict[str, str] = {}
COPY = {"x-amz-copy-source": "/src/k"}

# (method, uri, headers, expected action)
ACTIONS = [
    ("GET", "/", NO_HEADERS, "ListBuckets"),
    ("HEAD", "/", NO_HEADERS, "ListBuckets"),
    ("PUT", "/bkt", NO_HEADERS, "CreateBucket"),
    ("PUT", "/bkt/", NO_HEADERS, "CreateBucket"),
    ("HEAD", "/bkt", NO_HEADERS, "HeadBucket"),
    ("DELETE", "/bkt", NO_HEADERS, "DeleteBucket"),
    ("GET", "/bkt?location", NO_HEADERS, "GetBucketLocation"),
    ("GET", "/bkt?versioning", NO_HEADERS, "GetBucketVersioning"),
    ("GET", "/bkt", NO_HEADERS, "ListObjects"),
    ("GET", "/bkt?prefix=a&delimiter=/", NO_HEADERS, "ListObjects"),
    ("GET", "/bkt?list-type=1", NO_HEADERS, "ListObjects"),
    ("GET", "/bkt?list-type=2", NO_HEADERS, "ListObjectsV2"),
    ("GET", "/bkt/?list-type=2&prefix=a%2F", NO_HEADERS, "ListObjectsV2"),
    ("GET", "/bkt?uploads", NO_HEADERS, "ListMultipartUploads"),
    ("POST", "/bkt?delete", NO_HEADERS, "DeleteObjects"),
    ("PUT", "/bkt/k", NO_HEADERS, "PutObject"),
    ("PUT", "/bkt/dir/", NO_HEADERS, "PutObject"),
    ("GET", "/bkt/k", NO_HEADERS, "GetObject"),
    ("GET", "/bkt/k?partNumber=1", NO_HEADERS, "GetObject"),
    ("GET", "/bkt/k?response-content-type=x", NO_HEADERS, "GetObject"),
    ("HEAD", "/bkt/k", NO_HEADERS, "HeadObject"),
    ("DELETE", "/bkt/k", NO_HEADERS, "DeleteObject"),
    ("POST", "/bkt/k?uploads", NO_HEADERS, "CreateMultipartUpload"),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", NO_HEADERS, "UploadPart"),
    ("PUT", "/bkt/k?uploadId=u&partNumber=10000", NO_HEADERS, "UploadPart"),
    ("POST", "/bkt/k?uploadId=u", NO_HEADERS, "CompleteMultipartUpload"),
    ("DELETE", "/bkt/k?uploadId=u", NO_HEADERS, "AbortMultipartUpload"),
    ("GET", "/bkt/k?uploadId=u", NO_HEADERS, "ListParts"),
    ("GET", "/bkt/k?uploadId=u&max-parts=2", NO_HEADERS, "ListParts"),
    ("PUT", "/bkt/k", COPY, "CopyObject"),
    ("PUT", "/bkt/k?partNumber=1&uploadId=u", COPY, "UploadPartCopy"),
]

# (method, uri, headers, expected error class)
REFUSED: list[tuple[str, str, dict[str, str], type[errors.S3Error]]] = [
    ("PUT", "/", NO_HEADERS, errors.MethodNotAllowed),
    ("POST", "/", NO_HEADERS, errors.MethodNotAllowed),
    ("DELETE", "/", NO_HEADERS, errors.MethodNotAllowed),
    ("POST", "/bkt", NO_HEADERS, errors.MethodNotAllowed),
    ("PATCH", "/bkt", NO_HEADERS, errors.MethodNotAllowed),
    ("POST", "/bkt/k", NO_HEADERS, errors.MethodNotAllowed),
    ("PATCH", "/bkt/k", NO_HEADERS, errors.MethodNotAllowed),
    ("OPTIONS", "/bkt/k", NO_HEADERS, errors.MethodNotAllowed),
    ("PUT", "/bkt?versioning", NO_HEADERS, errors.NotImplementedError_),
]


class ClassifyTests(SynchronousTestCase):
    def test_actions(self) -> None:
        """Each S3 request shape classifies as its action."""
        for method, uri, headers, action in ACTIONS:
            self.assertEqual(classify(method, target(uri), headers), action, f"{method} {uri}")

    def test_refused(self) -> None:
        """Unsupported methods give MethodNotAllowed; unsupported features NotImplemented."""
        for method, uri, headers, error in REFUSED:
            e = self.assertRaises(error, classify, method, target(uri), headers)
            self.assertIn(e.status, (405, 501), f"{method} {uri}")
            if error is errors.MethodNotAllowed:
                self.assertEqual(e.extra["Method"], method)

    def test_unsupported_subresources(self) -> None:
        """Every unsupported sub-resource, with any method, is NotImplemented."""
        for sub in sorted(UNSUPPORTED_SUBRESOURCES):
            for uri in (f"/bkt?{sub}", f"/bkt/k?{sub}", f"/bkt/k?{sub}=x&uploadId=u"):
                for method in ("GET", "HEAD", "PUT", "POST", "DELETE"):
                    e = self.assertRaises(
                        errors.NotImplementedError_, classify, method, target(uri), NO_HEADERS
                    )
                    self.assertEqual((e.code, e.status), ("NotImplemented", 501))
        for sub in ("acl", "policy", "attributes", "restore", "select"):
            self.assertIn(sub, UNSUPPORTED_SUBRESOURCES)

    def test_subresource_names_are_exact(self) -> None:
        """Only the exact query name counts: ``?aclx`` or a value ``acl`` is a plain request."""
        self.assertEqual(classify("GET", target("/bkt/k?aclx"), NO_HEADERS), "GetObject")
        self.assertEqual(classify("GET", target("/bkt?prefix=acl"), NO_HEADERS), "ListObjects")
