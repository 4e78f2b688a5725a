"""ListBuckets with S3's paging arguments, HeadBucket's ``x-amz-bucket-region`` and
ListObjectsV2's ``fetch-owner``, through the real site."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.config import Config
from artifactd.http.handlers.buckets import page_buckets
from artifactd.records import Bucket
from tests import strategies  # noqa: F401  (hypothesis profiles)
from tests.http_harness import ACCESS_KEY, SECRET_KEY, Harness, Response, signed_request

S3 = "{http://s3.amazonaws.com/doc/2006-03-01/}"
names = st.lists(st.text(alphabet="abc-", min_size=3, max_size=5), unique=True, max_size=12)


class PageBucketsTests(SynchronousTestCase):
    @given(names=names, limit=st.integers(1, 5), prefix=st.sampled_from(["", "a", "ab", "z"]))
    def test_pages_cover_the_list(self, names: list[str], limit: int, prefix: str) -> None:
        """Following the continuation tokens lists every bucket with the prefix once, in name
        order, at most max-buckets a page; the token is absent on the last page."""
        buckets = [Bucket(n, 1.0) for n in sorted(names)]
        seen: list[str] = []
        query = {"max-buckets": str(limit), "prefix": prefix}
        for _ in range(len(names) + 1):
            page, token = page_buckets(buckets, query, "us-east-1")
            self.assertLessEqual(len(page), limit)
            seen.extend(b.name for b in page)
            if token is None:
                break
            self.assertEqual(len(page), limit)
            query["continuation-token"] = token
        self.assertEqual(seen, [n for n in sorted(names) if n.startswith(prefix)])

    def test_without_paging_arguments(self) -> None:
        """Without any paging argument every bucket is listed, with no token."""
        buckets = [Bucket(f"b{i:05d}", 1.0) for i in range(10050)]
        self.assertEqual(page_buckets(buckets, {}, "r"), (buckets, None))
        page, token = page_buckets(buckets, {"prefix": ""}, "r")
        self.assertEqual((len(page), token is not None), (10000, True))

    def test_region(self) -> None:
        """bucket-region lists the buckets when it names the server's region, none otherwise."""
        buckets = [Bucket("one", 1.0)]
        self.assertEqual(page_buckets(buckets, {"bucket-region": "r"}, "r"), (buckets, None))
        self.assertEqual(page_buckets(buckets, {"bucket-region": "other"}, "r"), ([], None))

    def test_bad_arguments(self) -> None:
        """max-buckets outside 1..10000 and undecodable tokens are InvalidArgument."""
        for query in (
            {"max-buckets": "0"},
            {"max-buckets": "10001"},
            {"max-buckets": "x"},
            {"continuation-token": "!!"},
            {"continuation-token": "__8="},
        ):
            self.assertRaises(errors.InvalidArgument, page_buckets, [], query, "r")


class ListBucketsApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        for name in ("alpha", "beta", "bravo", "charlie"):
            self.h.create_bucket(name)

    def list(self, query: str = "") -> Response:
        return self.h.send(signed_request("GET", "/" + query))

    def test_paged_response(self) -> None:
        """max-buckets and prefix page the list; ContinuationToken and Prefix are answered;
        every bucket names its region."""
        r = self.list("?max-buckets=1&prefix=b")
        self.assertEqual(r.status, 200)
        root = r.xml()
        self.assertEqual([n.text for n in root.iter(S3 + "Name")], ["beta"])
        self.assertEqual(root.findtext(S3 + "Prefix"), "b")
        self.assertEqual([n.text for n in root.iter(S3 + "BucketRegion")], ["us-east-1"])
        token = root.findtext(S3 + "ContinuationToken")
        assert token is not None
        r = self.list(f"?max-buckets=1&prefix=b&continuation-token={quote(token, safe='')}")
        root = r.xml()
        self.assertEqual([n.text for n in root.iter(S3 + "Name")], ["bravo"])
        self.assertIsNone(root.find(S3 + "ContinuationToken"))

    def test_unpaged(self) -> None:
        """A plain ListBuckets lists everything, without ContinuationToken or Prefix."""
        root = self.list().xml()
        self.assertEqual(
            [n.text for n in root.iter(S3 + "Name")], ["alpha", "beta", "bravo", "charlie"]
        )
        self.assertIsNone(root.find(S3 + "ContinuationToken"))
        self.assertIsNone(root.find(S3 + "Prefix"))

    def test_bad_arguments(self) -> None:
        """A bad max-buckets or token is 400 InvalidArgument in S3 XML."""
        for query in ("?max-buckets=0", "?max-buckets=abc", "?continuation-token=%25%25"):
            r = self.list(query)
            self.assertEqual((r.status, r.error()["Code"]), (400, "InvalidArgument"), query)


class RegionAndOwnerTests(SynchronousTestCase):
    def test_head_bucket_region(self) -> None:
        """HeadBucket answers x-amz-bucket-region with the configured region, on 200 and on
        404."""
        config = Config(
            data_dir="unused",
            region="eu-central-2",
            root_access_key=ACCESS_KEY,
            root_secret_key=SECRET_KEY,
        )
        h = Harness(self.mktemp(), config=config)
        h.create_bucket("bkt")
        found = h.send(signed_request("HEAD", "/bkt"), head=True)
        self.assertEqual((found.status, found.header("x-amz-bucket-region")), (200, "eu-central-2"))
        missing = h.send(signed_request("HEAD", "/nobkt"), head=True)
        self.assertEqual(
            (missing.status, missing.header("x-amz-bucket-region")), (404, "eu-central-2")
        )

    def test_fetch_owner(self) -> None:
        """ListObjectsV2 lists owners only with fetch-owner=true; ListObjects (v1) always."""
        h = Harness(self.mktemp())
        h.create_bucket("bkt")
        h.send(signed_request("PUT", "/bkt/k", b"x"))
        for query, owners in [
            ("?list-type=2", 0),
            ("?list-type=2&fetch-owner=false", 0),
            ("?list-type=2&fetch-owner=true", 1),
            ("", 1),
        ]:
            root = h.send(signed_request("GET", "/bkt" + query)).xml()
            self.assertEqual(len(root.findall(f"{S3}Contents/{S3}Owner")), owners, query)
