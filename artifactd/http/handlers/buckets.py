"""Service and bucket operations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd import errors, names
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase
from artifactd.http.s3xml import Child, iso8601
from artifactd.records import Bucket


class BucketHandlers(HandlerBase):
    """ListBuckets, CreateBucket, HeadBucket, DeleteBucket, location, versioning, DeleteObjects."""

    actions: ClassVar[Mapping[str, str]] = {
        "ListBuckets": "list_buckets",
        "CreateBucket": "create_bucket",
        "HeadBucket": "head_bucket",
        "DeleteBucket": "delete_bucket",
        "GetBucketLocation": "get_bucket_location",
        "GetBucketVersioning": "get_bucket_versioning",
        "DeleteObjects": "delete_objects",
    }

    async def list_buckets(self, request: IRequest, ctx: RequestContext) -> bytes:
        buckets: list[Child] = [
            ("Bucket", [("Name", b.name), ("CreationDate", iso8601(b.created))])
            for b in self._meta.list_buckets()
        ]
        return self._xml(
            request,
            s3xml.document(
                "ListAllMyBucketsResult", [("Owner", s3xml.owner()), ("Buckets", buckets)]
            ),
        )

    async def create_bucket(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.bucket is not None
        name = ctx.target.bucket
        s3xml.parse_create_bucket(ctx.payload)
        created = await self._engine.create_bucket(Bucket(name, self._clock.seconds()))
        if not created:
            raise errors.BucketAlreadyOwnedByYou(resource=name, extra={"BucketName": name})
        request.setHeader(b"location", f"/{name}".encode())
        return b""

    async def head_bucket(self, request: IRequest, ctx: RequestContext) -> bytes:
        self._bucket(ctx)
        request.setHeader(b"x-amz-bucket-region", self._config.region.encode())
        return b""

    async def delete_bucket(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.bucket is not None
        await self._engine.delete_bucket(ctx.target.bucket)
        request.setResponseCode(204)
        return b""

    async def get_bucket_location(self, request: IRequest, ctx: RequestContext) -> bytes:
        self._bucket(ctx)
        region = "" if self._config.region == "us-east-1" else self._config.region
        return self._xml(request, s3xml.document("LocationConstraint", [], text=region or None))

    async def get_bucket_versioning(self, request: IRequest, ctx: RequestContext) -> bytes:
        self._bucket(ctx)
        return self._xml(request, s3xml.document("VersioningConfiguration", []))

    async def delete_objects(self, request: IRequest, ctx: RequestContext) -> bytes:
        bucket = self._bucket(ctx)
        root = s3xml.parse(ctx.payload, "Delete")
        quiet = (s3xml.text(root, "Quiet") or "").strip().lower() == "true"
        objects = s3xml.children(root, "Object")
        if not objects or len(objects) > 1000:
            raise errors.MalformedXML()
        results: list[Child] = []
        for obj in objects:
            key = s3xml.text(obj, "Key")
            if key is None or any(True for _ in s3xml.children(obj, "Key")[0]):
                raise errors.MalformedXML()
            try:
                names.check_key(key)
                await self._engine.delete_object(bucket.name, key)
            except errors.S3Error as e:
                results.append(("Error", [("Key", key), ("Code", e.code), ("Message", e.message)]))
                continue
            if not quiet:
                results.append(("Deleted", [("Key", key)]))
        return self._xml(request, s3xml.document("DeleteResult", results))
