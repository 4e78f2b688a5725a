"""CopyObject and UploadPartCopy as S3 defines them: the ``x-amz-copy-source`` header, the
copy-source conditions and range, the metadata and tagging directives, and the checks made
before anything is copied.

The parsing functions are pure.  :func:`admit` also reads the metadata store (cheap gets, safe on
the reactor thread); the gate calls it as the request is admitted, so a copy that will be refused
is refused from its head, and the handler calls it again to get the plan it carries out.

What S3 answers, and artifactd with it:

* ``x-amz-copy-source`` is ``bucket/key`` or ``/bucket/key``, URL-encoded (a ``?`` in a key is
  ``%3F``), optionally followed by ``?versionId=``.  Anything else is 400 ``InvalidArgument``.
  artifactd's buckets never had versioning, so every object's one version is ``null``:
  ``versionId=null`` is accepted and any other version id is 400 ``InvalidArgument`` ("Invalid
  version id specified"), as S3 answers a version id it could never have issued.
* A missing source bucket is 404 ``NoSuchBucket`` and a missing source key 404 ``NoSuchKey``,
  naming the source (``BucketName`` / ``Key`` and the source as ``Resource``).
* ``x-amz-copy-source-if-match``, ``-if-none-match``, ``-if-modified-since`` and
  ``-if-unmodified-since`` are evaluated by :func:`artifactd.http.conditions.check_copy_source`:
  a failure is 412 ``PreconditionFailed``.
* CopyObject: ``x-amz-metadata-directive`` is ``COPY`` (the default: content type, stored
  headers and user metadata come from the source) or ``REPLACE`` (they come from the request);
  ``x-amz-tagging-directive`` likewise for the tags.  Copying an object onto itself without
  changing anything is 400 ``InvalidRequest``.  A source over 5 GiB is 400 ``InvalidRequest``
  (S3's CopyObject limit; larger objects are copied with UploadPartCopy).
* UploadPartCopy: ``x-amz-copy-source-range`` must be ``bytes=first-last`` (400
  ``InvalidArgument`` otherwise) within the source (400 ``InvalidArgument`` "Range specified is
  not valid for source object of size: N"), and the part at most 5 GiB.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from attrs import frozen

from artifactd import errors, integrity, names, preconditions
from artifactd.http import conditions
from artifactd.http.actions import Target, parse_query
from artifactd.http.versioning import check_version_id
from artifactd.interfaces import IMetadataStore
from artifactd.records import ChecksumValue, ObjectRecord, Upload

COPY_ACTIONS = frozenset({"CopyObject", "UploadPartCopy"})
MAX_COPY_SIZE = 5 * 1024**3
"""The largest source CopyObject copies, and the largest part UploadPartCopy makes (5 GiB)."""
MAX_PARTS = 10000

COPY = "COPY"
REPLACE = "REPLACE"
DIRECTIVES = (COPY, REPLACE)

SOURCE_ERROR = "Copy Source must mention the source bucket and key: sourcebucket/sourcekey"
RANGE_ERROR = (
    "The x-amz-copy-source-range value must be of the form bytes=first-last where first and last"
    " are the zero-based offsets of the first and last bytes to copy"
)
SELF_COPY_ERROR = (
    "This copy request is illegal because it is trying to copy an object to itself without"
    " changing the object's metadata, storage class, website redirect location or encryption"
    " attributes."
)
TOO_LARGE_ERROR = (
    "The specified copy source is larger than the maximum allowable size for a copy source:"
    f" {MAX_COPY_SIZE}"
)

# headers whose presence makes a copy of an object onto itself a change S3 accepts
_SELF_COPY_CHANGES = (
    "x-amz-storage-class",
    "x-amz-website-redirect-location",
    "x-amz-checksum-algorithm",
)
_RANGE = re.compile(r"\Abytes=(\d+)-(\d+)\Z", re.ASCII)


@frozen
class CopySource:
    """The object named by ``x-amz-copy-source``."""

    bucket: str
    key: str

    @property
    def resource(self) -> str:
        return f"/{self.bucket}/{self.key}"


@frozen
class CopyPlan:
    """What an admitted copy request copies, and where to."""

    source: CopySource
    record: ObjectRecord  # the source object as it was when the request was admitted
    start: int  # the first byte copied
    length: int  # how many bytes are copied
    directive: str = COPY  # CopyObject: x-amz-metadata-directive
    tagging_directive: str = COPY  # CopyObject: x-amz-tagging-directive
    checksum_algorithm: str | None = None  # CopyObject: x-amz-checksum-algorithm, lower case
    upload: Upload | None = None  # UploadPartCopy: the upload the part belongs to
    part_number: int = 0  # UploadPartCopy

    @property
    def whole(self) -> bool:
        """Whether the whole source object is copied."""
        return self.start == 0 and self.length == self.record.size


# ------------------------------------------------------------------------------- parsing
def parse_copy_source(value: str) -> CopySource:
    """The source named by an ``x-amz-copy-source`` header (as received: latin-1 text)."""
    raw = value.strip().encode("latin-1", "replace")
    path, question, query = raw.partition(b"?")
    try:
        decoded = unquote_to_bytes(path).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad_source(value) from None
    bucket, slash, key = decoded.removeprefix("/").partition("/")
    if not bucket or not slash or not key:
        raise _bad_source(value)
    if question:
        check_version_id(parse_query(query))
    return CopySource(bucket, key)


def _bad_source(value: str) -> errors.S3Error:
    return errors.InvalidArgument(
        SOURCE_ERROR, extra={"ArgumentName": "x-amz-copy-source", "ArgumentValue": value}
    )


def parse_copy_range(value: str | None, size: int) -> tuple[int, int]:
    """``(start, length)`` of an ``x-amz-copy-source-range`` over a source of ``size`` bytes;
    the whole source when the header is absent."""
    if value is None:
        return 0, size
    match = _RANGE.match(value.strip())
    if match is None or int(match.group(1)) > int(match.group(2)):
        raise errors.InvalidArgument(
            RANGE_ERROR,
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value},
        )
    first, last = int(match.group(1)), int(match.group(2))
    if last >= size:
        raise errors.InvalidArgument(
            f"Range specified is not valid for source object of size: {size}",
            extra={"ArgumentName": "x-amz-copy-source-range", "ArgumentValue": value},
        )
    return first, last - first + 1


def directive(headers: Mapping[str, str], name: str) -> str:
    """The value of ``x-amz-metadata-directive`` or ``x-amz-tagging-directive`` (default COPY)."""
    value = headers.get(name)
    if value is None:
        return COPY
    if value not in DIRECTIVES:
        what = "metadata" if "metadata" in name else "tagging"
        raise errors.InvalidArgument(
            f"Unknown {what} directive.", extra={"ArgumentName": name, "ArgumentValue": value}
        )
    return value


def source_conditions(headers: Mapping[str, str]) -> conditions.Conditions:
    """The ``x-amz-copy-source-if-*`` conditions of a request's (lower-case) headers."""
    return conditions.Conditions.from_headers(headers.get, prefix="x-amz-copy-source-")


