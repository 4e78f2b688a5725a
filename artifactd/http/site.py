"""The body path: a ``Request`` subclass that checks a request from its head before ``100
Continue`` is sent, streams its body through the decoders into a sink, and only routes the request
(to :class:`~artifactd.http.api.S3Resource`) once the body is staged, fsynced and verified.

twisted.web offers no public streaming-body API; this uses the documented request hooks
``gotLength`` / ``handleContentChunk`` / ``requestReceived`` and reads the request line from the
channel's private ``_command`` / ``_path`` (pinned by ``twisted<27`` and a regression test).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from io import BytesIO
from typing import Any, cast

from twisted.internet import tcp
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ITCPTransport
from twisted.logger import Logger, LogLevel
from twisted.python.failure import Failure
from twisted.web import http, server
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource

from artifactd import errors, logs
from artifactd.http.awschunked import AwsChunkedDecoder
from artifactd.http.body import MemorySink, StagingSink
from artifactd.http.channel import DEFAULT_MAX_HEAD_BYTES, DEFAULT_MAX_HEADERS, S3Channel
from artifactd.http.context import RequestContext, new_request_id
from artifactd.http.direct import DirectReceive
from artifactd.http.gate import BodyPlan, Gate
from artifactd.http.refusal import LINGER_SECONDS, refuse
from artifactd.http.s3xml import http_date
from artifactd.http.writes import WriteGathering
from artifactd.interfaces import IBlobStore
from artifactd.storage.engine import Engine, Runner, StagedBody

__all__ = ["LINGER_BYTES", "LINGER_SECONDS", "S3Request", "S3Site"]

LINGER_BYTES = 64 * 1024 * 1024
DIRECT_MIN = 1024 * 1024  # plain bodies from this length on are read by a DirectReceive

access_log = logs.Logger(namespace="artifactd.access")  # a cheaper emit, same events
ACCESS_FORMAT = "{action} {status} {method} {resource} {duration_ms}ms {request_id}"


class ResponseHeaders(Headers):
    """Twisted sends header names in Header-Case; S3 sends ``x-amz-meta-*`` in lower case, and
    clients (boto3's ``Metadata``, the CLI's JSON) key user metadata by the name as received."""

    def getAllRawHeaders(self) -> Iterator[tuple[bytes, Sequence[bytes]]]:
        for name, values in super().getAllRawHeaders():
            yield (name.lower() if name.startswith(b"X-Amz-Meta-") else name), values


class S3Request(server.Request):
    """One S3 request.  Reactor thread only."""

    log = Logger()
    ctx: RequestContext
    defaultContentType = None  # S3 sends no Content-Type on empty responses

    def __init__(self, channel: Any, queued: object = None) -> None:
        super().__init__(channel)  # type: ignore[no-untyped-call]
        self.responseHeaders = ResponseHeaders()
        self._sink: StagingSink | MemorySink | DirectReceive | None = None
        self._direct_plan: BodyPlan | None = None  # a DirectReceive starts at the first bytes
        self._saved_timeout: float | None = None
        self._decoder: AwsChunkedDecoder | None = None
        self._rejected = False
        self._lost = False
        self._discarded = 0
        self._linger: IDelayedCall | None = None
        self._paused_transport: IPushProducer | None = None

    @property
    def s3site(self) -> S3Site:
        return cast(S3Site, self.channel.site)  # type: ignore[attr-defined]

    # ---------------------------------------------------- the channel's hooks
    def gotLength(self, length: int | None) -> None:
        site = self.s3site
        channel = self.channel
        method = bytes(channel._command).decode("latin-1").upper()
        self.ctx = RequestContext(
            request_id=new_request_id(),
            started=site.clock.seconds(),
            method=method,
            peer=cast(S3Channel, channel).peer_text(),
        )
        self.content = BytesIO()
        headers = [
            (name, value)
            for name, values in self.requestHeaders.getAllRawHeaders()
            for value in values
        ]
        self.ctx.headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in headers
        }
        has_body = length is None or length > 0
        try:
            if site.engine.closed:
                raise errors.ServiceUnavailable()
            plan = site.gate.admit(self.ctx, bytes(channel._path), headers, length)
        except errors.S3Error as e:
            if has_body:
                self._reject(e)
            else:
                self.ctx.error = e
            return
        except Exception:
            self.log.failure("admitting request {request_id}", request_id=self.ctx.request_id)
            err = errors.InternalError()
            if has_body:
                self._reject(err)
            else:
                self.ctx.error = err
            return
        self._start_body(plan, length)  # even when empty: an empty PUT still stages a body

    def _start_body(self, plan: BodyPlan, length: int | None) -> None:
        site = self.s3site
        if (
            plan.streamed
            and plan.chunked is None
            and length is not None
            and length >= site.direct_min
            and site.call_from_thread is not None
            and isinstance(self.channel.transport, tcp.Server)
        ):
            self._direct_plan = plan
            return
        self._start_body_sink(plan)

    def _start_body_sink(self, plan: BodyPlan) -> None:
        site = self.s3site
        if plan.streamed:
            self._sink = StagingSink(
                site.blobs, site.run, plan.checks, self._pause_reading, self._resume_reading
            )
        else:
            self._sink = MemorySink(plan.checks)
        if plan.chunked is not None:
            self._decoder = AwsChunkedDecoder(
                self._sink.write,
                decoded_length=plan.chunked.decoded_length,
                trailer_names=plan.chunked.trailer_names,
                signatures=plan.chunked.signatures,
            )

    def handleContentChunk(self, data: bytes) -> None:
        if self._rejected:
            self._discarded += len(data)
            if self._discarded > LINGER_BYTES and self.channel is not None:
                self._transport().abortConnection()
            return
        if self._direct_plan is not None:
            plan, self._direct_plan = self._direct_plan, None
            if self._start_direct(plan, data):
                return
        if self._sink is None:
            return  # a body on a request already refused (kept small by the gate)
        try:
            if self._decoder is not None:
                self._decoder.feed(data)
            else:
                self._sink.write(data)
        except errors.S3Error as e:
            self._sink.abort()
            self._reject(e)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._rejected:
            return
        sink = self._sink
        if sink is None:
            self._received(command, path, version)
            return
        self.ctx.bytes_in = sink.received
        try:
            if self._decoder is not None:
                trailers = self._decoder.finish()
                if self.ctx.checksum_algorithm:
                    sink.set_trailer_checksum(
                        trailers.get(f"x-amz-checksum-{self.ctx.checksum_algorithm}")
                    )
        except errors.S3Error as e:
            sink.abort()
            self.ctx.error = e
            self._received(command, path, version)
            return

        def received(body: StagedBody | bytes) -> None:
            if self._lost:
                if isinstance(body, StagedBody):
                    self.s3site.engine.discard(body.staging)
                return
            if isinstance(body, StagedBody):
                self.ctx.staged = body
                if isinstance(sink, (StagingSink, DirectReceive)):
                    self.ctx.checksum_value = sink.checksum
            else:
                self.ctx.payload = body
            self._received(command, path, version)

        def failed(failure: Failure) -> None:
            if self._lost:
                return
            if failure.check(errors.S3Error):
                self.ctx.error = cast(errors.S3Error, failure.value)
            else:
                self.log.failure(
                    "receiving body of {request_id}", failure, request_id=self.ctx.request_id
                )
                self.ctx.error = errors.InternalError()
            self._received(command, path, version)

        d = sink.close()
        d.addCallbacks(received, failed)
        d.addErrback(lambda f: self.log.failure("dispatching", f))

    def _received(self, command: bytes, path: bytes, version: bytes) -> None:
        """What twisted's ``Request.requestReceived`` does for an S3 request: note the request
        line, then :meth:`process`.  Its query parsing into ``args`` (nothing reads them: the
        gate parsed the raw target) and its form parsing and rewinding of ``content`` (which
        stays empty: the body went to the sink) are left out."""
        self.args = {}
        self.method, self.uri = command, path
        self.clientproto = version
        self.path = path.split(b"?", 1)[0]
        self.process()

    def process(self) -> None:
        """Render the request with the site's one resource.  twisted's ``process`` would split
        and unquote the path into ``postpath`` for resource traversal (there is none: the gate
        routed the request from its raw target), format a new Date header each time, and answer
        a ``*`` target itself (S3 has none: it gets the gate's 400 InvalidURI in S3 XML)."""
        site = self.s3site
        self.site = site
        self.setHeader(b"date", http_date(site.clock.seconds()).encode())  # type: ignore[no-untyped-call]
        self.prepath = []
        self.postpath = []
        try:
            self.render(site.resource)  # type: ignore[no-untyped-call]
        except BaseException:
            self.processingFailed(Failure())  # type: ignore[no-untyped-call]

    def connectionLost(self, reason: Failure) -> None:
        self._lost = True
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        if self._sink is not None and self.ctx.staged is None:
            self._sink.abort()
        if not self.finished and not self._rejected and hasattr(self, "ctx"):
            self.s3site.access(self, status=0, error_code="ClientDisconnected")
        self._drop_body()
        super().connectionLost(reason)  # type: ignore[no-untyped-call]

    def finish(self) -> None:
        super().finish()  # type: ignore[no-untyped-call]
        self._drop_body()

    def _drop_body(self) -> None:
        """The request is over: let go of its body's sink (and decoder), which holds this
        request's bound methods (pause, resume, the direct receiver's callbacks).  Else the
        two refer to each other, and every request with a body -- its headers, context, digests
        and staged body, ~30 objects -- would wait for the garbage collector instead of going
        when the channel lets go of it.  Collecting those cycles cost the reactor about 5% of
        its time under small PUTs."""
        self._sink = None
        self._decoder = None

    # ---------------------------------------------------- direct receive
    def _start_direct(self, plan: BodyPlan, first: bytes) -> bool:
        """Hand the rest of the body to a :class:`DirectReceive` (True), or start the ordinary
        sink when there is little left (False: ``first`` is then still to be written)."""
        site = self.s3site
        channel = cast(S3Channel, self.channel)
        transport = cast(tcp.Server, channel.transport)
        decoder = channel._transferDecoder
        assert decoder is not None
        remaining: int = decoder.contentLength
        # over the size cap only when an x-amz-decoded-content-length header understated a
        # plain body at admission: the ordinary sink refuses it (EntityTooLarge) as it comes
        if remaining < site.direct_min // 2 or len(first) + remaining > plan.checks.max_size:
            self._start_body_sink(plan)
            return False
        sock = transport.socket.dup()
        transport.pauseProducing()
        channel.reading_elsewhere = True
        self._saved_timeout = channel.setTimeout(None)  # type: ignore[no-untyped-call]
        call_from_thread = site.call_from_thread
        assert call_from_thread is not None
        sink = DirectReceive(
            sock,
            bytes(first),
            remaining,
            blobs=site.blobs,
            run=site.run,
            checks=plan.checks,
            call_from_thread=call_from_thread,
            on_body_read=self._direct_body_read,
            on_broken=self._direct_broken,
            idle_timeout=self._saved_timeout,
        )
        self._sink = sink
        sink.start()
        return True

    def _direct_body_read(self) -> None:
        """All of the body is in: the channel reads the socket again and ends the body."""
        channel = cast(S3Channel, self.channel)
        channel.reading_elsewhere = False
        channel.setTimeout(self._saved_timeout)  # type: ignore[no-untyped-call]
        cast(tcp.Server, channel.transport).resumeProducing()
        decoder = channel._transferDecoder
        assert decoder is not None
        decoder.contentLength = 0
        channel.rawDataReceived(b"")  # -> handleContentChunk(b""), then requestReceived

    def _direct_broken(self) -> None:
        """The body ended early (closed, reset or idle): drop the connection."""
        if not self._lost and self.channel is not None:
            self._transport().abortConnection()

    # ------------------------------------------------------------ helpers
    def _transport(self) -> ITCPTransport:
        return cast(ITCPTransport, self.channel.transport)

    def _pause_reading(self) -> None:
        producer = IPushProducer(self.channel.transport, None) if self.channel else None
        if producer is not None:
            self._paused_transport = producer
            producer.pauseProducing()

    def _resume_reading(self) -> None:
        producer, self._paused_transport = self._paused_transport, None
        if producer is not None and not self._lost:
            producer.resumeProducing()

    def _reject(self, error: errors.S3Error) -> None:
        """Answer now, before (or instead of) reading the body, and close the connection."""
        self._rejected = True
        self._resume_reading()
        self.requestHeaders.removeHeader(b"expect")  # no automatic 100 Continue after this
        self.ctx.error_code = error.code
        sent, self._linger = refuse(
            self._transport(),
            error,
            self.ctx.request_id,
            self.s3site.clock,
            head=self.ctx.method == "HEAD",
        )
        self.s3site.access(self, status=error.status, error_code=error.code, bytes_out=sent)


class S3Site(server.Site):
    """A Site whose requests stream their bodies and whose access log is one structured event.

    Its channels are :class:`S3Channel` (plain HTTP/1.1, with the request-head limits given
    here) rather than twisted's HTTP/2-capable wrapper: S3 clients speak HTTP/1.1."""

    protocol = S3Channel  # type: ignore[assignment]

    def __init__(
        self,
        resource: IResource,
        *,
        gate: Gate,
        engine: Engine,
        blobs: IBlobStore,
        run: Runner,
        clock: IReactorTime,
        on_access: Callable[[dict[str, Any]], None] | None = None,
        call_from_thread: Callable[..., object] | None = None,
        direct_min: int = DIRECT_MIN,
        max_request_head_bytes: int = DEFAULT_MAX_HEAD_BYTES,
        max_headers: int = DEFAULT_MAX_HEADERS,
        writes: WriteGathering | None = None,
    ) -> None:
        super().__init__(resource, requestFactory=S3Request)  # type: ignore[no-untyped-call]
        self.max_request_head_bytes = max_request_head_bytes
        self.max_headers = max_headers
        self.gate = gate
        self.engine = engine
        self.blobs = blobs
        self.run = run
        self.clock = clock
        self._on_access = on_access
        # large plain bodies are read by threads (DirectReceive) when the reactor's
        # callFromThread is given
        self.call_from_thread = call_from_thread
        self.direct_min = direct_min
        # the channels' transports send before the reactor's next poll (when given)
        self.writes = writes
        self.displayTracebacks = False

    def buildProtocol(self, addr: Any) -> S3Channel:  # type: ignore[override]
        channel = cast(S3Channel, super().buildProtocol(addr))  # type: ignore[no-untyped-call]
        channel.limit_head(self.max_request_head_bytes, self.max_headers)
        return channel

    def log(self, request: http.Request) -> None:
        if isinstance(request, S3Request) and hasattr(request, "ctx"):
            self.access(
                request,
                status=request.code,
                error_code=request.ctx.error_code,
                bytes_out=request.sentLength,
            )

    def access(
        self,
        request: S3Request,
        *,
        status: int,
        error_code: str | None,
        bytes_out: int = 0,
    ) -> None:
        """Emit the request's one access event."""
        ctx = request.ctx
        if ctx.logged:
            return
        ctx.logged = True
        target = ctx.target
        event = {
            "request_id": ctx.request_id,
            "method": ctx.method,
            "action": ctx.action,
            "bucket": target.bucket if target else None,
            "query": sorted(target.query) if target else [],  # parameter names only: no secrets
            "key": target.key if target else None,
            "status": status,
            "error_code": error_code,
            "bytes_in": ctx.bytes_in or (request._sink.received if request._sink else 0),
            "bytes_out": bytes_out,
            "duration_ms": round((self.clock.seconds() - ctx.started) * 1000, 3),
            "peer": ctx.peer,
            "principal": ctx.principal,
        }
        access_log.emit(  # what .info() calls, without its extra call and copy of the fields
            LogLevel.info,
            ACCESS_FORMAT,
            resource=target.resource if target else "-",
            **event,
        )
        if self._on_access is not None:
            self._on_access(event)

    def head_refused(
        self, *, request_id: str, peer: str, status: int, error_code: str, bytes_out: int
    ) -> None:
        """Emit the access event of a request refused by its channel before it was parsed (an
        over-limit head): no method, target or principal is known."""
        event: dict[str, Any] = {
            "request_id": request_id,
            "method": None,
            "action": "Unknown",
            "bucket": None,
            "query": [],
            "key": None,
            "status": status,
            "error_code": error_code,
            "bytes_in": 0,
            "bytes_out": bytes_out,
            "duration_ms": 0.0,
            "peer": peer,
            "principal": None,
        }
        access_log.emit(  # what .info() calls, without its extra call and copy of the fields
            LogLevel.info,
            ACCESS_FORMAT,
            resource="-",
            **event,
        )
        if self._on_access is not None:
            self._on_access(event)
