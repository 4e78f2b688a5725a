"""Service and bucket operations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd import errors, names
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase, decode_token, encode_token, int_arg
from artifactd.http.s3xml import Child, iso8601
from artifactd.http.versioning import check_version_id
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
        assert ctx.target is not None
        q = ctx.target.query
        region = self._config.region
        page, token = page_buckets(self._meta.list_buckets(), q, region)
        buckets: list[Child] = [
            (
                "Bucket",
                [("Name", b.name), ("CreationDate", iso8601(b.created)), ("BucketRegion", region)],
            )
            for b in page
        ]
        children: list[Child] = [("Owner", s3xml.owner()), ("Buckets", buckets)]
        if token is not None:
            children.append(("ContinuationToken", token))
        if "prefix" in q:
            children.append(("Prefix", q["prefix"]))
        return self._xml(request, s3xml.document("ListAllMyBucketsResult", children))

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
            version = s3xml.text(obj, "VersionId")  # "null": the only version there is
            echo: list[Child] = [("Key", key), ("VersionId", version)]
            try:
                names.check_key(key)
                if version is not None:
                    check_version_id({"versionId": version})
                await self._engine.delete_object(bucket.name, key)
            except errors.S3Error as e:
                results.append(("Error", [*echo, ("Code", e.code), ("Message", e.message)]))
                continue
            if not quiet:
                results.append(("Deleted", echo))
        return self._xml(request, s3xml.document("DeleteResult", results))


MAX_BUCKETS = 10000
_PAGING = ("max-buckets", "continuation-token", "prefix", "bucket-region")


def page_buckets(
    buckets: Sequence[Bucket], q: Mapping[str, str], region: str
) -> tuple[list[Bucket], str | None]:
    """ListBuckets' page of ``buckets`` (in name order) and the continuation token for the next.

    Without paging arguments every bucket is listed.  With any of ``max-buckets`` (1 to 10000),
    ``continuation-token``, ``prefix`` or ``bucket-region``, S3 lists at most ``max-buckets``
    (default 10000) names that start with ``prefix``, after the token's name, in ``region``;
    the token is only there when more remain."""
    if not any(name in q for name in _PAGING):
        return list(buckets), None
    limit = int_arg(q, "max-buckets", MAX_BUCKETS, 1, MAX_BUCKETS)
    after = decode_token(q["continuation-token"]) if q.get("continuation-token") else ""
    prefix = q.get("prefix", "")
    if q.get("bucket-region", region) != region:
        return [], None
    chosen = [b for b in buckets if b.name > after and b.name.startswith(prefix)]
    if len(chosen) <= limit:
        return chosen, None
    return chosen[:limit], encode_token(chosen[limit - 1].name)
