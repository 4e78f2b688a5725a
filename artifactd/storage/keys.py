"""Pure codecs between metadata records and LevelDB keys and values.

Key layout (every key starts with a one-byte table tag)::

    b"B" bucket                                  -> Bucket
    b"O" bucket 0x00 key                         -> ObjectRecord (current version)
    b"U" bucket 0x00 key 0x00 upload_id          -> Upload
    b"P" upload_id 0x00 part_number (4 bytes BE) -> Part
    b"R" digest                                  -> reference count (decimal ASCII)
    b"D" digest                                  -> the bytes of a small blob (see tiered.py)

Bucket names never contain 0x00, so within one bucket the byte order of object keys is the byte
order of their UTF-8 encoding, which is S3's listing order.  A later versioning scheme adds a
``b"V" bucket 0x00 key 0x00 <inverted time> <version id>`` table beside ``b"O"``; existing
records keep their meaning (``version_id`` null).
"""

from __future__ import annotations

import json
import re
from typing import Any

from artifactd.records import (
    BlobRef,
    Bucket,
    ChecksumValue,
    ObjectRecord,
    ObjectSummary,
    Part,
    Upload,
)

BUCKET = b"B"
OBJECT = b"O"
UPLOAD = b"U"
PART = b"P"
REFCOUNT = b"R"
SMALL_BLOB = b"D"
SEP = b"\x00"


def bucket_key(name: str) -> bytes:
    return BUCKET + name.encode()


def object_prefix(bucket: str) -> bytes:
    """The prefix under which every object of ``bucket`` sorts."""
    return OBJECT + bucket.encode() + SEP


def object_key(bucket: str, key: str) -> bytes:
    return object_prefix(bucket) + key.encode("utf-8", "surrogatepass")


def object_key_name(bucket: str, raw: bytes) -> str:
    """Inverse of :func:`object_key` for keys under ``object_prefix(bucket)``."""
    return raw[len(object_prefix(bucket)) :].decode("utf-8", "surrogatepass")


def upload_prefix(bucket: str) -> bytes:
    return UPLOAD + bucket.encode() + SEP


def upload_key(bucket: str, key: str, upload_id: str) -> bytes:
    return upload_prefix(bucket) + key.encode("utf-8", "surrogatepass") + SEP + upload_id.encode()


def part_prefix(upload_id: str) -> bytes:
    return PART + upload_id.encode() + SEP


def part_key(upload_id: str, part_number: int) -> bytes:
    return part_prefix(upload_id) + part_number.to_bytes(4, "big")


def refcount_key(digest: str) -> bytes:
    return REFCOUNT + digest.encode()


def small_blob_key(digest: str) -> bytes:
    return SMALL_BLOB + digest.encode()


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _pairs(value: Any) -> tuple[tuple[str, str], ...]:
    if not value:
        return ()  # the usual case: no generator to build
    return tuple((str(k), str(v)) for k, v in value)


_decode_json = json.JSONDecoder().decode


def _load_record(raw: bytes) -> Any:
    """``json.loads(raw)`` for a record, which is UTF-8 (as ``_dump`` writes it): without
    json.loads's guess at the encoding."""
    return _decode_json(raw.decode("utf-8", "surrogatepass"))


def _blob(value: Any) -> BlobRef:
    return BlobRef(digest=str(value[0]), size=int(value[1]))


def _checksum_out(checksum: ChecksumValue | None) -> list[str] | None:
    return [checksum.algorithm, checksum.value] if checksum is not None else None


def _checksum_in(value: Any) -> ChecksumValue | None:
    return ChecksumValue(str(value[0]), str(value[1])) if value else None


def encode_bucket(bucket: Bucket) -> bytes:
    return _dump({"name": bucket.name, "created": bucket.created})


def decode_bucket(raw: bytes) -> Bucket:
    d = json.loads(raw)
    return Bucket(name=d["name"], created=float(d["created"]))


ROW = b"\x01"  # an object record that starts with this carries a listing row (see below)


def encode_object(record: ObjectRecord, row: str | None = None) -> bytes:
    """The record as JSON, after ``ROW + row + b"\n"`` when a listing row is given: the
    record's entry in a listing as the metadata store's user renders it (opaque here; one line,
    no key), which a listing reads without decoding the record.  A change to how rows are
    rendered must come with a new ``ROW`` byte, so that rows in the old form are not used."""
    # The fields a listing shows come first, so decode_summary reads them at a fixed place.
    document = _dump(
        {
            "size": record.size,
            "etag": record.etag,
            "mtime": record.last_modified,
            "ck": _checksum_out(record.checksum),
            "ckt": record.checksum_type,
            "bucket": record.bucket,
            "key": record.key,
            "sha256": record.sha256,
            "ctype": record.content_type,
            "headers": [list(p) for p in record.headers],
            "meta": [list(p) for p in record.metadata],
            "blobs": [[b.digest, b.size] for b in record.blobs],
            "parts": record.parts_count,
            "vid": record.version_id,
            "pck": list(record.part_checksums),
            "tags": [list(p) for p in record.tags],
        }
    )
    if row is None:
        return document
    encoded = row.encode()
    if b"\n" in encoded:
        raise ValueError("a listing row is one line")
    return ROW + encoded + b"\n" + document


