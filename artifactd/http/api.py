"""The S3 API: one Klein app, one dispatch on the action the gate classified, one error path
that renders S3 XML.  Handlers are short coroutines that never block: metadata reads are inline
(cheap), everything that touches the disk goes through the engine's threadpool."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, cast

from klein import Klein
from twisted.internet.defer import CancelledError
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.iweb import IRequest
from twisted.web.server import Request

from artifactd import errors, names
from artifactd.config import Config
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.download import BlobProducer, segments_for
from artifactd.http.ranges import parse_range
from artifactd.http.s3xml import Child, encode_key, http_date, iso8601
from artifactd.interfaces import IMetadataStore
from artifactd.records import BlobRef, Bucket, ObjectRecord, Part, Upload
from artifactd.storage.engine import Engine

MIN_PART_SIZE = 5 * 1024 * 1024
STORED_HEADERS = (
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "expires",
)

Handler = Callable[[IRequest, RequestContext], Awaitable[bytes | None]]


class S3Api:
    app = Klein()
    log = Logger()

    def __init__(
        self, config: Config, engine: Engine, meta: IMetadataStore, clock: IReactorTime
    ) -> None:
        self._config = config
        self._engine = engine
        self._meta = meta
        self._clock = clock
        self._handlers: dict[str, Handler] = {
            "ListBuckets": self.list_buckets,
            "CreateBucket": self.create_bucket,
            "HeadBucket": self.head_bucket,
            "DeleteBucket": self.delete_bucket,
            "GetBucketLocation": self.get_bucket_location,
            "GetBucketVersioning": self.get_bucket_versioning,
            "ListObjects": self.list_objects,
            "ListObjectsV2": self.list_objects,
            "DeleteObjects": self.delete_objects,
            "PutObject": self.put_object,
            "GetObject": self.get_object,
            "HeadObject": self.get_object,
            "DeleteObject": self.delete_object,
            "CreateMultipartUpload": self.create_upload,
            "UploadPart": self.upload_part,
            "CompleteMultipartUpload": self.complete_upload,
            "AbortMultipartUpload": self.abort_upload,
            "ListParts": self.list_parts,
            "ListMultipartUploads": self.list_uploads,
        }

    def resource(self) -> Any:
        return self.app.resource()

    # ---------------------------------------------------------------- dispatch
    @app.route("/", branch=True, strict_slashes=False, merge_slashes=False)
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
        request.setHeader(b"content-type", b"application/xml")
        if error.code == "NoSuchBucket" or ctx.action == "HeadBucket":
            request.setHeader(b"x-amz-bucket-region", self._config.region.encode())
        return s3xml.error_document(error, ctx.request_id)

    def _xml(self, request: IRequest, body: bytes) -> bytes:
        request.setHeader(b"content-type", b"application/xml")
        return body

    def _bucket(self, ctx: RequestContext) -> Bucket:
        assert ctx.target is not None and ctx.target.bucket is not None
        bucket = self._meta.get_bucket(ctx.target.bucket)
        if bucket is None:
            raise errors.NoSuchBucket(
                resource=ctx.target.bucket, extra={"BucketName": ctx.target.bucket}
            )
        return bucket

    # ----------------------------------------------------------------- service
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

    # ----------------------------------------------------------------- buckets
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

    async def list_objects(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        bucket = self._bucket(ctx)
        q = ctx.target.query
        v2 = ctx.action == "ListObjectsV2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        encoding = _encoding_type(q)
        max_keys = _int_arg(q, "max-keys", 1000, 0, None)
        token = q.get("continuation-token")
        if v2:
            start_after = q.get("start-after", "")
            if token is not None:
                start_after = _decode_token(token)
        else:
            start_after = q.get("marker", "")
        page = self._meta.list_objects(
            bucket.name, prefix, delimiter, start_after, min(max_keys, 1000)
        )
        contents: list[Child] = []
        for o in page.objects:
            entry: list[Child] = [
                ("Key", encode_key(o.key, encoding)),
                ("LastModified", iso8601(o.last_modified)),
                ("ETag", f'"{o.etag}"'),
                ("Size", o.size),
                ("StorageClass", "STANDARD"),
            ]
            if not v2 or q.get("fetch-owner") == "true":
                entry.append(("Owner", s3xml.owner()))
            contents.append(("Contents", entry))
        children: list[Child] = [
            ("Name", bucket.name),
            ("Prefix", encode_key(prefix, encoding)),
        ]
        if v2:
            if token is not None:
                children.append(("ContinuationToken", token))
            if q.get("start-after"):
                children.append(("StartAfter", encode_key(q["start-after"], encoding)))
            children.append(("KeyCount", len(page.objects) + len(page.common_prefixes)))
            if page.is_truncated and page.next_marker is not None:
                children.append(("NextContinuationToken", _encode_token(page.next_marker)))
        else:
            children.append(("Marker", encode_key(q.get("marker", ""), encoding)))
            if page.is_truncated and page.next_marker is not None:
                children.append(("NextMarker", encode_key(page.next_marker, encoding)))
        children.append(("MaxKeys", max_keys))
        if delimiter:
            children.append(("Delimiter", encode_key(delimiter, encoding)))
        if encoding:
            children.append(("EncodingType", encoding))
        children.append(("IsTruncated", page.is_truncated))
        children.extend(contents)
        children.extend(
            ("CommonPrefixes", [("Prefix", encode_key(p, encoding))]) for p in page.common_prefixes
        )
        return self._xml(request, s3xml.document("ListBucketResult", children))

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

    # ----------------------------------------------------------------- objects
    async def put_object(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        staged = ctx.staged
        assert staged is not None
        content_type, headers, metadata = _object_headers(request)
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
        )
        ctx.staged_consumed = True
        await self._engine.put_object(staged, record)
        request.setHeader(b"etag", f'"{record.etag}"'.encode())
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        self._checksum_header(request, ctx)
        return b""

    def _checksum_header(self, request: IRequest, ctx: RequestContext) -> None:
        if ctx.checksum_algorithm and ctx.checksum_value:
            request.setHeader(
                f"x-amz-checksum-{ctx.checksum_algorithm}".encode(), ctx.checksum_value.encode()
            )

    def _object(self, ctx: RequestContext) -> ObjectRecord:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        record = self._meta.get_object(bucket.name, ctx.target.key)
        if record is None:
            raise errors.NoSuchKey(resource=ctx.target.resource, extra={"Key": ctx.target.key})
        return record

    async def get_object(self, request: IRequest, ctx: RequestContext) -> bytes | None:
        record = self._object(ctx)
        request.setHeader(b"content-type", record.content_type.encode())
        request.setHeader(b"etag", f'"{record.etag}"'.encode())
        request.setHeader(b"last-modified", http_date(record.last_modified).encode())
        request.setHeader(b"accept-ranges", b"bytes")
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        for name, value in record.headers:
            request.setHeader(name.encode(), value.encode())
        for name, value in record.metadata:
            request.setHeader(f"x-amz-meta-{name}".encode(), value.encode())
        rng = parse_range(_header(request, "range"), record.size)
        if rng is None:
            start, length = 0, record.size
        else:
            start, length = rng.start, rng.length
            request.setResponseCode(206)
            request.setHeader(b"content-range", rng.content_range(record.size).encode())
        request.setHeader(b"content-length", b"%d" % length)
        if ctx.method == "HEAD" or length == 0:
            return b""
        producer = BlobProducer(
            cast(Request, request),
            self._engine.blobs,
            segments_for(record.blobs, start, length),
            self._clock,
        )
        with contextlib.suppress(ConnectionLost, ConnectionDone):
            await producer.start()
        return None

    async def delete_object(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        await self._engine.delete_object(bucket.name, ctx.target.key)
        request.setResponseCode(204)
        return b""

    # --------------------------------------------------------------- multipart
    def _upload(self, ctx: RequestContext) -> Upload:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        upload_id = ctx.target.query.get("uploadId", "")
        upload = self._meta.get_upload(bucket.name, ctx.target.key, upload_id)
        if upload is None:
            raise errors.NoSuchUpload(extra={"UploadId": upload_id})
        return upload

    async def create_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        content_type, headers, metadata = _object_headers(request)
        now = self._clock.seconds()
        upload = Upload(
            bucket=bucket.name,
            key=ctx.target.key,
            upload_id=f"{int(now * 1_000_000):014x}{os.urandom(10).hex()}",
            initiated=now,
            content_type=content_type,
            headers=headers,
            metadata=metadata,
        )
        await self._engine.create_upload(upload)
        return self._xml(
            request,
            s3xml.document(
                "InitiateMultipartUploadResult",
                [("Bucket", upload.bucket), ("Key", upload.key), ("UploadId", upload.upload_id)],
            ),
        )

    async def upload_part(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        staged = ctx.staged
        assert staged is not None
        upload = self._upload(ctx)
        part = Part(
            upload_id=upload.upload_id,
            part_number=int(ctx.target.query["partNumber"]),
            size=staged.size,
            etag=staged.md5,
            blob=BlobRef(staged.sha256, staged.size),
            last_modified=self._clock.seconds(),
        )
        ctx.staged_consumed = True
        await self._engine.put_part(staged, upload, part)
        request.setHeader(b"etag", f'"{part.etag}"'.encode())
        self._checksum_header(request, ctx)
        return b""

    async def complete_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        upload = self._upload(ctx)
        wanted = s3xml.parse_complete_upload(ctx.payload)
        stored, _ = self._meta.list_parts(upload.upload_id, 0, 10000)
        by_number = {p.part_number: p for p in stored}
        chosen: list[Part] = []
        previous = 0
        for number, etag, _checksums in wanted:
            if number <= previous:
                raise errors.InvalidPartOrder()
            previous = number
            part = by_number.get(number)
            if part is None or part.etag != etag:
                raise errors.InvalidPart(
                    extra={"UploadId": upload.upload_id, "PartNumber": str(number), "ETag": etag}
                )
            chosen.append(part)
        for part in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise errors.EntityTooSmall(
                    extra={
                        "PartNumber": str(part.part_number),
                        "ProposedSize": str(part.size),
                        "MinSizeAllowed": str(MIN_PART_SIZE),
                        "ETag": part.etag,
                    }
                )
        md5s = b"".join(bytes.fromhex(p.etag) for p in chosen)
        etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
        now = self._clock.seconds()

        def make_record(sha256: str) -> ObjectRecord:
            return ObjectRecord(
                bucket=upload.bucket,
                key=upload.key,
                size=sum(p.size for p in chosen),
                etag=etag,
                sha256=sha256,
                last_modified=now,
                content_type=upload.content_type,
                headers=upload.headers,
                metadata=upload.metadata,
                blobs=tuple(p.blob for p in chosen),
                parts_count=len(chosen),
            )

        record = await self._engine.complete_upload(upload, chosen, make_record)
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        return self._xml(
            request,
            s3xml.document(
                "CompleteMultipartUploadResult",
                [
                    ("Location", f"/{upload.bucket}/{upload.key}"),
                    ("Bucket", upload.bucket),
                    ("Key", upload.key),
                    ("ETag", f'"{etag}"'),
                ],
            ),
        )

    async def abort_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        upload = self._upload(ctx)
        await self._engine.abort_upload(upload)
        request.setResponseCode(204)
        return b""

    async def list_parts(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        upload = self._upload(ctx)
        q = ctx.target.query
        marker = _int_arg(q, "part-number-marker", 0, 0, None)
        max_parts = _int_arg(q, "max-parts", 1000, 0, None)
        parts, truncated = self._meta.list_parts(upload.upload_id, marker, min(max_parts, 1000))
        children: list[Child] = [
            ("Bucket", upload.bucket),
            ("Key", upload.key),
            ("UploadId", upload.upload_id),
            ("Initiator", s3xml.owner()),
            ("Owner", s3xml.owner()),
            ("StorageClass", "STANDARD"),
            ("PartNumberMarker", marker),
            ("NextPartNumberMarker", parts[-1].part_number if parts else marker),
            ("MaxParts", max_parts),
            ("IsTruncated", truncated),
        ]
        children.extend(
            (
                "Part",
                [
                    ("PartNumber", p.part_number),
                    ("LastModified", iso8601(p.last_modified)),
                    ("ETag", f'"{p.etag}"'),
                    ("Size", p.size),
                ],
            )
            for p in parts
        )
        return self._xml(request, s3xml.document("ListPartsResult", children))

    async def list_uploads(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        bucket = self._bucket(ctx)
        q = ctx.target.query
        encoding = _encoding_type(q)
        max_uploads = _int_arg(q, "max-uploads", 1000, 0, None)
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        key_marker = q.get("key-marker", "")
        id_marker = q.get("upload-id-marker", "")
        page = self._meta.list_uploads(
            bucket.name, prefix, delimiter, key_marker, id_marker, min(max_uploads, 1000)
        )
        children: list[Child] = [
            ("Bucket", bucket.name),
            ("KeyMarker", encode_key(key_marker, encoding)),
            ("UploadIdMarker", id_marker),
            ("NextKeyMarker", encode_key(page.next_key_marker or "", encoding)),
            ("NextUploadIdMarker", page.next_upload_id_marker or ""),
            ("Prefix", encode_key(prefix, encoding)),
        ]
        if delimiter:
            children.append(("Delimiter", encode_key(delimiter, encoding)))
        children.append(("MaxUploads", max_uploads))
        if encoding:
            children.append(("EncodingType", encoding))
        children.append(("IsTruncated", page.is_truncated))
        children.extend(
            (
                "Upload",
                [
                    ("Key", encode_key(u.key, encoding)),
                    ("UploadId", u.upload_id),
                    ("Initiator", s3xml.owner()),
                    ("Owner", s3xml.owner()),
                    ("StorageClass", "STANDARD"),
                    ("Initiated", iso8601(u.initiated)),
                ],
            )
            for u in page.uploads
        )
        children.extend(
            ("CommonPrefixes", [("Prefix", encode_key(p, encoding))]) for p in page.common_prefixes
        )
        return self._xml(request, s3xml.document("ListMultipartUploadsResult", children))


# -------------------------------------------------------------------- helpers
def _header(request: IRequest, name: str) -> str | None:
    value = request.getHeader(name.encode())
    return value.decode("latin-1") if value is not None else None


def _object_headers(
    request: IRequest,
) -> tuple[str, tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """Content-Type, the stored standard headers and the user metadata of an upload."""
    content_type = _header(request, "content-type") or "binary/octet-stream"
    headers: list[tuple[str, str]] = []
    for name in STORED_HEADERS:
        value = _header(request, name)
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


def _encoding_type(q: dict[str, str] | Any) -> str | None:
    value: str | None = q.get("encoding-type")
    if value is None or value == "":
        return None
    if value != "url":
        raise errors.InvalidArgument(
            "Invalid Encoding Method specified in Request",
            extra={"ArgumentName": "encoding-type", "ArgumentValue": value},
        )
    return value


def _int_arg(q: Any, name: str, default: int, low: int, high: int | None) -> int:
    raw: str | None = q.get(name)
    if raw is None:
        return default
    if (
        not (raw.isascii() and raw.isdigit())
        or int(raw) < low
        or (high is not None and int(raw) > high)
    ):
        raise errors.InvalidArgument(
            f"Provided {name} not valid.", extra={"ArgumentName": name, "ArgumentValue": raw}
        )
    return int(raw)


def _encode_token(marker: str) -> str:
    return base64.urlsafe_b64encode(marker.encode("utf-8", "surrogatepass")).decode()


def _decode_token(token: str) -> str:
    try:
        return base64.b64decode(token.encode(), altchars=b"-_", validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise errors.InvalidArgument(
            "The continuation token provided is incorrect",
            extra={"ArgumentName": "continuation-token"},
        ) from None


def _ignore_disconnect(failure: Failure) -> None:
    failure.trap(ConnectionLost, ConnectionDone)
