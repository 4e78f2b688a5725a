"""What a GetObject/HeadObject returns, decided from the request and the object record (pure):
which bytes (the whole object, one ``Range``, or one ``partNumber``), with which status and
range headers, and which ``response-*`` header overrides.

The S3 rules implemented here, from the GetObject/HeadObject API reference and the behaviour of
S3 itself where the reference is silent:

* ``partNumber=N`` (an integer 1..10000, else 400 ``InvalidArgument``) "effectively performs a
  ranged GET request for the part specified": 206 with ``Content-Range`` and
  ``x-amz-mp-parts-count``.  A simple (non-multipart) object has exactly one part, the whole
  object: ``partNumber=1`` is a 206 for all of it, without ``x-amz-mp-parts-count``.  A part past
  the last is 416 ``InvalidPartNumber`` ("The requested partnumber is not satisfiable").
  ``partNumber`` with a ``Range`` header is 400 ``InvalidRequest`` ("Cannot specify both Range
  header and partNumber query parameter").
* ``Range``: one byte range (see :mod:`artifactd.http.ranges`).  S3 does not serve multiple
  ranges: it ignores a multi-range header and answers 200 with the whole object (observed by AWS
  in awslabs/aws-c-s3#257 and by Riak CS in basho/riak_cs#304; RFC 9110 §14.2 lets a server
  ignore ``Range``).
* ``response-content-type``, ``-content-language``, ``-expires``, ``-cache-control``,
  ``-content-disposition``, ``-content-encoding`` replace the response header of that name
  (S3 allows them on signed requests only, and artifactd serves only signed requests).  An empty
  value is ignored; a value that cannot be sent as an ISO-8859-1 header value is 400
  ``InvalidArgument``.

The handler evaluates the conditional headers (:mod:`artifactd.http.conditions`) first, then the
overrides, then ``partNumber``/``Range`` (RFC 7232 §6: preconditions come before ``Range``).  An
empty object or part has no byte range to name, so reading it by part number is a plain 200.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from attrs import frozen

from artifactd import errors, integrity
from artifactd.http.ranges import parse_range
from artifactd.http.s3xml import http_date
from artifactd.records import ObjectRecord

MAX_PART_NUMBER = 10000

RESPONSE_OVERRIDES: tuple[tuple[str, str], ...] = (
    ("response-content-type", "content-type"),
    ("response-content-language", "content-language"),
    ("response-expires", "expires"),
    ("response-cache-control", "cache-control"),
    ("response-content-disposition", "content-disposition"),
    ("response-content-encoding", "content-encoding"),
)
"""Query parameter → the response header it replaces."""

_HEADER_VALUE = re.compile("[\t\x20-\x7e\x80-\xff]*\\Z")

WHOLE = "whole"  # the body is the object
PART = "part"  # the body is one part of a multipart object
RANGE = "range"  # the body is a byte range


@frozen
class Selection:
    """The bytes a read returns and how the response describes them."""

    start: int
    length: int
    body: str  # WHOLE, PART or RANGE
    content_range: str | None = None  # set on a 206
    parts_count: int | None = None  # x-amz-mp-parts-count
    part_number: int | None = None

    @property
    def status(self) -> int:
        return 206 if self.content_range is not None else 200


def response_overrides(query: Mapping[str, str]) -> list[tuple[str, str]]:
    """The ``(header, value)`` pairs the ``response-*`` query parameters ask for, in the order
    of :data:`RESPONSE_OVERRIDES`."""
    out: list[tuple[str, str]] = []
    for parameter, name in RESPONSE_OVERRIDES:
        value = query.get(parameter)
        if value is None or value == "":
            continue
        if _HEADER_VALUE.match(value) is None:
            raise errors.InvalidArgument(
                "Header value cannot be represented using ISO-8859-1.",
                extra={"ArgumentName": parameter, "ArgumentValue": value},
            )
        out.append((name, value))
    return out


def part_number(query: Mapping[str, str]) -> int | None:
    """The ``partNumber`` query argument, or None when absent."""
    raw = query.get("partNumber")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 5) or not (
        1 <= int(raw) <= MAX_PART_NUMBER
    ):
        raise errors.InvalidArgument(
            "Part number must be an integer between 1 and 10000, inclusive",
            extra={"ArgumentName": "partNumber", "ArgumentValue": raw},
        )
    return int(raw)


def part_sizes(record: ObjectRecord) -> tuple[int, ...]:
    """The sizes of ``record``'s parts in order: its blobs for a multipart object (one blob per
    part, see :class:`~artifactd.records.ObjectRecord`), the whole object for a simple one."""
    if record.parts_count == 0:
        return (record.size,)
    if len(record.blobs) != record.parts_count:
        raise RuntimeError(
            f"{record.bucket}/{record.key}: {record.parts_count} parts but"
            f" {len(record.blobs)} blobs"
        )
    return tuple(blob.size for blob in record.blobs)


def select(record: ObjectRecord, range_header: str | None, part: int | None) -> Selection:
    """The bytes of ``record`` to return for a ``Range`` header and a ``partNumber``; raises
    InvalidRequest, InvalidPartNumber or InvalidRange."""
    size = record.size
    if part is not None:
        if range_header is not None:
            raise errors.InvalidRequest(
                "Cannot specify both Range header and partNumber query parameter"
            )
        return _part(record, part)
    rng = parse_range(range_header, size)
    if rng is None:
        return Selection(0, size, WHOLE)
    return Selection(rng.start, rng.length, RANGE, content_range=rng.content_range(size))


def _part(record: ObjectRecord, part: int) -> Selection:
    sizes = part_sizes(record)
    if part > len(sizes):
        raise errors.InvalidPartNumber(
            extra={"PartNumberRequested": str(part), "ActualPartCount": str(len(sizes))}
        )
    start = sum(sizes[: part - 1])
    length = sizes[part - 1]
    multipart = record.parts_count > 0
    content_range = f"bytes {start}-{start + length - 1}/{record.size}" if length else None
    return Selection(
        start,
        length,
        PART if multipart else WHOLE,
        content_range=content_range,
        parts_count=record.parts_count if multipart else None,
        part_number=part,
    )


def not_modified_headers(record: ObjectRecord) -> list[tuple[str, str]]:
    """The headers of a 304: those of a 200 among ETag, Last-Modified, Cache-Control and Expires
    (RFC 7232 §4.1; S3 sends the validators)."""
    out = [("etag", f'"{record.etag}"'), ("last-modified", http_date(record.last_modified))]
    out.extend((n, v) for n, v in record.headers if n in ("cache-control", "expires"))
    return out


def checksum_headers(record: ObjectRecord, selection: Selection) -> list[tuple[str, str]]:
    """The stored checksum headers that describe exactly the body of ``selection``: the object's
    for the whole object, a part's own for a part, none for a byte range (botocore checks a
    reported checksum against the body it received)."""
    if selection.body == WHOLE:
        return integrity.object_headers(record)
    if selection.body == PART and record.part_checksums:
        return integrity.object_headers(record, selection.part_number)
    return []
