"""The HTTP/1.1 channel: twisted.web's ``HTTPChannel`` with the request-head limits made explicit
and an over-limit head refused the way S3 refuses it.

``HTTPChannel`` bounds a request head with two public class attributes, ``totalHeadersSize``
(request line plus header lines, 16384 bytes) and ``maxHeaders`` (500), and ``LineReceiver``
bounds any one line with ``MAX_LENGTH`` (16384).  Past them twisted writes a bare ``400 Bad
Request`` -- or, for one over-long line such as a long presigned URL, drops the connection
without an answer.  :class:`S3Channel` sets all three per channel from the configuration and
counts the head itself, through the public hooks ``lineReceived`` / ``allHeadersReceived`` /
``lineLengthExceeded``, so it sees an over-limit head first and answers ``400
RequestHeaderSectionTooLarge`` in S3 XML before closing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from twisted.internet.interfaces import IDelayedCall, ITCPTransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web import http

from artifactd import errors
from artifactd.http.context import new_request_id
from artifactd.http.refusal import refuse

if TYPE_CHECKING:
    from artifactd.http.site import S3Site

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_MAX_HEADERS = 500


class S3Channel(http.HTTPChannel):
    """One client connection.  Reactor thread only.

    ``max_head_bytes`` bounds the request line plus all header lines (line endings not
    counted, as twisted counts them) and therefore any single line; ``max_headers`` bounds the
    number of header fields (a folded continuation line is part of its field)."""

    def __init__(
        self,
        max_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
    ) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.limit_head(max_head_bytes, max_headers)
        self._head_bytes = 0
        self._head_lines = 0
        self._head_fields = 0
        self._refused = False
        self._request_line = b""
        self._linger: IDelayedCall | None = None
        self._host: Any = None
        # a DirectReceive reads this connection's socket: the transport stays paused
        self.reading_elsewhere = False
        self._peer: Any = None
        self._peer_text: str | None = None

    def limit_head(self, max_head_bytes: int, max_headers: int) -> None:
        """Set this channel's limits (twisted's own checks stay as a backstop at the same
        values; this channel's count always trips first)."""
        self.totalHeadersSize = max_head_bytes
        self.maxHeaders = max_headers
        self.MAX_LENGTH = max_head_bytes

    # ------------------------------------------------------------ the hooks
    def getHost(self) -> Any:
        """The local address: twisted's Request asks for it on every request (a getsockname
        call each time); it does not change for the life of the connection."""
        host = self._host
        if host is None:
            host = self._host = super().getHost()  # type: ignore[no-untyped-call]
        return host

    def getPeer(self) -> Any:
        """The client's address: twisted's Request asks for it on every request (the transport
        makes a new address object each time); it does not change for the life of the
        connection."""
        peer = self._peer
        if peer is None:
            peer = self._peer = super().getPeer()  # type: ignore[no-untyped-call]
        return peer

    def peer_text(self) -> str:
        """``host:port`` of the client, as the access log shows it."""
        text = self._peer_text
        if text is None:
            peer = self.getPeer()
            text = self._peer_text = f"{getattr(peer, 'host', '?')}:{getattr(peer, 'port', '?')}"
        return text

    def connectionMade(self) -> None:
        super().connectionMade()  # type: ignore[no-untyped-call]
        # A response leaves in more than one write (head, body, the end of a stream): without
        # TCP_NODELAY the last small write waits for the client's delayed ACK (up to 40 ms).
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        # the site's WriteGathering, if any, sends this connection's responses
        writes = getattr(getattr(self, "site", None), "writes", None)
        if writes is not None:
            writes.adopt(self.transport)

    def resumeProducing(self) -> None:
        if self.reading_elsewhere:  # the transport's send buffer drained: it stays paused
            self._waitingForTransport = False
            return
        super().resumeProducing()  # type: ignore[no-untyped-call]

    def dataReceived(self, data: bytes) -> None:
        if self.reading_elsewhere:  # never: the transport is paused while a thread reads
            cast(ITCPTransport, self.transport).abortConnection()
            return
        if self._refused:
            return  # the rest of a refused request: read and dropped until the client closes
        super().dataReceived(data)  # type: ignore[no-untyped-call]

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._head_lines == 0 and not line:
            super().lineReceived(line)  # type: ignore[no-untyped-call]  # a stray CRLF
            return
        self._head_lines += 1
        if self._head_lines == 1:
            self._request_line = line
        self._head_bytes += len(line)
        if self._head_lines > 1 and line and line[:1] not in (b" ", b"\t"):
            self._head_fields += 1
        if self._head_bytes > self.totalHeadersSize:
            self._refuse(
                errors.RequestHeaderSectionTooLarge(
                    extra={"MaxSizeAllowed": str(self.totalHeadersSize)}
                )
            )
            return
        if self._head_fields > self.maxHeaders:
            self._refuse(
                errors.RequestHeaderSectionTooLarge(
                    f"Your request has more than {self.maxHeaders} header fields.",
                    extra={"MaxHeaderCount": str(self.maxHeaders)},
                )
            )
            return
        super().lineReceived(line)  # type: ignore[no-untyped-call]

    def allHeadersReceived(self) -> None:
        self._head_bytes = self._head_lines = self._head_fields = 0
        super().allHeadersReceived()  # type: ignore[no-untyped-call]

    def lineLengthExceeded(self, line: bytes) -> None:
        if not self._refused:
            self._refuse(
                errors.RequestHeaderSectionTooLarge(
                    extra={"MaxSizeAllowed": str(self.totalHeadersSize)}
                )
            )

    def _respondToBadRequestAndDisconnect(self) -> None:
        # twisted.web's answer to bytes that are not HTTP (a bad request line, header syntax,
        # Content-Length or chunk framing) is a bare 400 without a body; answer in S3 XML and
        # close the same way as any other refusal.  Private hook of HTTPChannel, pinned by
        # tests/test_fuzz.py.
        if not self._refused:
            self._refuse(
                errors.BadRequest("The HTTP request is malformed."),
                head=self._request_line.split(maxsplit=1)[:1] == [b"HEAD"],
            )

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    # ------------------------------------------------------------ refusal
    def _refuse(self, error: errors.S3Error, *, head: bool = False) -> None:
        """Answer ``error`` now, stop parsing, and close once the client has read it (or after
        :data:`LINGER_SECONDS`): the same close as a request refused from its head."""
        self._refused = True
        site = cast("S3Site", self.site)  # type: ignore[attr-defined]
        request_id = new_request_id()
        transport = cast(ITCPTransport, self.transport)
        sent, self._linger = refuse(transport, error, request_id, site.clock, head=head)
        site.head_refused(
            request_id=request_id,
            peer=self.peer_text(),
            status=error.status,
            error_code=error.code,
            bytes_out=sent,
        )
