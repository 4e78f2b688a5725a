"""S3's flexible-checksum rules (pure): which checksum a request carries, what a multipart upload
declares, how a multipart object's checksum is formed, and what a response reports.

The algorithms themselves are in :mod:`artifactd.checksums`; this module is the protocol around
them, following the S3 user guide "Checking object integrity" and the errors S3 gives:

* A single upload (PutObject, UploadPart) carries at most one ``x-amz-checksum-<algorithm>``, as a
  header or as an aws-chunked trailer, and optionally ``x-amz-sdk-checksum-algorithm`` naming the
  same algorithm.  The body path computes that algorithm while streaming and refuses a mismatch
  (``BadDigest``); the object stores it as a FULL_OBJECT checksum.
* CreateMultipartUpload may declare ``x-amz-checksum-algorithm`` and ``x-amz-checksum-type``.
  COMPOSITE (the default for CRC32, CRC32C, SHA1 and SHA256) makes the object's checksum the
  checksum of the concatenated binary part checksums, suffixed ``-N``; FULL_OBJECT (the only type,
  and the default, for CRC64NVME; allowed for CRC32 and CRC32C) makes it the checksum of the whole
  content.  Every part of a COMPOSITE upload must carry the checksum; a part of a FULL_OBJECT
  upload that carries none has it computed.
* CompleteMultipartUpload must list each part's checksum for a COMPOSITE upload and may for a
  FULL_OBJECT one; a listed checksum that differs from the stored one is ``InvalidPart``.  An
  ``x-amz-checksum-<algorithm>`` header on it is the expected object checksum.
* GetObject/HeadObject report the checksum (and ``x-amz-checksum-type``) only when asked with
  ``x-amz-checksum-mode: ENABLED``, and never on a range response: botocore validates a reported
  checksum against the body it received.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from attrs import frozen

from artifactd import errors
from artifactd.checksums import ALGORITHMS, HEADER_PREFIX, new_checksum
from artifactd.records import ChecksumValue, ObjectRecord, Part, Upload

COMPOSITE: Final = "COMPOSITE"
FULL_OBJECT: Final = "FULL_OBJECT"

DIGEST_SIZES: Final[Mapping[str, int]] = {
    "crc32": 4,
    "crc32c": 4,
    "crc64nvme": 8,
    "sha1": 20,
    "sha256": 32,
}
"""Bytes in each algorithm's digest (the decoded length of a valid base64 value)."""

TYPES: Final[Mapping[str, frozenset[str]]] = {
    "crc32": frozenset({COMPOSITE, FULL_OBJECT}),
    "crc32c": frozenset({COMPOSITE, FULL_OBJECT}),
    "crc64nvme": frozenset({FULL_OBJECT}),
    "sha1": frozenset({COMPOSITE}),
    "sha256": frozenset({COMPOSITE}),
}
"""The multipart checksum types each algorithm allows."""

UNIMPLEMENTED: Final = frozenset({"sha512", "md5", "xxhash64", "xxhash3", "xxhash128"})
"""Algorithms S3 defines that artifactd does not compute: refused with 501, never ignored."""

CONTROL_HEADERS: Final = frozenset(
    {"x-amz-checksum-mode", "x-amz-checksum-algorithm", "x-amz-checksum-type"}
)
"""``x-amz-checksum-*`` headers that carry no checksum value."""

_MULTIPLE = "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."


# -------------------------------------------------------------------------- names and values
def api_name(algorithm: str) -> str:
    """The name S3 uses in XML and in ``x-amz-checksum-algorithm``: ``"crc32c"`` → ``"CRC32C"``."""
    return algorithm.upper()


def element_name(algorithm: str) -> str:
    """The XML element carrying a value: ``"crc64nvme"`` → ``"ChecksumCRC64NVME"``."""
    return "Checksum" + api_name(algorithm)


def default_type(algorithm: str) -> str:
    """The multipart checksum type when CreateMultipartUpload names none."""
    return FULL_OBJECT if algorithm == "crc64nvme" else COMPOSITE


