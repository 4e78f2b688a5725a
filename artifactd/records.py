"""Immutable records of what the metadata store holds.

Object records are laid out so a version id can be added without rewriting the database: every
record carries ``version_id`` (``None`` for buckets that never had versioning) and the encoded
value is a JSON object, so new fields read back with their defaults.
"""

from __future__ import annotations

from typing import Generic, NamedTuple, TypeVar

from attrs import field, frozen


@frozen
class BlobRef:
    """One content-addressed blob and its size in bytes."""

    digest: str  # lowercase hex SHA-256 of the blob's bytes
    size: int


@frozen
class Bucket:
    name: str
    created: float  # POSIX seconds


@frozen
class ChecksumValue:
    """A flexible checksum (``x-amz-checksum-<algorithm>``) as S3 reports it."""

    algorithm: str  # lower case: crc32, crc32c, crc64nvme, sha1, sha256
    value: str  # base64; a COMPOSITE multipart checksum ends in "-N"


@frozen
class ObjectRecord:
    """A stored object: its content is the concatenation of ``blobs`` in order.

    A simple PUT has one blob; a completed multipart upload has one blob per part (a manifest), and
    then ``part_sizes`` is the sizes of the parts in order, used for ``partNumber`` reads.
    """

    bucket: str
    key: str
    size: int
    etag: str  # without quotes: md5 hex, or md5-of-md5s hex "-N" for multipart
    sha256: str  # hex SHA-256 of the whole content
    last_modified: float
    content_type: str = "binary/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()  # stored standard headers (content-encoding, ...)
    metadata: tuple[tuple[str, str], ...] = ()  # x-amz-meta-* (names lower case, no prefix)
    blobs: tuple[BlobRef, ...] = ()
    parts_count: int = 0  # 0 for a simple PUT, N for a multipart object
    version_id: str | None = None
    checksum: ChecksumValue | None = None  # the flexible checksum sent or asked for at upload
    checksum_type: str | None = None  # "FULL_OBJECT" or "COMPOSITE" when checksum is set
    part_checksums: tuple[str, ...] = ()  # multipart: each part's base64 checksum, in order
    tags: tuple[tuple[str, str], ...] = ()  # object tags (key, value), in key order


@frozen
class Upload:
    """A multipart upload in progress."""

    bucket: str
    key: str
    upload_id: str
    initiated: float
    content_type: str = "binary/octet-stream"
    headers: tuple[tuple[str, str], ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    checksum_algorithm: str | None = None  # x-amz-checksum-algorithm, lower case
    checksum_type: str | None = None  # "COMPOSITE" or "FULL_OBJECT" when an algorithm is set
    tags: tuple[tuple[str, str], ...] = ()  # x-amz-tagging, given to the object at completion


@frozen
class Part:
    """One uploaded part of a multipart upload."""

    upload_id: str
    part_number: int
    size: int
    etag: str  # md5 hex, no quotes
    blob: BlobRef
    last_modified: float
    checksum: ChecksumValue | None = None  # verified (or computed) while the part was received


class ObjectSummary(NamedTuple):
    """What a listing shows of an object (a projection of its :class:`ObjectRecord`).  A named
    tuple rather than an attrs class: a listing page makes a thousand of them, and a tuple is
    built several times faster."""

    key: str
    size: int
    etag: str
    last_modified: float
    checksum_algorithm: str | None = None  # the record's checksum.algorithm
    checksum_type: str | None = None


Listed = TypeVar("Listed", ObjectRecord, ObjectSummary)


@frozen
class ListPage(Generic[Listed]):
    """One page of an object listing, in S3 order."""

    objects: tuple[Listed, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_marker: str | None  # the last key or common prefix returned, when truncated


@frozen
class RowPage:
    """One page of a listing without a delimiter: each key with its stored listing row, or,
    for a record stored without one, its summary."""

    entries: tuple[tuple[str, str | ObjectSummary], ...]
    is_truncated: bool
    next_marker: str | None  # the last key returned, when truncated


@frozen
class UploadPage:
    uploads: tuple[Upload, ...]
    common_prefixes: tuple[str, ...]
    is_truncated: bool
    next_key_marker: str | None
    next_upload_id_marker: str | None


@frozen
class RecoveryReport:
    """What start-up recovery found and repaired."""

    staging_removed: int = 0
    orphan_blobs_removed: int = 0
    refcounts_fixed: int = 0
    missing_blobs: tuple[str, ...] = field(default=())
