# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Nasty clients on raw sockets against a real ``twistd -n artifactd``, over plain HTTP and TLS:
hand-made malformed requests, slowloris-style partial heads, clients that send half a body and
close, pipelined garbage.

Properties (besides :class:`DaemonTestCase`'s check that the daemon logged no error): every
socket read has a timeout, and the daemon either answers or closes; no 5xx but ``501``; every
error with a body is S3 XML; nothing is stored by a request that did not complete, and no staging
file is left behind; the daemon keeps serving well-behaved clients throughout.
"""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import struct
import time
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from artifactd.storage.layout import Layout
from tests.e2e.support import DaemonTestCase, MiB
from tests.http_harness import Response, parse_responses
from tests.test_api_errors import BILLION_LAUGHS

READ_TIMEOUT = 15.0  # seconds any single read may take before the test calls it a hang
UNSIGNED = "UNSIGNED-PAYLOAD"


class ClientSocket:
    """A raw client connection (TLS when the daemon serves TLS) with a read timeout."""

    def __init__(self, daemon: object, *, tls: bool, cert_path: str | None, port: int) -> None:
        raw = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        if tls:
            context = ssl.create_default_context(cafile=cert_path)
            raw = context.wrap_socket(raw, server_hostname="127.0.0.1")
        self.sock = raw
        self.received = b""
        self.closed_by_server = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_some(self) -> bytes:
        """One read; ``b""`` once the server has closed.  A timeout is a hang: the test fails."""
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            raise AssertionError(
                f"the daemon neither answered nor closed within {READ_TIMEOUT}s;"
                f" received so far: {self.received[:300]!r}"
            ) from None
        except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
            data = b""
        if not data:
            self.closed_by_server = True
        self.received += data
        return data

    def responses(self, count: int = 1, *, head: bool = False) -> list[Response]:
        """Read until ``count`` final responses have arrived or the server closed."""
        while True:
            try:
                found = [r for r in parse_responses(self.received, head=head) if r.status >= 200]
            except (AssertionError, ValueError):
                found = []  # a response still arriving
            if len(found) >= count and not self._bare(found[-1]):
                return found
            if self.closed_by_server:
                return parse_responses(self.received, head=head) if self.received else []
            self.read_some()

    @staticmethod
    def _bare(response: Response) -> bool:
        # A response with neither Content-Length nor chunked framing runs to the close.
        return (
            response.header("content-length") is None
            and response.header("transfer-encoding") is None
        )

    def wait_closed(self) -> None:
        """Read (and keep) whatever comes until the server closes."""
        while not self.closed_by_server:
            self.read_some()

    def close(self) -> None:
        self.sock.close()

    def reset(self) -> None:
        """Close with a TCP RST instead of a FIN."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class RawFuzzHTTPTests(DaemonTestCase):
    """Raw-socket abuse over plain HTTP."""

    def setUp(self) -> None:
        super().setUp()
        self.s3 = self.daemon.client()
        self.bucket = self.bucket_name()
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_object(Bucket=self.bucket, Key="obj", Body=b"0123456789")
        self.addCleanup(self.assertNothingStaged)

    # ------------------------------------------------------------------ helpers
    @contextmanager
    def connect(self) -> Iterator[ClientSocket]:
        daemon = self.daemon
        client = ClientSocket(daemon, tls=daemon.tls, cert_path=daemon.cert_path, port=daemon.port)
        with closing(client.sock):
            yield client

    def signed(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        headers: Mapping[str, str] | None = None,
        *,
        claim: str | None = None,
    ) -> bytes:
        """A raw request signed with the daemon's credentials now; ``claim`` replaces the
        X-Amz-Content-SHA256 value (``UNSIGNED-PAYLOAD``, a wrong digest, ...)."""
        access, secret = self.daemon.credentials()
        host = f"127.0.0.1:{self.daemon.port}"
        all_headers = {"Host": host, **(headers or {})}
        if body or method in ("PUT", "POST"):
            all_headers.setdefault("Content-Length", str(len(body)))
        request = AWSRequest(
            method=method, url=f"{self.daemon.endpoint_url}{path}", headers=all_headers, data=body
        )

        class Signer(S3SigV4Auth):  # type: ignore[misc]
            def payload(self, request: AWSRequest) -> str:
                return claim if claim is not None else str(super().payload(request))

        Signer(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
        lines = [f"{method} {path} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in request.headers.items()]
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    def exchange(self, raw: bytes, *, head: bool = False) -> tuple[list[Response], bool]:
        """Send ``raw`` on a new connection; return the responses and whether the daemon
        closed the connection.  The daemon must answer or close: a read that times out fails."""
        with self.connect() as client:
            client.send(raw)
            responses = client.responses(head=head)
            if not responses:
                self.assertTrue(client.closed_by_server)
            for response in responses:
                self.assertWellFormed(response, head=head)
            return responses, client.closed_by_server

    def assertWellFormed(self, response: Response, *, head: bool = False) -> None:
        """No 5xx but 501; an error with a body is an S3 ``<Error>`` document."""
        self.assertTrue(response.status < 500 or response.status == 501, response)
        if response.status >= 400 and response.body and not head:
            error = response.error()
            self.assertTrue(error.get("Code"))
            self.assertEqual(error.get("RequestId"), response.header("x-amz-request-id"))

    def staging_files(self) -> list[str]:
        return os.listdir(Layout(self.daemon.data_dir).staging)

    def assertNothingStaged(self, timeout: float = 10.0) -> None:
        """No staging file is left (discards run in the disk pool: allow them a moment)."""
        deadline = time.monotonic() + timeout
        while self.staging_files() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.staging_files(), [])

    def disconnects(self) -> int:
        """How many requests the daemon has logged as ended by the client going away."""
        return sum(1 for e in self.daemon.events() if e.get("error_code") == "ClientDisconnected")

    def waitForDisconnects(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the daemon has logged ``count`` client disconnects."""
        deadline = time.monotonic() + timeout
        while self.disconnects() < count:
            if time.monotonic() > deadline:
                self.fail(f"the daemon did not log {count} client disconnects")
            time.sleep(0.02)

    def keys(self) -> list[str]:
        listed = self.s3.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return [o["Key"] for o in listed]

    def assertServing(self) -> None:
        """A well-behaved client is still served."""
        body = self.s3.get_object(Bucket=self.bucket, Key="obj")["Body"].read()
        self.assertEqual(body, b"0123456789")

    # ------------------------------------------------------------------ tests
    def test_nasty_requests(self) -> None:
        """A few dozen malformed or hostile requests, each on its own connection: each is
        answered (S3 XML, or twisted's bare 400 for bytes that are not HTTP) or closed, and none
        stores anything."""
        b = self.bucket
        big_head = b"GET /%s/obj HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n" % (
            b.encode(),
            b"a" * 1_100_000,  # over the largest max_request_head_bytes allowed (1 MiB)
        )
        many_headers = (
            b"GET /%s/obj HTTP/1.1\r\n" % b.encode()
            + b"".join(b"X-H%d: v\r\n" % i for i in range(600))
            + b"\r\n"
        )
        hostile_delete = BILLION_LAUGHS.replace(b"ROOT", b"Delete").replace(b"ITEM", b"Object")
        hostile_delete = hostile_delete.replace(b"FIELD", b"Key")
        xxe = (
            b'<?xml version="1.0"?><!DOCTYPE Delete [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            b"<Delete><Object><Key>&x;</Key></Object></Delete>"
        )
        deep = b"<Delete>" + b"<Object>" * 100_000 + b"</Object>" * 100_000 + b"</Delete>"
        nasty: dict[str, bytes] = {
            "garbage": b"\x00\x01\x02\x03garbage\r\n\r\n",
            "blank lines": b"\r\n\r\n\r\n\r\n",
            "no version": b"GET /\r\n\r\n",
            "bad version": b"GET / HTTP/7.0\r\nHost: x\r\n\r\n",
            "nul in path": b"GET /%s/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n" % b.encode(),
            "high bytes in path": b"GET /%s/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n" % b.encode(),
            "percent junk": b"GET /%s/%%zz%%FF HTTP/1.1\r\nHost: x\r\n\r\n" % b.encode(),
            "no slash": b"GET bucket HTTP/1.1\r\nHost: x\r\n\r\n",
            "absolute uri": b"GET http://x/%s/obj HTTP/1.1\r\nHost: x\r\n\r\n" % b.encode(),
            "star": b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
            "lowercase method": b"get /%s/obj HTTP/1.1\r\nHost: x\r\n\r\n" % b.encode(),
            "header without colon": b"GET / HTTP/1.1\r\nHost x\r\n\r\n",
            "header with nul": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n",
            "obs-fold": b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n",
            "head over the limit": big_head,
            "too many headers": many_headers,
            "request line of 100 KiB": b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n",
            "negative length": b"PUT /%s/n HTTP/1.1\r\nContent-Length: -5\r\n\r\n" % b.encode(),
            "two lengths": b"PUT /%s/n HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2"
            b"\r\n\r\nab" % b.encode(),
            "length and chunked": b"PUT /%s/n HTTP/1.1\r\nContent-Length: 3\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" % b.encode(),
            "gzip transfer coding": b"PUT /%s/n HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n"
            % b.encode(),
            "bad chunk size": self.signed(
                "PUT", f"/{b}/n", headers={"Transfer-Encoding": "chunked"}, claim=UNSIGNED
            )
            + b"zz\r\nabc\r\n0\r\n\r\n",
            "chunk size overflow": self.signed(
                "PUT", f"/{b}/n", headers={"Transfer-Encoding": "chunked"}, claim=UNSIGNED
            )
            + b"ffffffffffffffffffffffff\r\nabc\r\n0\r\n\r\n",
            "unsigned upload": b"PUT /%s/n HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc" % b.encode(),
            "wrong payload digest": self.signed("PUT", f"/{b}/n", b"abc", claim="0" * 64),
            "bad aws-chunked framing": self.signed(
                "PUT",
                f"/{b}/n",
                b"3\r\nabcX0\r\n\r\n",
                {"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "3"},
                claim="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            ),
            "aws-chunked shorter than declared": self.signed(
                "PUT",
                f"/{b}/n",
                b"3\r\nabc\r\n0\r\n\r\n",
                {"Content-Encoding": "aws-chunked", "X-Amz-Decoded-Content-Length": "30"},
                claim="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            ),
            "6 GiB upload": self.signed(
                "PUT", f"/{b}/n", headers={"Content-Length": str(6 * 1024**3)}, claim=UNSIGNED
            ),
            "entity expansion": self.signed("POST", f"/{b}?delete", hostile_delete),
            "external entity": self.signed("POST", f"/{b}?delete", xxe),
            "deep nesting": self.signed("POST", f"/{b}?delete", deep),
            "complete with junk": self.signed(
                "POST", f"/{b}/mp?uploadId=nope", b"<CompleteMultipartUpload>\xff"
            ),
        }
        for name, raw in nasty.items():
            with self.subTest(name):
                responses, closed = self.exchange(raw)
                self.assertTrue(responses or closed, name)
                for response in responses:
                    self.assertNotEqual(response.status, 200, (name, response))
        self.assertEqual(self.keys(), ["obj"])
        self.assertServing()

    def test_slowloris(self) -> None:
        """Fifty connections holding partial heads do not stop the daemon serving others; a
        head completed byte by byte is answered; the abandoned ones are closed cleanly."""
        request = self.signed("GET", f"/{self.bucket}/obj")
        holders = []
        try:
            for i in range(50):
                client = ClientSocket(
                    self.daemon,
                    tls=self.daemon.tls,
                    cert_path=self.daemon.cert_path,
                    port=self.daemon.port,
                )
                holders.append(client)
                client.send(request[: 5 + i])
            self.assertServing()
            self.s3.put_object(Bucket=self.bucket, Key="during", Body=b"still here")
            for client, sent in zip(holders[:5], range(5, 10), strict=True):
                for i in range(sent, len(request)):
                    client.send(request[i : i + 1])
                (response,) = client.responses()
                self.assertEqual((response.status, response.body), (200, b"0123456789"))
            for client in holders[5:25]:
                client.close()
            for client in holders[25:]:
                client.reset()
        finally:
            for client in holders:
                client.sock.close()
        self.assertServing()
        self.assertEqual(sorted(self.keys()), ["during", "obj"])

    def test_half_body_then_close(self) -> None:
        """Clients that send half a body and then close (FIN or RST, with and without
        ``Expect: 100-continue``, plain and aws-chunked) leave no object and no staging file."""
        size = 8 * MiB
        body = os.urandom(size)
        cases = {
            "plain": (self.signed("PUT", f"/{self.bucket}/half", body, claim=UNSIGNED), False),
            "expect": (
                self.signed(
                    "PUT",
                    f"/{self.bucket}/half",
                    body,
                    {"Expect": "100-continue"},
                    claim=UNSIGNED,
                ),
                True,
            ),
            "signed digest": (self.signed("PUT", f"/{self.bucket}/half", body), False),
            "aws-chunked": (
                self.signed(
                    "PUT",
                    f"/{self.bucket}/half",
                    b"%x\r\n" % size + body + b"\r\n0\r\n\r\n",
                    {
                        "Content-Encoding": "aws-chunked",
                        "X-Amz-Decoded-Content-Length": str(size),
                    },
                    claim="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                ),
                False,
            ),
        }
        for name, (raw, expect) in cases.items():
            for ending in ("close", "reset"):
                with self.subTest(f"{name}, {ending}"):
                    head_end = raw.index(b"\r\n\r\n") + 4
                    seen = self.disconnects()
                    with self.connect() as client:
                        client.send(raw[:head_end])
                        if expect:
                            while b"100 Continue" not in client.received:
                                self.assertTrue(client.read_some(), "closed before 100 Continue")
                        client.send(raw[head_end : head_end + size // 2])
                        client.close() if ending == "close" else client.reset()
                    # only once the daemon has seen the client go can nothing be left: until
                    # then a batch in flight may still be creating the staging file
                    self.waitForDisconnects(seen + 1)
                    self.assertNothingStaged()
                    self.assertEqual(self.keys(), ["obj"])
        self.assertServing()

    def test_large_bodies_on_one_connection(self) -> None:
        """Large plain bodies (over plain HTTP the daemon's body threads read them from the
        socket) with more requests written right behind them on the same connection: every
        request is answered, in order; every object is whole; a body whose digest does not
        match its signature is refused and stores nothing."""
        one = os.urandom(3 * MiB)
        two = os.urandom(5 * MiB + 7)
        other = hashlib.sha256(b"other").hexdigest()
        b = self.bucket
        with self.connect() as client:
            client.send(
                self.signed("PUT", f"/{b}/one", one, claim=UNSIGNED)
                + self.signed("GET", f"/{b}/obj")
                + self.signed("PUT", f"/{b}/two", two)
                + self.signed("PUT", f"/{b}/wrong", one, claim=other)
                + self.signed("GET", f"/{b}/obj")
            )
            responses = client.responses(5)
        self.assertEqual([r.status for r in responses], [200, 200, 200, 400, 200])
        for response in responses:
            self.assertWellFormed(response)
        self.assertEqual(responses[1].body, b"0123456789")
        self.assertEqual(responses[3].error()["Code"], "XAmzContentSHA256Mismatch")
        self.assertEqual(responses[4].body, b"0123456789")
        self.assertEqual(self.s3.get_object(Bucket=b, Key="one")["Body"].read(), one)
        self.assertEqual(self.s3.get_object(Bucket=b, Key="two")["Body"].read(), two)
        self.assertEqual(sorted(self.keys()), ["obj", "one", "two"])

    def test_pipelined_garbage(self) -> None:
        """Valid requests followed by garbage on one connection: the valid ones are answered in
        order, then the garbage is refused and the connection closed."""
        get = self.signed("GET", f"/{self.bucket}/obj")
        put = self.signed("PUT", f"/{self.bucket}/piped", b"piped body")
        with self.connect() as client:
            client.send(get + put + get + b"\x00GARBAGE / HTTP/1.1\r\n\r\n" + get)
            client.wait_closed()
            responses = parse_responses(client.received)
        self.assertEqual([r.status for r in responses], [200, 200, 200, 400])
        self.assertEqual(responses[0].body, b"0123456789")
        self.assertEqual(responses[2].body, b"0123456789")
        for response in responses:
            self.assertWellFormed(response)
        self.assertEqual(
            self.s3.get_object(Bucket=self.bucket, Key="piped")["Body"].read(), b"piped body"
        )

    def test_pipelined_requests(self) -> None:
        """Twenty requests written at once on one connection get twenty answers, in order."""
        requests = []
        for i in range(20):
            if i % 3 == 0:
                requests.append(self.signed("GET", f"/{self.bucket}/missing-{i}"))
            else:
                requests.append(self.signed("GET", f"/{self.bucket}/obj"))
        with self.connect() as client:
            client.send(b"".join(requests))
            responses = client.responses(20)
        self.assertEqual(
            [r.status for r in responses], [404 if i % 3 == 0 else 200 for i in range(20)]
        )
        for response in responses:
            self.assertWellFormed(response)

    def test_abandoned_download(self) -> None:
        """A client that reads part of a large object and closes (or resets) leaves the daemon
        serving and logging no error."""
        self.s3.put_object(Bucket=self.bucket, Key="large", Body=os.urandom(16 * MiB))
        for ending in ("close", "reset"):
            with self.connect() as client:
                client.send(self.signed("GET", f"/{self.bucket}/large"))
                while len(client.received) < MiB:
                    self.assertTrue(client.read_some())
                client.close() if ending == "close" else client.reset()
        self.assertServing()

    def test_bad_request_then_nothing(self) -> None:
        """After refusing a request early (bad signature, with Expect), the daemon closes the
        connection even if the client never sends the body and never closes."""
        raw = self.signed(
            "PUT", f"/{self.bucket}/refused", b"x" * MiB, {"Expect": "100-continue"}, claim="0" * 64
        )
        access, _ = self.daemon.credentials()
        raw = raw.replace(access.encode(), b"AKIDUNKNOWN000000000", 1)
        head = raw[: raw.index(b"\r\n\r\n") + 4]
        with self.connect() as client:
            client.send(head)
            (response,) = client.responses()
            self.assertEqual(response.status, 403)
            self.assertEqual(response.error()["Code"], "InvalidAccessKeyId")
            self.assertNotIn(b"100 Continue", client.received)
            client.wait_closed()  # within the linger time, without the client doing anything
        e = self.assertRaises(ClientError, self.s3.head_object, Bucket=self.bucket, Key="refused")
        self.assertEqual(e.response["Error"]["Code"], "404")


class RawFuzzTLSTests(RawFuzzHTTPTests):
    """The same abuse over TLS, plus clients that do not speak TLS at all."""

    tls = True

    def test_not_tls(self) -> None:
        """Plain HTTP, or random bytes, sent to the TLS port: the daemon closes the connection
        and keeps serving."""
        for junk in (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", os.urandom(2000), b"\x16\x03\x01\x00"):
            with closing(socket.create_connection(("127.0.0.1", self.daemon.port), 10)) as sock:
                sock.settimeout(READ_TIMEOUT)
                sock.sendall(junk)
                if junk == b"\x16\x03\x01\x00":
                    sock.shutdown(socket.SHUT_WR)  # a truncated handshake record, then EOF
                try:
                    while sock.recv(65536):
                        pass
                except ConnectionResetError:
                    pass
                except TimeoutError:
                    self.fail(f"the daemon kept a non-TLS connection open: {junk[:20]!r}")
        self.assertServing()
