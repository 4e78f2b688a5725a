"""Request-head limits (:mod:`artifactd.http.channel`): explicit, configurable, generous enough
for long presigned URLs and S3's full 2 KB of user metadata, and an over-limit head refused with
S3's ``400 RequestHeaderSectionTooLarge`` in XML (never a silent close or a hang)."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote, urlsplit

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from twisted.internet.address import IPv4Address
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from artifactd.config import Config
from artifactd.http.channel import S3Channel
from artifactd.names import MAX_METADATA_BYTES
from tests.http_harness import (
    ACCESS_KEY,
    HOST,
    NOW,
    REGION,
    SECRET_KEY,
    Connection,
    Harness,
    Response,
    key_path,
    put_request,
    serialise,
    signed_request,
    split_head,
)

TWISTED_DEFAULT = 16384  # HTTPChannel.totalHeadersSize and LineReceiver.MAX_LENGTH


class _FixedTimePresigner(S3SigV4QueryAuth):  # type: ignore[misc]
    """botocore's SigV4 presigner, at the harness's fixed time."""

    def __init__(self, when: datetime) -> None:
        super().__init__(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION, 3600)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def presigned_get(target: str) -> bytes:
    """A raw GET of ``target`` presigned by botocore."""
    request = AWSRequest(method="GET", url=f"http://{HOST}{target}")
    _FixedTimePresigner(NOW).add_auth(request)
    parts = urlsplit(request.url)
    return serialise("GET", f"{parts.path}?{parts.query}", [("Host", HOST)])


def head_size(raw: bytes) -> int:
    """The request head's size as the limit counts it: every line without its CRLF."""
    head, _ = split_head(raw)
    return sum(len(line) for line in head.split(b"\r\n"))


class HeadLimitTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        self.observer = EventLoggingObserver()
        globalLogPublisher.addObserver(self.observer)
        self.addCleanup(globalLogPublisher.removeObserver, self.observer)
        self.seen = 0

    def assertRefused(self, conn: Connection, limit_field: str) -> Response:
        """One 400 RequestHeaderSectionTooLarge in S3 XML, and the connection closing."""
        (response,) = conn.responses()
        self.assertEqual(response.status, 400)
        self.assertEqual(response.header("content-type"), "application/xml")
        self.assertEqual(response.header("connection"), "close")
        error = response.error()
        self.assertEqual(error["Code"], "RequestHeaderSectionTooLarge")
        self.assertIn(limit_field, error)
        self.assertEqual(error["RequestId"], response.header("x-amz-request-id"))
        self.assertTrue(conn.transport.disconnecting)
        refused = [
            e
            for e in list(self.observer)[self.seen :]
            if e.get("log_namespace") == "artifactd.access"
            and e.get("error_code") == "RequestHeaderSectionTooLarge"
        ]
        self.seen = len(self.observer)
        self.assertEqual(len(refused), 1)
        self.assertEqual(refused[0]["request_id"], error["RequestId"])
        return response


class GenerousLimitTests(HeadLimitTestCase):
    def test_defaults_are_explicit(self) -> None:
        """Each channel carries the configured limits (64 KiB, 500 fields by default)."""
        channel = self.h.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        self.assertIsInstance(channel, S3Channel)
        self.assertEqual((channel.totalHeadersSize, channel.maxHeaders), (65536, 500))
        self.assertEqual(channel.MAX_LENGTH, 65536)

    def test_long_presigned_url(self) -> None:
        """A presigned GET whose request line is longer than twisted's 16 KiB default (a
        1024-byte key of 3-byte characters, response-* overrides) is served."""
        key = "鍵" * 341
        self.assertEqual(self.h.send(put_request("bkt", key, b"payload")).status, 200)
        disposition = 'attachment; filename="' + "f" * 13000 + '"'
        query = "&".join(
            f"{name}={quote(value, safe='')}"
            for name, value in [
                ("response-content-disposition", disposition),
                ("response-content-type", "application/x-artifact"),
                ("response-cache-control", "no-store"),
            ]
        )
        raw = presigned_get(f"{key_path('bkt', key)}?{query}")
        self.assertGreater(raw.index(b"\r\n"), TWISTED_DEFAULT)
        response = self.h.send(raw)
        self.assertEqual(response.status, 200, response.body[:300])
        self.assertEqual(response.body, b"payload")
        self.assertEqual(response.header("content-disposition"), disposition)

    def test_full_metadata_in_many_headers(self) -> None:
        """2 KB of user metadata spread over 200 x-amz-meta-* headers, beside a long stored
        header that takes the head past 16 KiB, is accepted and read back intact."""
        metadata = {f"m{i:03d}": f"v{i:05d}" for i in range(200)}  # 200 * 10 bytes
        size = sum(len(k) + len(v) for k, v in metadata.items())
        self.assertLessEqual(size, MAX_METADATA_BYTES)
        headers = {f"x-amz-meta-{k}": v for k, v in metadata.items()}
        headers["Content-Disposition"] = "inline; filename=" + "n" * 15000
        raw = put_request("bkt", "meta", b"x", headers=headers)
        self.assertGreater(head_size(raw), TWISTED_DEFAULT)
        self.assertEqual(self.h.send(raw).status, 200)
        got = self.h.get("bkt", "meta")
        self.assertEqual(
            {
                k.decode()[len("x-amz-meta-") :]: v.decode()
                for k, v in got.headers
                if k.startswith(b"x-amz-meta-")
            },
            metadata,
        )
        self.assertEqual(got.header("content-disposition"), headers["Content-Disposition"])

    def test_counted_per_request(self) -> None:
        """The budget is per request: several heads of 60% of the limit on one connection are
        all served."""
        pad = "p" * int(0.6 * 65536)
        conn = self.h.connect()
        for _ in range(3):
            conn.feed(signed_request("GET", "/bkt", headers={"X-Pad": pad}))
            self.h.settle()
        self.assertEqual([r.status for r in conn.responses()], [200, 200, 200])


