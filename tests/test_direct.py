"""Large plain bodies read by threads straight from the socket (artifactd.http.direct): the bytes
and digests staged are the bytes sent however they are split, the ring of buffers bounds what is
read ahead of a slow disk, and a body that ends early, is abandoned or goes idle leaves no
staging file behind.

Each test drives a DirectReceive over a real socket pair with real threads; the reactor's
``callFromThread`` is a queue the test drains, and disk-pool jobs run when the test fires them.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import os
import queue
import socket
import threading
import zlib
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.body import SYNC_IN_COMMIT_MAX, BodyChecks
from artifactd.http.direct import DirectReceive
from artifactd.storage.blobs import FileBlobStore, StagingFile
from artifactd.storage.engine import StagedBody
from artifactd.storage.layout import Layout
from artifactd.testing import ManualRunner

KiB = 1024
WAIT = 30.0  # seconds a test waits for a thread before it fails


class Harness:
    def __init__(
        self,
        root: str,
        first: bytes,
        remaining: int,
        checks: BodyChecks | None = None,
        **options: Any,
    ) -> None:
        self.blobs = FileBlobStore(Layout(os.path.abspath(root)))
        self.blobs.prepare()
        self.runner = ManualRunner()
        self.calls: queue.SimpleQueue[tuple[Callable[..., object], tuple[Any, ...]]] = (
            queue.SimpleQueue()
        )
        self.events: list[str] = []
        self.client, self.server = socket.socketpair()
        self.server.setblocking(False)
        options.setdefault("idle_timeout", None)
        self.receive = DirectReceive(
            self.server.dup(),  # as the daemon does: the reactor keeps its own descriptor
            first,
            remaining,
            blobs=self.blobs,
            run=self.runner,
            checks=checks or BodyChecks(max_size=1 << 40),
            call_from_thread=self._call_from_thread,
            on_body_read=lambda: self.events.append("read"),
            on_broken=lambda: self.events.append("broken"),
            **options,
        )

    def _call_from_thread(self, f: Callable[..., object], *args: Any) -> None:
        self.calls.put((f, args))

    def reactor_turn(self, timeout: float = WAIT) -> None:
        """Run the next call the threads hand to the reactor (waits for it)."""
        f, args = self.calls.get(timeout=timeout)
        f(*args)

    def send_in_background(self, pieces: list[bytes], close: bool = False) -> threading.Thread:
        def send() -> None:
            try:
                for piece in pieces:
                    self.client.sendall(piece)
                if close:
                    self.client.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        thread = threading.Thread(target=send, daemon=True)
        thread.start()
        return thread

    def close(self) -> StagedBody | Failure:
        results: list[StagedBody | Failure] = []
        self.receive.close().addBoth(results.append)
        self.runner.fire_all()
        (result,) = results
        return result

    def staging_files(self) -> list[str]:
        return os.listdir(self.blobs._layout.staging)


Writer = Callable[[bytes | memoryview], None]


class DirectReceiveTests(SynchronousTestCase):
    def harness(self, first: bytes, remaining: int, **options: Any) -> Harness:
        h = Harness(self.mktemp(), first, remaining, **options)
        self.addCleanup(h.client.close)
        self.addCleanup(h.server.close)
        return h

    def patch_staging_writes(self, wrap: Callable[[Writer], Writer]) -> None:
        """Every staging file opened during the test writes through ``wrap(its write)``."""
        original = FileBlobStore.open_staging

        def open_staging(blobs: FileBlobStore, size: int | None = None) -> StagingFile:
            staging = original(blobs, size)
            self.patch(staging, "write", wrap(staging.write))
            return staging

        self.patch(FileBlobStore, "open_staging", open_staging)

    @settings(max_examples=25, deadline=None)
    @given(
        size=st.integers(min_value=1, max_value=400 * KiB),
        first_size=st.integers(min_value=0, max_value=20 * KiB),
        buffer_size=st.sampled_from([1000, 4 * KiB, 64 * KiB]),
        buffers=st.integers(min_value=1, max_value=4),
        cuts=st.lists(st.integers(min_value=0, max_value=400 * KiB), max_size=8),
        sync_every=st.sampled_from([1, 100 * KiB, 1 << 30]),
    )
    def test_staged_bytes_are_the_bytes_sent(
        self,
        size: int,
        first_size: int,
        buffer_size: int,
        buffers: int,
        cuts: list[int],
        sync_every: int,
    ) -> None:
        """However the body is split on the wire and into buffers, the staging file holds the
        body and the digests, checksum and size are the body's."""
        data = os.urandom(size)
        first_size = min(first_size, size - 1)
        first, rest = data[:first_size], data[first_size:]
        bounds = sorted({0, len(rest), *(c % len(rest) for c in cuts)})
        pieces = [rest[a:b] for a, b in itertools.pairwise(bounds)]
        h = Harness(
            self.mktemp(),
            first,
            len(rest),
            BodyChecks(max_size=1 << 40, checksum_algorithm="crc32"),
            idle_timeout=None,
            buffer_size=buffer_size,
            buffers=buffers,
            sync_every=sync_every,
        )
        try:
            h.receive.start()
            h.send_in_background(pieces)
            h.reactor_turn()
            self.assertEqual(h.events, ["read"])
            staged = h.close()
            assert isinstance(staged, StagedBody), staged
            self.assertEqual(staged.size, size)
            self.assertEqual(staged.md5, hashlib.md5(data).hexdigest())
            self.assertEqual(staged.sha256, hashlib.sha256(data).hexdigest())
            assert isinstance(staged.staging, StagingFile)
            # up to SYNC_IN_COMMIT_MAX the group commit syncs it, with the others of its group
            self.assertEqual(staged.staging.synced, size > SYNC_IN_COMMIT_MAX)
            with open(staged.staging.path, "rb") as f:
                self.assertEqual(f.read(), data)
            # the buffers are let go of at once, not left to the garbage collector
            self.assertTrue(h.receive._ring.empty())
            self.assertEqual(
                h.receive.checksum,
                base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode(),
            )
        finally:
            h.client.close()
            h.server.close()

    def test_bytes_after_the_body_stay_in_the_socket(self) -> None:
        """The reader takes exactly the body: a pipelined next request is left for the
        reactor to read."""
        body = os.urandom(3 * KiB)
        h = self.harness(b"", len(body), buffer_size=KiB)
        h.client.sendall(body + b"GET /next HTTP/1.1\r\n\r\n")
        h.receive.start()
        h.reactor_turn()
        self.assertEqual(h.events, ["read"])
        staged = h.close()
        assert isinstance(staged, StagedBody)
        self.assertEqual(staged.size, len(body))
        # the reader closed only its own duplicate of the socket
        h.server.setblocking(True)
        self.assertEqual(h.server.recv(100), b"GET /next HTTP/1.1\r\n\r\n")

    def test_the_ring_bounds_what_is_read_ahead_of_the_disk(self) -> None:
        """With the disk stuck, the reader fills the ring and then reads no more: the rest of
        the body waits in the socket (TCP backpressure), not in memory."""
        release = threading.Event()

        def slow_write(write: Writer) -> Writer:
            def stuck(data: bytes | memoryview) -> None:
                release.wait(WAIT)
                write(data)

            return stuck

        self.patch_staging_writes(slow_write)
        body = os.urandom(2 * 1024 * KiB)
        h = self.harness(b"", len(body), buffer_size=16 * KiB, buffers=3)
        h.receive.start()
        sender = h.send_in_background([body])
        # the write lane holds one buffer in its stuck write; the reader fills the other two
        # and waits for a free one
        bound = 3 * 16 * KiB
        for _ in range(int(WAIT / 0.01)):
            if h.receive.received >= bound:
                break
            release.wait(0.01)
        self.assertEqual(h.receive.received, bound)
        release.wait(0.2)
        self.assertEqual(h.receive.received, bound)
        release.set()
        h.reactor_turn()
        sender.join(WAIT)
        self.assertEqual(h.events, ["read"])
        staged = h.close()
        assert isinstance(staged, StagedBody)
        self.assertEqual(staged.sha256, hashlib.sha256(body).hexdigest())

    def test_a_body_closed_early_is_broken_and_discarded(self) -> None:
        h = self.harness(b"abc", 10 * KiB, buffer_size=KiB)
        h.receive.start()
        h.send_in_background([b"x" * 5000], close=True)
        h.reactor_turn()
        self.assertEqual(h.events, ["broken"])
        self.assertEqual(h.receive.received, 5003)
        h.receive.abort()  # the connection is dropped: the request aborts its body
        h.runner.fire_all()
        self.assertEqual(h.staging_files(), [])

    def test_an_idle_body_is_broken(self) -> None:
        h = self.harness(b"abc", 10 * KiB, idle_timeout=0.5)
        h.receive.start()
        h.client.sendall(b"12345")
        h.reactor_turn()
        self.assertEqual(h.events, ["broken"])
        h.receive.abort()
        h.runner.fire_all()
        self.assertEqual(h.staging_files(), [])

    def test_abort_while_reading_stops_the_reader_and_discards(self) -> None:
        """The client goes away (the request aborts) while the reader waits for bytes: the
        reader stops, neither callback runs and the staging file is removed."""
        h = self.harness(b"", 64 * KiB, buffer_size=KiB)
        h.receive.start()
        h.client.sendall(b"y" * 3000)
        for _ in range(int(WAIT / 0.01)):
            if h.receive.received == 3000:
                break
            threading.Event().wait(0.01)
        h.receive.abort()
        h.reactor_turn()  # the reader's exit
        self.assertEqual(h.events, [])
        h.runner.fire_all()
        self.assertEqual(h.staging_files(), [])

    def test_abort_after_the_body_is_read_discards(self) -> None:
        body = os.urandom(5 * KiB)
        h = self.harness(b"", len(body), buffer_size=KiB)
        h.client.sendall(body)
        h.receive.start()
        h.reactor_turn()
        self.assertEqual(h.events, ["read"])
        h.receive.abort()
        h.runner.fire_all()
        self.assertEqual(h.staging_files(), [])

    def test_a_mismatched_digest_fails_and_discards(self) -> None:
        body = os.urandom(5 * KiB)
        wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
        h = Harness(
            self.mktemp(),
            body[:100],
            len(body) - 100,
            BodyChecks(max_size=1 << 40, content_md5=wrong),
            idle_timeout=None,
            buffer_size=KiB,
        )
        self.addCleanup(h.client.close)
        self.addCleanup(h.server.close)
        h.client.sendall(body[100:])
        h.receive.start()
        h.reactor_turn()
        result = h.close()
        assert isinstance(result, Failure)
        result.trap(errors.BadDigest)
        self.assertEqual(h.staging_files(), [])

    def test_a_disk_failure_fails_the_body_after_it_is_read(self) -> None:
        """A write that fails (disk full) does not stop the reading: the rest of the body is
        drained, then close fails with the error and removes the staging file."""

        def full(write: Writer) -> Writer:
            def failing(data: bytes | memoryview) -> None:
                raise OSError(28, "No space left on device")

            return failing

        self.patch_staging_writes(full)
        body = os.urandom(50 * KiB)
        h = self.harness(b"", len(body), buffer_size=KiB, buffers=2)
        h.client.sendall(body)
        h.receive.start()
        h.reactor_turn()
        self.assertEqual(h.events, ["read"])
        self.assertEqual(h.receive.received, len(body))
        result = h.close()
        assert isinstance(result, Failure)
        result.trap(OSError)
        self.assertEqual(h.staging_files(), [])

    def test_the_channel_gives_no_bytes(self) -> None:
        h = self.harness(b"", 1)
        h.receive.write(b"")
        self.assertRaises(RuntimeError, h.receive.write, b"x")
        h.receive._sock.close()
