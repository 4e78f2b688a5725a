"""The fuzz pass over the HTTP surface, in memory (``tests.http_harness``): malformed request lines,
odd header bytes, heads at and over the size limits, truncated, oversized and mis-framed bodies
(HTTP chunked and aws-chunked), and malformed or hostile XML on every action that reads XML.

Whatever arrives, the properties are the same:

* no 5xx other than ``501 NotImplemented``, no traceback in a response, and no error-level log
  event (the site logs unexpected exceptions at error level);
* every error response that has a body is an S3 ``<Error>`` document; the only bodiless refusal
  is twisted.web's own ``400`` for bytes that are not HTTP, after which it closes the connection;
* no hang: a complete request is answered or its connection closed, and an incomplete one is
  closed by the idle timeout;
* nothing half-stored: a refused or abandoned upload leaves no object and no staging file, and
  an accepted one stores exactly the bytes that were signed.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.base import DelayedCall
from twisted.logger import ILogObserver, LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from artifactd.testing import ManualRunner
from tests import strategies  # noqa: F401  (registers the hypothesis profiles)
from tests.http_harness import (
    ACCESS_KEY,
    HOST,
    NOW,
    REGION,
    SECRET_KEY,
    Connection,
    Harness,
    Response,
    http_chunked,
    key_path,
    parse_responses,
    put_request,
    serialise,
    sign,
    signed_request,
    split_at,
    split_head,
)
from tests.test_api_errors import hostile_documents

PAYLOAD = bytes(range(251)) * 40  # 10040 bytes, no two neighbouring bytes equal
OBJECT = b"0123456789"

# Tokens that make request lines interesting to a parser.
METHODS = [b"GET", b"PUT", b"POST", b"DELETE", b"HEAD", b"get", b"G\x00T", b"", b"BREW", b"\xff"]
TARGETS = [
    b"/",
    b"/bkt",
    b"/bkt/obj",
    b"/bkt/obj?uploads",
    b"/bkt?delete",
    b"*",
    b"bkt/obj",
    b"http://s3.test/bkt/obj",
    b"//bkt//obj",
    b"/bkt/%",
    b"/bkt/%zz",
    b"/bkt/%FF%FE",
    b"/bkt/\xff",
    b"/bkt/a\x00b",
    b"/bkt/a\x7fb",
    b"/bkt/obj#frag",
    b"/bkt/obj?&&&==&",
    b"/bkt/obj?uploadId",
    b"/bkt/obj?partNumber=99999999999999999999",
    b"/bkt?list-type=2&max-keys=-1",
    b"/" + b"a" * 300,
    b"/bkt/" + b"k" * 2000,
]
VERSIONS = [
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"HTTP/2.0",
    b"HTTP/1.1x",
    b"HTTP/",
    b"http/1.1",
    b"",
    b"\x00",
]
SEPARATORS = [b" ", b"  ", b"\t", b""]
ODD_BYTES = [b"\x00", b"\x01", b"\x7f", b"\x80", b"\xff", b" ", b"\t", b":", b"\r", b"\n", b"\x0b"]


# ------------------------------------------------------------------------------ strategies
def odd_bytes(max_size: int = 40) -> st.SearchStrategy[bytes]:
    """Short byte strings rich in control, high and separator bytes."""
    piece = st.one_of(st.sampled_from(ODD_BYTES), st.binary(min_size=1, max_size=4))
    plain = st.binary(min_size=1, max_size=8).map(lambda b: bytes(c % 26 + 97 for c in b))
    return st.lists(st.one_of(piece, plain), max_size=max_size // 4).map(b"".join)


@st.composite
def request_lines(draw: st.DrawFn) -> bytes:
    """A request line from mostly-plausible parts, some of them broken."""
    parts = [
        draw(st.one_of(st.sampled_from(METHODS), odd_bytes(8))),
        draw(st.one_of(st.sampled_from(TARGETS), odd_bytes(20).map(lambda b: b"/" + b))),
        draw(st.sampled_from(VERSIONS)),
    ]
    if draw(st.booleans()):
        parts.append(draw(odd_bytes(8)))
    separators = draw(st.lists(st.sampled_from(SEPARATORS), min_size=3, max_size=3))
    line = parts[0]
    for sep, part in zip(separators, parts[1:], strict=False):
        line += sep + part
    return line


@st.composite
def mutations(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` with one to four random edits: bytes dropped, inserted, replaced, duplicated, or
    the whole thing cut short."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        kind = draw(st.sampled_from(["drop", "insert", "replace", "duplicate", "truncate"]))
        at = draw(st.integers(min_value=0, max_value=max(0, len(out) - 1)))
        width = draw(st.integers(min_value=1, max_value=8))
        if kind == "drop":
            del out[at : at + width]
        elif kind == "insert":
            out[at:at] = draw(st.one_of(odd_bytes(8), st.sampled_from([b"\r\n", b"0", b";"])))
        elif kind == "replace":
            out[at : at + 1] = draw(st.sampled_from([*ODD_BYTES, b"0", b"f", b"Z", b";"]))
        elif kind == "duplicate":
            out[at:at] = out[at : at + width]
        else:
            del out[at:]
    return bytes(out)


# ------------------------------------------------------------------------------ signing
class _ClaimSigner(S3SigV4Auth):  # type: ignore[misc]
    """botocore's signer at the harness's time, with the X-Amz-Content-SHA256 claim given."""

    def __init__(self, claim: str) -> None:
        super().__init__(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION)
        self._claim = claim

    def payload(self, request: AWSRequest) -> str:
        return self._claim

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = NOW.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def signed_streaming_put(
    bucket: str, key: str, payload: bytes, *, chunk_size: int = 4096
) -> tuple[list[tuple[str, str]], bytes]:
    """Headers and aws-chunked body of a ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` PutObject (the
    AWS Java SDK's and the documentation's signed streaming form), chunk signatures computed
    independently of artifactd."""
    target = key_path(bucket, key)
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    framed_length = (
        sum(
            len(b"%x;chunk-signature=" % len(c)) + 64 + 2 + (len(c) + 2 if c else 0) for c in chunks
        )
        + 2
    )
    headers = {
        "Host": HOST,
        "Content-Encoding": "aws-chunked",
        "X-Amz-Decoded-Content-Length": str(len(payload)),
        "Content-Length": str(framed_length),
    }
    request = AWSRequest(method="PUT", url=f"http://{HOST}{target}", headers=headers)
    _ClaimSigner("STREAMING-AWS4-HMAC-SHA256-PAYLOAD").add_auth(request)
    signed = [(str(k), str(v)) for k, v in request.headers.items()]
    seed = dict(signed)["Authorization"].rsplit("Signature=", 1)[1]
    date = NOW.strftime("%Y%m%d")
    scope = f"{date}/{REGION}/s3/aws4_request"
    signing_key = ("AWS4" + SECRET_KEY).encode()
    for part in (date, REGION, "s3", "aws4_request"):
        signing_key = hmac.new(signing_key, part.encode(), hashlib.sha256).digest()
    empty = hashlib.sha256(b"").hexdigest()
    previous = seed
    body = bytearray()
    for chunk in chunks:
        string_to_sign = "\n".join(
            [
                "AWS4-HMAC-SHA256-PAYLOAD",
                NOW.strftime(SIGV4_TIMESTAMP),
                scope,
                previous,
                empty,
                hashlib.sha256(chunk).hexdigest(),
            ]
        )
        previous = hmac.new(signing_key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        body += b"%x;chunk-signature=%s\r\n" % (len(chunk), previous.encode())
        if chunk:
            body += chunk + b"\r\n"
    body += b"\r\n"
    assert len(body) == framed_length
    return signed, bytes(body)


# ------------------------------------------------------------------------------ the test case
@implementer(ILogObserver)
class _ErrorEvents:
    """Collects log events at error level or above (tracebacks, unhandled failures)."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if (isinstance(level, LogLevel) and level >= LogLevel.error) or "log_failure" in event:
            self.events.append(event)


class FuzzCase(SynchronousTestCase):
    """One harness with bucket ``bkt`` holding ``obj`` = ``0123456789``; every exchange is
    checked against the module's properties."""

    runner: Callable[[], Any] | None = None

    def setUp(self) -> None:
        self.errors = _ErrorEvents()
        globalLogPublisher.addObserver(self.errors)
        self.addCleanup(globalLogPublisher.removeObserver, self.errors)
        self.addCleanup(lambda: self.assertEqual(self.errors.events, []))
        runner = type(self).runner
        self.h = Harness(self.mktemp(), runner=runner() if runner is not None else None)
        self.h.create_bucket("bkt")
        response = self.h.send(put_request("bkt", "obj", OBJECT))
        self.assertEqual(response.status, 200, response.body)
        self.blob_count = len(self.h.blob_files())

    # ------------------------------------------------------------------------ exchanges
    def exchange(
        self, pieces: Iterable[bytes], *, head: bool = False
    ) -> tuple[Connection, list[Response]]:
        """Feed ``pieces`` on a new connection, letting the disk pool finish after each (or,
        with a lagging disk, only after the last); return the connection (still open, as far as
        the client is concerned) and its responses."""
        conn = self.h.connect()
        for piece in pieces:
            if conn.transport.disconnecting:
                break  # the server closed: the client's further writes go nowhere
            conn.feed(piece)
            if self.runner is None:
                self.h.settle()
        self.h.settle()
        return conn, self.check_responses(conn, head=head)

    def check_responses(self, conn: Connection, *, head: bool = False) -> list[Response]:
        """The responses on ``conn`` so far, each checked against the properties."""
        raw = conn.transport.value()
        self.assertNotIn(b"Traceback", raw)
        responses = parse_responses(raw, head=head)
        for i, response in enumerate(responses):
            self.assertTrue(
                response.status < 500 or response.status == 501,
                f"{response.status} {response.body!r}",
            )
            if response.status < 400:
                continue
            bare = response.header("content-length") is None and not response.body
            if bare and not head:
                # twisted.web's refusal of bytes that are not HTTP: always the last word.
                self.assertEqual(response.status, 400)
                self.assertEqual(i, len(responses) - 1)
                self.assertTrue(conn.transport.disconnecting)
            elif not head:
                error = response.error()
                self.assertTrue(error.get("Code"), response.body)
                self.assertEqual(error.get("RequestId"), response.header("x-amz-request-id"))
        return responses

    def finish(self, conn: Connection, *, complete: bool, head: bool = False) -> None:
        """The request on ``conn`` has been sent (``complete``) or abandoned: a complete one was
        answered or its connection closed; a connection left waiting for more bytes is closed
        by the idle timeout; then the client goes away and nothing is left staged."""
        answered = [r for r in self.check_responses(conn, head=head) if r.status >= 200]
        if complete:
            self.assertTrue(
                answered or conn.transport.disconnecting,
                "a complete request got neither a response nor a close",
            )
        if not answered and not conn.transport.disconnecting:
            self.expire_idle(conn)
            self.assertTrue(conn.transport.disconnecting, "the idle timeout did not close")
        conn.disconnect()
        self.h.settle()
        self.assertEqual(self.h.staging_files(), [])

    def expire_idle(self, conn: Connection) -> None:
        """Check that ``conn``'s idle timeout is armed to fire within the site's ``timeOut``,
        and fire it now.  (Advancing the clock instead would age the harness's fixed SigV4
        timestamp by a minute per example, until requests are refused as skewed.)"""
        channel = getattr(conn.protocol, "_channel", conn.protocol)
        now = self.h.clock.seconds()
        calls = [
            c
            for c in self.h.clock.getDelayedCalls()
            if isinstance(c, DelayedCall)
            and getattr(c.func, "__self__", None) is channel
            and c.func.__name__.endswith("timedOut")
        ]
        self.assertEqual(len(calls), 1, "no idle timeout is armed: the connection could hang")
        (call,) = calls
        self.assertLessEqual(call.getTime() - now, self.idle_timeout)
        fire = (call.func, call.args, call.kw)
        call.cancel()
        fire[0](*fire[1], **fire[2])
        self.h.settle()

    def assertStore(self, objects: Mapping[str, bytes]) -> None:
        """The bucket holds exactly ``objects`` (fixture included), byte for byte."""
        page = self.h.meta.list_objects("bkt", "", "", "", 1000)
        self.assertEqual(sorted(o.key for o in page.objects), sorted(objects))
        for key, data in objects.items():
            self.assertEqual(self.h.get("bkt", key).body, data, key)
        self.assertEqual(self.h.staging_files(), [])

    def assertUnchanged(self) -> None:
        self.assertStore({"obj": OBJECT})
        self.assertEqual([b.name for b in self.h.meta.list_buckets()], ["bkt"])
        self.assertEqual(len(self.h.blob_files()), self.blob_count)

    def assertStoredOrNot(
        self, key: str, payload: bytes, responses: Sequence[Response], conn: Connection
    ) -> None:
        """A PutObject of ``key`` either succeeded (one 200) and stored exactly ``payload``, or
        stored nothing."""
        ok = [r for r in responses if r.status == 200]
        stored = self.h.meta.get_object("bkt", key)
        if ok and ok[0].header("etag") == f'"{hashlib.md5(payload).hexdigest()}"':
            self.assertIsNotNone(stored)
            self.assertEqual(self.h.get("bkt", key).body, payload)
            self.h.send(signed_request("DELETE", key_path("bkt", key)))
        else:
            self.assertIsNone(stored, responses)
        self.assertUnchanged()

    @property
    def idle_timeout(self) -> float:
        timeout = self.h.site.timeOut
        assert timeout is not None, "the site has no idle timeout"
        return float(timeout)

    def limits(self) -> tuple[int, int]:
        """The channel's (total head bytes, header count) limits, however they are configured."""
        protocol = self.h.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 1))
        channel = getattr(protocol, "_channel", protocol)
        return int(channel.totalHeadersSize), int(channel.maxHeaders)


# ------------------------------------------------------------------------------ request heads
class RequestLineTests(FuzzCase):
    @given(line=request_lines(), headers=st.booleans())
    def test_request_lines(self, line: bytes, headers: bool) -> None:
        """Any request line is answered with an S3 error or twisted's bare 400, never a 5xx;
        nothing changes."""
        raw = line + b"\r\n"
        if headers:
            raw += b"Host: s3.test\r\n"
        is_head = line.split(maxsplit=1)[:1] == [b"HEAD"]
        conn, _ = self.exchange([raw + b"\r\n"], head=is_head)
        self.finish(
            conn, complete=False, head=is_head
        )  # "Content-Length" may be absent: body-less anyway
        self.assertUnchanged()

    @given(head=st.binary(max_size=200))
    def test_random_heads(self, head: bytes) -> None:
        """Random bytes followed by a blank line never get a 5xx and change nothing."""
        is_head = head.split(b"\r\n", 1)[0].split(maxsplit=1)[:1] == [b"HEAD"]
        conn, _ = self.exchange([head + b"\r\n\r\n"], head=is_head)
        self.finish(conn, complete=False, head=is_head)
        self.assertUnchanged()

    def test_star_target(self) -> None:
        """``*`` is no S3 resource: every method gets 400 InvalidURI in S3 XML."""
        for method in ("OPTIONS", "GET", "DELETE"):
            with self.subTest(method):
                conn, responses = self.exchange(
                    [f"{method} * HTTP/1.1\r\nHost: a\r\n\r\n".encode()]
                )
                self.assertEqual(len(responses), 1)
                self.assertEqual(responses[0].status, 400)
                self.assertEqual(responses[0].error()["Code"], "InvalidURI")
                self.finish(conn, complete=True)

    def test_host_not_utf8(self) -> None:
        """A Host header that is not UTF-8 gets an S3 error (it is signed, so 403), never a
        traceback from the routing layer."""
        for host in (b"\xff\xfe", b"a\x80b:9000", b"bkt.\xc3"):
            with self.subTest(host=host):
                conn, responses = self.exchange(
                    [b"GET /bkt/obj HTTP/1.1\r\nHost: " + host + b"\r\n\r\n"]
                )
                self.assertEqual(len(responses), 1)
                self.assertIn(responses[0].status, (400, 403))
                self.assertTrue(responses[0].error()["Code"])
                self.finish(conn, complete=True)

    def test_long_request_lines(self) -> None:
        """Request lines far over the limit are refused (400 or a close), whole or trickled."""
        limit, _ = self.limits()
        for size in (limit + 1, 4 * limit, 64 * 1024):
            line = b"GET /bkt/" + b"k" * size + b" HTTP/1.1\r\nHost: a\r\n\r\n"
            for pieces in ([line], split_at(line, range(0, len(line), 1000))):
                with self.subTest(size=size, pieces=len(pieces)):
                    conn, responses = self.exchange(pieces)
                    self.assertTrue(conn.transport.disconnecting)
                    self.assertIn([r.status for r in responses], ([], [400]))
                    self.finish(conn, complete=True)
        self.assertUnchanged()

    def test_blank_lines_before_request(self) -> None:
        """Blank lines before a request line are tolerated or refused, never a 5xx."""
        raw = signed_request("GET", key_path("bkt", "obj"))
        for prefix in (b"\r\n", b"\r\n\r\n", b"\n", b"\r\n" * 50):
            with self.subTest(prefix=prefix):
                conn, _ = self.exchange([prefix + raw])
                self.finish(conn, complete=True)
        self.assertUnchanged()


class HeaderTests(FuzzCase):
    @given(
        extra=st.lists(st.tuples(odd_bytes(20), odd_bytes(40)), min_size=1, max_size=5),
        method=st.sampled_from(["GET", "PUT"]),
    )
    def test_odd_header_bytes(self, extra: list[tuple[bytes, bytes]], method: str) -> None:
        """Extra headers with odd bytes in names or values, on a signed GET or PUT: an S3 answer
        or twisted's 400, and a PUT stores its signed bytes exactly or nothing."""
        if method == "GET":
            raw = signed_request("GET", key_path("bkt", "obj"))
        else:
            raw = put_request("bkt", "new", PAYLOAD)
        head, body = split_head(raw)
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in extra)
        conn, responses = self.exchange([head[:-2] + lines + b"\r\n" + body])
        for response in responses:
            if method == "GET" and response.status == 200:
                self.assertEqual(response.body, OBJECT)
        self.finish(conn, complete=False)  # an odd Content-Length may leave it waiting
        if method == "PUT":
            self.assertStoredOrNot("new", PAYLOAD, responses, conn)
        else:
            self.assertUnchanged()

    @given(
        name=st.sampled_from(
            [
                "Content-Length",
                "Transfer-Encoding",
                "Content-Encoding",
                "Content-MD5",
                "Expect",
                "Range",
                "If-Match",
                "If-None-Match",
                "If-Modified-Since",
                "If-Unmodified-Since",
                "Host",
                "Connection",
            ]
        ),
        value=st.one_of(
            odd_bytes(30),
            st.sampled_from(
                [
                    b"",
                    b"-1",
                    b"0",
                    b"1",
                    b"99999999999999999999999",
                    b"chunked",
                    b"gzip, chunked",
                    b"identity",
                    b"aws-chunked",
                    b"*",
                    b"bytes=0-1,2-3",
                    b"close",
                    b"100-continue",
                ]
            ),
        ),
        duplicate=st.booleans(),
    )
    def test_framing_headers(self, name: str, value: bytes, duplicate: bool) -> None:
        """An unsigned framing or conditional header with any value (repeated or not) added to a
        signed PUT: an S3 answer or twisted's 400; the PUT stores its bytes exactly or nothing."""
        head, body = split_head(put_request("bkt", "new", PAYLOAD))
        extra = name.encode() + b": " + value + b"\r\n"
        if duplicate:
            extra *= 2
        conn, responses = self.exchange([head[:-2] + extra + b"\r\n" + body])
        self.finish(conn, complete=False)
        self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    @given(
        name=st.sampled_from(
            [
                "x-amz-content-sha256",
                "x-amz-decoded-content-length",
                "x-amz-trailer",
                "x-amz-sdk-checksum-algorithm",
                "x-amz-checksum-crc32",
                "x-amz-checksum-sha256",
                "x-amz-date",
                "x-amz-meta-a",
                "x-amz-tagging",
                "x-amz-copy-source",
                "x-amz-copy-source-range",
                "x-amz-metadata-directive",
                "Content-Encoding",
                "Content-MD5",
            ]
        ),
        value=st.one_of(
            st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
            st.sampled_from(
                [
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                    "UNSIGNED-PAYLOAD",
                    "0" * 64,
                    "-1",
                    "99999999999999999999999",
                    "x-amz-checksum-crc32,x-amz-checksum-crc32c",
                    "x-amz-checksum-nope",
                    "aws-chunked",
                    "/bkt/obj",
                    "bytes=0-1",
                ]
            ),
        ),
        method=st.sampled_from(["PUT", "GET", "POST-uploads"]),
    )
    def test_signed_amz_headers(self, name: str, value: str, method: str) -> None:
        """A correctly signed request carrying any value of an S3 header the server interprets
        gets an S3 answer; a PUT stores its bytes exactly or nothing."""
        key = "new"
        self.h.meta.delete_object("bkt", key)  # examples share the harness: start each clean
        target = key_path("bkt", key) + ("?uploads" if method == "POST-uploads" else "")
        verb = "POST" if method == "POST-uploads" else method
        body = PAYLOAD if verb == "PUT" else b""
        headers = {name: value}
        if verb != "GET":
            headers["Content-Length"] = str(len(body))
        if name.lower() == "x-amz-content-sha256":
            request = AWSRequest(
                method=verb, url=f"http://{HOST}{target}", headers={"Host": HOST, **headers}
            )
            _ClaimSigner(value).add_auth(request)
            signed = [(str(k), str(v)) for k, v in request.headers.items()]
        else:
            signed = sign(verb, target, headers, payload=body)
        conn, responses = self.exchange([serialise(verb, target, signed, body)])
        self.finish(conn, complete=False)
        copied = bool(responses) and responses[0].status == 200
        if verb == "PUT" and name.lower() == "x-amz-copy-source" and copied:
            # a valid source makes the PUT a CopyObject: it stores the source's bytes
            self.assertEqual(self.h.get("bkt", key).body, OBJECT)
            self.h.send(signed_request("DELETE", key_path("bkt", key)))
            self.assertUnchanged()
        elif verb == "PUT":
            self.assertStoredOrNot(key, PAYLOAD, responses, conn)

    def test_head_at_and_over_the_limit(self) -> None:
        """A request head of exactly the size limit is served; one byte more is refused with a
        4xx and the connection closed."""
        limit, _ = self.limits()
        raw = signed_request("GET", key_path("bkt", "obj"))
        head, _ = split_head(raw)
        # twisted counts every head line without its CRLF, the request line included.
        used = sum(len(line) for line in head.split(b"\r\n"))
        filler = b"X-Pad: "
        pad = limit - used - len(filler)
        self.assertGreater(pad, 0)
        at_limit = head[:-2] + filler + b"p" * pad + b"\r\n\r\n"
        conn, responses = self.exchange([at_limit])
        self.assertEqual([r.status for r in responses], [200])
        self.assertEqual(responses[0].body, OBJECT)
        self.finish(conn, complete=True)
        over = head[:-2] + filler + b"p" * (pad + 1) + b"\r\n\r\n"
        conn, responses = self.exchange([over])
        self.assertEqual(len(responses), 1)
        self.assertIn(responses[0].status, (400, 431))
        self.assertTrue(conn.transport.disconnecting)
        self.finish(conn, complete=True)
        self.assertUnchanged()

    def test_header_count_at_and_over_the_limit(self) -> None:
        """As many headers as the limit allows are served; one more is refused and closed."""
        _, max_headers = self.limits()
        head, _ = split_head(signed_request("GET", key_path("bkt", "obj")))
        present = head.count(b"\r\n") - 2  # minus the request line and the blank line
        room = max_headers - present

        def with_headers(n: int) -> bytes:
            return head[:-2] + b"".join(b"X-P%d: 1\r\n" % i for i in range(n)) + b"\r\n"

        conn, responses = self.exchange([with_headers(room)])
        self.assertEqual([r.status for r in responses], [200])
        self.finish(conn, complete=True)
        conn, responses = self.exchange([with_headers(room + 1)])
        self.assertEqual(len(responses), 1)
        self.assertIn(responses[0].status, (400, 431))
        self.assertTrue(conn.transport.disconnecting)
        self.finish(conn, complete=True)
        self.assertUnchanged()

    def test_slow_head(self) -> None:
        """A head trickled in pieces, each within the idle timeout, is answered; a head that
        stops half way is closed once the idle timeout has passed (clock advanced)."""
        timeout = self.idle_timeout
        raw = signed_request("GET", key_path("bkt", "obj"))
        conn = self.h.connect()
        for piece in split_at(raw, range(0, len(raw), len(raw) // 15)):
            self.h.clock.advance(timeout * 3 / 4)  # 16 pieces: 12 minutes, under the skew limit
            conn.feed(piece)
        responses = self.check_responses(conn)
        self.assertEqual([r.status for r in responses], [200])
        self.finish(conn, complete=True)
        conn = self.h.connect()
        conn.feed(raw[: len(raw) // 2])
        self.h.clock.advance(timeout - 1)
        self.assertFalse(conn.transport.disconnecting)
        self.h.clock.advance(1)
        self.assertTrue(conn.transport.disconnecting)
        self.assertEqual(conn.transport.value(), b"")
        self.finish(conn, complete=False)
        self.assertUnchanged()


# ------------------------------------------------------------------------------ bodies
ENCODINGS = ("plain", "chunked", "aws-chunked", "signed-streaming")


def put_of(encoding: str, key: str, payload: bytes) -> bytes:
    if encoding == "signed-streaming":
        headers, body = signed_streaming_put("bkt", key, payload)
        return serialise("PUT", key_path("bkt", key), headers, body)
    return put_request("bkt", key, payload, encoding=encoding)


class BodyTests(FuzzCase):
    def test_signed_streaming_accepted(self) -> None:
        """The signed-streaming PUT this module builds is accepted as is (so the mutation tests
        below start from a valid request)."""
        for size in (0, 1, 4096, len(PAYLOAD)):
            with self.subTest(size=size):
                conn, responses = self.exchange([put_of("signed-streaming", "s", PAYLOAD[:size])])
                self.assertEqual([r.status for r in responses], [200], responses)
                self.finish(conn, complete=True)
                self.assertEqual(self.h.get("bkt", "s").body, PAYLOAD[:size])

    @given(
        encoding=st.sampled_from(ENCODINGS),
        cut=st.integers(min_value=0),
        expect=st.booleans(),
    )
    def test_truncated_then_gone(self, encoding: str, cut: int, expect: bool) -> None:
        """A body cut short, then the client goes away (or stalls until the idle timeout):
        nothing is stored or left staged."""
        raw = put_of(encoding, "new", PAYLOAD)
        if expect:
            raw = raw.replace(b"\r\n\r\n", b"\r\nExpect: 100-continue\r\n\r\n", 1)
        head, body = split_head(raw)
        conn, responses = self.exchange([head, body[: cut % len(body)]])
        self.assertEqual([r.status for r in responses if r.status >= 200], [])
        self.finish(conn, complete=False)
        self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    @given(encoding=st.sampled_from(ENCODINGS), extra=st.binary(min_size=1, max_size=300))
    def test_oversized(self, encoding: str, extra: bytes) -> None:
        """Bytes after a complete request are the next request: the upload is stored exactly
        and the trailing garbage is answered (or the connection closed) separately."""
        conn, responses = self.exchange([put_of(encoding, "new", PAYLOAD) + extra])
        self.assertGreaterEqual(len(responses), 1)
        self.assertEqual(responses[0].status, 200, responses[0].body)
        self.finish(conn, complete=False)
        self.assertEqual(self.h.get("bkt", "new").body, PAYLOAD)
        self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    @given(encoding=st.sampled_from(ENCODINGS), data=st.data())
    def test_mangled_framing(self, encoding: str, data: st.DataObject) -> None:
        """A body whose framing (Content-Length, HTTP chunks, aws-chunked chunks, signatures or
        trailer) was mangled: an S3 answer or twisted's 400, never a 5xx; the object is stored
        exactly as signed or not at all."""
        head, body = split_head(put_of(encoding, "new", PAYLOAD))
        mangled = data.draw(mutations(body), label="body")
        cuts = data.draw(st.lists(st.integers(min_value=0), max_size=3), label="cuts")
        conn, responses = self.exchange([head, *split_at(mangled, cuts)])
        self.finish(conn, complete=False)
        self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    @given(data=st.data())
    def test_mangled_head_of_upload(self, data: st.DataObject) -> None:
        """An upload whose head was mangled: never a 5xx; stored exactly or not at all."""
        encoding = data.draw(st.sampled_from(ENCODINGS), label="encoding")
        head, body = split_head(put_of(encoding, "new", PAYLOAD))
        mangled = data.draw(mutations(head[:-4]), label="head") + b"\r\n\r\n"
        conn, responses = self.exchange([mangled, body])
        self.finish(conn, complete=False)
        self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    def test_chunk_sizes_out_of_range(self) -> None:
        """HTTP and aws-chunked chunk sizes that overflow, are negative or are not hex: refused
        with an S3 error or twisted's 400; nothing stored."""
        sizes = [b"-1", b"+1", b"0x10", b"ffffffffffffffffffff", b"1" * 40, b"", b" 1", b"1 "]
        for size in sizes:
            with self.subTest(http=size):
                head, _ = split_head(put_request("bkt", "new", PAYLOAD, encoding="chunked"))
                conn, responses = self.exchange([head, size + b"\r\nabc\r\n0\r\n\r\n"])
                self.finish(conn, complete=False)
                self.assertStoredOrNot("new", PAYLOAD, responses, conn)
            with self.subTest(aws=size):
                head, _ = split_head(put_request("bkt", "new", PAYLOAD, encoding="aws-chunked"))
                inner = size + b"\r\nabc\r\n0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
                conn, responses = self.exchange([head, http_chunked(inner)])
                self.finish(conn, complete=False)
                self.assertStoredOrNot("new", PAYLOAD, responses, conn)

    def test_xml_body_over_the_cap_chunked(self) -> None:
        """An XML body with no Content-Length (chunked) that grows past the cap is refused with
        MaxMessageLengthExceeded mid-body, and nothing is deleted."""
        target = "/bkt?delete"
        document = b"<Delete>" + b"<Object><Key>obj</Key></Object>" * 200_000 + b"</Delete>"
        headers = sign("POST", target, {"Transfer-Encoding": "chunked"}, payload=document)
        raw = serialise("POST", target, headers, http_chunked(document, default=65536))
        head, body = split_head(raw)
        conn, responses = self.exchange([head, *split_at(body, range(0, len(body), 1 << 20))])
        self.assertEqual([r.status for r in responses], [400])
        self.assertEqual(responses[0].error()["Code"], "MaxMessageLengthExceeded")
        self.finish(conn, complete=True)
        self.assertUnchanged()


class LaggingDiskBodyTests(BodyTests):
    """The body tests again with a disk pool that runs only when the test lets it (so aborts
    and failures meet batches still in flight)."""

    runner = ManualRunner


# ------------------------------------------------------------------------------ XML
XML_ACTIONS: dict[str, tuple[str, str, tuple[str, str, str]]] = {
    # action: (method, target, (document element, item, field))
    "CreateBucket": ("PUT", "/fresh-bucket", ("CreateBucketConfiguration", "Location", "Name")),
    "DeleteObjects": ("POST", "/bkt?delete", ("Delete", "Object", "Key")),
    "CompleteMultipartUpload": (
        "POST",
        "/bkt/mp?uploadId={upload_id}",
        ("CompleteMultipartUpload", "Part", "PartNumber"),
    ),
    "PutObjectTagging": ("PUT", "/bkt/obj?tagging", ("Tagging", "TagSet", "Tag")),
    "PutBucketTagging": ("PUT", "/bkt?tagging", ("Tagging", "TagSet", "Tag")),
    "PutBucketVersioning": ("PUT", "/bkt?versioning", ("VersioningConfiguration", "Status", "x")),
    "PutObjectAcl": ("PUT", "/bkt/obj?acl", ("AccessControlPolicy", "Owner", "ID")),
}

# What an XML body that is not a valid document may get: the document is refused (too big, not
# well-formed, not valid), or the action is not implemented at all.
XML_REFUSALS = {
    "MalformedXML",
    "NotImplemented",
    "InvalidLocationConstraint",
    "InvalidArgument",
    "InvalidTag",
    "MaxMessageLengthExceeded",
}


@st.composite
def xml_documents(draw: st.DrawFn, vocabulary: Sequence[str]) -> bytes:
    """Random XML-ish documents over ``vocabulary`` (the action's element names) plus junk:
    nesting, text with character and entity references, CDATA, comments, processing
    instructions, namespaces, DOCTYPEs; sometimes cut short."""
    names = st.sampled_from([*vocabulary, "x", "Key", "ETag", "a:b", "1bad", "Ünï"])
    text = st.one_of(
        st.text(max_size=20).map(lambda t: t.replace("<", "&lt;").replace("&", "&amp;")),
        st.sampled_from(
            [
                "&amp;",
                "&#0;",
                "&#x1F600;",
                "&lol;",
                "<![CDATA[<x>]]>",
                "<!-- c -->",
                "<?pi x?>",
                "\x00",
                "1",
                "-1",
                "99999999999999999999",
                '"etag"',
            ]
        ),
    )

    def element(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
        return st.builds(
            lambda n, attrs, kids: f"<{n}{attrs}>{''.join(kids)}</{n}>",
            names,
            st.sampled_from(
                [
                    "",
                    ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"',
                    ' a="1"',
                    ' xmlns:a="urn:x"',
                    " a='<'",
                ]
            ),
            st.lists(children, max_size=4),
        )

    tree = st.recursive(text, element, max_leaves=12)
    root = draw(st.sampled_from([*vocabulary[:1], "x"]))
    body = f"<{root}>{''.join(draw(st.lists(tree, max_size=4)))}</{root}>"
    prolog = draw(
        st.sampled_from(
            [
                "",
                '<?xml version="1.0" encoding="UTF-8"?>',
                '<?xml version="1.1"?>',
                '<?xml version="1.0" encoding="UTF-16"?>',
                '<!DOCTYPE x [<!ENTITY lol "lol">]>',
                '<!DOCTYPE x SYSTEM "file:///etc/passwd">',
                "\ufeff",
            ]
        )
    )
    raw = (prolog + body).encode("utf-8", "surrogatepass")
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


class XmlTests(FuzzCase):
    def setUp(self) -> None:
        super().setUp()
        response = self.h.send(signed_request("POST", key_path("bkt", "mp") + "?uploads"))
        self.assertEqual(response.status, 200, response.body)
        self.upload_id = response.xml().findtext("{*}UploadId") or ""

    def send_xml(self, action: str, body: bytes) -> Response:
        method, target, _ = XML_ACTIONS[action]
        target = target.format(upload_id=self.upload_id)
        conn, responses = self.exchange([signed_request(method, target, body)])
        self.assertEqual(len(responses), 1)
        self.finish(conn, complete=True)
        return responses[0]

    def assertIntact(self) -> None:
        self.assertStore({"obj": OBJECT})
        self.assertEqual([b.name for b in self.h.meta.list_buckets()], ["bkt"])
        self.assertIsNotNone(self.h.meta.get_upload("bkt", "mp", self.upload_id))

    def test_hostile_documents(self) -> None:
        """Hostile documents (entity expansion, external entities and DTDs, broken encodings,
        junk) on every XML-taking action: refused, nothing changed.  The well-formed ones that
        may be valid for an action (an empty CreateBucket body, an empty TagSet, unknown or
        deeply nested elements an action ignores) may instead succeed."""
        maybe_valid = {
            "empty",
            "whitespace",
            "no items",
            "item without field",
            "deep nesting",
            "deep nesting of junk",
        }
        for action, (_, _, (root, item, field)) in XML_ACTIONS.items():
            for name, body in hostile_documents(root, item, field).items():
                with self.subTest(f"{action}: {name}"):
                    response = self.send_xml(action, body)
                    if name in maybe_valid and response.status == 200:
                        self.undo(action)
                    else:
                        self.assertIn(response.status, (400, 501), (action, name, response.body))
                        self.assertIn(response.error()["Code"], XML_REFUSALS, response.body)
                    self.assertIntact()

    def undo(self, action: str) -> None:
        """Undo a successful XML action's effect on the fixture."""
        if action == "CreateBucket":
            self.h.send(signed_request("DELETE", "/fresh-bucket"))
        elif action == "PutObjectTagging":
            self.h.send(signed_request("DELETE", "/bkt/obj?tagging"))

    def test_create_bucket_empty_body(self) -> None:
        """CreateBucket with an empty or whitespace body creates the bucket."""
        for body in (b"", b"  \r\n "):
            self.assertEqual(self.send_xml("CreateBucket", body).status, 200)
            self.assertIsNotNone(self.h.meta.get_bucket("fresh-bucket"))
            self.h.send(signed_request("DELETE", "/fresh-bucket"))

    @given(data=st.data(), action=st.sampled_from(sorted(XML_ACTIONS)))
    def test_random_documents(self, data: st.DataObject, action: str) -> None:
        """Random XML-ish documents on every XML-taking action: a 2xx or an S3 4xx/501, and
        nothing but the action's own effect (none, for these documents) on the store."""
        _, _, (root, item, field) = XML_ACTIONS[action]
        body = data.draw(xml_documents([root, item, field]), label="body")
        response = self.send_xml(action, body)
        if response.status == 200:
            self.undo(action)
        if action == "DeleteObjects" and self.h.meta.get_object("bkt", "obj") is None:
            # Only keys the document names may go; recreate the fixture if it was named.
            self.assertEqual(response.status, 200)
            self.assertIn(b"obj", body)
            self.h.send(put_request("bkt", "obj", OBJECT))
        self.assertIntact()
