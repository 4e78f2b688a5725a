"""ListObjectVersions for buckets that have never had versioning: every object is one version,
``VersionId`` ``null``, the latest; there are no delete markers.  Tools that empty a bucket
through the versions listing (boto3's ``bucket.object_versions.delete()``, ``aws s3api
list-object-versions`` then ``delete-objects``) work unchanged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from twisted.web.iweb import IRequest

from artifactd import integrity
from artifactd.http import s3xml
from artifactd.http.context import RequestContext
from artifactd.http.handlers.base import HandlerBase, encoding_type, int_arg
from artifactd.http.s3xml import Child, encode_key, iso8601
from artifactd.http.versioning import NULL_VERSION, check_version_marker


class VersionHandlers(HandlerBase):
    """ListObjectVersions."""

    actions: ClassVar[Mapping[str, str]] = {"ListObjectVersions": "list_object_versions"}

    async def list_object_versions(self, request: IRequest, ctx: RequestContext) -> bytes:
        assert ctx.target is not None
        bucket = self._bucket(ctx)
        q = ctx.target.query
        prefix = q.get("prefix", "")
        delimiter = q.get("delimiter", "")
        encoding = encoding_type(q)
        max_keys = int_arg(q, "max-keys", 1000, 0, None)
        key_marker = q.get("key-marker", "")
        version_id_marker = q.get("version-id-marker", "")
        check_version_marker(key_marker, version_id_marker)
        # One version per key, so "after key K" and "after K's version null" are the same point.
        page = self._meta.list_summaries(
            bucket.name, prefix, delimiter, key_marker, min(max_keys, 1000)
        )
        children: list[Child] = [
            ("Name", bucket.name),
            ("Prefix", encode_key(prefix, encoding)),
            ("KeyMarker", encode_key(key_marker, encoding)),
            ("VersionIdMarker", version_id_marker),
        ]
        if page.is_truncated and page.next_marker is not None:
            children.append(("NextKeyMarker", encode_key(page.next_marker, encoding)))
            if page.next_marker not in page.common_prefixes:
                children.append(("NextVersionIdMarker", NULL_VERSION))
        children.append(("MaxKeys", max_keys))
        if delimiter:
            children.append(("Delimiter", encode_key(delimiter, encoding)))
        if encoding:
            children.append(("EncodingType", encoding))
        children.append(("IsTruncated", page.is_truncated))
        children.extend(
            (
                "Version",
                [
                    ("Key", encode_key(o.key, encoding)),
                    ("VersionId", NULL_VERSION),
                    ("IsLatest", True),
                    ("LastModified", iso8601(o.last_modified)),
                    ("ETag", f'"{o.etag}"'),
                    *integrity.listing_elements(o.checksum_algorithm, o.checksum_type),
                    ("Size", o.size),
                    ("StorageClass", "STANDARD"),
                    ("Owner", s3xml.owner()),
                ],
            )
            for o in page.objects
        )
        children.extend(
            ("CommonPrefixes", [("Prefix", encode_key(p, encoding))]) for p in page.common_prefixes
        )
        return self._xml(request, s3xml.document("ListVersionsResult", children))
