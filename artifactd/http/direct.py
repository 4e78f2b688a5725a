"""Large plain request bodies read straight from the socket by threads.

On the reactor path every 64 KiB of a body costs a socket read, a new ``bytes`` object and the
HTTP channel's decoding on the reactor thread -- about a second of CPU per GiB, which the two
cores also need for MD5 and SHA-256.  A body that is neither chunked nor aws-chunked and whose
remaining length is known has nothing to decode, so once its first bytes have come through the
channel, :class:`DirectReceive` takes over: the transport stops reading and three threads move the
rest without the reactor (hashlib, socket reads and file writes all release the GIL):

- the *reader* copies ``first`` into a small ring of reusable buffers and ``recv_into``\\s the
  rest straight from a duplicate of the connection's socket (its own descriptor: the reactor
  may close its one at any moment); every buffer but the last goes out full.  It updates
  SHA-256 (and the optional checksum) over each filled buffer before handing it on;
- the *MD5 lane* updates MD5 over each filled buffer;
- the *write lane* appends the buffer to the staging file, starting an fdatasync beside the
  writes every ``sync_every`` bytes.

This split keeps the three threads' work per GiB close (socket reads and SHA-256 on the
reader, MD5 alone, page-cache writes alone): with SHA-256 on the write lane instead, that lane
held every buffer longest, and MD5 and the reader spent much of each upload waiting for it.

A buffer goes back to the reader once both lanes are done with it, so memory per body is the
ring (``buffers`` x ``buffer_size``) and a slow disk stops the reader (TCP backpressure).  When all
``remaining`` bytes are in, the reader hands the connection back to the reactor
(``on_body_read``); the channel then finishes the request as usual and :meth:`close` verifies and
syncs the body in one disk-pool job.  End of stream, a socket error or ``idle_timeout`` seconds
without a byte end the body early (``on_broken``: the connection is aborted).

Threads only read the socket: the reactor still owns writing (``100 Continue``) and closing it.
"""

from __future__ import annotations

import queue
import select
import socket
import threading
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from artifactd import errors
from artifactd.http.body import SYNC_EVERY, SYNC_IN_COMMIT_MAX, BodyChecks, _Hashes
from artifactd.interfaces import IBlobStore, IStagingFile
from artifactd.storage.engine import Runner, StagedBody

BUFFER_SIZE = 1024 * 1024
BUFFERS = 4
POLL_SECONDS = 0.25  # how often a waiting thread looks at the abort flag

_DONE = None  # the lanes' end-of-body marker


class _Buffer:
    """One reusable buffer of the ring; ``users`` counts the lanes still reading it."""

    __slots__ = ("data", "lock", "users", "view")

    def __init__(self, size: int) -> None:
        self.data = bytearray(size)
        self.view = memoryview(self.data)
        self.lock = threading.Lock()
        self.users = 0


