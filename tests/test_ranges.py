"""Range headers (:func:`artifactd.http.ranges.parse_range`) against a reference model, and the
blob segments (:func:`artifactd.http.download.segments_for`) that serve a range."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.download import segments_for
from artifactd.http.ranges import ByteRange, parse_range
from artifactd.records import BlobRef
from tests import strategies  # noqa: F401  (registers the deadline=None hypothesis profile)

UNSATISFIABLE = "unsatisfiable"
Expected = tuple[int, int] | None | str  # (first, last) inclusive, whole object, or 416

sizes = st.integers(min_value=0, max_value=10**6) | st.integers(min_value=0, max_value=20)
offsets = st.integers(min_value=0, max_value=2 * 10**6) | st.integers(min_value=0, max_value=25)


def model_closed(first: int, last: int, size: int) -> Expected:
    """``bytes=first-last``: S3 ignores an inverted range, refuses one starting past the end,
    and clamps the end."""
    if last < first:
        return None
    if first >= size:
        return UNSATISFIABLE
    return (first, min(last, size - 1))


def model_open(first: int, size: int) -> Expected:
    """``bytes=first-``."""
    if first >= size:
        return UNSATISFIABLE
    return (first, size - 1)


def model_suffix(n: int, size: int) -> Expected:
    """``bytes=-n``: the last n bytes; a zero suffix (or an empty object) is unsatisfiable."""
    if n == 0 or size == 0:
        return UNSATISFIABLE
    return (max(0, size - n), size - 1)


def observed(header: str, size: int) -> Expected:
    try:
        rng = parse_range(header, size)
    except errors.S3Error as e:
        if e.code != "InvalidRange" or e.status != 416:
            raise
        if e.extra.get("ActualObjectSize") != str(size):
            raise AssertionError(f"InvalidRange without the size: {e.extra}") from None
        return UNSATISFIABLE
    return None if rng is None else (rng.start, rng.end)


class ParseRangeTests(SynchronousTestCase):
    def check(self, header: str, size: int, expected: Expected) -> None:
        self.assertEqual(observed(header, size), expected, f"{header!r} on {size} bytes")
        if isinstance(expected, tuple):
            rng = parse_range(header, size)
            assert rng is not None
            first, last = expected
            self.assertEqual(rng.length, last - first + 1)
            self.assertEqual(rng.content_range(size), f"bytes {first}-{last}/{size}")
            self.assertTrue(0 <= first <= last < size)

    @given(size=sizes, first=offsets, last=offsets)
    def test_closed(self, size: int, first: int, last: int) -> None:
        """``bytes=a-b`` matches the model (ignored if b < a, 416 if a >= size, else clamped)."""
        self.check(f"bytes={first}-{last}", size, model_closed(first, last, size))

    @given(size=sizes, first=offsets)
    def test_open(self, size: int, first: int) -> None:
        """``bytes=a-`` matches the model (to the end, 416 if a >= size)."""
        self.check(f"bytes={first}-", size, model_open(first, size))

    @given(size=sizes, n=offsets)
    def test_suffix(self, size: int, n: int) -> None:
        """``bytes=-n`` matches the model (the last n bytes, all of them if n > size)."""
        self.check(f"bytes=-{n}", size, model_suffix(n, size))

    @given(size=sizes, first=offsets, last=offsets, zeros=st.integers(0, 3))
    def test_leading_zeros(self, size: int, first: int, last: int, zeros: int) -> None:
        """Leading zeros do not change a range's meaning."""
        pad = "0" * zeros
        self.check(f"bytes={pad}{first}-{pad}{last}", size, model_closed(first, last, size))

    def test_absent(self) -> None:
        """No Range header means the whole object."""
        self.assertIsNone(parse_range(None, 10))
        self.assertIsNone(parse_range(None, 0))

    @given(
        size=sizes,
        header=st.sampled_from(
            [
                "",
                "bytes",
                "bytes=",
                "bytes=-",
                "bytes=--1",
                "bytes=1--2",
                "bytes=1-2-3",
                "bytes=a-b",
                "bytes=0x10-",
                "bytes=1.5-2",
                "bytes=+1-2",
                "bytes=0-1,2-3",
                "bytes=0-1, -1",
                "bytes=-1,0-",
                "items=0-1",
                "Bytes=0-1x",
                "0-1",
                "bytes 0-1",
                "bytes=\u0661-\u0662",  # Arabic-Indic digits are not ASCII digits
                "bytes=\uff11-\uff12",  # fullwidth digits
            ]
        )
        | st.text(st.characters(exclude_characters="0123456789"), max_size=12),
    )
    def test_malformed_ignored(self, size: int, header: str) -> None:
        """A syntactically invalid or multi-range header is ignored (None: the whole object)."""
        self.assertIsNone(parse_range(header, size))

    def test_examples(self) -> None:
        """Hand-checked cases around the edges."""
        cases: list[tuple[str, int, Expected]] = [
            ("bytes=0-0", 1, (0, 0)),
            ("bytes=0-", 1, (0, 0)),
            ("bytes=0-", 0, UNSATISFIABLE),
            ("bytes=0-0", 0, UNSATISFIABLE),
            ("bytes=-1", 0, UNSATISFIABLE),
            ("bytes=-0", 5, UNSATISFIABLE),
            ("bytes=5-", 5, UNSATISFIABLE),
            ("bytes=4-", 5, (4, 4)),
            ("bytes=-5", 5, (0, 4)),
            ("bytes=-6", 5, (0, 4)),
            ("bytes=3-2", 5, None),
            ("bytes=7-3", 5, None),  # inverted beats unsatisfiable
            ("bytes=0-99999999999999999999999", 5, (0, 4)),
            ("bytes=99999999999999999999999-", 5, UNSATISFIABLE),
        ]
        for header, size, expected in cases:
            self.check(header, size, expected)

    def test_byte_range(self) -> None:
        """ByteRange reports its length and Content-Range."""
        rng = ByteRange(2, 5)
        self.assertEqual(rng.length, 4)
        self.assertEqual(rng.content_range(10), "bytes 2-5/10")


