"""The download producer (:class:`artifactd.http.download.BlobProducer`): it streams segments of
one or more blobs in order, honours pause/resume, and closes its file when stopped."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from hypothesis import given
from hypothesis import strategies as st
from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Request
from zope.interface.verify import verifyObject

from artifactd.http.download import (
    CHUNK,
    CHUNKS_PER_TURN,
    SMALL_BODY,
    BlobProducer,
    Segment,
    read_segments,
    segments_for,
    write_small,
)
from artifactd.interfaces import IBlobStore
from artifactd.records import BlobRef, ObjectRecord
from tests import strategies  # noqa: F401  (registers the deadline=None hypothesis profile)
from tests.http_harness import Harness, key_path, signed_request


class TrackedFile(io.BytesIO):
    """An in-memory blob file that remembers reads."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads = 0

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        return super().read(size)


class MemoryBlobs:
    """Just enough of IBlobStore for the producer: ``open_blob``, with every opened file kept."""

    def __init__(self, blobs: dict[str, bytes], *, short: set[str] | None = None) -> None:
        self._blobs = blobs
        self._short = short or set()
        self.opened: list[tuple[str, TrackedFile]] = []

    def open_blob(self, digest: str) -> BinaryIO:
        data = self._blobs[digest]
        f = TrackedFile(data[: len(data) // 2] if digest in self._short else data)
        self.opened.append((digest, f))
        return cast(BinaryIO, f)


class FakeRequest:
    """The parts of a twisted.web Request the producer uses, recording what it does.

    ``on_write`` runs after each write (to pause or stop the producer mid-stream)."""

    def __init__(self) -> None:
        self.transport = StringTransport()
        self.written: list[bytes] = []
        self.producer: Any = None
        self.streaming: bool | None = None
        self.registrations = 0
        self.finished = 0
        self.on_write: Callable[[FakeRequest], None] | None = None

    def registerProducer(self, producer: Any, streaming: bool) -> None:
        assert self.producer is None, "two producers registered"
        self.producer = producer
        self.streaming = streaming
        self.registrations += 1

    def unregisterProducer(self) -> None:
        self.producer = None

    def write(self, data: bytes) -> None:
        assert not self.finished, "write after finish"
        self.written.append(data)
        if self.on_write is not None:
            self.on_write(self)

    def finish(self) -> None:
        self.finished += 1

    @property
    def body(self) -> bytes:
        return b"".join(self.written)


def digest_of(data: bytes, salt: int = 0) -> str:
    return hashlib.sha256(b"%d:" % salt + data).hexdigest()


def make_producer(
    request: FakeRequest, blobs: MemoryBlobs, segments: list[Segment], clock: Clock
) -> BlobProducer:
    return BlobProducer(cast(Request, request), cast(IBlobStore, blobs), segments, clock)


def run_clock(clock: Clock, limit: int = 10_000) -> None:
    """Run the producer's scheduled turns until none is left."""
    for _ in range(limit):
        if not clock.getDelayedCalls():
            return
        clock.advance(0)
    raise AssertionError("producer never settled")


class BlobProducerTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.request = FakeRequest()

    def setup_blobs(self, *pieces: bytes) -> tuple[MemoryBlobs, list[BlobRef]]:
        refs = [BlobRef(digest_of(p, i), len(p)) for i, p in enumerate(pieces)]
        blobs = MemoryBlobs({r.digest: p for r, p in zip(refs, pieces, strict=True)})
        return blobs, refs

    def test_provides_push_producer(self) -> None:
        """BlobProducer provides IPushProducer and registers itself as a streaming producer."""
        blobs, refs = self.setup_blobs(b"abc")
        producer = make_producer(self.request, blobs, segments_for(refs, 0, 3), self.clock)
        self.assertTrue(verifyObject(IPushProducer, producer))
        producer.start()
        self.assertEqual((self.request.registrations, self.request.streaming), (1, True))

    def test_multi_blob_in_order(self) -> None:
        """Several blobs stream in order, then the request finishes once, files closed."""
        pieces = (os.urandom(3 * CHUNK + 17), b"", b"xyz", os.urandom(CHUNKS_PER_TURN * CHUNK + 5))
        blobs, refs = self.setup_blobs(*pieces)
        size = sum(len(p) for p in pieces)
        producer = make_producer(self.request, blobs, segments_for(refs, 0, size), self.clock)
        done = producer.start()
        run_clock(self.clock)
        self.assertEqual(self.request.body, b"".join(pieces))
        self.assertEqual(self.request.finished, 1)
        self.assertIsNone(self.request.producer)
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual([d for d, _ in blobs.opened], [r.digest for r in refs if r.size])
        self.assertTrue(all(f.closed for _, f in blobs.opened))
        self.assertTrue(all(len(chunk) <= CHUNK for chunk in self.request.written))

    @given(
        pieces=st.lists(st.binary(max_size=3 * CHUNK), min_size=1, max_size=4),
        data=st.data(),
    )
    def test_any_range_of_any_split(self, pieces: list[bytes], data: st.DataObject) -> None:
        """Any range of any multi-blob object streams exactly those bytes."""
        clock, request = Clock(), FakeRequest()
        blobs, refs = self.setup_blobs(*pieces)
        content = b"".join(pieces)
        start = data.draw(st.integers(0, len(content)), label="start")
        length = data.draw(st.integers(0, len(content) - start), label="length")
        producer = make_producer(request, blobs, segments_for(refs, start, length), clock)
        producer.start()
        run_clock(clock)
        self.assertEqual(request.body, content[start : start + length])
        self.assertEqual(request.finished, 1)
        self.assertTrue(all(f.closed for _, f in blobs.opened))

    def test_yields_between_turns(self) -> None:
        """One turn writes at most CHUNKS_PER_TURN chunks, then waits for the clock."""
        blobs, refs = self.setup_blobs(bytes(3 * CHUNKS_PER_TURN * CHUNK))
        producer = make_producer(
            self.request, blobs, segments_for(refs, 0, refs[0].size), self.clock
        )
        producer.start()
        self.assertEqual(len(self.request.written), CHUNKS_PER_TURN)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [0.0])
        run_clock(self.clock)
        self.assertEqual(len(self.request.body), 3 * CHUNKS_PER_TURN * CHUNK)

    def test_pause_stops_writing(self) -> None:
        """After pauseProducing nothing more is written, however long the clock runs."""
        blobs, refs = self.setup_blobs(os.urandom(10 * CHUNK))
        producer = make_producer(
            self.request, blobs, segments_for(refs, 0, refs[0].size), self.clock
        )

        def pause_after_two(request: FakeRequest) -> None:
            if len(request.written) == 2:
                producer.pauseProducing()

        self.request.on_write = pause_after_two
        producer.start()
        self.assertEqual(len(self.request.written), 2)
        self.clock.advance(60)
        self.assertEqual(len(self.request.written), 2)
        self.assertEqual(self.request.finished, 0)
        self.request.on_write = None
        producer.resumeProducing()
        run_clock(self.clock)
        self.assertEqual(self.request.body, blobs._blobs[refs[0].digest])
        self.assertEqual(self.request.finished, 1)

    def test_pause_between_turns(self) -> None:
        """A pause that arrives while a turn is scheduled holds that turn back."""
        blobs, refs = self.setup_blobs(os.urandom(3 * CHUNKS_PER_TURN * CHUNK))
        producer = make_producer(
            self.request, blobs, segments_for(refs, 0, refs[0].size), self.clock
        )
        producer.start()
        producer.pauseProducing()
        self.clock.advance(1)
        self.assertEqual(len(self.request.written), CHUNKS_PER_TURN)
        producer.resumeProducing()
        producer.resumeProducing()  # a second resume schedules no second turn
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        run_clock(self.clock)
        self.assertEqual(self.request.body, blobs._blobs[refs[0].digest])
        self.assertEqual(self.request.finished, 1)

    def test_stop_closes_file(self) -> None:
        """stopProducing closes the open file; nothing more is written, even if resumed."""
        blobs, refs = self.setup_blobs(os.urandom(10 * CHUNK), b"second")
        size = sum(r.size for r in refs)
        producer = make_producer(self.request, blobs, segments_for(refs, 0, size), self.clock)

        def stop_after_one(request: FakeRequest) -> None:
            if len(request.written) == 1:
                producer.pauseProducing()

        self.request.on_write = stop_after_one
        producer.start()
        [(_, f)] = blobs.opened
        self.assertFalse(f.closed)
        producer.stopProducing()
        self.assertTrue(f.closed)
        producer.resumeProducing()
        run_clock(self.clock)
        self.assertEqual(len(self.request.written), 1)
        self.assertEqual(len(blobs.opened), 1)
        self.assertEqual(self.request.finished, 0)

    def test_stop_during_scheduled_turn(self) -> None:
        """stopProducing while a turn is scheduled: the turn writes nothing."""
        blobs, refs = self.setup_blobs(os.urandom(3 * CHUNKS_PER_TURN * CHUNK))
        producer = make_producer(
            self.request, blobs, segments_for(refs, 0, refs[0].size), self.clock
        )
        producer.start()
        producer.stopProducing()
        run_clock(self.clock)
        self.assertEqual(len(self.request.written), CHUNKS_PER_TURN)
        self.assertTrue(all(f.closed for _, f in blobs.opened))
        self.assertEqual(self.request.finished, 0)

    def test_short_blob_aborts(self) -> None:
        """A blob shorter than its record aborts the connection and fails the download."""
        blobs, refs = self.setup_blobs(os.urandom(4 * CHUNK))
        blobs._short = {refs[0].digest}
        producer = make_producer(
            self.request, blobs, segments_for(refs, 0, refs[0].size), self.clock
        )
        done = producer.start()
        run_clock(self.clock)
        self.failureResultOf(done, OSError)
        self.assertTrue(self.request.transport.disconnected)
        self.assertEqual(self.request.finished, 0)
        self.assertIsNone(self.request.producer)
        self.assertTrue(all(f.closed for _, f in blobs.opened))

    def test_missing_blob_aborts(self) -> None:
        """A missing blob fails the download the same way."""
        blobs, refs = self.setup_blobs(b"abc")
        segments = [Segment(digest_of(b"gone"), 0, 3)]
        blobs._blobs.pop(refs[0].digest)
        producer = make_producer(self.request, blobs, segments, self.clock)

        def open_missing(digest: str) -> BinaryIO:
            raise FileNotFoundError(digest)

        blobs.open_blob = open_missing  # type: ignore[method-assign]
        done = producer.start()
        self.failureResultOf(done, FileNotFoundError)
        self.assertTrue(self.request.transport.disconnected)


class WriteSmallTests(SynchronousTestCase):
    """The one-write path for small bodies: same bytes as the producer, one write, finished."""

    def setup_blobs(self, *pieces: bytes) -> tuple[MemoryBlobs, list[BlobRef]]:
        refs = [BlobRef(digest_of(p, i), len(p)) for i, p in enumerate(pieces)]
        blobs = MemoryBlobs({r.digest: p for r, p in zip(refs, pieces, strict=True)})
        return blobs, refs

    @given(
        pieces=st.lists(st.binary(min_size=1, max_size=300), min_size=1, max_size=4),
        data=st.data(),
    )
    def test_any_range_of_any_split(self, pieces: list[bytes], data: st.DataObject) -> None:
        """The bytes of any range of any multi-blob object, in one write, then finish."""
        blobs, refs = self.setup_blobs(*pieces)
        whole = b"".join(pieces)
        start = data.draw(st.integers(0, len(whole) - 1))
        length = data.draw(st.integers(1, len(whole) - start))
        request = FakeRequest()
        segments = segments_for(refs, start, length)
        self.assertEqual(read_segments(cast(IBlobStore, blobs), segments), whole[start:][:length])
        write_small(cast(Request, request), cast(IBlobStore, blobs), segments)
        self.assertEqual(request.written, [whole[start:][:length]])
        self.assertEqual(request.finished, 1)
        self.assertIsNone(request.producer)
        self.assertTrue(all(f.closed for _, f in blobs.opened))

    def test_short_blob_aborts(self) -> None:
        """A blob shorter than its record aborts the connection and raises; nothing is written."""
        blobs, refs = self.setup_blobs(b"x" * 100)
        blobs._short = {refs[0].digest}
        request = FakeRequest()
        with self.assertRaises(OSError):
            write_small(cast(Request, request), cast(IBlobStore, blobs), segments_for(refs, 0, 100))
        self.assertTrue(request.transport.disconnected)
        self.assertEqual((request.written, request.finished), ([], 0))
        self.assertTrue(all(f.closed for _, f in blobs.opened))

    def test_missing_blob_aborts(self) -> None:
        blobs, _ = self.setup_blobs(b"abc")
        request = FakeRequest()
        with self.assertRaises(KeyError):
            write_small(
                cast(Request, request), cast(IBlobStore, blobs), [Segment(digest_of(b"gone"), 0, 3)]
            )
        self.assertTrue(request.transport.disconnected)


class DownloadThroughSiteTests(SynchronousTestCase):
    """The producer behind a real S3Request and HTTPChannel over a StringTransport."""

    def setUp(self) -> None:
        self.h = Harness(self.mktemp())
        self.h.create_bucket("bkt")
        # A three-blob object (as a completed multipart upload is), committed directly.
        self.pieces = [os.urandom(CHUNKS_PER_TURN * CHUNK + 100), os.urandom(5), os.urandom(CHUNK)]
        refs = []
        for piece in self.pieces:
            staging = self.h.blobs.open_staging()
            staging.write(piece)
            staging.sync()
            digest = hashlib.sha256(piece).hexdigest()
            self.h.blobs.commit(staging, digest)
            refs.append(BlobRef(digest, len(piece)))
        self.content = b"".join(self.pieces)
        self.h.meta.put_object(
            ObjectRecord(
                bucket="bkt",
                key="big",
                size=len(self.content),
                etag="0" * 32 + "-3",
                sha256=hashlib.sha256(self.content).hexdigest(),
                last_modified=self.h.clock.seconds(),
                blobs=tuple(refs),
                parts_count=3,
            )
        )

    def test_small_range_in_one_write(self) -> None:
        """A small range is sent whole at once: no producer, no scheduled turn."""
        start = len(self.pieces[0]) - 10
        conn = self.h.connect()
        conn.protocol.dataReceived(
            signed_request(
                "GET", key_path("bkt", "big"), headers={"Range": f"bytes={start}-{start + 14}"}
            )
        )
        now = self.h.clock.seconds()
        self.assertEqual([c for c in self.h.clock.getDelayedCalls() if c.getTime() <= now], [])
        response = conn.response()
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.content[start : start + 15])

    def test_largest_small_body(self) -> None:
        """Bodies of SMALL_BODY bytes and one more (the producer's) are the same bytes."""
        for length in (SMALL_BODY, SMALL_BODY + 1):
            response = self.h.get("bkt", "big", headers={"Range": f"bytes=7-{6 + length}"})
            self.assertEqual(response.status, 206)
            self.assertEqual(response.body, self.content[7 : 7 + length])

    def test_multi_blob_object(self) -> None:
        """GET of a multi-blob object returns the blobs' bytes in order."""
        response = self.h.get("bkt", "big")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-length"), str(len(self.content)))
        self.assertEqual(response.body, self.content)

    def test_range_across_blobs(self) -> None:
        """A range spanning blob boundaries returns exactly those bytes."""
        start = len(self.pieces[0]) - 10
        end = len(self.pieces[0]) + 5 + 20
        response = self.h.get("bkt", "big", headers={"Range": f"bytes={start}-{end}"})
        self.assertEqual(response.status, 206)
        self.assertEqual(response.body, self.content[start : end + 1])

    def test_transport_backpressure(self) -> None:
        """A paused transport stops the producer; resuming completes the response."""
        conn = self.h.connect()
        conn.protocol.dataReceived(signed_request("GET", key_path("bkt", "big")))
        first = len(conn.transport.value())
        self.assertGreater(first, 0)
        self.assertLess(first, len(self.content))
        channel = conn.transport.producer  # HTTPChannel registers itself with the transport
        assert channel is not None
        channel.pauseProducing()
        self.h.clock.advance(1)
        self.assertEqual(len(conn.transport.value()), first)
        channel.resumeProducing()
        self.h.pump()
        response = conn.response()
        self.assertEqual(response.body, self.content)

    def test_disconnect_mid_download(self) -> None:
        """A client that disconnects mid-download stops the producer; no write follows."""
        conn = self.h.connect()
        conn.protocol.dataReceived(signed_request("GET", key_path("bkt", "big")))
        sent = len(conn.transport.value())
        self.assertLess(sent, len(self.content))
        conn.disconnect()
        self.h.clock.advance(1)
        self.assertEqual(len(conn.transport.value()), sent)
        pending = [getattr(c, "func", None) for c in self.h.clock.getDelayedCalls()]
        self.assertFalse(
            [f for f in pending if isinstance(getattr(f, "__self__", None), BlobProducer)]
        )