class RefusalTests(HeadLimitTestCase):
    def test_head_over_the_limit(self) -> None:
        """A head one byte over the limit is refused with S3 XML naming the limit; at the
        limit it is served."""
        head, _ = split_head(signed_request("GET", "/bkt"))
        room = 65536 - head_size(head) - len(b"X-Pad: ")
        at = head[:-2] + b"X-Pad: " + b"p" * room + b"\r\n\r\n"
        self.assertEqual(self.h.send(at).status, 200)
        conn = self.h.connect()
        conn.feed(head[:-2] + b"X-Pad: " + b"p" * (room + 1) + b"\r\n\r\n")
        error = self.assertRefused(conn, "MaxSizeAllowed").error()
        self.assertEqual(error["MaxSizeAllowed"], "65536")

    def test_one_line_over_the_limit(self) -> None:
        """A request line longer than the limit, whole or trickled, gets the S3 error (twisted
        alone would close without a word)."""
        line = b"GET /bkt/" + b"k" * 70000 + b" HTTP/1.1\r\nHost: s3.test\r\n\r\n"
        for step in (len(line), 997):
            conn = self.h.connect()
            for i in range(0, len(line), step):
                if conn.transport.disconnecting:
                    break
                conn.feed(line[i : i + step])
            self.assertRefused(conn, "MaxSizeAllowed")

    def test_too_many_fields(self) -> None:
        """One header field more than max_headers is refused with S3 XML."""
        head, _ = split_head(signed_request("GET", "/bkt"))
        present = head.count(b"\r\n") - 2
        fields = b"".join(b"X-F%d: 1\r\n" % i for i in range(500 - present + 1))
        conn = self.h.connect()
        conn.feed(head[:-2] + fields + b"\r\n")
        error = self.assertRefused(conn, "MaxHeaderCount").error()
        self.assertEqual(error["MaxHeaderCount"], "500")

    def test_malformed_http_gets_s3_xml(self) -> None:
        """Bytes that are not HTTP (bad request line, header syntax, Content-Length) get a 400
        BadRequest in S3 XML and a close, never twisted's bare 400."""
        for raw in (
            b"GARBAGE\r\n\r\n",
            b"GET /bkt HTTP/1.1\r\nno colon here\r\n\r\n",
            b"PUT /bkt/k HTTP/1.1\r\nHost: s3.test\r\nContent-Length: -5\r\n\r\n",
        ):
            conn = self.h.connect()
            conn.feed(raw)
            (response,) = conn.responses()
            self.assertEqual(response.status, 400, raw)
            self.assertEqual(response.header("content-type"), "application/xml")
            self.assertEqual(response.error()["Code"], "BadRequest")
            self.assertTrue(conn.transport.disconnecting)

    def test_pipelined_after_a_served_request(self) -> None:
        """An over-limit head after a served request on the same connection: the first is
        answered, the second refused; bytes after the refusal are ignored."""
        conn = self.h.connect()
        over = signed_request("GET", "/bkt", headers={"X-Pad": "p" * 70000})
        conn.feed(signed_request("GET", "/bkt") + over + signed_request("GET", "/bkt"))
        self.h.settle()
        responses = conn.responses()
        self.assertEqual([r.status for r in responses], [200, 400])
        self.assertEqual(responses[1].error()["Code"], "RequestHeaderSectionTooLarge")
        self.assertTrue(conn.transport.disconnecting)

    def test_configured_limits(self) -> None:
        """max_request_head_bytes and max_headers from the configuration apply to every
        channel: a head the defaults accept is refused under smaller limits."""
        config = Config(
            data_dir="unused",
            max_request_head_bytes=9000,
            max_headers=100,
            root_access_key=ACCESS_KEY,
            root_secret_key=SECRET_KEY,
        )
        h = Harness(self.mktemp(), config=config)
        h.create_bucket("bkt")
        raw = signed_request("GET", "/bkt", headers={"X-Pad": "p" * 10000})
        self.assertEqual(self.h.send(raw).status, 200)
        conn = h.connect()
        conn.feed(raw)
        self.assertEqual(conn.response().error()["MaxSizeAllowed"], "9000")
        many = {f"X-F{i}": "1" for i in range(101)}
        conn = h.connect()
        conn.feed(signed_request("GET", "/bkt", headers=many))
        self.assertEqual(conn.response().error()["MaxHeaderCount"], "100")