def valid_value(algorithm: str, value: str) -> bool:
    """Whether ``value`` is strict base64 of exactly one ``algorithm`` digest."""
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        return False
    return len(raw) == DIGEST_SIZES[algorithm]


def _invalid_header(name: str, *, trailing: bool = False) -> errors.S3Error:
    kind = "trailing header" if trailing else "header"
    return errors.InvalidRequest(f"Value for {name} {kind} is invalid.")


def _unimplemented(algorithm: str, header: str) -> errors.S3Error:
    return errors.NotImplementedError_(
        f"artifactd does not implement the {api_name(algorithm)} checksum algorithm;"
        " use CRC32, CRC32C, CRC64NVME, SHA1 or SHA256.",
        extra={"Header": header},
    )


def check_trailer_value(algorithm: str, value: str) -> None:
    """Raise InvalidRequest unless an aws-chunked trailer's checksum value is well formed."""
    if not valid_value(algorithm, value):
        raise _invalid_header(HEADER_PREFIX + algorithm, trailing=True)


# ---------------------------------------------------------------------------- single uploads
def value_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The ``x-amz-checksum-<algorithm>: value`` headers of a request (lower-case names), by
    algorithm.  Raises NotImplemented for an algorithm S3 defines and artifactd lacks."""
    found: dict[str, str] = {}
    for name, value in headers.items():
        if not name.startswith(HEADER_PREFIX) or name in CONTROL_HEADERS:
            continue
        algorithm = name[len(HEADER_PREFIX) :]
        if algorithm in UNIMPLEMENTED:
            raise _unimplemented(algorithm, name)
        if algorithm in ALGORITHMS:
            found[algorithm] = value
    return found


def request_checksum(
    headers: Mapping[str, str],
    trailer_algorithm: str | None,
    upload: Upload | None = None,
) -> tuple[str | None, str | None]:
    """The checksum algorithm a body must be verified with (and stored under), and the expected
    value (base64) when it came in a header; ``(None, None)`` when the request names none.

    ``headers`` are the request's (lower-case) headers, ``trailer_algorithm`` the algorithm of
    an ``x-amz-checksum-*`` trailer declared by ``X-Amz-Trailer``, and ``upload`` the multipart
    upload an UploadPart belongs to.  Raises the S3 error for every inconsistency, before any
    body byte is read.
    """
    sent = value_headers(headers)
    if len(sent) + (trailer_algorithm is not None) > 1:
        raise errors.InvalidRequest(_MULTIPLE)
    algorithm: str | None = None
    value: str | None = None
    if sent:
        ((algorithm, value),) = sent.items()
        if not valid_value(algorithm, value):
            raise _invalid_header(HEADER_PREFIX + algorithm)
    elif trailer_algorithm is not None:
        algorithm = trailer_algorithm
    sdk = headers.get("x-amz-sdk-checksum-algorithm")
    if sdk is not None:
        named = sdk.strip().lower()
        if named in UNIMPLEMENTED:
            raise _unimplemented(named, "x-amz-sdk-checksum-algorithm")
        if named not in ALGORITHMS or (algorithm is not None and named != algorithm):
            raise _invalid_header("x-amz-sdk-checksum-algorithm")
        algorithm = named
    if upload is not None and upload.checksum_algorithm is not None:
        expected = upload.checksum_algorithm
        if algorithm is None and upload.checksum_type == FULL_OBJECT:
            return expected, None  # S3 computes a FULL_OBJECT upload's missing part checksum
        if algorithm != expected:
            raise errors.InvalidRequest(
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{expected}, actual checksum Type: {algorithm or 'null'}"
            )
    return algorithm, value


def stored(algorithm: str | None, value: str | None) -> ChecksumValue | None:
    """The checksum to store for a body verified with ``algorithm`` whose value was ``value``."""
    if algorithm is None or value is None:
        return None
    return ChecksumValue(algorithm, value)


# ----------------------------------------------------------------------------- multipart
def upload_checksum(headers: Mapping[str, str]) -> tuple[str | None, str | None]:
    """``(algorithm, type)`` declared by a CreateMultipartUpload's (lower-case) headers."""
    raw_algorithm = headers.get("x-amz-checksum-algorithm")
    raw_type = headers.get("x-amz-checksum-type")
    checksum_type = raw_type.strip().upper() if raw_type is not None else None
    if checksum_type is not None and checksum_type not in (COMPOSITE, FULL_OBJECT):
        raise _invalid_header("x-amz-checksum-type")
    if raw_algorithm is None:
        if checksum_type is not None:
            raise errors.InvalidRequest(
                "The x-amz-checksum-type header can only be used with the"
                " x-amz-checksum-algorithm header."
            )
        return None, None
    algorithm = raw_algorithm.strip().lower()
    if algorithm in UNIMPLEMENTED:
        raise _unimplemented(algorithm, "x-amz-checksum-algorithm")
    if algorithm not in ALGORITHMS:
        raise errors.InvalidRequest(
            "Checksum algorithm provided is unsupported. Please try again with any of the valid"
            " types: [CRC32, CRC32C, CRC64NVME, SHA1, SHA256]"
        )
    checksum_type = checksum_type or default_type(algorithm)
    if checksum_type not in TYPES[algorithm]:
        raise errors.InvalidRequest(
            f"The {checksum_type} checksum type cannot be used with the {algorithm} checksum"
            " algorithm."
        )
    return algorithm, checksum_type


