# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Bucket-level and addressing features against a real ``twistd -n artifactd``, over plain HTTP
and TLS: object tagging, ListObjectVersions (and emptying a bucket through it), ListBuckets
paging, HeadBucket's region, ``fetch-owner``, 501 for what artifactd does not implement, the
request-head limits, and virtual-hosted-style addressing -- with boto3 and the AWS CLI."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from tests.e2e.support import Boto3TestCase, DaemonTestCase, MiB, random_file, run, scratch
from tests.e2e.test_awscli import AWS, AWS_CONFIG


class FeatureTestCase(Boto3TestCase):
    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.daemon.tls:
            return None
        return ssl.create_default_context(cafile=self.daemon.cert_path)

    def assertClientError(
        self, code: str, status: int, call: Callable[..., Any], **kwargs: Any
    ) -> ClientError:
        with self.assertRaises(ClientError) as caught:
            call(**kwargs)
        error = caught.exception.response
        self.assertEqual(
            (error["Error"]["Code"], error["ResponseMetadata"]["HTTPStatusCode"]),
            (code, status),
        )
        return caught.exception

    def raw_exchange(self, data: bytes) -> bytes:
        """Send ``data`` on a new connection and read until the server closes it (10 s at
        most: a hang fails the test)."""
        sock = socket.create_connection(("127.0.0.1", self.daemon.port), timeout=10)
        context = self.ssl_context()
        if context is not None:
            sock = context.wrap_socket(sock, server_hostname="localhost")
        with sock:
            # the server may close before taking everything: its answer is what counts
            with contextlib.suppress(OSError):
                sock.sendall(data)
            chunks = []
            while True:
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


class TaggingTests(FeatureTestCase):
    """Object tagging with boto3."""

    def tags(self, bucket: str, key: str) -> list[dict[str, str]]:
        tag_set: list[dict[str, str]] = self.s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
        return tag_set

    def test_object_tagging(self) -> None:
        """put_object(Tagging=...), get/put/delete_object_tagging and TagCount round-trip."""
        bucket = self.new_bucket()
        self.s3.put_object(
            Bucket=bucket, Key="a/b", Body=b"x", Tagging="project=artifactd&stage=beta%20one"
        )
        self.assertEqual(
            self.tags(bucket, "a/b"),
            [{"Key": "project", "Value": "artifactd"}, {"Key": "stage", "Value": "beta one"}],
        )
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="a/b")["TagCount"], 2)
        head = self.s3.head_object(Bucket=bucket, Key="a/b")
        self.assertEqual(head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"], "2")
        tag_set = [{"Key": "ключ", "Value": "значение"}, {"Key": "empty", "Value": ""}]
        self.s3.put_object_tagging(Bucket=bucket, Key="a/b", Tagging={"TagSet": tag_set})
        self.assertEqual(self.tags(bucket, "a/b"), sorted(tag_set, key=lambda t: t["Key"]))
        deleted = self.s3.delete_object_tagging(Bucket=bucket, Key="a/b")
        self.assertEqual(deleted["ResponseMetadata"]["HTTPStatusCode"], 204)
        self.assertEqual(self.tags(bucket, "a/b"), [])
        self.assertNotIn("TagCount", self.s3.get_object(Bucket=bucket, Key="a/b"))

    def test_tagging_errors(self) -> None:
        """Over-limit and malformed tags are refused as S3 refuses them; nothing changes."""
        bucket = self.new_bucket()
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"x", Tagging="keep=1")
        eleven = [{"Key": f"k{i}", "Value": "v"} for i in range(11)]
        for tag_set, code in [
            (eleven, "BadRequest"),
            ([{"Key": "k", "Value": "1"}, {"Key": "k", "Value": "2"}], "InvalidTag"),
            ([{"Key": "aws:reserved", "Value": "1"}], "InvalidTag"),
            ([{"Key": "k" * 129, "Value": "1"}], "InvalidTag"),
        ]:
            self.assertClientError(
                code,
                400,
                self.s3.put_object_tagging,
                Bucket=bucket,
                Key="k",
                Tagging={"TagSet": tag_set},
            )
        self.assertClientError(
            "InvalidArgument", 400, self.s3.put_object, Bucket=bucket, Key="k", Tagging="a=1&a=2"
        )
        self.assertClientError(
            "NoSuchKey", 404, self.s3.get_object_tagging, Bucket=bucket, Key="missing"
        )
        self.assertEqual(self.tags(bucket, "k"), [{"Key": "keep", "Value": "1"}])
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="k")["Body"].read(), b"x")

    def test_multipart_upload_with_tagging(self) -> None:
        """upload_file in parts with ExtraArgs Tagging tags the completed object."""
        bucket = self.new_bucket()
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big")
            random_file(path, 12 * MiB)
            self.s3.upload_file(
                path,
                bucket,
                "big",
                ExtraArgs={"Tagging": "kind=artifact"},
                Config=TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB),
            )
        self.assertEqual(self.tags(bucket, "big"), [{"Key": "kind", "Value": "artifact"}])
        self.assertTrue(self.s3.head_object(Bucket=bucket, Key="big")["ETag"].endswith('-3"'))


