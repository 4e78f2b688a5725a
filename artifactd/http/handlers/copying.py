"""Server-side copies: CopyObject and UploadPartCopy (``x-amz-copy-source``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs
from twisted.web.iweb import IRequest

from artifactd import integrity, preconditions
from artifactd.http import copying, s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase, lower_headers, object_headers
from artifactd.http.s3xml import Child, iso8601
from artifactd.http.tagging import parse_header as parse_tagging_header
from artifactd.records import BlobRef, ChecksumValue, ObjectRecord, Part


class CopyHandlers(HandlerBase):
    """CopyObject and UploadPartCopy.  The gate has already admitted the request with
    :func:`artifactd.http.copying.admit`; each handler admits it again (the source may have
    changed since) and carries out the plan through the engine."""

    actions: ClassVar[Mapping[str, str]] = {
        "CopyObject": "copy_object",
        "UploadPartCopy": "upload_part_copy",
    }

    async def copy_object(self, request: IRequest, ctx: RequestContext) -> bytes:
        target = ctx.target
        assert target is not None and target.bucket is not None and target.key is not None
        headers = lower_headers(request)
        plan = copying.admit(self._meta, ctx.action, target, headers)
        source = plan.record
        content_type, stored, metadata = source.content_type, source.headers, source.metadata
        if plan.directive == copying.REPLACE:
            content_type, stored, metadata = object_headers(request, ctx)
        tags = source.tags
        if plan.tagging_directive == copying.REPLACE:
            raw = headers.get("x-amz-tagging")
            tags = parse_tagging_header(raw.encode("latin-1")) if raw is not None else ()
        kept, compute = copying.plan_checksum(source, plan.checksum_algorithm)
        condition = preconditions.write_condition(headers)
        bucket, key = target.bucket, target.key
        now = self._clock.seconds()

        def make_record(md5: str | None, checksum: str | None) -> ObjectRecord:
            # evolve: whatever else the source carries is copied with it
            value = ChecksumValue(compute, checksum) if compute and checksum else kept
            return attrs.evolve(
                source,
                bucket=bucket,
                key=key,
                etag=md5 if md5 is not None else source.etag,
                last_modified=now,
                parts_count=0,
                version_id=None,
                checksum=value,
                checksum_type=integrity.FULL_OBJECT if value is not None else None,
                part_checksums=(),
                content_type=content_type,
                headers=stored,
                metadata=metadata,
                tags=tags,
            )

        # A multipart source's ETag is not its content's MD5; S3 gives the copy (a single-part
        # object) the MD5 of the content, so that is computed by reading the source once.
        record = await self._engine.copy_object(
            source,
            make_record,
            md5=not copying.is_plain_md5(source),
            checksum_algorithm=compute,
            condition=condition,
        )
        request.setHeader(b"x-artifactd-digest", f"sha256:{record.sha256}".encode())
        result: list[Child] = [
            ("LastModified", iso8601(record.last_modified)),
            ("ETag", f'"{record.etag}"'),
            *_checksum_elements(record.checksum, record.checksum_type),
        ]
        return self._xml(request, s3xml.document("CopyObjectResult", result))

    async def upload_part_copy(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        plan = copying.admit(self._meta, ctx.action, ctx.target, lower_headers(request))
        upload = plan.upload
        assert upload is not None
        source = plan.record
        algorithm = upload.checksum_algorithm
        known_md5 = source.etag if plan.whole and copying.is_plain_md5(source) else None
        known_checksum = None
        if (
            algorithm is not None
            and plan.whole
            and source.checksum is not None
            and source.checksum.algorithm == algorithm
            and (source.checksum_type or integrity.FULL_OBJECT) == integrity.FULL_OBJECT
        ):
            known_checksum = source.checksum.value
        now = self._clock.seconds()

        def make_part(blob: BlobRef, md5: str, checksum: str | None) -> Part:
            return Part(
                upload_id=upload.upload_id,
                part_number=plan.part_number,
                size=plan.length,
                etag=md5,
                blob=blob,
                last_modified=now,
                checksum=ChecksumValue(algorithm, checksum) if algorithm and checksum else None,
            )

        part = await self._engine.copy_part(
            upload,
            source,
            plan.start,
            plan.length,
            make_part,
            known_md5=known_md5,
            checksum_algorithm=algorithm,
            known_checksum=known_checksum,
        )
        result: list[Child] = [
            ("LastModified", iso8601(part.last_modified)),
            ("ETag", f'"{part.etag}"'),
            *_checksum_elements(part.checksum, None),
        ]
        return self._xml(request, s3xml.document("CopyPartResult", result))


def _checksum_elements(checksum: ChecksumValue | None, checksum_type: str | None) -> list[Child]:
    if checksum is None:
        return []
    out: list[Child] = []
    if checksum_type is not None:
        out.append(("ChecksumType", checksum_type))
    out.append((integrity.element_name(checksum.algorithm), checksum.value))
    return out