def requested_checksum(headers: Mapping[str, str]) -> str | None:
    """The algorithm a CopyObject's ``x-amz-checksum-algorithm`` asks for (lower case)."""
    if "x-amz-checksum-algorithm" not in headers:
        return None
    algorithm, _ = integrity.upload_checksum(
        {"x-amz-checksum-algorithm": headers["x-amz-checksum-algorithm"]}
    )
    return algorithm


def plan_checksum(
    source: ObjectRecord, requested: str | None
) -> tuple[ChecksumValue | None, str | None]:
    """``(kept, compute)``: the source checksum the copy keeps as it is, or the algorithm to
    compute over the content for it.

    S3 copies the source's checksum unless ``x-amz-checksum-algorithm`` asks for another.  The
    copy is a single-part object, so a checksum that is not of the whole content (a multipart
    object's COMPOSITE ``…-N``) is computed again, with its algorithm, over the whole content."""
    current = source.checksum
    if requested is None:
        if current is None:
            return None, None
        requested = current.algorithm
    if (
        current is not None
        and current.algorithm == requested
        and (source.checksum_type or integrity.FULL_OBJECT) == integrity.FULL_OBJECT
    ):
        return current, None
    return None, requested


def is_plain_md5(record: ObjectRecord) -> bool:
    """Whether the record's ETag is the MD5 of its content (not a multipart ``…-N`` ETag)."""
    return record.parts_count == 0 and "-" not in record.etag