class VersionsAndListingTests(FeatureTestCase):
    """ListObjectVersions, ListBuckets paging, HeadBucket region, fetch-owner."""

    def test_list_object_versions(self) -> None:
        """Every object is one version, VersionId null and latest; the paginator pages."""
        bucket = self.new_bucket()
        keys = [f"dir/{i:02d}" for i in range(7)] + ["top"]
        for key in keys:
            self.s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        pages = list(
            self.s3.get_paginator("list_object_versions").paginate(
                Bucket=bucket, PaginationConfig={"PageSize": 3}
            )
        )
        self.assertEqual(len(pages), 3)
        versions = [v for page in pages for v in page.get("Versions", [])]
        self.assertEqual([v["Key"] for v in versions], keys)
        self.assertTrue(all(v["VersionId"] == "null" and v["IsLatest"] for v in versions))
        self.assertFalse(any("DeleteMarkers" in page for page in pages))
        grouped = self.s3.list_object_versions(Bucket=bucket, Delimiter="/")
        self.assertEqual([p["Prefix"] for p in grouped["CommonPrefixes"]], ["dir/"])
        self.assertEqual([v["Key"] for v in grouped["Versions"]], ["top"])

    def test_empty_bucket_through_versions(self) -> None:
        """boto3's bucket.object_versions.delete() empties the bucket, which then deletes."""
        bucket_name = self.new_bucket()
        for i in range(25):
            self.s3.put_object(Bucket=bucket_name, Key=f"k/{i}", Body=b"x")
        resource = boto3.resource(
            "s3",
            endpoint_url=self.daemon.endpoint_url,
            aws_access_key_id=self.daemon.credentials()[0],
            aws_secret_access_key=self.daemon.credentials()[1],
            region_name="us-east-1",
            verify=self.daemon.cert_path if self.daemon.tls else None,
            config=BotoConfig(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        bucket = resource.Bucket(bucket_name)
        deleted = bucket.object_versions.page_size(10).delete()
        self.assertEqual(sum(len(r.get("Deleted", [])) for r in deleted), 25)
        self.assertFalse(any(r.get("Errors") for r in deleted))
        self.assertEqual(self.s3.list_objects_v2(Bucket=bucket_name)["KeyCount"], 0)
        bucket.delete()
        self.assertClientError("404", 404, self.s3.head_bucket, Bucket=bucket_name)

    def test_list_buckets_paginator(self) -> None:
        """The ListBuckets paginator with Prefix and a page size finds each bucket once."""
        stem = self.bucket_name()
        names = [f"{stem}-{i}" for i in range(3)]
        for name in names:
            self.s3.create_bucket(Bucket=name)
        pages = list(
            self.s3.get_paginator("list_buckets").paginate(
                Prefix=stem, PaginationConfig={"PageSize": 1}
            )
        )
        self.assertEqual([b["Name"] for p in pages for b in p["Buckets"]], names)
        self.assertEqual(len(pages), 3)
        self.assertTrue(all(p["Prefix"] == stem for p in pages))
        self.assertTrue(all(b["BucketRegion"] == "us-east-1" for p in pages for b in p["Buckets"]))
        self.assertEqual(self.s3.list_buckets(BucketRegion="eu-west-3", Prefix=stem)["Buckets"], [])

    def test_head_bucket_region(self) -> None:
        """HeadBucket reports x-amz-bucket-region, and so does its 404."""
        bucket = self.new_bucket()
        found = self.s3.head_bucket(Bucket=bucket)
        self.assertEqual(found["BucketRegion"], "us-east-1")
        error = self.assertClientError("404", 404, self.s3.head_bucket, Bucket=bucket + "-none")
        headers = error.response["ResponseMetadata"]["HTTPHeaders"]
        self.assertEqual(headers["x-amz-bucket-region"], "us-east-1")

    def test_fetch_owner(self) -> None:
        """ListObjectsV2 lists owners with FetchOwner=True only."""
        bucket = self.new_bucket()
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        plain = self.s3.list_objects_v2(Bucket=bucket)["Contents"][0]
        self.assertNotIn("Owner", plain)
        owned = self.s3.list_objects_v2(Bucket=bucket, FetchOwner=True)["Contents"][0]
        self.assertEqual(owned["Owner"]["ID"], "artifactd")


class UnsupportedTests(FeatureTestCase):
    """What artifactd does not implement is 501 NotImplemented in S3 XML."""

    def test_not_implemented(self) -> None:
        """A spread of unsupported operations each fail with NotImplemented (501)."""
        bucket = self.new_bucket()
        self.s3.put_object(Bucket=bucket, Key="k", Body=b"x")
        policy = json.dumps({"Version": "2012-10-17", "Statement": []})
        lifecycle = {
            "Rules": [{"ID": "r", "Status": "Enabled", "Filter": {}, "Expiration": {"Days": 1}}]
        }
        calls: list[tuple[Callable[..., Any], dict[str, Any]]] = [
            (self.s3.put_bucket_policy, {"Bucket": bucket, "Policy": policy}),
            (self.s3.get_bucket_acl, {"Bucket": bucket}),
            (self.s3.put_object_acl, {"Bucket": bucket, "Key": "k", "ACL": "private"}),
            (
                self.s3.get_object_attributes,
                {"Bucket": bucket, "Key": "k", "ObjectAttributes": ["ETag"]},
            ),
            (self.s3.restore_object, {"Bucket": bucket, "Key": "k", "RestoreRequest": {"Days": 1}}),
            (
                self.s3.put_bucket_lifecycle_configuration,
                {"Bucket": bucket, "LifecycleConfiguration": lifecycle},
            ),
            (self.s3.get_bucket_cors, {"Bucket": bucket}),
            (self.s3.put_bucket_tagging, {"Bucket": bucket, "Tagging": {"TagSet": []}}),
            (self.s3.get_bucket_tagging, {"Bucket": bucket}),
            (
                self.s3.put_bucket_versioning,
                {"Bucket": bucket, "VersioningConfiguration": {"Status": "Enabled"}},
            ),
            (
                self.s3.select_object_content,
                {
                    "Bucket": bucket,
                    "Key": "k",
                    "Expression": "select * from s3object",
                    "ExpressionType": "SQL",
                    "InputSerialization": {"CSV": {}},
                    "OutputSerialization": {"CSV": {}},
                },
            ),
        ]
        for call, kwargs in calls:
            with self.subTest(call.__name__):
                self.assertClientError("NotImplemented", 501, call, **kwargs)
        # WriteGetObjectResponse goes to <route>.<endpoint>; without the host prefix it reaches
        # the daemon as POST /WriteGetObjectResponse.
        plain = self.daemon.client(inject_host_prefix=False)
        self.assertClientError(
            "NotImplemented",
            501,
            plain.write_get_object_response,
            RequestRoute="route",
            RequestToken="token",
            Body=b"x",
        )
        self.assertEqual(self.s3.get_object(Bucket=bucket, Key="k")["Body"].read(), b"x")


class HeadLimitTests(FeatureTestCase):
    """Request heads bigger than twisted's 16 KiB default, up to the configured limit."""

    def test_long_presigned_url(self) -> None:
        """A presigned GET URL over 16 KiB (long key, response-* overrides) downloads."""
        bucket = self.new_bucket()
        key = "鍵/" * 250  # 1000 bytes of UTF-8, 2250 characters percent-encoded
        self.s3.put_object(Bucket=bucket, Key=key, Body=b"payload")
        disposition = 'attachment; filename="' + "f" * 14000 + '"'
        presigner = self.daemon.client(signature_version="s3v4")
        url = presigner.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": bucket,
                "Key": key,
                "ResponseContentDisposition": disposition,
                "ResponseContentType": "application/x-artifact",
            },
        )
        self.assertGreater(len(url), 16384)
        with urllib.request.urlopen(url, context=self.ssl_context(), timeout=10) as response:
            self.assertEqual(response.read(), b"payload")
            self.assertEqual(response.headers["Content-Disposition"], disposition)

    def test_metadata_in_many_headers(self) -> None:
        """2 KB of user metadata in 80 headers, with a head over 16 KiB, round-trips.  (80:
        Python's http.client refuses a response with more than 100 header lines.)"""
        bucket = self.new_bucket()
        metadata = {f"m{i:02d}": f"{i:02d}" * 11 for i in range(80)}  # 80 * 25 = 2000 bytes
        disposition = "inline; filename=" + "n" * 15000
        self.s3.put_object(
            Bucket=bucket, Key="k", Body=b"x", Metadata=metadata, ContentDisposition=disposition
        )
        head = self.s3.head_object(Bucket=bucket, Key="k")
        self.assertEqual(head["Metadata"], metadata)
        self.assertEqual(head["ContentDisposition"], disposition)

    def test_over_the_limit(self) -> None:
        """A head over the limit is answered 400 RequestHeaderSectionTooLarge, then closed."""
        head = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Pad: " + b"p" * 70000 + b"\r\n\r\n"
        answer = self.raw_exchange(head)
        status, _, rest = answer.partition(b"\r\n")
        self.assertEqual(status, b"HTTP/1.1 400 Bad Request")
        self.assertIn(b"<Code>RequestHeaderSectionTooLarge</Code>", rest)
        self.assertIn(b"<MaxSizeAllowed>65536</MaxSizeAllowed>", rest)


