"""Pure parsing of a ``Range`` header against an object size, as S3 answers it."""

from __future__ import annotations

import re

from attrs import frozen

from artifactd import errors

_SPEC = re.compile(r"\A\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*\Z", re.ASCII)


@frozen
class ByteRange:
    start: int
    end: int  # inclusive

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The single byte range requested, or None for the whole object.

    ``bytes=a-b``, ``bytes=a-`` and ``bytes=-n`` are honoured (``b`` is clamped to the end);
    syntactically invalid headers and multi-range requests are ignored (the whole object is
    returned, as S3 does); a range that starts past the end, or a zero suffix, raises InvalidRange.
    """
    if header is None:
        return None
    match = _SPEC.match(header)
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        return ByteRange(max(0, size - suffix), size - 1)
    start = int(first)
    end = int(last) if last != "" else size - 1
    if last != "" and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        raise _unsatisfiable(size)
    return ByteRange(start, min(end, size - 1))


def _unsatisfiable(size: int) -> errors.S3Error:
    return errors.InvalidRange(extra={"ActualObjectSize": str(size)})
