"""What every handler module shares: the wiring, the lookups that raise the S3 "no such ..."
errors, and small pure helpers for headers and query arguments."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, ClassVar

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.iweb import IRequest

from artifactd import errors, names
from artifactd.config import Config
from artifactd.http.context import RequestContext
from artifactd.interfaces import IMetadataStore
from artifactd.records import Bucket, ObjectRecord, Upload
from artifactd.storage.engine import Engine

STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)

Handler = Callable[[IRequest, RequestContext], Awaitable[bytes | None]]


class HandlerBase:
    """Shared state of the handler classes.  Each handler class lists the S3 actions it serves in
    ``actions`` (action name to method name); :class:`~artifactd.http.api.S3Api` merges them."""

    actions: ClassVar[Mapping[str, str]] = {}
    log = Logger()

    def __init__(
        self, config: Config, engine: Engine, meta: IMetadataStore, clock: IReactorTime
    ) -> None:
        self._config = config
        self._engine = engine
        self._meta = meta
        self._clock = clock

    def _xml(self, request: IRequest, body: bytes) -> bytes:
        request.setHeader(b"content-type", b"application/xml")
        return body

    def _bucket(self, ctx: RequestContext) -> Bucket:
        assert ctx.target is not None and ctx.target.bucket is not None
        bucket = ctx.bucket  # read by the gate for this request, if it checked one
        if bucket is None or bucket.name != ctx.target.bucket:
            bucket = self._meta.get_bucket(ctx.target.bucket)
        if bucket is None:
            raise errors.NoSuchBucket(
                resource=ctx.target.bucket, extra={"BucketName": ctx.target.bucket}
            )
        return bucket

    def _object(self, ctx: RequestContext) -> ObjectRecord:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        record = self._meta.get_object(bucket.name, ctx.target.key)
        if record is None:
            raise errors.NoSuchKey(resource=ctx.target.resource, extra={"Key": ctx.target.key})
        return record

    def _upload(self, ctx: RequestContext) -> Upload:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        upload_id = ctx.target.query.get("uploadId", "")
        upload = self._meta.get_upload(bucket.name, ctx.target.key, upload_id)
        if upload is None:
            raise errors.NoSuchUpload(extra={"UploadId": upload_id})
        return upload


# -------------------------------------------------------------------- helpers
def header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name.encode())
    return value.decode("latin-1") if value is not None else None


def lower_headers(request: IRequest) -> dict[str, str]:
    """The request's headers by lower-case name (the first value of each)."""
    return {
        name.decode("latin-1").lower(): values[0].decode("latin-1")
        for name, values in request.requestHeaders.getAllRawHeaders()
        if values
    }


def object_headers(
    request: IRequest, ctx: RequestContext
) -> tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Content-Type, the stored standard headers and the user metadata of an upload."""
    get = ctx.headers.get  # what header(request, name) gives, decoded once per request
    content_type = get("content-type") or "binary/octet-stream"
    headers: list[tuple[str, str]] = []
    for name in STORED_HEADERS:
        value = get(name)
        if value is None:
            continue
        if name == "content-encoding":
            tokens = [t.strip() for t in value.split(",") if t.strip().lower() != "aws-chunked"]
            value = ", ".join(t for t in tokens if t)
            if not value:
                continue
        headers.append((name, value))
    metadata = names.user_metadata(request.requestHeaders.getAllRawHeaders())
    names.check_metadata(metadata)
    return content_type, tuple(headers), tuple(metadata)


def encoding_type(q: dict[str, str] | Any) -> str | None:
    value: str | None = q.get("encoding-type")
    if value is None or value == "":
        return None
    if value != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": value},
        )
    return value


def int_arg(q: Any, name: str, default: int, low: int, high: int | None) -> int:
    raw: str | None = q.get(name)
    if raw is None:
        return default
    value = names.parse_count(raw)
    if value is None or value < low or (high is not None and value > high):
        raise errors.InvalidArgument(
            f"Provided {name} not valid.", extra={"ArgumentName": name, "ArgumentValue": raw[:64]}
        )
    return value


def encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8", "surrogatepass")).decode()


def decode_token(token: str) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        ) from None