class CliTests(FeatureTestCase):
    """``aws s3api`` tagging and version listing."""

    def setUp(self) -> None:
        super().setUp()
        self.env = self.daemon.client_env()
        config = self.env["AWS_CONFIG_FILE"]
        if not os.path.exists(config):
            with open(config, "w", encoding="utf-8") as f:
                f.write(AWS_CONFIG)

    def api(self, *args: str) -> Any:
        out = run(
            [AWS, "--endpoint-url", self.daemon.endpoint_url, "s3api", *args], self.env
        ).stdout
        return json.loads(out) if out.strip() else None

    def test_cli_tagging_and_versions(self) -> None:
        """put-object-tagging, get-object-tagging and list-object-versions."""
        bucket = self.new_bucket()
        self.api("put-object", "--bucket", bucket, "--key", "a b", "--tagging", "one=1")
        self.assertEqual(
            self.api("get-object-tagging", "--bucket", bucket, "--key", "a b")["TagSet"],
            [{"Key": "one", "Value": "1"}],
        )
        self.api(
            "put-object-tagging",
            "--bucket",
            bucket,
            "--key",
            "a b",
            "--tagging",
            "TagSet=[{Key=env,Value=prod},{Key=team,Value=build}]",
        )
        self.assertEqual(
            self.api("get-object-tagging", "--bucket", bucket, "--key", "a b")["TagSet"],
            [{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "build"}],
        )
        listed = self.api("list-object-versions", "--bucket", bucket)
        self.assertEqual(
            [(v["Key"], v["VersionId"], v["IsLatest"]) for v in listed["Versions"]],
            [("a b", "null", True)],
        )
        self.api("delete-object-tagging", "--bucket", bucket, "--key", "a b")
        self.assertEqual(
            self.api("get-object-tagging", "--bucket", bucket, "--key", "a b")["TagSet"], []
        )


