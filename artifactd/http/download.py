"""Sending an object's bytes (one or more blobs, optionally a byte range) to a request.

A small body (at most :data:`SMALL_BODY` bytes) is read whole and written in one go
(:func:`write_small`); a larger one is streamed by a push producer that honours pause/resume.
Reactor thread.  Over plain TCP the producer moves the bytes from the page cache to the socket
with ``os.sendfile`` (:mod:`artifactd.http.sendfile`) while the socket takes them; otherwise
(TLS, a full socket) it reads 64 KiB at a time from the blob files (page-cache reads, as
twisted.web.static does) and writes them to the transport."""

from __future__ import annotations

from typing import Any, BinaryIO

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer, IReactorTime
from twisted.web.server import Request
from zope.interface import implementer

from artifactd.http import sendfile
from artifactd.interfaces import IBlobStore
from artifactd.storage.copying import Piece as Segment
from artifactd.storage.copying import pieces as segments_for

__all__ = [
    "CHUNK",
    "CHUNKS_PER_TURN",
    "SMALL_BODY",
    "BlobProducer",
    "Segment",
    "read_segments",
    "segments_for",
    "write_small",
]

CHUNK = 64 * 1024
CHUNKS_PER_TURN = 32
# When the socket is full, this much is written through the transport: more than its buffer
# size, so the transport pauses the producer and resumes it once the socket has drained.
SPILL = 2 * CHUNK
SENDFILE_TURNS = CHUNKS_PER_TURN // 4  # four sendfile calls (up to 16 MiB) per reactor turn
SMALL_BODY = 256 * 1024
"""The largest body :func:`write_small` sends; a larger one is worth a producer."""


def read_segments(blobs: IBlobStore, segments: list[Segment]) -> bytes:
    """The bytes of ``segments``, in order; OSError if a blob is shorter than its record."""
    out = []
    for segment in segments:
        with blobs.open_blob(segment.digest) as f:
            f.seek(segment.offset)
            data = f.read(segment.length)
        if len(data) != segment.length:
            raise OSError("blob shorter than its record")
        out.append(data)
    return b"".join(out)


def write_small(request: Request, blobs: IBlobStore, segments: list[Segment]) -> None:
    """Write the (small) body of ``segments`` and finish the request.

    A blob that cannot be read aborts the connection, as :class:`BlobProducer` does (the head
    announced a length the body cannot have), and the error is raised to the caller."""
    try:
        data = read_segments(blobs, segments)
    except Exception:
        _abort(request)
        raise
    request.write(data)
    request.finish()


def _abort(request: Request) -> None:
    transport = getattr(request, "transport", None)
    if transport is not None:
        transport.abortConnection()  # a truncated body must not look complete


@implementer(IPushProducer)
class BlobProducer:
    """Writes the segments to the request, then finishes it.

    ``stopProducing`` (the client went away) closes the open blob; nothing else is held.
    """

    def __init__(
        self,
        request: Request,
        blobs: IBlobStore,
        segments: list[Segment],
        clock: IReactorTime,
    ) -> None:
        self._request = request
        self._blobs = blobs
        self._segments = list(segments)
        self._clock = clock
        self._file: BinaryIO | None = None
        self._remaining = 0
        self._paused = False
        self._stopped = False
        self._scheduled = False
        self._socket: int | None = None
        self._fd: int | None = None  # the current blob's file descriptor, if it has one
        self.done: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self._request.registerProducer(self, True)
        self._socket = sendfile.sendfile_socket(self._request)
        self._produce()
        return self.done

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        self._schedule()

    def stopProducing(self) -> None:
        self._stopped = True
        self._close()

    def _schedule(self) -> None:
        if not self._scheduled and not self._stopped:
            self._scheduled = True
            self._clock.callLater(0, self._produce)

    def _produce(self) -> None:
        self._scheduled = False
        turns = 0
        try:
            while not self._paused and not self._stopped:
                if (self._file is None or self._remaining == 0) and not self._next_segment():
                    self._finish()
                    return
                assert self._file is not None
                if self._socket is None or not self._request.startedWriting:
                    self._write(CHUNK)
                    turns += 1
                elif (
                    self._fd is not None
                    and sendfile.transport_idle(self._request)
                    and self._sendfile()
                ):
                    turns += SENDFILE_TURNS
                else:  # bytes queued on the transport, or a full socket: spill through it
                    self._write(SPILL)
                    turns += 1
                if turns >= CHUNKS_PER_TURN:
                    self._schedule()
                    return
        except (BrokenPipeError, ConnectionResetError):  # sendfile found the client gone
            self.stopProducing()
            self._request.unregisterProducer()
            transport: Any = self._request.channel.transport
            transport.abortConnection()
        except Exception as e:
            self._stopped = True
            self._close()
            self._request.unregisterProducer()
            _abort(self._request)
            if not self.done.called:
                self.done.errback(e)

    def _write(self, size: int) -> None:
        assert self._file is not None
        data = self._file.read(min(size, self._remaining))
        if not data:
            raise OSError("blob shorter than its record")
        self._remaining -= len(data)
        self._request.write(data)

    def _sendfile(self) -> bool:
        """Send what the socket takes of the current segment; False if it took nothing."""
        assert self._file is not None and self._socket is not None
        position = self._file.tell()
        assert self._fd is not None
        sent = sendfile.send(self._socket, self._fd, position, self._remaining)
        if sent == 0:
            return False
        self._file.seek(position + sent)
        self._remaining -= sent
        self._request.sentLength += sent
        return True

    def _next_segment(self) -> bool:
        self._close()
        if not self._segments:
            return False
        segment = self._segments.pop(0)
        self._file = self._blobs.open_blob(segment.digest)
        try:
            self._fd = self._file.fileno()
        except (OSError, ValueError):  # a blob kept in memory (io.UnsupportedOperation)
            self._fd = None
        self._file.seek(segment.offset)
        self._remaining = segment.length
        return True

    def _finish(self) -> None:
        self._close()
        self._stopped = True
        self._request.unregisterProducer()
        self._request.finish()
        if not self.done.called:
            self.done.callback(None)

    def _close(self) -> None:
        f, self._file = self._file, None
        if f is not None:
            f.close()
