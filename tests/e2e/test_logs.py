# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The daemon's JSON log, seen from outside: one structured access event per request, whose id
the client received, and no secrets."""

from __future__ import annotations

import json
import ssl
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from botocore import UNSIGNED
from botocore.exceptions import ClientError

from tests.e2e.support import DaemonTestCase, boto3_client

ACCESS_FIELDS = {
    "request_id",
    "method",
    "action",
    "bucket",
    "key",
    "status",
    "error_code",
    "bytes_in",
    "bytes_out",
    "duration_ms",
    "peer",
}


class AccessLogHTTPTests(DaemonTestCase):
    """The access log of a daemon serving plain HTTP (a daemon of its own: every request counts)."""

    def setUp(self) -> None:
        super().setUp()
        # (request id, status, operation) of every response, in order.
        self.responses: list[tuple[str | None, int, str]] = []
        self.signatures: list[str] = []

    def watched(self, client: Any) -> Any:
        """``client``, recording each response's request id and each request's signature."""

        def after_call(http_response: Any, model: Any, **_: Any) -> None:
            self.responses.append(
                (
                    http_response.headers.get("x-amz-request-id"),
                    http_response.status_code,
                    model.name,
                )
            )

        def before_send(request: Any, **_: Any) -> None:
            auth = request.headers.get("Authorization")
            if auth:
                self.signatures.append(auth.decode().rsplit("Signature=", 1)[1])

        client.meta.events.register("after-call.s3", after_call)
        client.meta.events.register("before-send.s3", before_send)
        return client

    def fetch(self, request: urllib.request.Request | str, operation: str) -> bytes:
        """A urllib request whose response (or error response) is recorded."""
        context = ssl.create_default_context(cafile=self.daemon.cert_path) if self.tls else None
        try:
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                body: bytes = response.read()
                self.responses.append(
                    (response.headers["x-amz-request-id"], response.status, operation)
                )
                return body
        except urllib.error.HTTPError as e:
            with e:
                self.responses.append((e.headers["x-amz-request-id"], e.code, operation))
                return e.read()

    def exercise(self) -> None:
        """A mix of successful, refused, early-rejected and unimplemented requests."""
        daemon = self.daemon
        access, secret = daemon.credentials()
        s3 = self.watched(daemon.client())
        bad_secret = self.watched(boto3_client(daemon, access, secret[::-1]))
        anonymous = self.watched(boto3_client(daemon, "x", "y", signature_version=UNSIGNED))
        presigner = self.watched(daemon.client(signature_version="s3v4"))

        def expect_error(call: Any, **kwargs: Any) -> None:
            self.assertRaises(ClientError, call, **kwargs)

        s3.list_buckets()
        s3.create_bucket(Bucket="logged")
        expect_error(s3.create_bucket, Bucket="logged")
        expect_error(s3.create_bucket, Bucket="Bad_Name")
        s3.put_object(Bucket="logged", Key="dir/obj key", Body=b"x" * 1000, Metadata={"m": "v"})
        s3.get_object(Bucket="logged", Key="dir/obj key")["Body"].read()
        s3.get_object(Bucket="logged", Key="dir/obj key", Range="bytes=10-19")["Body"].read()
        expect_error(s3.get_object, Bucket="logged", Key="dir/obj key", Range="bytes=5000-")
        s3.head_object(Bucket="logged", Key="dir/obj key")
        expect_error(s3.head_object, Bucket="logged", Key="missing")
        s3.list_objects_v2(Bucket="logged", Prefix="dir/", Delimiter="/")
        upload = s3.create_multipart_upload(Bucket="logged", Key="mp")["UploadId"]
        etag = s3.upload_part(Bucket="logged", Key="mp", UploadId=upload, PartNumber=1, Body=b"p")[
            "ETag"
        ]
        s3.complete_multipart_upload(
            Bucket="logged",
            Key="mp",
            UploadId=upload,
            MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
        )
        expect_error(s3.get_bucket_acl, Bucket="logged")
        expect_error(s3.delete_bucket, Bucket="logged")
        expect_error(bad_secret.list_buckets)
        expect_error(bad_secret.put_object, Bucket="logged", Key="k", Body=b"y" * 5000)
        expect_error(anonymous.get_object, Bucket="logged", Key="dir/obj key")
        url = presigner.generate_presigned_url(
            "get_object", Params={"Bucket": "logged", "Key": "dir/obj key"}, ExpiresIn=60
        )
        self.signatures.append(url.rsplit("X-Amz-Signature=", 1)[1])
        self.assertEqual(self.fetch(url, "GetObject"), b"x" * 1000)
        unsigned_put = urllib.request.Request(
            f"{daemon.endpoint_url}/logged/k", data=b"z" * 100, method="PUT"
        )
        self.fetch(unsigned_put, "PutObject")
        s3.delete_objects(Bucket="logged", Delete={"Objects": [{"Key": "mp"}]})
        s3.delete_object(Bucket="logged", Key="dir/obj key")
        s3.delete_bucket(Bucket="logged")

    def access_events(self, expected: int) -> list[dict[str, Any]]:
        """The access events, once at least ``expected`` are in the log (or after 10 s)."""
        deadline = time.monotonic() + 10
        while True:
            events = [e for e in self.daemon.events() if e.get("namespace") == "artifactd.access"]
            if len(events) >= expected or time.monotonic() > deadline:
                return events
            time.sleep(0.05)

    def test_access_log(self) -> None:
        """Log lines are JSON; one access event per request, keyed by the id the client got."""
        self.exercise()
        events = self.access_events(len(self.responses))
        with open(self.daemon.log_path, "rb") as f:
            raw = f.read()
        lines = raw.decode("utf-8").splitlines()
        self.assertTrue(lines)
        for line in lines:
            self.assertIsInstance(json.loads(line), dict, line)

        _, secret = self.daemon.credentials()
        self.assertNotIn(secret, raw.decode("utf-8"))
        self.assertTrue(self.signatures)
        for signature in self.signatures:
            self.assertNotIn(signature, raw.decode("utf-8"))

        ids = [request_id for request_id, _, _ in self.responses]
        self.assertNotIn(None, ids)
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual(Counter(e["request_id"] for e in events), Counter(ids))
        by_id = {e["request_id"]: e for e in events}
        for request_id, status, operation in self.responses:
            event = by_id[request_id]
            self.assertEqual(ACCESS_FIELDS - set(event), set(), event)
            self.assertEqual(event["status"], status, event)
            if status == 501:
                self.assertEqual(event["error_code"], "NotImplemented", event)
            else:
                self.assertEqual(event["action"], operation, event)
            self.assertEqual(event["error_code"] is None, status < 300, event)
            self.assertIsInstance(event["duration_ms"], (int, float))
            self.assertTrue(event["peer"].startswith("127.0.0.1:"), event)
            if operation == "ListBuckets":
                self.assertIsNone(event["bucket"], event)
            else:
                self.assertIn(event["bucket"], ("logged", "Bad_Name"), event)

        puts = [e for e in events if e["action"] == "PutObject" and e["status"] == 200]
        self.assertEqual([(e["key"], e["bytes_in"]) for e in puts], [("dir/obj key", 1000)])
        gets = [e for e in events if e["action"] == "GetObject" and e["status"] in (200, 206)]
        self.assertEqual(sorted(e["bytes_out"] for e in gets), [10, 1000, 1000])
        denied = [e for e in events if e["error_code"] == "AccessDenied"]
        self.assertEqual([e["principal"] for e in denied], [None, None])
        access, _ = self.daemon.credentials()
        self.assertEqual(by_id[ids[0]]["principal"], access)


class AccessLogTLSTests(AccessLogHTTPTests):
    """The access log of a daemon serving HTTPS (aws-chunked uploads)."""

    tls = True


class AccessLogOrderTests(DaemonTestCase):
    """A response the daemon sends whole goes out after its access line is written."""

    def test_line_written_before_response(self) -> None:
        """Right after each boto3 call returns (success or S3 error), the access event with the
        request id the client got is already in the log file: the log is read once, no polling.
        The daemon writes a turn's lines at the start of the next turn, before that turn sends
        the responses it buffered."""
        s3 = self.daemon.client()
        bucket = self.bucket_name()
        calls: list[tuple[str, Any, bool]] = [  # (action, call, whether it fails)
            ("CreateBucket", lambda: s3.create_bucket(Bucket=bucket), False),
            ("PutObject", lambda: s3.put_object(Bucket=bucket, Key="k", Body=b"x" * 3000), False),
            ("GetObject", lambda: s3.get_object(Bucket=bucket, Key="k")["Body"].read(), False),
            ("HeadObject", lambda: s3.head_object(Bucket=bucket, Key="k"), False),
            ("ListObjectsV2", lambda: s3.list_objects_v2(Bucket=bucket), False),
            ("GetObject", lambda: s3.get_object(Bucket=bucket, Key="missing"), True),
            ("DeleteObject", lambda: s3.delete_object(Bucket=bucket, Key="k"), False),
        ]
        request_ids: list[str] = []

        def after_call(http_response: Any, **_: Any) -> None:
            request_ids.append(http_response.headers["x-amz-request-id"])

        s3.meta.events.register("after-call.s3", after_call)
        for action, call, fails in calls:
            if fails:
                self.assertRaises(ClientError, call)
            else:
                call()
            request_id = request_ids[-1]
            logged = {
                e["request_id"]: e
                for e in self.daemon.events()
                if e.get("namespace") == "artifactd.access"
            }
            self.assertIn(request_id, logged, action)
            self.assertEqual(logged[request_id]["action"], action)
        self.assertEqual(len(request_ids), len(calls))