class TaggingTLSTests(TaggingTests):
    tls = True


class VersionsAndListingTLSTests(VersionsAndListingTests):
    tls = True


class UnsupportedTLSTests(UnsupportedTests):
    tls = True


class HeadLimitTLSTests(HeadLimitTests):
    tls = True


class CliTLSTests(CliTests):
    tls = True


# ------------------------------------------------------------------- virtual-hosted style
VHOST_CONFIG = '[server]\nvirtual_host_domains = ["localhost"]\n'


def resolve_to_loopback(request: Any, **kwargs: Any) -> None:
    """botocore ``before-send`` hook: connect to 127.0.0.1 whatever the URL's host, as a DNS
    wildcard ``*.localhost -> 127.0.0.1`` would (this machine resolves no ``<bucket>.localhost``).
    botocore has already put the Host header (``<bucket>.localhost:port``) on the request and
    signed it; urllib3 sends that header instead of one from the URL."""
    parts = urlsplit(request.url)
    assert any(k.lower() == "host" for k in request.headers), "botocore sets Host itself"
    request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))


class VirtualHostTests(DaemonTestCase):
    """boto3 with ``addressing_style: virtual`` against a daemon configured with
    ``virtual_host_domains = ["localhost"]``: requests go to ``<bucket>.localhost:port``."""

    config_toml = VHOST_CONFIG

    def setUp(self) -> None:
        super().setUp()
        access, secret = self.daemon.credentials()
        self.vs3 = boto3.client(
            "s3",
            endpoint_url=f"{'https' if self.daemon.tls else 'http'}://localhost:{self.daemon.port}",
            aws_access_key_id=access,
            aws_secret_access_key=secret,
            region_name="us-east-1",
            verify=self.daemon.cert_path if self.daemon.tls else None,
            config=BotoConfig(
                s3={"addressing_style": "virtual"},
                retries={"max_attempts": 1},
                signature_version="s3v4",  # presigned URLs too
            ),
        )
        self.hosts: list[str] = []

        def record(request: Any, **kwargs: Any) -> None:
            headers = {k.lower(): v for k, v in request.headers.items()}
            host = headers["host"]
            self.hosts.append(host.decode() if isinstance(host, bytes) else host)

        self.vs3.meta.events.register("before-send.s3", record)
        self.vs3.meta.events.register("before-send.s3", resolve_to_loopback)
        self.s3 = self.daemon.client()  # path-style, beside it

    def test_virtual_hosted_round_trip(self) -> None:
        """Create, put, get, list, multipart upload and delete by Host; path-style sees the
        same bucket and objects."""
        bucket = self.bucket_name()
        port = self.daemon.port
        self.vs3.create_bucket(Bucket=bucket)
        self.assertEqual(self.hosts[-1], f"{bucket}.localhost:{port}")
        self.vs3.put_object(Bucket=bucket, Key="dir/a+b c", Body=b"virtual")
        self.assertEqual(
            self.vs3.get_object(Bucket=bucket, Key="dir/a+b c")["Body"].read(), b"virtual"
        )
        self.assertEqual(
            self.s3.get_object(Bucket=bucket, Key="dir/a+b c")["Body"].read(), b"virtual"
        )
        listed = self.vs3.list_objects_v2(Bucket=bucket, Prefix="dir/")
        self.assertEqual([o["Key"] for o in listed["Contents"]], ["dir/a+b c"])
        with scratch(self.daemon.workdir) as tmp:
            path = os.path.join(tmp, "big")
            random_file(path, 11 * MiB)
            self.vs3.upload_file(
                path, bucket, "big", Config=TransferConfig(multipart_threshold=5 * MiB)
            )
        self.assertEqual(self.s3.head_object(Bucket=bucket, Key="big")["ContentLength"], 11 * MiB)
        self.vs3.put_object_tagging(
            Bucket=bucket, Key="big", Tagging={"TagSet": [{"Key": "via", "Value": "vhost"}]}
        )
        self.assertEqual(
            self.s3.get_object_tagging(Bucket=bucket, Key="big")["TagSet"],
            [{"Key": "via", "Value": "vhost"}],
        )
        self.vs3.delete_objects(
            Bucket=bucket, Delete={"Objects": [{"Key": "big"}, {"Key": "dir/a+b c"}]}
        )
        self.assertEqual(self.s3.list_objects_v2(Bucket=bucket)["KeyCount"], 0)
        self.vs3.delete_bucket(Bucket=bucket)
        self.assertTrue(all(h == f"{bucket}.localhost:{port}" for h in self.hosts))
        names = [b["Name"] for b in self.vs3.list_buckets()["Buckets"]]
        self.assertNotIn(bucket, names)
        self.assertEqual(self.hosts[-1], f"localhost:{port}")

    def test_presigned_virtual_hosted_url(self) -> None:
        """A presigned URL for <bucket>.localhost works when sent there (Host signed)."""
        bucket = self.bucket_name()
        self.vs3.create_bucket(Bucket=bucket)
        self.vs3.put_object(Bucket=bucket, Key="k", Body=b"signed")
        url = self.vs3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "k"})
        parts = urlsplit(url)
        self.assertEqual(parts.hostname, f"{bucket}.localhost")
        loopback = urlunsplit(parts._replace(netloc=f"127.0.0.1:{parts.port}"))
        request = urllib.request.Request(loopback, headers={"Host": parts.netloc})
        context = (
            ssl.create_default_context(cafile=self.daemon.cert_path) if self.daemon.tls else None
        )
        with urllib.request.urlopen(request, context=context, timeout=10) as response:
            self.assertEqual(response.read(), b"signed")


class VirtualHostTLSTests(VirtualHostTests):
    tls = True
