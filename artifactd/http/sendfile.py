"""Zero-copy downloads: ``os.sendfile`` from a blob file straight into a plain TCP socket.

Only when the response can take raw bytes on the wire: a plain TCP transport (not TLS, which must
encrypt in user space), a response with a Content-Length (not chunked framing), and a platform
with ``sendfile``.  The bytes go to the socket directly, so they may only be sent while the
transport's own buffer is empty (or they would overtake bytes queued before them); the producer
checks :func:`transport_idle` before each call and falls back to an ordinary write otherwise.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import tcp
from twisted.internet.interfaces import ISSLTransport
from twisted.web.server import Request

MAX_PER_CALL = 4 * 1024 * 1024


def sendfile_socket(request: Request) -> int | None:
    """The socket descriptor to send the response body to with ``sendfile``, or None when the
    body must go through the transport."""
    if not hasattr(os, "sendfile"):
        return None
    channel = getattr(request, "channel", None)
    transport = getattr(channel, "transport", None)
    if not isinstance(transport, tcp.Connection) or ISSLTransport.providedBy(transport):
        return None
    if getattr(transport, "TLS", False) or getattr(request, "chunked", False):
        return None
    if request.responseHeaders.getRawHeaders(b"content-length") is None:
        return None
    fileno: int = transport.fileno()
    return fileno


def transport_idle(request: Request) -> bool:
    """Whether the transport has written everything queued on it (twisted's FileDescriptor keeps
    its queue in ``dataBuffer`` from ``offset`` on, plus ``_tempDataBuffer``)."""
    transport: Any = request.channel.transport
    return not transport._tempDataBuffer and transport.offset >= len(transport.dataBuffer)


def send(socket_fd: int, file_fd: int, offset: int, count: int) -> int:
    """Send up to ``count`` bytes of the file from ``offset``; 0 when the socket is full.
    Raises OSError (e.g. BrokenPipeError) when the peer is gone."""
    try:
        return os.sendfile(socket_fd, file_fd, offset, min(count, MAX_PER_CALL))
    except BlockingIOError:
        return 0
