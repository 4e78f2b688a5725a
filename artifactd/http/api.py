"""The S3 API: one resource, one dispatch on the action the gate classified, one error path
that renders S3 XML.  The handlers live in :mod:`artifactd.http.handlers`, one module per area;
they are short coroutines that never block: metadata reads are inline (cheap), everything that
touches the disk goes through the engine's threadpool."""

from __future__ import annotations

from typing import Any, cast

from twisted.internet.defer import CancelledError, Deferred, ensureDeferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.resource import IResource
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from artifactd import errors
from artifactd.config import Config
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import Handler
from artifactd.http.handlers.buckets import BucketHandlers
from artifactd.http.handlers.copying import CopyHandlers
from artifactd.http.handlers.listing import ListingHandlers
from artifactd.http.handlers.multipart import MultipartHandlers
from artifactd.http.handlers.objects import ObjectHandlers
from artifactd.http.handlers.tagging import TaggingHandlers
from artifactd.http.handlers.versions import VersionHandlers
from artifactd.interfaces import IMetadataStore
from artifactd.storage.engine import Engine

HANDLER_CLASSES = (
    BucketHandlers,
    ListingHandlers,
    ObjectHandlers,
    MultipartHandlers,
    TaggingHandlers,
    VersionHandlers,
    CopyHandlers,
)


class S3Api(
    BucketHandlers,
    ListingHandlers,
    ObjectHandlers,
    MultipartHandlers,
    TaggingHandlers,
    VersionHandlers,
    CopyHandlers,
):
    def __init__(
        self, config: Config, engine: Engine, meta: IMetadataStore, clock: IReactorTime
    ) -> None:
        super().__init__(config, engine, meta, clock)
        self._handlers: dict[str, Handler] = {
            action: getattr(self, name)
            for cls in HANDLER_CLASSES
            for action, name in cls.actions.items()
        }

    def resource(self) -> IResource:
        return S3Resource(self)

    # ---------------------------------------------------------------- dispatch
    async def dispatch(self, request: IRequest) -> bytes | None:
        ctx: RequestContext = cast(Any, request).ctx
        request.setHeader(b"x-amz-request-id", ctx.request_id.encode())
        request.setHeader(b"x-amz-id-2", ctx.request_id.encode())
        request.setHeader(b"server", b"artifactd")
        try:
            if ctx.error is not None:
                raise ctx.error
            handler = self._handlers.get(ctx.action)
            if handler is None:
                raise errors.NotImplementedError_(f"{ctx.action} is not implemented.")
            return await handler(request, ctx)
        except errors.S3Error as e:
            return self._error(request, ctx, e)
        except (CancelledError, ConnectionLost, ConnectionDone):
            raise
        except Exception:
            self.log.failure(
                "{action} failed ({request_id})", action=ctx.action, request_id=ctx.request_id
            )
            return self._error(request, ctx, errors.InternalError())
        finally:
            if ctx.staged is not None and not ctx.staged_consumed:
                ctx.staged_consumed = True
                self._engine.discard(ctx.staged.staging)

    def _error(self, request: IRequest, ctx: RequestContext, error: errors.S3Error) -> bytes:
        ctx.error_code = error.code
        if error.resource is None and ctx.target is not None:
            error.resource = ctx.target.resource
        request.setResponseCode(error.status)
        if isinstance(error, errors.NotModified):
            return b""  # RFC 7232 §4.1: no body; the handler set the validators
        request.setHeader(b"content-type", b"application/xml")
        if error.code == "NoSuchBucket" or ctx.action == "HeadBucket":
            request.setHeader(b"x-amz-bucket-region", self._config.region.encode())
        return s3xml.error_document(error, ctx.request_id)


_GONE = (CancelledError, ConnectionLost, ConnectionDone)


@implementer(IResource)
class S3Resource:
    """The site's one resource: every request is rendered by :meth:`S3Api.dispatch`.

    The gate has already routed the request from its raw target (``ctx.action``), so there is
    nothing left to route here.  A routing framework (Klein, over werkzeug) cost a fifth of the
    reactor's time per small GET for a match that always gave this one answer.  What the
    handler returns is written and the request finished; a handler that finished the request
    itself (a download) returns None; a client that goes away cancels the handler."""

    isLeaf = True
    log = Logger()

    def __init__(self, api: S3Api) -> None:
        self._api = api

    def getChildWithDefault(self, name: bytes, request: IRequest) -> IResource:
        return self

    def putChild(self, path: bytes, child: IResource) -> None:
        raise NotImplementedError("the S3 API has no child resources")

    def render(self, request: IRequest) -> bytes | int:
        gone = False
        d: Deferred[bytes | None] = ensureDeferred(self._api.dispatch(request))

        def finished(result: object) -> None:
            nonlocal gone
            gone = True
            if isinstance(result, Failure):  # the connection was lost before the response
                d.cancel()

        def write(body: bytes | None) -> None:
            if gone or cast(Any, request).finished:  # a download finished it already
                return
            if body:
                request.write(body)
            request.finish()

        def failed(failure: Failure) -> None:
            if gone and failure.check(*_GONE):
                return
            self.log.failure("rendering a request", failure)
            if not gone:
                cast(Any, request).processingFailed(failure)

        if not d.called:  # a handler still running: cancel it if the client goes away
            cast(Any, request).notifyFinish().addBoth(finished)
        d.addCallbacks(write, failed)
        return NOT_DONE_YET
