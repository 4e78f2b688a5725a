"""Single objects: PUT, GET/HEAD (ranges, streaming), DELETE."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import ClassVar, cast

from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from artifactd import errors, integrity, preconditions
from artifactd.http import conditions, reads, tagging
from artifactd.http.context import RequestContext
from artifactd.http.download import SMALL_BODY, BlobProducer, segments_for, write_small
from artifactd.http.handlers.base import HandlerBase, lower_headers, object_headers
from artifactd.http.s3xml import http_date
from artifactd.records import BlobRef, ObjectRecord


class ObjectHandlers(HandlerBase):
    """PutObject, GetObject, HeadObject, DeleteObject."""

    actions: ClassVar[Mapping[str, str]] = {
        "PutObject": "put_object",
        "GetObject": "get_object",
        "HeadObject": "get_object",
        "DeleteObject": "delete_object",
    }

    async def put_object(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        staged = ctx.staged
        assert staged is not None
        content_type, headers, metadata = object_headers(request, ctx)
        record = ObjectRecord(
            bucket=self._bucket(ctx).name,
            key=ctx.target.key,
            size=staged.size,
            etag=staged.md5,
            sha256=staged.sha256,
            last_modified=self._clock.seconds(),
            content_type=content_type,
            headers=headers,
            metadata=metadata,
            blobs=(BlobRef(staged.sha256, staged.size),),
            checksum=integrity.stored(ctx.checksum_algorithm, ctx.checksum_value),
            checksum_type=integrity.FULL_OBJECT if ctx.checksum_value else None,
            tags=tagging.parse_header(ctx.headers.get("x-amz-tagging", "").encode("latin-1")),
        )
        condition = preconditions.write_condition(lower_headers(request))
        ctx.staged_consumed = True
        await self._engine.put_object(staged, record, condition)
        request.setHeader(b"etag", f'"{record.etag}"'.encode())
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        for name, value in integrity.object_headers(record):
            request.setHeader(name.encode(), value.encode())
        return b""

    async def get_object(self, request: IRequest, ctx: RequestContext) -> bytes | None:
        assert ctx.target is not None
        record = self._object(ctx)
        try:
            conditions.check_read(
                conditions.Conditions.from_headers(ctx.headers.get),
                record.etag,
                record.last_modified,
                now=self._clock.seconds(),
            )
        except errors.NotModified:
            for name, value in reads.not_modified_headers(record):
                request.setHeader(name.encode(), value.encode())
            raise
        overrides = reads.response_overrides(ctx.target.query)
        selection = reads.select(
            record, ctx.headers.get("range"), reads.part_number(ctx.target.query)
        )
        request.setHeader(b"content-type", record.content_type.encode())
        request.setHeader(b"etag", f'"{record.etag}"'.encode())
        request.setHeader(b"last-modified", http_date(record.last_modified).encode())
        if record.tags:
            request.setHeader(b"x-amz-tagging-count", b"%d" % len(record.tags))
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        for name, value in record.headers:
            request.setHeader(name.encode(), value.encode())
        for name, value in record.metadata:
            request.setHeader(f"x-amz-meta-{name}".encode(), value.encode())
        for name, value in overrides:
            request.setHeader(name.encode(), value.encode("latin-1"))
        request.setResponseCode(selection.status)
        if selection.content_range is not None:
            request.setHeader(b"content-range", selection.content_range.encode())
        if selection.parts_count is not None:
            request.setHeader(b"x-amz-mp-parts-count", b"%d" % selection.parts_count)
        if integrity.mode_enabled(ctx.headers.get("x-amz-checksum-mode")):
            for name, value in reads.checksum_headers(record, selection):
                request.setHeader(name.encode(), value.encode())
        start, length = selection.start, selection.length
        request.setHeader(b"content-length", b"%d" % length)
        if ctx.method == "HEAD" or length == 0:
            return b""
        segments = segments_for(record.blobs, start, length)
        if length <= SMALL_BODY:
            write_small(cast(Request, request), self._engine.blobs, segments)
            return None
        producer = BlobProducer(cast(Request, request), self._engine.blobs, segments, self._clock)
        with contextlib.suppress(ConnectionLost, ConnectionDone):
            await producer.start()
        return None

    async def delete_object(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        await self._engine.delete_object(bucket.name, ctx.target.key)
        request.setResponseCode(204)
        return b""
