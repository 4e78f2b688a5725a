"""Object and upload listings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd import integrity
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import (
    HandlerBase,
    decode_token,
    encode_token,
    encoding_type,
    int_arg,
)
from artifactd.http.s3xml import Child, Raw, encode_key, iso8601


class ListingHandlers(HandlerBase):
    """ListObjects (v1, v2) and ListMultipartUploads."""

    actions: ClassVar[Mapping[str, str]] = {
        "ListObjects": "list_objects",
        "ListObjectsV2": "list_objects",
        "ListMultipartUploads": "list_uploads",
    }

    async def list_objects(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        bucket = self._bucket(ctx)
        q = ctx.target.query
        v2 = ctx.action == "ListObjectsV2"
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        encoding = encoding_type(q)
        max_keys = int_arg(q, "max-keys", 1000, 0, None)
        token = q.get("continuation-token")
        if v2:
            start_after = q.get("start-after", "")
            if token is not None:
                start_after = decode_token(token)
        else:
            start_after = q.get("marker", "")
        owner = not v2 or q.get("fetch-owner") == "true"
        limit = min(max_keys, 1000)
        entries: Raw
        if delimiter:
            page = self._meta.list_summaries(bucket.name, prefix, delimiter, start_after, limit)
            count, prefixes = len(page.objects), page.common_prefixes
            truncated, next_marker = page.is_truncated, page.next_marker
            entries = s3xml.contents(page.objects, encoding, owner)
        else:  # the common listing: rows stored with the records, joined
            rows = self._meta.list_rows(bucket.name, prefix, start_after, limit)
            count, prefixes = len(rows.entries), ()
            truncated, next_marker = rows.is_truncated, rows.next_marker
            entries = s3xml.contents_rows(rows.entries, encoding, owner)
        children: list[Child] = [
            ("Name", bucket.name),
            ("Prefix", encode_key(prefix, encoding)),
        ]
        if v2:
            if token is not None:
                children.append(("ContinuationToken", token))
            if q.get("start-after"):
                children.append(("StartAfter", encode_key(q["start-after"], encoding)))
            children.append(("KeyCount", count + len(prefixes)))
            if truncated and next_marker is not None:
                children.append(("NextContinuationToken", encode_token(next_marker)))
        else:
            children.append(("Marker", encode_key(q.get("marker", ""), encoding)))
            if truncated and next_marker is not None:
                children.append(("NextMarker", encode_key(next_marker, encoding)))
        children.append(("MaxKeys", max_keys))
        if delimiter:
            children.append(("Delimiter", encode_key(delimiter, encoding)))
        if encoding:
            children.append(("EncodingType", encoding))
        children.append(("IsTruncated", truncated))
        children.append(("Contents", entries))
        children.extend(("CommonPrefixes", [("Prefix", encode_key(p, encoding))]) for p in prefixes)
        return self._xml(request, s3xml.document("ListBucketResult", children))

    async def list_uploads(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        bucket = self._bucket(ctx)
        q = ctx.target.query
        encoding = encoding_type(q)
        max_uploads = int_arg(q, "max-uploads", 1000, 0, None)
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
                    *integrity.listing_elements(u.checksum_algorithm, u.checksum_type),
                ],
            )
            for u in page.uploads
        )
        children.extend(
            ("CommonPrefixes", [("Prefix", encode_key(p, encoding))]) for p in page.common_prefixes
        )
        return self._xml(request, s3xml.document("ListMultipartUploadsResult", children))
