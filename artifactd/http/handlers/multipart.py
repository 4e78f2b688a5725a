"""Multipart uploads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd import errors, integrity, preconditions
from artifactd.http import s3xml, tagging
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase, int_arg, lower_headers, object_headers
from artifactd.http.s3xml import Child, iso8601
from artifactd.records import BlobRef, ObjectRecord, Part, Upload

MIN_PART_SIZE = 5 * 1024 * 1024


class MultipartHandlers(HandlerBase):
    """CreateMultipartUpload, UploadPart, Complete, Abort, ListParts."""

    actions: ClassVar[Mapping[str, str]] = {
        "CreateMultipartUpload": "create_upload",
        "UploadPart": "upload_part",
        "CompleteMultipartUpload": "complete_upload",
        "AbortMultipartUpload": "abort_upload",
        "ListParts": "list_parts",
    }

    async def create_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None and ctx.target.key is not None
        bucket = self._bucket(ctx)
        content_type, headers, metadata = object_headers(request, ctx)
        algorithm, checksum_type = integrity.upload_checksum(lower_headers(request))
        now = self._clock.seconds()
        upload = Upload(
            bucket=bucket.name,
            key=ctx.target.key,
            upload_id=f"{int(now * 1_000_000):014x}{os.urandom(10).hex()}",
            initiated=now,
            content_type=content_type,
            headers=headers,
            metadata=metadata,
            checksum_algorithm=algorithm,
            checksum_type=checksum_type,
            tags=tagging.parse_header(request.getHeader(b"x-amz-tagging") or b""),
        )
        await self._engine.create_upload(upload)
        if algorithm is not None and checksum_type is not None:
            request.setHeader(b"x-amz-checksum-algorithm", integrity.api_name(algorithm).encode())
            request.setHeader(b"x-amz-checksum-type", checksum_type.encode())
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
            checksum=integrity.stored(ctx.checksum_algorithm, ctx.checksum_value),
        )
        ctx.staged_consumed = True
        await self._engine.put_part(staged, upload, part)
        request.setHeader(b"etag", f'"{part.etag}"'.encode())
        if part.checksum is not None:
            name = f"x-amz-checksum-{part.checksum.algorithm}"
            request.setHeader(name.encode(), part.checksum.value.encode())
        return b""

    async def complete_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        upload = self._upload(ctx)
        headers = lower_headers(request)
        condition = preconditions.write_condition(headers)
        current = self._meta.get_object(upload.bucket, upload.key)
        preconditions.check_write(
            condition, current.etag if current else None, at_commit=False, key=upload.key
        )
        wanted = s3xml.parse_complete_upload(ctx.payload)
        stored, _ = self._meta.list_parts(upload.upload_id, 0, 10000)
        by_number = {p.part_number: p for p in stored}
        chosen: list[Part] = []
        previous = 0
        for number, etag, checksums in wanted:
            if number <= previous:
                raise errors.InvalidPartOrder()
            previous = number
            part = by_number.get(number)
            if part is None or part.etag != etag:
                raise errors.InvalidPart(
                    extra={"UploadId": upload.upload_id, "PartNumber": str(number), "ETag": etag}
                )
            integrity.check_listed_part(upload, part, checksums)
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
        completion = integrity.plan_completion(upload, chosen, headers)
        size = sum(p.size for p in chosen)
        declared = headers.get("x-amz-mp-object-size")
        if declared is not None and declared.strip() != str(size):
            raise errors.InvalidRequest(
                f"The provided 'x-amz-mp-object-size' header value {declared} does not match"
                f" what was computed: {size}"
            )

        def make_record(sha256: str, full_checksum: str | None) -> ObjectRecord:
            checksum = completion.finish(full_checksum)  # disk pool: BadDigest refuses the upload
            return ObjectRecord(
                bucket=upload.bucket,
                key=upload.key,
                size=size,
                etag=etag,
                sha256=sha256,
                last_modified=now,
                content_type=upload.content_type,
                headers=upload.headers,
                metadata=upload.metadata,
                blobs=tuple(p.blob for p in chosen),
                parts_count=len(chosen),
                checksum=checksum,
                checksum_type=completion.checksum_type if checksum else None,
                part_checksums=completion.part_values if checksum else (),
                tags=upload.tags,
            )

        record = await self._engine.complete_upload(
            upload,
            chosen,
            make_record,
            checksum_algorithm=completion.full_object_algorithm,
            condition=condition,
        )
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        result: list[Child] = [
            ("Location", f"/{upload.bucket}/{upload.key}"),
            ("Bucket", upload.bucket),
            ("Key", upload.key),
            ("ETag", f'"{etag}"'),
        ]
        if record.checksum is not None:
            name = integrity.element_name(record.checksum.algorithm)
            result.append((name, record.checksum.value))
            result.append(("ChecksumType", record.checksum_type))
        return self._xml(request, s3xml.document("CompleteMultipartUploadResult", result))

    async def abort_upload(self, request: IRequest, ctx: RequestContext) -> bytes:
        upload = self._upload(ctx)
        await self._engine.abort_upload(upload)
        request.setResponseCode(204)
        return b""

    async def list_parts(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        upload = self._upload(ctx)
        q = ctx.target.query
        marker = int_arg(q, "part-number-marker", 0, 0, None)
        max_parts = int_arg(q, "max-parts", 1000, 0, None)
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
            *integrity.listing_elements(upload.checksum_algorithm, upload.checksum_type),
        ]
        children.extend(
            (
                "Part",
                [
                    ("PartNumber", p.part_number),
                    ("LastModified", iso8601(p.last_modified)),
                    ("ETag", f'"{p.etag}"'),
                    ("Size", p.size),
                    *(
                        [(integrity.element_name(p.checksum.algorithm), p.checksum.value)]
                        if p.checksum is not None
                        else []
                    ),
                ],
            )
            for p in parts
        )
        return self._xml(request, s3xml.document("ListPartsResult", children))