# ----------------------------------------------------------------------------- admission
def admit(
    meta: IMetadataStore, action: str, target: Target, headers: Mapping[str, str]
) -> CopyPlan:
    """Check a CopyObject or UploadPartCopy against the store and return what it copies; raises
    the S3 error that refuses it.  ``headers`` are the request's, by lower-case name."""
    assert target.bucket is not None and target.key is not None
    if meta.get_bucket(target.bucket) is None:
        raise errors.NoSuchBucket(resource=target.bucket, extra={"BucketName": target.bucket})
    upload: Upload | None = None
    number = 0
    if action == "UploadPartCopy":
        upload_id = target.query.get("uploadId", "")
        raw_number = target.query.get("partNumber", "")
        if not (raw_number.isascii() and raw_number.isdigit()) or not (
            1 <= int(raw_number) <= MAX_PARTS
        ):
            raise errors.InvalidArgument(
                "Part number must be an integer between 1 and 10000, inclusive",
                extra={"ArgumentName": "partNumber", "ArgumentValue": raw_number},
            )
        number = int(raw_number)
        upload = meta.get_upload(target.bucket, target.key, upload_id)
        if upload is None:
            raise errors.NoSuchUpload(extra={"UploadId": upload_id})
    source = parse_copy_source(headers.get("x-amz-copy-source", ""))
    record = lookup(meta, source)
    conditions.check_copy_source(source_conditions(headers), record.etag, record.last_modified)
    if action == "UploadPartCopy":
        start, length = parse_copy_range(headers.get("x-amz-copy-source-range"), record.size)
        if length > MAX_COPY_SIZE:
            raise errors.InvalidRequest(TOO_LARGE_ERROR)
        return CopyPlan(source, record, start, length, upload=upload, part_number=number)
    metadata_directive = directive(headers, "x-amz-metadata-directive")
    tagging_directive = directive(headers, "x-amz-tagging-directive")
    algorithm = requested_checksum(headers)
    if (
        (source.bucket, source.key) == (target.bucket, target.key)
        and metadata_directive == COPY
        and tagging_directive == COPY
        and not any(name in headers for name in _SELF_COPY_CHANGES)
    ):
        raise errors.InvalidRequest(SELF_COPY_ERROR)
    if record.size > MAX_COPY_SIZE:
        raise errors.InvalidRequest(TOO_LARGE_ERROR)
    current = meta.get_object(target.bucket, target.key)
    preconditions.check_write(
        preconditions.write_condition(headers),
        current.etag if current is not None else None,
        at_commit=False,
        key=target.key,
    )
    return CopyPlan(
        source,
        record,
        0,
        record.size,
        directive=metadata_directive,
        tagging_directive=tagging_directive,
        checksum_algorithm=algorithm,
    )


def lookup(meta: IMetadataStore, source: CopySource) -> ObjectRecord:
    """The source object; raises NoSuchBucket or NoSuchKey naming the source."""
    if meta.get_bucket(source.bucket) is None:
        raise errors.NoSuchBucket(resource=source.bucket, extra={"BucketName": source.bucket})
    try:
        names.check_key(source.key)
    except errors.S3Error:
        raise source_missing(source) from None
    record = meta.get_object(source.bucket, source.key)
    if record is None:
        raise source_missing(source)
    return record


def source_missing(source: CopySource) -> errors.S3Error:
    """The 404 for a copy source that does not exist (or no longer does)."""
    return errors.NoSuchKey(resource=source.resource, extra={"Key": source.key})
