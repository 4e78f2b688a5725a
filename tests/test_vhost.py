"""Virtual-hosted-style addressing: the Host header's bucket (:mod:`artifactd.http.vhost`), the
target it gives, and requests addressed that way through the real site, beside path-style."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.config import Config
from artifactd.http.actions import parse_target
from artifactd.http.vhost import bucket_from_host
from tests import strategies
from tests.http_harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Harness,
    Response,
    key_path,
    serialise,
    sign,
    signed_request,
)

DOMAIN = "s3.test"  # the harness's own Host, so path-style requests keep working
domains = st.sampled_from(["s3.test", "localhost", "s3.eu.example.com", "x.io"])


class BucketFromHostTests(SynchronousTestCase):
    @given(
        bucket=strategies.bucket_names(),
        domain=domains,
        port=st.sampled_from(["", ":80", ":9000"]),
        upper=st.booleans(),
        dot=st.booleans(),
    )
    def test_bucket_subdomain(
        self, bucket: str, domain: str, port: str, upper: bool, dot: bool
    ) -> None:
        """``<bucket>.<domain>`` with any port, case and trailing dot names the bucket."""
        host = f"{bucket}.{domain}{'.' if dot else ''}{port}"
        self.assertEqual(bucket_from_host(host.upper() if upper else host, [domain]), bucket)

    def test_path_style_hosts(self) -> None:
        """No Host, a Host equal to or outside the domains, an IP literal: path-style."""
        for host, configured in [
            (None, ["s3.test"]),
            ("", ["s3.test"]),
            ("s3.test", ["s3.test"]),
            ("s3.test:9000", ["s3.test"]),
            ("bkt.s3.test", []),
            ("bkt.other.test", ["s3.test"]),
            ("bkts3.test", ["s3.test"]),
            ("127.0.0.1:9000", ["s3.test"]),
            ("[::1]:9000", ["s3.test"]),
            (".s3.test", ["s3.test"]),
        ]:
            self.assertIsNone(bucket_from_host(host, configured), host)

    def test_longest_domain_wins(self) -> None:
        """With nested domains, the bucket is the part before the longest one that matches."""
        both = ["example.com", "s3.example.com"]
        self.assertEqual(bucket_from_host("bkt.s3.example.com", both), "bkt")
        self.assertEqual(bucket_from_host("a.b.example.com", both), "a.b")

    def test_target(self) -> None:
        """With a Host bucket the whole path below base_path is the key (``/`` is the bucket
        itself), percent-decoded once, slashes kept."""
        for uri, base, key in [
            ("/", "", None),
            ("/?list-type=2", "", None),
            ("/k", "", "k"),
            ("/a/b%2Fc", "", "a/b/c"),
            ("//lead", "", "/lead"),
            ("/dir/", "", "dir/"),
            ("/s3/k", "/s3", "k"),
            ("/s3", "/s3", None),
        ]:
            target, raw_path, _ = parse_target(uri.encode(), base, "bkt")
            self.assertEqual((target.bucket, target.key), ("bkt", key), uri)
            self.assertEqual(raw_path, uri.partition("?")[0].encode())


class VirtualHostApiTests(SynchronousTestCase):
    def setUp(self) -> None:
        config = Config(
            data_dir="unused",
            virtual_host_domains=(DOMAIN, "s3.example.com"),
            root_access_key=ACCESS_KEY,
            root_secret_key=SECRET_KEY,
        )
        self.h = Harness(self.mktemp(), config=config)

    def vsend(
        self, method: str, host: str, target: str, body: bytes = b"", head: bool = False
    ) -> Response:
        """A request signed by botocore for ``host`` (the canonical URI is the raw path)."""
        return self.h.send(signed_request(method, target, body, {"Host": host}), head=head)

    def test_object_round_trip(self) -> None:
        """CreateBucket, PutObject, GetObject, ListObjectsV2, HeadBucket and DeleteObject
        addressed by Host; the same bucket and object are reachable path-style."""
        host = f"photos.{DOMAIN}"
        self.assertEqual(self.vsend("PUT", host, "/").status, 200)
        self.assertIsNotNone(self.h.meta.get_bucket("photos"))
        self.assertEqual(self.vsend("PUT", host, "/a%20b/c+d", b"data").status, 200)
        self.assertEqual(self.vsend("GET", host, "/a%20b/c+d").body, b"data")
        self.assertEqual(self.h.get("photos", "a b/c+d").body, b"data")
        listing = self.vsend("GET", host, "/?list-type=2").xml()
        keys = [k.text for k in listing.iter("{http://s3.amazonaws.com/doc/2006-03-01/}Key")]
        self.assertEqual(keys, ["a b/c+d"])
        head = self.vsend("HEAD", f"PHOTOS.{DOMAIN}:9000", "/", head=True)
        self.assertEqual((head.status, head.header("x-amz-bucket-region")), (200, "us-east-1"))
        self.assertEqual(self.vsend("DELETE", host, "/a%20b/c+d").status, 204)
        self.assertIsNone(self.h.meta.get_object("photos", "a b/c+d"))

    def test_other_domain_and_path_style(self) -> None:
        """Every configured domain addresses buckets; a Host equal to a domain is path-style."""
        self.h.create_bucket("bkt")  # path-style, Host s3.test
        self.assertEqual(self.vsend("PUT", "bkt.s3.example.com", "/k", b"1").status, 200)
        self.assertEqual(self.vsend("GET", "s3.example.com", key_path("bkt", "k")).body, b"1")
        self.assertEqual(self.vsend("GET", "bkt.s3.test", "/k").body, b"1")

    def test_errors_name_the_bucket(self) -> None:
        """A Host naming a missing bucket gives NoSuchBucket for that bucket."""
        r = self.vsend("GET", f"nope.{DOMAIN}", "/k")
        self.assertEqual((r.status, r.error()["Code"]), (404, "NoSuchBucket"))
        self.assertEqual(r.error()["BucketName"], "nope")

    def test_host_is_signed(self) -> None:
        """Moving a signed request to another bucket's Host breaks its signature."""
        self.h.create_bucket("one")
        self.h.create_bucket("two")
        headers = sign("GET", "/", {"Host": f"one.{DOMAIN}"})
        moved = [(k, f"two.{DOMAIN}" if k.lower() == "host" else v) for k, v in headers]
        r = self.h.send(serialise("GET", "/", moved))
        self.assertEqual((r.status, r.error()["Code"]), (403, "SignatureDoesNotMatch"))

    def test_without_configuration(self) -> None:
        """Without virtual_host_domains a bucket-looking Host is ignored: path-style."""
        h = Harness(self.mktemp())
        h.create_bucket("kkk")
        r = h.send(signed_request("GET", "/kkk", headers={"Host": "bkt.s3.test"}))
        self.assertEqual(r.status, 200)
        self.assertEqual(r.xml().findtext("{http://s3.amazonaws.com/doc/2006-03-01/}Name"), "kkk")