def composite(algorithm: str, part_values: Sequence[str]) -> str:
    """The COMPOSITE checksum of parts whose checksums (base64) are ``part_values``: the
    checksum of their concatenated binary values, then ``-N``."""
    checksum = new_checksum(algorithm)
    for value in part_values:
        checksum.update(base64.b64decode(value))
    return f"{checksum.digest_b64()}-{len(part_values)}"


def check_listed_part(upload: Upload, part: Part, listed: Mapping[str, str]) -> None:
    """Check the checksums a CompleteMultipartUpload ``<Part>`` lists (element name to value)
    against the stored part; a COMPOSITE upload must list its algorithm's."""
    if len(listed) > 1 or any(
        not name.startswith("Checksum")
        or name[len("Checksum") :].lower() not in DIGEST_SIZES
        or not valid_value(name[len("Checksum") :].lower(), value)
        for name, value in listed.items()
    ):
        raise errors.InvalidArgument(
            "Invalid Base64 or multiple checksums present in request",
            extra={
                "ArgumentName": "Checksum",
                "ArgumentValue": "".join(
                    f"{name[len('Checksum') :]}:{value};" for name, value in listed.items()
                ),
            },
        )
    for name, value in listed.items():
        algorithm = name[len("Checksum") :].lower()
        if part.checksum != ChecksumValue(algorithm, value):
            raise errors.InvalidPart(
                extra={
                    "UploadId": upload.upload_id,
                    "PartNumber": str(part.part_number),
                    "ETag": part.etag,
                }
            )
    if not listed and upload.checksum_algorithm and upload.checksum_type == COMPOSITE:
        raise errors.InvalidRequest(
            f"The upload was created using a {upload.checksum_algorithm} checksum. The complete"
            " request must include the checksum for each part. It was missing for part"
            f" {part.part_number} in the request."
        )


@frozen
class Completion:
    """The object checksum a CompleteMultipartUpload will store.

    ``value`` is known before the parts are read for a COMPOSITE checksum; a FULL_OBJECT one is
    computed over the bytes by the engine and then checked against ``expected`` (the value the
    client sent, if any) by :meth:`finish`."""

    algorithm: str | None = None
    checksum_type: str | None = None
    value: str | None = None
    expected: str | None = None
    part_values: tuple[str, ...] = ()

    @property
    def full_object_algorithm(self) -> str | None:
        """The algorithm the engine must compute over the content, if any."""
        return self.algorithm if self.checksum_type == FULL_OBJECT else None

    def finish(self, computed: str | None) -> ChecksumValue | None:
        """The object's checksum, given the whole-content checksum the engine computed; raises
        BadDigest if the client's expected value differs."""
        if self.algorithm is None:
            return None
        value = self.value if self.checksum_type == COMPOSITE else computed
        assert value is not None
        if self.expected is not None and self.expected != value:
            raise _bad_digest(self.algorithm)
        return ChecksumValue(self.algorithm, value)


