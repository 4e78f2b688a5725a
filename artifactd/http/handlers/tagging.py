"""Object tagging: GetObjectTagging, PutObjectTagging, DeleteObjectTagging.  Tags set at upload
(``x-amz-tagging`` on PutObject and CreateMultipartUpload) are handled with those actions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd.http import tagging
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase


class TaggingHandlers(HandlerBase):
    """Get/Put/DeleteObjectTagging.  Bucket tagging is not implemented (501)."""

    actions: ClassVar[Mapping[str, str]] = {
        "GetObjectTagging": "get_object_tagging",
        "PutObjectTagging": "put_object_tagging",
        "DeleteObjectTagging": "delete_object_tagging",
    }

    async def get_object_tagging(self, request: IRequest, ctx: RequestContext) -> bytes:
        record = self._object(ctx)
        return self._xml(request, tagging.document(record.tags))

    async def put_object_tagging(self, request: IRequest, ctx: RequestContext) -> bytes:
        record = self._object(ctx)
        tags = tagging.parse_document(ctx.payload)
        await self._engine.set_object_tags(record.bucket, record.key, tags)
        return b""

    async def delete_object_tagging(self, request: IRequest, ctx: RequestContext) -> bytes:
        record = self._object(ctx)
        await self._engine.set_object_tags(record.bucket, record.key, ())
        request.setResponseCode(204)
        return b""