def blobs_of(content: bytes, cuts: Sequence[int]) -> tuple[list[BlobRef], dict[str, bytes]]:
    """``content`` split at ``cuts`` (empty blobs allowed) as blob refs, and their bytes."""
    points = [0, *sorted(c % (len(content) + 1) for c in cuts), len(content)]
    refs: list[BlobRef] = []
    store: dict[str, bytes] = {}
    for i, (a, b) in enumerate(itertools.pairwise(points)):
        piece = content[a:b]
        # Distinct digests even for equal pieces, so a segment names exactly one blob.
        digest = hashlib.sha256(b"%d:" % i + piece).hexdigest()
        refs.append(BlobRef(digest, len(piece)))
        store[digest] = piece
    return refs, store


class SegmentsTests(SynchronousTestCase):
    @given(
        content=st.binary(max_size=500),
        cuts=st.lists(st.integers(min_value=0), max_size=8),
        data=st.data(),
    )
    def test_segments_reproduce_the_range(
        self, content: bytes, cuts: list[int], data: st.DataObject
    ) -> None:
        """Segments of any blob split read back exactly content[start:start + length]."""
        refs, store = blobs_of(content, cuts)
        start = data.draw(st.integers(min_value=0, max_value=len(content)), label="start")
        length = data.draw(st.integers(min_value=0, max_value=len(content) - start), label="length")
        segments = segments_for(refs, start, length)
        sizes = {r.digest: r.size for r in refs}
        out = b""
        for segment in segments:
            self.assertGreater(segment.length, 0)
            self.assertGreaterEqual(segment.offset, 0)
            self.assertLessEqual(segment.offset + segment.length, sizes[segment.digest])
            out += store[segment.digest][segment.offset : segment.offset + segment.length]
        self.assertEqual(out, content[start : start + length])
        order = [r.digest for r in refs]
        indices = [order.index(s.digest) for s in segments]
        self.assertEqual(indices, sorted(set(indices)))  # each blob at most once, in order

    @given(content=st.binary(max_size=300), cuts=st.lists(st.integers(min_value=0), max_size=6))
    def test_whole_object(self, content: bytes, cuts: list[int]) -> None:
        """The segments for the whole object are every non-empty blob, whole, in order."""
        refs, _ = blobs_of(content, cuts)
        segments = segments_for(refs, 0, len(content))
        self.assertEqual(
            [(s.digest, s.offset, s.length) for s in segments],
            [(r.digest, 0, r.size) for r in refs if r.size],
        )

    def test_empty(self) -> None:
        """No blobs, or a zero length, give no segments."""
        self.assertEqual(segments_for([], 0, 0), [])
        refs, _ = blobs_of(b"abcdef", [2, 4])
        self.assertEqual(segments_for(refs, 3, 0), [])