def _bad_digest(algorithm: str) -> errors.S3Error:
    return errors.BadDigest(f"The {algorithm} you specified did not match the calculated checksum.")


def plan_completion(
    upload: Upload, parts: Sequence[Part], headers: Mapping[str, str]
) -> Completion:
    """What a CompleteMultipartUpload of ``parts`` (already checked with
    :func:`check_listed_part`) stores as the object checksum, checking the request's
    ``x-amz-checksum-type`` and ``x-amz-checksum-<algorithm>`` headers."""
    algorithm = upload.checksum_algorithm
    if algorithm is None:
        return Completion()  # S3 ignores object checksums sent for an upload that declared none
    checksum_type = upload.checksum_type or default_type(algorithm)
    asked_type = headers.get("x-amz-checksum-type")
    if asked_type is not None and asked_type.strip().upper() != checksum_type:
        raise errors.InvalidRequest(
            f"The upload was created using the {checksum_type} checksum mode. The complete"
            " request must use the same checksum mode."
        )
    part_values = tuple(p.checksum.value for p in parts if p.checksum is not None)
    if len(part_values) != len(parts) or any(
        p.checksum is not None and p.checksum.algorithm != algorithm for p in parts
    ):
        # only parts stored before their upload declared an algorithm (no such path today)
        raise errors.InvalidPart(extra={"UploadId": upload.upload_id})
    sent = value_headers(headers)
    if len(sent) > 1:
        raise errors.InvalidRequest(_MULTIPLE)
    expected: str | None = None
    if sent:
        ((named, given),) = sent.items()
        if named != algorithm:
            raise errors.InvalidRequest(
                "Checksum Type mismatch occurred, expected checksum Type: "
                f"{algorithm}, actual checksum Type: {named}"
            )
        expected = given
    value: str | None = None
    if checksum_type == COMPOSITE:
        value = composite(algorithm, part_values)
        if expected is not None:
            digest, dash, count = expected.partition("-")
            if not valid_value(algorithm, digest) or (
                dash and not (count.isascii() and count.isdigit())
            ):
                raise _invalid_header(HEADER_PREFIX + algorithm)
            expected = f"{digest}-{count if dash else len(parts)}"
            if expected != value:
                raise _bad_digest(algorithm)
    elif expected is not None and not valid_value(algorithm, expected):
        raise _invalid_header(HEADER_PREFIX + algorithm)
    return Completion(algorithm, checksum_type, value, expected, part_values)


# ------------------------------------------------------------------------------ responses
def object_headers(record: ObjectRecord, part_number: int | None = None) -> list[tuple[str, str]]:
    """The ``x-amz-checksum-<algorithm>`` and ``x-amz-checksum-type`` headers reporting
    ``record``'s checksum (or, with ``part_number``, that part's), for a response whose body is
    exactly the object (or that part).  Empty when nothing is stored."""
    checksum = record.checksum
    if checksum is None:
        return []
    value = checksum.value
    if part_number is not None and record.part_checksums:
        if not 1 <= part_number <= len(record.part_checksums):
            return []
        value = record.part_checksums[part_number - 1]
    return [
        (HEADER_PREFIX + checksum.algorithm, value),
        ("x-amz-checksum-type", record.checksum_type or FULL_OBJECT),
    ]


def mode_enabled(value: str | None) -> bool:
    """Whether ``x-amz-checksum-mode`` asks for checksums."""
    return value is not None and value.strip().upper() == "ENABLED"


def listing_elements(algorithm: str | None, checksum_type: str | None) -> Iterable[tuple[str, str]]:
    """``ChecksumAlgorithm`` and ``ChecksumType`` children for a listing entry."""
    if algorithm is None:
        return []
    return [
        ("ChecksumAlgorithm", api_name(algorithm)),
        ("ChecksumType", checksum_type or default_type(algorithm)),
    ]