class DirectReceive:
    """Reads the last ``remaining`` bytes of a body (``first`` came before, through the
    channel) from ``sock`` and stages all of it.

    Reactor thread: the constructor, :meth:`start`, :meth:`close`, :meth:`abort`.  The
    ``on_body_read`` / ``on_broken`` callbacks are called on the reactor thread (through
    ``call_from_thread``), at most one of them, never after :meth:`abort`.
    """

    def __init__(
        self,
        sock: socket.socket,
        first: bytes,
        remaining: int,
        *,
        blobs: IBlobStore,
        run: Runner,
        checks: BodyChecks,
        call_from_thread: Callable[..., object],
        on_body_read: Callable[[], None],
        on_broken: Callable[[], None],
        idle_timeout: float | None,
        buffer_size: int = BUFFER_SIZE,
        buffers: int = BUFFERS,
        sync_every: int = SYNC_EVERY,
        sync_in_commit_max: int = SYNC_IN_COMMIT_MAX,
    ) -> None:
        self._sock = sock
        self._first = first
        self._remaining = remaining
        self._blobs = blobs
        self._run = run
        self._checks = checks
        self._call = call_from_thread
        self._on_body_read = on_body_read
        self._on_broken = on_broken
        self._idle_timeout = idle_timeout
        self._ring: queue.SimpleQueue[_Buffer] = queue.SimpleQueue()
        for _ in range(buffers):
            self._ring.put(_Buffer(buffer_size))
        self._sync_every = sync_every
        self._sync_in_commit_max = sync_in_commit_max
        self._md5_lane: queue.SimpleQueue[tuple[_Buffer, memoryview] | None] = queue.SimpleQueue()
        self._write_lane: queue.SimpleQueue[tuple[_Buffer, memoryview] | None] = queue.SimpleQueue()
        self._hashes = _Hashes(checks.checksum_algorithm)
        self._staging: IStagingFile | None = None
        self._error: BaseException | None = None  # the write lane's (disk) failure
        self._syncing: threading.Thread | None = None
        self._sync_error: BaseException | None = None
        self._aborted = threading.Event()
        self._threads: list[threading.Thread] = []
        self._read_done = False  # reactor: the reader's outcome has arrived
        self._closing = False  # reactor: close() was called
        self._discarded = False
        self.received = len(first)

    # reactor thread ----------------------------------------------------------
    def start(self) -> None:
        for name, target in (
            ("read", self._read),
            ("md5", self._md5),
            ("write", self._write),
        ):
            thread = threading.Thread(target=target, name=f"artifactd-body-{name}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def write(self, data: bytes) -> None:
        """The channel's end-of-body call (no bytes: they were all read here)."""
        if data:
            raise RuntimeError("a directly received body takes no bytes from the channel")

    def set_trailer_checksum(self, value: str | None) -> None:
        """Plain bodies have no trailer."""

    def close(self) -> Deferred[StagedBody]:
        """After ``on_body_read``: wait for the lanes, verify, sync; fires with the staged body
        or fails with the S3 error (the staging file is then already removed)."""
        assert self._read_done and not self._closing
        self._closing = True
        return self._run(self._finish)

    def abort(self) -> None:
        """The request is gone: stop reading and remove the staging file."""
        if self._aborted.is_set():
            return
        self._aborted.set()
        if self._read_done and not self._closing:
            self._run(self._discard).addErrback(lambda f: None)
        # still reading: the reader's outcome, on arrival, discards; closing: the request
        # discards the staged body it gets (or the finishing job already has, on failure)

    @property
    def checksum(self) -> str | None:
        """The checksum value computed (base64), after close."""
        return self._hashes.checksum.digest_b64() if self._hashes.checksum else None

    def _reader_finished(self, complete: bool) -> None:
        self._read_done = True
        if self._aborted.is_set():
            self._run(self._discard).addErrback(lambda f: None)
        elif complete:
            self._on_body_read()
        else:
            self._on_broken()

    # the reader thread -------------------------------------------------------
    def _read(self) -> None:
        complete = False
        try:
            complete = self._read_rest()
        except OSError:
            pass  # a reset connection: the body is incomplete
        finally:
            self._first = b""
            self._md5_lane.put(_DONE)
            self._write_lane.put(_DONE)
            try:
                self._sock.close()
            finally:
                self._call(self._reader_finished, complete)

    def _read_rest(self) -> bool:
        """Fill buffers with ``first`` and then ``remaining`` bytes from the socket; False if
        the body ends early.  Every buffer but the last is filled whole."""
        sock = self._sock
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        idle = 0.0
        pending = memoryview(self._first)
        remaining = self._remaining
        while remaining > 0 or pending:
            buffer = self._next_buffer()
            if buffer is None:
                return False
            view = buffer.view
            filled = min(len(pending), len(view))
            view[:filled] = pending[:filled]
            pending = pending[filled:]
            want = min(len(view), filled + remaining)
            while filled < want:
                try:
                    n = sock.recv_into(view[filled:want])
                except BlockingIOError:
                    if self._aborted.is_set():
                        return False
                    if poller.poll(POLL_SECONDS * 1000):
                        idle = 0.0
                    else:
                        idle += POLL_SECONDS
                        if self._idle_timeout is not None and idle >= self._idle_timeout:
                            return False
                    continue
                if n == 0:
                    return False  # the client closed before the end of its body
                filled += n
                remaining -= n
                self.received += n
            filled_view = view[:filled]
            self._hashes.update_others(filled_view)
            self._dispatch(buffer, filled_view)
        return True

    def _next_buffer(self) -> _Buffer | None:
        while not self._aborted.is_set():
            try:
                return self._ring.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
        return None

    def _dispatch(self, buffer: _Buffer, view: memoryview) -> None:
        buffer.users = 2
        self._md5_lane.put((buffer, view))
        self._write_lane.put((buffer, view))

    def _release(self, buffer: _Buffer) -> None:
        with buffer.lock:
            buffer.users -= 1
            free = buffer.users == 0
        if free:
            self._ring.put(buffer)

    # the lanes ----------------------------------------------------------------
    def _md5(self) -> None:
        md5 = self._hashes.md5
        lane = self._md5_lane
        while (item := lane.get()) is not _DONE:
            buffer, view = item
            md5.update(view)
            self._release(buffer)

    def _write(self) -> None:
        lane = self._write_lane
        unsynced = 0
        while (item := lane.get()) is not _DONE:
            buffer, view = item
            try:
                if self._error is None and not self._aborted.is_set():
                    if self._staging is None:
                        self._staging = self._blobs.open_staging(self._checks.expected_size)
                    self._staging.write(view)
                    unsynced += len(view)
                    if unsynced >= self._sync_every and self._start_datasync():
                        unsynced = 0
            except BaseException as e:  # kept for close(); the rest of the body is drained
                self._error = e
            finally:
                self._release(buffer)

    def _start_datasync(self) -> bool:  # the write lane
        previous = self._syncing
        if previous is not None and previous.is_alive():
            return False
        staging = self._staging
        assert staging is not None

        def datasync() -> None:
            try:
                staging.datasync()
            except BaseException as e:
                self._sync_error = e

        thread = threading.Thread(target=datasync, name="artifactd-body-sync", daemon=True)
        self._syncing = thread
        thread.start()
        return True

    # disk pool -----------------------------------------------------------------
    def _join(self) -> None:
        """Wait for the threads, then free the ring at once: the request and this object
        refer to each other, and such a cycle may wait long for the garbage collector."""
        for thread in self._threads:
            thread.join()
        if self._syncing is not None:
            self._syncing.join()
        while True:
            try:
                self._ring.get_nowait()
            except queue.Empty:
                break

    def _finish(self) -> StagedBody:
        self._join()
        try:
            error = self._error or self._sync_error
            if error is not None:
                raise error
            if self._staging is None:
                self._staging = self._blobs.open_staging(self._checks.expected_size)
            if self._aborted.is_set():
                raise errors.IncompleteBody()
            self._checks.verify(self.received, self._hashes, None)
            if self.received > self._sync_in_commit_max:
                self._staging.sync()
        except BaseException:
            failure = Failure()
            self._discard()
            failure.raiseException()
        return self._hashes.staged(self._staging, self.received)

    def _discard(self) -> None:
        self._join()
        staging, self._staging = self._staging, None
        if staging is not None and not self._discarded:
            self._discarded = True
            staging.discard()
