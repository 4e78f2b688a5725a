"""Answering a request with an S3 error *now*, before or instead of reading its body, and
closing the connection once the client has had the chance to read the answer."""

from __future__ import annotations

from twisted.internet.interfaces import IDelayedCall, IReactorTime, ITCPTransport
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.web import http

from artifactd import errors
from artifactd.http.s3xml import error_document, http_date

LINGER_SECONDS = 5.0  # how long a refused connection stays open for the client to read the answer


def refuse(
    transport: ITCPTransport,
    error: errors.S3Error,
    request_id: str,
    clock: IReactorTime,
    *,
    head: bool = False,
) -> tuple[int, IDelayedCall]:
    """Write ``error`` as a complete ``Connection: close`` response and start a lingering close.
    The answer to a HEAD request (``head``) carries the headers but no body.

    Returns the number of body bytes written and the delayed call that aborts the connection
    after :data:`LINGER_SECONDS` (cancel it when the connection goes away first).
    """
    body = error_document(error, request_id)
    lines = [
        b"HTTP/1.1 %d %s" % (error.status, http.RESPONSES.get(error.status, b"Error")),
        b"Content-Type: application/xml",
        b"Content-Length: %d" % len(body),
        b"x-amz-request-id: " + request_id.encode(),
        b"Date: " + http_date(clock.seconds()).encode(),
        b"Server: artifactd",
        b"Connection: close",
    ]
    transport.write(b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head else body))
    if isinstance(transport, TLSMemoryBIOProtocol):
        # No TLS half-close: loseWriteConnection would reach the TCP transport underneath, which
        # can shut down before the TLS layer has flushed the response.  loseConnection flushes
        # it first and keeps reading.
        transport.loseConnection()
    else:
        try:
            transport.loseWriteConnection()  # keep reading: a reset could lose the answer
        except (AttributeError, NotImplementedError):
            transport.loseConnection()  # a transport without half-close
    return 0 if head else len(body), clock.callLater(LINGER_SECONDS, transport.abortConnection)
