"""The body path of :mod:`artifactd.http.site`, driven with raw HTTP/1.1 bytes over a
StringTransport: the order of the channel's hooks, early refusal, arbitrary chunkings, digest
checks, backpressure, client disconnects and the access log."""

from __future__ import annotations

import base64
import gc
import hashlib
import weakref
import zlib
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from artifactd.config import Config
from artifactd.http.body import BATCH, HIGH_WATER
from artifactd.http.site import LINGER_BYTES, LINGER_SECONDS, S3Request
from artifactd.testing import ManualRunner
from tests import strategies
from tests.http_harness import (
    ACCESS_KEY,
    SECRET_KEY,
    Connection,
    Harness,
    RecordingTransport,
    Response,
    key_path,
    put_request,
    serialise,
    sign,
    signed_request,
    split_at,
    split_head,
)

CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
ENCODINGS = ("plain", "chunked", "aws-chunked")


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


def pattern(size: int) -> bytes:
    """``size`` bytes that are not one repeated byte (so truncation or reordering shows)."""
    block = bytes(range(251))
    return (block * (size // len(block) + 1))[:size]


class RecordingRequest(S3Request):
    """An S3Request that notes each channel hook in the connection's event list."""

    def _note(self, *event: Any) -> None:
        cast(RecordingTransport, self.channel.transport).events.append(event)

    def gotLength(self, length: int | None) -> None:
        headers = {
            name.decode("latin-1").lower(): b",".join(values).decode("latin-1")
            for name, values in self.requestHeaders.getAllRawHeaders()
        }
        self._note("gotLength", length, headers)
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        self._note("chunk", bytes(data))
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        self._note("requestReceived")
        super().requestReceived(command, path, version)

    def process(self) -> None:
        self._note("process")
        super().process()


def kinds(events: list[tuple[Any, ...]]) -> list[str]:
    """The sequence of event kinds, runs of body chunks and response writes collapsed."""
    out: list[str] = []
    for event in events:
        kind = event[0]
        if kind == "write":
            kind = "continue" if event[1] == CONTINUE else "response"
        if out and out[-1] == kind and kind in ("chunk", "response"):
            continue
        out.append(kind)
    return out


def chunk_bytes(events: list[tuple[Any, ...]]) -> bytes:
    return b"".join(e[1] for e in events if e[0] == "chunk")


class HarnessTestCase(SynchronousTestCase):
    def harness(self, **kwargs: Any) -> Harness:
        h = Harness(self.mktemp(), **kwargs)
        h.create_bucket("bkt")
        return h

    def assertNothingLeft(self, h: Harness, bucket: str, key: str) -> None:
        self.assertIsNone(h.meta.get_object(bucket, key))
        self.assertEqual(h.staging_files(), [])
        self.assertEqual(h.blob_files(), [])

    def assertError(self, response: Response, status: int, code: str) -> dict[str, str]:
        self.assertEqual(
            (response.status, response.header("content-type")),
            (status, "application/xml"),
            response.body,
        )
        error = response.error()
        self.assertEqual(error["Code"], code, response.body)
        self.assertEqual(error["RequestId"], response.header("x-amz-request-id"))
        return error


class HookOrderTests(HarnessTestCase):
    """The channel hooks the body path relies on fire in the order the design assumes."""

    def setUp(self) -> None:
        self.h = self.harness(
            config=Config(
                data_dir="unused",
                root_access_key=ACCESS_KEY,
                root_secret_key=SECRET_KEY,
                max_object_size=1000,
            )
        )
        self.h.site.requestFactory = RecordingRequest  # type: ignore[assignment]

    def test_accepted_with_expect(self) -> None:
        """gotLength sees the headers, then 100 Continue, then the body, then routing."""
        payload = pattern(600)
        raw = put_request("bkt", "k", payload, expect=True)
        head, body = split_head(raw)
        conn = self.h.connect()
        conn.feed(head)
        self.assertEqual(kinds(conn.events), ["gotLength", "continue"])
        _, length, headers = conn.events[0]
        self.assertEqual(length, 600)
        self.assertEqual(headers["expect"], "100-continue")
        self.assertEqual(headers["x-amz-content-sha256"], sha256_hex(payload))
        self.assertIn("authorization", headers)
        for piece in split_at(body, [100, 250]):
            conn.feed(piece)
        self.assertEqual(
            kinds(conn.events),
            ["gotLength", "continue", "chunk", "requestReceived", "process", "response"],
        )
        self.assertEqual(chunk_bytes(conn.events), payload)
        response = conn.response()
        self.assertEqual(response.status, 200)
        self.assertEqual(response.interim, [100])

    def test_accepted_without_expect(self) -> None:
        """Without Expect: 100-continue nothing interim is written; the order is the same."""
        raw = put_request("bkt", "k", pattern(10), encoding="chunked")
        conn = self.h.connect()
        conn.feed(raw)
        self.assertEqual(
            kinds(conn.events), ["gotLength", "chunk", "requestReceived", "process", "response"]
        )
        self.assertIsNone(conn.events[0][1])  # chunked: no length known from the head
        self.assertEqual(conn.response().interim, [])

    def test_http10_expect_gets_no_continue(self) -> None:
        """An HTTP/1.0 request with Expect gets no 100 Continue."""
        raw = put_request("bkt", "k", pattern(10), expect=True)
        raw = raw.replace(b" HTTP/1.1\r\n", b" HTTP/1.0\r\n", 1)
        conn = self.h.connect()
        conn.feed(raw)
        self.assertNotIn("continue", kinds(conn.events))
        self.assertEqual(self.h.meta.get_object("bkt", "k").size, 10)  # type: ignore[union-attr]

    def assertRefusedBeforeBody(self, raw: bytes, status: int, code: str) -> None:
        head, body = split_head(raw)
        conn = self.h.connect()
        conn.feed(head)
        self.assertEqual(kinds(conn.events), ["gotLength", "response"])
        response = conn.response()
        self.assertError(response, status, code)
        self.assertEqual(response.interim, [])
        self.assertEqual(response.header("connection"), "close")
        # A client that ignores the refusal and sends the body anyway: bytes are discarded.
        conn.feed(body)
        self.assertNotIn("continue", kinds(conn.events))
        self.assertNotIn("process", kinds(conn.events))
        self.assertEqual(len(conn.responses()), 1)
        self.assertEqual(self.h.blobs.staging_opened, 0)
        self.assertEqual(self.h.staging_files(), [])
        self.assertIsNone(self.h.meta.get_object("bkt", "k"))
        # The lingering close gives up after LINGER_SECONDS.
        self.assertFalse(conn.transport.disconnected)
        self.h.clock.advance(LINGER_SECONDS)
        self.assertTrue(conn.transport.disconnected)
        conn.disconnect()
        self.assertEqual(self.h.staging_files(), [])

    def test_refused_bad_signature(self) -> None:
        """A bad signature is refused from the head: 403, no 100 Continue, no body staged."""
        raw = put_request("bkt", "k", pattern(100), expect=True, secret_key="not-the-secret")
        self.assertRefusedBeforeBody(raw, 403, "SignatureDoesNotMatch")

    def test_refused_no_such_bucket(self) -> None:
        """A PUT into a missing bucket is refused from the head with NoSuchBucket."""
        raw = put_request("nobucket", "k", pattern(100), expect=True)
        self.assertRefusedBeforeBody(raw, 404, "NoSuchBucket")

    def test_refused_content_length_over_cap(self) -> None:
        """A Content-Length over max_object_size is refused with EntityTooLarge."""
        raw = put_request("bkt", "k", pattern(1001), expect=True)
        self.assertRefusedBeforeBody(raw, 400, "EntityTooLarge")

    def test_refused_decoded_length_over_cap(self) -> None:
        """An X-Amz-Decoded-Content-Length over the cap is refused with EntityTooLarge."""
        raw = put_request("bkt", "k", pattern(1001), encoding="aws-chunked", expect=True)
        self.assertRefusedBeforeBody(raw, 400, "EntityTooLarge")

    def test_refused_without_expect(self) -> None:
        """Without Expect, a refusal still comes before any body byte is accepted."""
        raw = put_request("bkt", "k", pattern(1001))
        conn = self.h.connect()
        conn.feed(raw)
        self.assertError(conn.response(), 400, "EntityTooLarge")
        self.assertNotIn("process", kinds(conn.events))
        self.assertEqual(self.h.blobs.staging_opened, 0)
        self.assertEqual(self.h.staging_files(), [])

    def test_refused_client_keeps_sending(self) -> None:
        """A refused client that keeps sending is aborted after LINGER_BYTES."""
        target = key_path("bkt", "k")
        size = LINGER_BYTES + 4 * BATCH
        headers = sign("PUT", target, {"Content-Length": str(size)}, payload=b"", secret_key="x")
        conn = self.h.connect()
        conn.feed(serialise("PUT", target, headers))
        self.assertError(conn.response(), 403, "SignatureDoesNotMatch")
        piece = bytes(BATCH)
        sent = 0
        while not conn.transport.disconnected and sent < size:
            conn.feed(piece)
            sent += len(piece)
        self.assertTrue(conn.transport.disconnected)
        self.assertGreater(sent, LINGER_BYTES)
        self.assertLessEqual(sent, LINGER_BYTES + BATCH)
        self.assertEqual(self.h.blobs.staging_opened, 0)


class ChunkingTests(HarnessTestCase):
    """Any split of the request bytes stores exactly the payload."""

    def check_stored(self, h: Harness, key: str, payload: bytes, response: Response) -> None:
        self.assertEqual(response.status, 200, response.body)
        self.assertEqual(response.body, b"")
        self.assertEqual(response.header("etag"), f'"{md5_hex(payload)}"')
        self.assertEqual(response.header("x-artifactd-digest"), f"sha256:{sha256_hex(payload)}")
        got = h.get("bkt", key)
        self.assertEqual(got.status, 200)
        self.assertEqual(got.body, payload)
        self.assertEqual(got.header("etag"), f'"{md5_hex(payload)}"')
        self.assertEqual(got.header("x-artifactd-digest"), f"sha256:{sha256_hex(payload)}")
        self.assertEqual(got.header("content-length"), str(len(payload)))
        self.assertIsNone(got.header("content-encoding"))  # aws-chunked is not stored
        self.assertEqual(h.staging_files(), [])
        [blob] = h.blob_files()
        with open(blob, "rb") as f:
            self.assertEqual(f.read(), payload)

    @settings(deadline=None, max_examples=75, suppress_health_check=[HealthCheck.too_slow])
    @given(
        payload=st.binary(max_size=3000),
        encoding=st.sampled_from(ENCODINGS),
        expect=st.booleans(),
        cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=25),
        http_chunks=st.lists(st.integers(min_value=1, max_value=700), max_size=4),
        aws_chunk=st.integers(min_value=1, max_value=2048),
    )
    def test_any_split(
        self,
        payload: bytes,
        encoding: str,
        expect: bool,
        cuts: list[int],
        http_chunks: list[int],
        aws_chunk: int,
    ) -> None:
        """Any split of a PutObject, in any encoding, stores the payload with ETag=MD5, SHA-256."""
        h = self.harness()
        raw = put_request(
            "bkt",
            "k",
            payload,
            encoding=encoding,
            expect=expect,
            http_chunks=http_chunks,
            aws_chunk_size=aws_chunk,
        )
        response = h.send(split_at(raw, cuts))
        self.check_stored(h, "k", payload, response)
        self.assertEqual(response.interim, [100] if expect else [])
        if encoding == "aws-chunked":
            self.assertEqual(response.header("x-amz-checksum-crc32"), crc32_b64(payload))

    def test_boto3_capture(self) -> None:
        """boto3's https PutObject (aws-chunked, CRC32 trailer) stores the payload, not framing."""
        h = self.harness()
        raw = put_request("bkt", "k", b"hello world", encoding="aws-chunked", expect=True)
        self.assertIn(b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n", raw)
        response = h.send(raw)
        self.check_stored(h, "k", b"hello world", response)
        self.assertEqual(response.header("x-amz-checksum-crc32"), "DUoRhQ==")

    def test_multi_batch_bodies(self) -> None:
        """Bodies spanning several staging batches store exactly, in every encoding."""
        payload = pattern(2 * BATCH + 12345)
        for encoding in ENCODINGS:
            h = self.harness()
            raw = put_request("bkt", "k", payload, encoding=encoding, http_chunks=[65536 + 7])
            pieces = [raw[i : i + 100_003] for i in range(0, len(raw), 100_003)]
            self.check_stored(h, "k", payload, h.send(pieces))

    def test_empty_body(self) -> None:
        """An empty PutObject stores an empty object, in every encoding."""
        for encoding in ENCODINGS:
            h = self.harness()
            self.check_stored(h, "k", b"", h.send(put_request("bkt", "k", b"", encoding=encoding)))


class DigestMismatchTests(HarnessTestCase):
    """A body that does not match its declared digests is refused and leaves nothing."""

    def test_content_sha256_mismatch(self) -> None:
        """A wrong x-amz-content-sha256 gives 400 XAmzContentSHA256Mismatch."""
        for size in (0, 100, BATCH + 10):
            for encoding in ("plain", "chunked"):
                h = self.harness()
                raw = put_request(
                    "bkt", "k", pattern(size), encoding=encoding, sign_payload=b"something else"
                )
                error = self.assertError(h.send(raw), 400, "XAmzContentSHA256Mismatch")
                self.assertEqual(error["S3ComputedContentSHA256"], sha256_hex(pattern(size)))
                self.assertNothingLeft(h, "bkt", "k")

    def test_content_md5_mismatch(self) -> None:
        """A wrong Content-MD5 gives 400 BadDigest."""
        wrong = base64.b64encode(hashlib.md5(b"something else").digest()).decode()
        for size in (0, 100, BATCH + 10):
            for encoding in ENCODINGS:
                h = self.harness()
                raw = put_request(
                    "bkt", "k", pattern(size), encoding=encoding, headers={"Content-MD5": wrong}
                )
                self.assertError(h.send(raw), 400, "BadDigest")
                self.assertNothingLeft(h, "bkt", "k")

    def test_content_md5_match(self) -> None:
        """A correct Content-MD5 is accepted."""
        h = self.harness()
        payload = pattern(100)
        good = base64.b64encode(hashlib.md5(payload).digest()).decode()
        raw = put_request("bkt", "k", payload, headers={"Content-MD5": good})
        self.assertEqual(h.send(raw).status, 200)

    def test_trailer_crc_mismatch(self) -> None:
        """A wrong x-amz-checksum-crc32 trailer gives 400 BadDigest."""
        for size in (0, 100, BATCH + 10):
            h = self.harness()
            payload = pattern(size)
            raw = put_request("bkt", "k", payload, encoding="aws-chunked", http_chunks=[1 << 22])
            good = f"x-amz-checksum-crc32:{crc32_b64(payload)}".encode()
            bad = f"x-amz-checksum-crc32:{crc32_b64(payload + b'!')}".encode()
            self.assertEqual(raw.count(good), 1)
            self.assertError(h.send(raw.replace(good, bad)), 400, "BadDigest")
            self.assertNothingLeft(h, "bkt", "k")

    def test_header_crc_mismatch(self) -> None:
        """A wrong x-amz-checksum-crc32 header (the plain-http form) gives 400 BadDigest."""
        h = self.harness()
        payload = pattern(100)
        raw = put_request(
            "bkt", "k", payload, headers={"x-amz-checksum-crc32": crc32_b64(payload + b"!")}
        )
        self.assertError(h.send(raw), 400, "BadDigest")
        self.assertNothingLeft(h, "bkt", "k")

    def test_failed_overwrite_keeps_previous(self) -> None:
        """A refused overwrite leaves the previous version readable and unchanged."""
        h = self.harness()
        self.assertEqual(h.send(put_request("bkt", "k", b"version one")).status, 200)
        raw = put_request("bkt", "k", b"version two", sign_payload=b"version three")
        self.assertError(h.send(raw), 400, "XAmzContentSHA256Mismatch")
        self.assertEqual(h.get("bkt", "k").body, b"version one")
        self.assertEqual(h.staging_files(), [])
        self.assertEqual(len(h.blob_files()), 1)

    def test_truncated_aws_chunked(self) -> None:
        """An aws-chunked body that ends before its final chunk is refused and leaves nothing."""
        h = self.harness()
        payload = pattern(5000)
        target = key_path("bkt", "k")
        headers = sign(
            "PUT",
            target,
            {
                "Transfer-Encoding": "chunked",
                "Content-Encoding": "aws-chunked",
                "X-Amz-Trailer": "x-amz-checksum-crc32",
                "X-Amz-Decoded-Content-Length": str(len(payload)),
            },
            payload=None,
            trailer="x-amz-checksum-crc32",
        )
        framed = b"%x\r\n" % len(payload) + payload[:3000]  # ends mid-chunk
        raw = serialise("PUT", target, headers, b"%x\r\n%s\r\n0\r\n\r\n" % (len(framed), framed))
        response = h.send(raw)
        self.assertEqual(response.status, 400)
        self.assertIn(response.error()["Code"], ("IncompleteBody", "InvalidEncoding"))
        self.assertNothingLeft(h, "bkt", "k")


class BackpressureTests(HarnessTestCase):
    """The transport is paused while the disk lags and resumed once it catches up."""

    def test_pause_and_resume(self) -> None:
        """Past the high-water mark reading pauses; firing the pending batches resumes it."""
        runner = ManualRunner()
        h = self.harness(runner=runner)
        payload = pattern(HIGH_WATER + 3 * BATCH)
        head, body = split_head(put_request("bkt", "k", payload))
        conn = h.connect()
        conn.feed(head)
        piece = 64 * 1024
        sent = 0
        while conn.transport.producerState == "producing" and sent < len(body):
            conn.feed(body[sent : sent + piece])
            sent += piece
        self.assertEqual(conn.transport.producerState, "paused")
        self.assertGreater(sent, HIGH_WATER)
        self.assertLessEqual(sent, HIGH_WATER + BATCH + piece)
        self.assertEqual(len(runner.pending), 2)  # one batch in flight (two lanes), the rest queued
        fired = 0
        while conn.transport.producerState == "paused":
            self.assertTrue(runner.pending, "paused with nothing pending")
            runner.fire()
            fired += 1
        self.assertEqual(conn.transport.producerState, "producing")
        self.assertGreaterEqual(fired, 1)
        conn.feed(body[sent:])
        h.settle()
        self.assertEqual(conn.response().status, 200)
        self.assertEqual(conn.transport.producerState, "producing")
        self.assertEqual(h.get("bkt", "k").body, payload)
        self.assertEqual(h.staging_files(), [])

    def test_no_pause_when_disk_keeps_up(self) -> None:
        """With an inline disk pool the transport is never paused."""
        h = self.harness()
        payload = pattern(HIGH_WATER + 3 * BATCH)
        head, body = split_head(put_request("bkt", "k", payload))
        conn = h.connect()
        conn.feed(head)
        for i in range(0, len(body), 256 * 1024):
            conn.feed(body[i : i + 256 * 1024])
            self.assertEqual(conn.transport.producerState, "producing")
        self.assertEqual(conn.response().status, 200)


class DisconnectTests(HarnessTestCase):
    """A client that goes away mid-request leaves no staging file and no record."""

    def test_mid_body(self) -> None:
        """Disconnecting mid-body removes the staging file already written."""
        h = self.harness()
        head, body = split_head(put_request("bkt", "k", pattern(3 * BATCH)))
        conn = h.connect()
        conn.feed(head + body[: 2 * BATCH])
        self.assertEqual(len(h.staging_files()), 1)
        conn.disconnect()
        self.assertNothingLeft(h, "bkt", "k")

    def test_mid_body_with_batch_in_flight(self) -> None:
        """Disconnecting while a batch is being written removes the file once it is done."""
        runner = ManualRunner()
        h = self.harness(runner=runner)
        head, body = split_head(put_request("bkt", "k", pattern(3 * BATCH)))
        conn = h.connect()
        conn.feed(head + body[: BATCH + 10])
        self.assertEqual(len(runner.pending), 2)  # one batch: its MD5 lane and its write lane
        conn.disconnect()
        h.settle()
        self.assertNothingLeft(h, "bkt", "k")

    def test_after_body_before_commit(self) -> None:
        """Disconnecting after the body, while it is being synced, commits nothing."""
        runner = ManualRunner()
        h = self.harness(runner=runner)
        conn = h.connect()
        conn.feed(put_request("bkt", "k", pattern(BATCH + 10)))
        self.assertTrue(runner.pending)
        conn.disconnect()
        h.settle()
        self.assertNothingLeft(h, "bkt", "k")

    def test_mid_aws_chunked_body(self) -> None:
        """Disconnecting mid aws-chunked body leaves nothing."""
        h = self.harness()
        raw = put_request("bkt", "k", pattern(3 * BATCH), encoding="aws-chunked")
        conn = h.connect()
        conn.feed(raw[: len(raw) // 2])
        self.assertEqual(len(h.staging_files()), 1)
        conn.transport.loseConnection()
        conn.disconnect()
        self.assertNothingLeft(h, "bkt", "k")

    def test_during_commit_cancels_the_handler_not_the_commit(self) -> None:
        """Disconnecting while the commit runs: the API resource cancels the handler (nothing
        is written to the lost connection, no error is logged) but the commit, once begun,
        completes; the request's access event says the client went away."""
        runner = ManualRunner()
        h = self.harness(runner=runner)
        observer = capture_logs(self)
        conn = h.connect()
        conn.feed(put_request("bkt", "k", b"a small body"))
        self.assertEqual(len(runner.pending), 1)  # the commit (the body was staged in memory)
        written = len(conn.transport.value())
        conn.disconnect()
        h.settle()
        self.assertEqual(len(conn.transport.value()), written)
        record = h.meta.get_object("bkt", "k")
        assert record is not None
        self.assertEqual(record.size, len(b"a small body"))
        self.assertEqual(
            [e.get("error_code") for e in access_events(observer)], ["ClientDisconnected"]
        )
        self.assertEqual([e for e in observer if e.get("log_level") == LogLevel.critical], [])
        self.assertEqual([e for e in observer if "log_failure" in e], [])

    def test_disconnect_in_headers(self) -> None:
        """Disconnecting before the head is complete leaves nothing and logs nothing."""
        h = self.harness()
        observer = capture_logs(self)
        raw = put_request("bkt", "k", pattern(100))
        conn = h.connect()
        conn.feed(raw[:40])
        conn.disconnect()
        self.assertNothingLeft(h, "bkt", "k")
        self.assertEqual(access_events(observer), [])


def capture_logs(case: SynchronousTestCase) -> EventLoggingObserver:
    """Every log event from now until the end of the test."""
    observer = EventLoggingObserver()
    globalLogPublisher.addObserver(observer)
    case.addCleanup(globalLogPublisher.removeObserver, observer)
    return observer


def access_events(observer: EventLoggingObserver, start: int = 0) -> list[Any]:
    return [e for e in list(observer)[start:] if e.get("log_namespace") == "artifactd.access"]


class AccessLogTests(HarnessTestCase):
    """Every request is logged exactly once in the artifactd.access namespace."""

    def setUp(self) -> None:
        self.h = self.harness(
            config=Config(
                data_dir="unused",
                root_access_key=ACCESS_KEY,
                root_secret_key=SECRET_KEY,
                max_object_size=10 * BATCH,
            )
        )
        self.observer = capture_logs(self)
        self.seen = 0  # events before this index were checked already

    def new_events(self) -> list[Any]:
        return access_events(self.observer, self.seen)

    def one_event(self, conn: Connection, response: Response | None) -> dict[str, Any]:
        events = self.new_events()
        self.assertEqual(len(events), 1, events)
        event: dict[str, Any] = events[0]
        if response is not None:
            self.assertEqual(event["request_id"], response.header("x-amz-request-id"))
            self.assertEqual(event["status"], response.status)
        for name in (
            "method",
            "action",
            "bucket",
            "key",
            "status",
            "error_code",
            "bytes_in",
            "bytes_out",
            "duration_ms",
            "principal",
        ):
            self.assertIn(name, event)
        self.assertNotIn(SECRET_KEY, repr(event))
        self.seen = len(self.observer)
        return event

    def exchange(self, raw: bytes, *, head: bool = False) -> tuple[Connection, Response]:
        conn = self.h.connect()
        conn.feed(raw)
        self.h.settle()
        return conn, conn.response(head=head)

    def test_put_and_get(self) -> None:
        """A PUT and a GET each give one event with their request id, size and principal."""
        conn, response = self.exchange(put_request("bkt", "k", pattern(1000)))
        event = self.one_event(conn, response)
        self.assertEqual(
            (event["action"], event["bucket"], event["key"], event["bytes_in"]),
            ("PutObject", "bkt", "k", 1000),
        )
        self.assertEqual(event["principal"], ACCESS_KEY)
        self.assertIsNone(event["error_code"])
        conn, response = self.exchange(signed_request("GET", key_path("bkt", "k")))
        event = self.one_event(conn, response)
        self.assertEqual((event["action"], event["status"]), ("GetObject", 200))
        self.assertGreaterEqual(event["bytes_out"], 1000)
        conn, response = self.exchange(signed_request("HEAD", key_path("bkt", "k")), head=True)
        self.assertEqual(self.one_event(conn, response)["action"], "HeadObject")

    def test_errors(self) -> None:
        """Refused, failed and unauthenticated requests each give one event with their code."""
        cases = [
            (signed_request("GET", key_path("bkt", "missing")), "NoSuchKey"),
            (
                put_request("bkt", "k", pattern(10), expect=True, secret_key="x"),
                "SignatureDoesNotMatch",
            ),
            (put_request("bkt", "k", pattern(10 * BATCH + 1)), "EntityTooLarge"),
            (put_request("bkt", "k", pattern(10), sign_payload=b"x"), "XAmzContentSHA256Mismatch"),
            (serialise("GET", "/bkt/k", [("Host", "s3.test")]), "AccessDenied"),
            (signed_request("GET", "/bkt/k?acl"), "NotImplemented"),
        ]
        for raw, code in cases:
            conn, response = self.exchange(raw)
            event = self.one_event(conn, response)
            self.assertEqual(event["error_code"], code)
            self.assertEqual(response.error()["Code"], code)
            conn.disconnect()  # a later disconnect does not log again
            self.assertEqual(self.new_events(), [])

    def test_disconnect_mid_body(self) -> None:
        """A client that disconnects mid-body gives one event, status 0."""
        head, body = split_head(put_request("bkt", "k", pattern(2 * BATCH)))
        conn = self.h.connect()
        conn.feed(head + body[:BATCH])
        conn.disconnect()
        event = self.one_event(conn, None)
        self.assertEqual((event["status"], event["error_code"]), (0, "ClientDisconnected"))

    def test_disconnect_mid_download(self) -> None:
        """A client that disconnects mid-download gives one event, and no second one later."""
        payload = pattern(3 * BATCH)
        self.exchange(put_request("bkt", "k", payload))
        self.seen = len(self.observer)
        conn = self.h.connect()
        conn.protocol.dataReceived(signed_request("GET", key_path("bkt", "k")))
        self.assertLess(len(conn.transport.value()), len(payload))
        conn.disconnect()
        self.h.clock.advance(120)
        event = self.one_event(conn, None)
        self.assertEqual((event["action"], event["status"]), ("GetObject", 0))

    def test_keepalive(self) -> None:
        """Two requests on one connection give two events with distinct request ids."""
        conn = self.h.connect()
        conn.feed(put_request("bkt", "k", b"abc") + signed_request("GET", key_path("bkt", "k")))
        self.h.settle()
        put, get = conn.responses()
        events = self.new_events()
        self.assertEqual(
            [e["request_id"] for e in events],
            [put.header("x-amz-request-id"), get.header("x-amz-request-id")],
        )
        self.assertNotEqual(put.header("x-amz-request-id"), get.header("x-amz-request-id"))
        self.assertEqual(get.body, b"abc")


class HeaderViewRequest(S3Request):
    """Notes, when the request is routed, its context's header view next to what twisted's
    ``getHeader`` gives for each name."""

    views: list[tuple[dict[str, str], dict[str, str | None]]]

    def process(self) -> None:
        twisted_view: dict[str, str | None] = {}
        for name in self.ctx.headers:
            value = self.getHeader(name.encode())
            twisted_view[name] = value.decode("latin-1") if value is not None else None
        self.views.append((dict(self.ctx.headers), twisted_view))
        super().process()


class HeaderViewTests(HarnessTestCase):
    def test_same_as_get_header(self) -> None:
        """The context's headers (read by the GET handler) are twisted's ``getHeader``, a
        repeated header's last value included, whatever the case of the name."""
        h = self.harness()
        h.site.requestFactory = HeaderViewRequest  # type: ignore[assignment]
        HeaderViewRequest.views = []
        h.connect().feed(put_request("bkt", "k", b"abc"))
        h.settle()
        target = key_path("bkt", "k")
        extra = [
            ("If-None-Match", '"nope"'),
            ("if-none-match", '"other"'),
            ("X-Custom", "\xe9t\xe9"),
            ("range", "bytes=0-0"),
            ("Range", "bytes=1-1"),
        ]
        conn = h.connect()
        conn.feed(serialise("GET", target, sign("GET", target) + extra))
        h.settle()
        response = conn.response()
        self.assertEqual((response.status, response.body), (206, b"b"))
        [(ours, twisted)] = HeaderViewRequest.views[-1:]
        self.assertEqual(ours, twisted)
        self.assertEqual((ours["if-none-match"], ours["range"]), ('"other"', "bytes=1-1"))


class KeyRoutingTests(HarnessTestCase):
    """Every valid key reaches its handler, whatever characters it holds."""

    @settings(deadline=None, max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(key=strategies.keys(controls=True), payload=strategies.bodies(64))
    def test_put_get_delete_any_key(self, key: str, payload: bytes) -> None:
        """PUT, GET, HEAD and DELETE of any valid key address exactly that key."""
        h = self.harness()
        response = h.send(put_request("bkt", key, payload, encoding="aws-chunked"))
        self.assertEqual(response.status, 200, response.body)
        record = h.meta.get_object("bkt", key)
        self.assertIsNotNone(record)
        self.assertEqual(h.get("bkt", key).body, payload)
        head = h.send(signed_request("HEAD", key_path("bkt", key)), head=True)
        self.assertEqual(head.header("content-length"), str(len(payload)))
        self.assertEqual(h.send(signed_request("DELETE", key_path("bkt", key))).status, 204)
        self.assertIsNone(h.meta.get_object("bkt", key))
        self.assertEqual(h.staging_files(), [])
        self.assertEqual(h.blob_files(), [])


class MultipartTests(HarnessTestCase):
    """UploadPart bodies take the same streaming path and complete into one object."""

    def test_round_trip(self) -> None:
        """Uploaded parts complete into their concatenation with the multipart ETag."""
        h = self.harness()
        created = h.send(signed_request("POST", key_path("bkt", "mp") + "?uploads"))
        upload_id = created.xml().findtext("{*}UploadId")
        assert upload_id
        parts = [pattern(5 * 1024 * 1024), b"tail bytes"]
        etags = []
        encodings = ("aws-chunked", "plain")
        for number, (part, encoding) in enumerate(zip(parts, encodings, strict=True), 1):
            query = f"?partNumber={number}&uploadId={upload_id}"
            raw = put_request("bkt", "mp", part, encoding=encoding, expect=True, query=query)
            response = h.send(raw)
            self.assertEqual(response.status, 200, response.body)
            self.assertEqual(response.header("etag"), f'"{md5_hex(part)}"')
            etags.append(md5_hex(part))
        self.assertEqual(h.staging_files(), [])
        document = "".join(
            f'<Part><PartNumber>{n}</PartNumber><ETag>"{e}"</ETag></Part>'
            for n, e in enumerate(etags, 1)
        )
        body = f"<CompleteMultipartUpload>{document}</CompleteMultipartUpload>".encode()
        done = h.send(
            signed_request("POST", key_path("bkt", "mp") + f"?uploadId={upload_id}", body)
        )
        self.assertEqual(done.status, 200, done.body)
        expected_etag = hashlib.md5(b"".join(bytes.fromhex(e) for e in etags)).hexdigest() + "-2"
        self.assertEqual(done.xml().findtext("{*}ETag"), f'"{expected_etag}"')
        content = b"".join(parts)
        got = h.get("bkt", "mp")
        self.assertEqual(got.body, content)
        self.assertEqual(got.header("etag"), f'"{expected_etag}"')
        self.assertEqual(got.header("x-artifactd-digest"), f"sha256:{sha256_hex(content)}")
        self.assertEqual(len(h.blob_files()), 2)
        self.assertEqual(h.staging_files(), [])


class TrackedRequest(S3Request):
    """An S3Request that leaves a weak reference to itself in ``made``."""

    made: list[weakref.ref[S3Request]] = []

    def __init__(self, channel: Any, queued: object = None) -> None:
        super().__init__(channel, queued)
        self.made.append(weakref.ref(self))


class RequestLifetimeTests(HarnessTestCase):
    """A request is freed as soon as it is over, by reference counting alone: its body's sink
    holds the request's bound methods, so the request lets go of the sink when it finishes.
    Otherwise each request with a body would wait for the garbage collector with ~30 objects
    (collecting those cycles had cost the reactor ~5% of its time under small PUTs).  A request
    that ends in an exception (a digest mismatch, say) is left to the collector: the exception's
    traceback reaches the request through its frames."""

    def setUp(self) -> None:
        self.h = self.harness()
        self.h.site.requestFactory = TrackedRequest  # type: ignore[assignment]
        self.addCleanup(setattr, TrackedRequest, "made", [])
        TrackedRequest.made = []
        if gc.isenabled():
            gc.disable()
            self.addCleanup(gc.enable)

    def test_answered_requests(self) -> None:
        """Bodies of each encoding, kept in memory or staged in a file, and requests without a
        body; none is alive once answered."""
        h = self.h
        requests = [
            put_request("bkt", "small", b"small body"),
            put_request("bkt", "chunked", pattern(3 * BATCH), encoding="chunked"),
            put_request("bkt", "aws", pattern(BATCH + 10), encoding="aws-chunked"),
            signed_request("GET", key_path("bkt", "small")),
            signed_request("HEAD", key_path("bkt", "chunked")),
            signed_request("GET", key_path("bkt", "missing")),
            signed_request("GET", key_path("bkt") + "?list-type=2"),
            signed_request("DELETE", key_path("bkt", "aws")),
        ]
        statuses = [h.send(raw, head=raw.startswith(b"HEAD")).status for raw in requests]
        self.assertEqual(statuses, [200, 200, 200, 200, 200, 404, 200, 204])
        self.assertEqual(len(TrackedRequest.made), len(requests))
        alive = [ref() for ref in TrackedRequest.made]
        self.assertEqual([r for r in alive if r is not None], [])
