"""Reading byte ranges of stored objects for server-side copies.  Disk pool only: every function
here that takes a blob store blocks on file I/O.

A copy never rewrites a blob it can reference: CopyObject stores a new record naming the source's
blobs, and UploadPartCopy of a range that is exactly one of the source's blobs makes that blob the
part.  Only a range that cuts across blobs is streamed into a new blob, in constant memory
(:data:`READ_SIZE` at a time).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

from attrs import frozen

from artifactd.checksums import new_checksum
from artifactd.interfaces import IBlobStore
from artifactd.records import BlobRef

READ_SIZE = 1024 * 1024


@frozen
class Piece:
    """``length`` bytes of the blob ``digest`` from ``offset``."""

    digest: str
    offset: int
    length: int


@frozen
class Digests:
    """What one pass over a range computed."""

    size: int
    md5: str | None  # hex, when asked for
    sha256: str | None  # hex, when asked for
    checksum: str | None  # base64 of the flexible checksum, when an algorithm was given


class ShortBlob(Exception):
    """A blob holds fewer bytes than its record says (damaged storage)."""


def pieces(blobs: Sequence[BlobRef], start: int, length: int) -> list[Piece]:
    """The pieces of ``blobs`` covering ``[start, start + length)`` of their concatenation."""
    out: list[Piece] = []
    position = 0
    end = start + length
    for blob in blobs:
        lo, hi = max(start, position), min(end, position + blob.size)
        if lo < hi:
            out.append(Piece(blob.digest, lo - position, hi - lo))
        position += blob.size
        if position >= end:
            break
    return out


def whole_blob(blobs: Sequence[BlobRef], start: int, length: int) -> BlobRef | None:
    """The blob that is exactly ``[start, start + length)`` of the concatenation, if one is."""
    position = 0
    for blob in blobs:
        if position == start and blob.size == length:
            return blob
        if position > start:
            return None
        position += blob.size
    return None


def read_range(
    store: IBlobStore,
    parts: Sequence[Piece],
    *,
    md5: bool = False,
    sha256: bool = False,
    checksum_algorithm: str | None = None,
    sink: Callable[[bytes], None] | None = None,
) -> Digests:
    """Read ``parts`` in order, :data:`READ_SIZE` bytes at a time, computing the digests asked
    for and handing each chunk to ``sink``.  Raises ``FileNotFoundError`` if a blob is gone and
    :class:`ShortBlob` if one is shorter than its piece says."""
    md5_hash = hashlib.md5() if md5 else None
    sha_hash = hashlib.sha256() if sha256 else None
    checksum = new_checksum(checksum_algorithm) if checksum_algorithm else None
    size = 0
    for piece in parts:
        with store.open_blob(piece.digest) as f:
            f.seek(piece.offset)
            remaining = piece.length
            while remaining:
                chunk = f.read(min(READ_SIZE, remaining))
                if not chunk:
                    raise ShortBlob(piece.digest)
                if md5_hash is not None:
                    md5_hash.update(chunk)
                if sha_hash is not None:
                    sha_hash.update(chunk)
                if checksum is not None:
                    checksum.update(chunk)
                if sink is not None:
                    sink(chunk)
                remaining -= len(chunk)
                size += len(chunk)
    return Digests(
        size=size,
        md5=md5_hash.hexdigest() if md5_hash is not None else None,
        sha256=sha_hash.hexdigest() if sha_hash is not None else None,
        checksum=checksum.digest_b64() if checksum is not None else None,
    )