def decode_object(raw: bytes) -> ObjectRecord:
    if raw[:1] != b"{":  # a listing row first (of any form): the record follows it
        raw = raw[raw.index(b"\n") + 1 :]
    d = _load_record(raw)
    return ObjectRecord(
        bucket=d["bucket"],
        key=d["key"],
        size=int(d["size"]),
        etag=d["etag"],
        sha256=d["sha256"],
        last_modified=float(d["mtime"]),
        content_type=d.get("ctype", "binary/octet-stream"),
        headers=_pairs(d.get("headers")),
        metadata=_pairs(d.get("meta")),
        blobs=tuple(_blob(b) for b in d.get("blobs", ())),
        parts_count=int(d.get("parts", 0)),
        version_id=d.get("vid"),
        checksum=_checksum_in(d.get("ck")),
        checksum_type=d.get("ckt"),
        part_checksums=tuple(str(v) for v in d["pck"]) if d.get("pck") else (),
        tags=_pairs(d.get("tags")),
    )


# The listing fields of an encoded object record.  A record is one flat JSON object whose string
# values nest only in lists, so ``"name":`` (an unescaped quote, the name, an unescaped quote and a
# colon) occurs only where the record's own field ``name`` begins.
_SIZE = re.compile(rb'"size":([0-9]+)[,}]')
_ETAG = re.compile(rb'"etag":"([^"\\]*)"[,}]')
_MTIME = re.compile(rb'"mtime":(-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)[,}]')
_CK = re.compile(rb'"ck":(?:null|\["([^"\\]*)",)')
_CKT = re.compile(rb'"ckt":(?:null|"([^"\\]*)")[,}]')


# The usual case in one anchored match: a record as encode_object writes it (listing fields
# first).
_PLAIN = re.compile(
    rb'\{"size":([0-9]+),"etag":"([^"\\]*)",'
    rb'"mtime":([-+.0-9eE]+),"ck":(?:null|\["([^"\\]*)","[^"\\]*"\]),'
    rb'"ckt":(?:null|"([^"\\]*)"),'
)


_new_summary = tuple.__new__


def decode_summary(key: str, raw: bytes) -> ObjectSummary:
    """The listing view of the object record ``raw`` stored under ``key``: the same values as
    :func:`decode_object` gives, read without decoding the whole record when its fields have the
    plain form :func:`encode_object` writes (else by :func:`decode_object`)."""
    if raw[:1] != b"{":  # a listing row first (of any form): the record follows it
        raw = raw[raw.index(b"\n") + 1 :]
    plain = _PLAIN.match(raw)
    if plain is not None:
        size, etag, mtime, algorithm, checksum_type = plain.groups()
        try:
            # tuple.__new__: the named tuple's own __new__ is a Python function (a listing page
            # builds a thousand of these)
            return _new_summary(
                ObjectSummary,
                (
                    key,
                    int(size),
                    etag.decode(),
                    float(mtime),
                    None if algorithm is None else algorithm.decode(),
                    None if checksum_type is None else checksum_type.decode(),
                ),
            )
        except ValueError:  # not a number json.dumps would write: take the long way
            pass
    size, etag, mtime, ck, ckt = (
        _SIZE.search(raw),
        _ETAG.search(raw),
        _MTIME.search(raw),
        _CK.search(raw),
        _CKT.search(raw),
    )
    if size is None or etag is None or mtime is None or ck is None or ckt is None:
        record = decode_object(raw)
        return ObjectSummary(
            key=key,
            size=record.size,
            etag=record.etag,
            last_modified=record.last_modified,
            checksum_algorithm=record.checksum.algorithm if record.checksum else None,
            checksum_type=record.checksum_type,
        )
    algorithm, checksum_type = ck.group(1), ckt.group(1)
    return ObjectSummary(
        key=key,
        size=int(size.group(1)),
        etag=etag.group(1).decode(),
        last_modified=float(mtime.group(1)),
        checksum_algorithm=algorithm.decode() if algorithm is not None else None,
        checksum_type=checksum_type.decode() if checksum_type is not None else None,
    )


def encode_upload(upload: Upload) -> bytes:
    return _dump(
        {
            "bucket": upload.bucket,
            "key": upload.key,
            "id": upload.upload_id,
            "initiated": upload.initiated,
            "ctype": upload.content_type,
            "headers": [list(p) for p in upload.headers],
            "meta": [list(p) for p in upload.metadata],
            "cka": upload.checksum_algorithm,
            "ckt": upload.checksum_type,
            "tags": [list(p) for p in upload.tags],
        }
    )


def decode_upload(raw: bytes) -> Upload:
    d = json.loads(raw)
    return Upload(
        bucket=d["bucket"],
        key=d["key"],
        upload_id=d["id"],
        initiated=float(d["initiated"]),
        content_type=d.get("ctype", "binary/octet-stream"),
        headers=_pairs(d.get("headers")),
        metadata=_pairs(d.get("meta")),
        checksum_algorithm=d.get("cka"),
        checksum_type=d.get("ckt"),
        tags=_pairs(d.get("tags")),
    )


def encode_part(part: Part) -> bytes:
    return _dump(
        {
            "id": part.upload_id,
            "n": part.part_number,
            "size": part.size,
            "etag": part.etag,
            "blob": [part.blob.digest, part.blob.size],
            "mtime": part.last_modified,
            "ck": _checksum_out(part.checksum),
        }
    )


def decode_part(raw: bytes) -> Part:
    d = json.loads(raw)
    return Part(
        upload_id=d["id"],
        part_number=int(d["n"]),
        size=int(d["size"]),
        etag=d["etag"],
        blob=_blob(d["blob"]),
        last_modified=float(d["mtime"]),
        checksum=_checksum_in(d.get("ck")),
    )


def encode_count(count: int) -> bytes:
    return b"%d" % count


def decode_count(raw: bytes | None) -> int:
    return int(raw) if raw else 0
