"""S3 XML rendering: the string renderer writes exactly the bytes ElementTree writes, and the
timestamp helpers match their ``datetime`` / ``email.utils`` definitions."""

from __future__ import annotations

import datetime
import email.utils
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd import integrity
from artifactd.http import s3xml
from artifactd.records import ChecksumValue, ObjectRecord, ObjectSummary
from tests import strategies  # noqa: F401  (registers the deadline=None hypothesis profile)


def _fill(parent: ET.Element, children: Iterable[s3xml.Child]) -> None:
    for tag, value in children:
        if value is None:
            continue
        el = ET.SubElement(parent, tag)
        if isinstance(value, list):
            _fill(el, value)
        elif isinstance(value, bool):
            el.text = "true" if value else "false"
        else:
            el.text = str(value)


def reference_document(
    root: str, children: Iterable[s3xml.Child], *, namespace: bool = True, text: str | None = None
) -> bytes:
    """The ElementTree serialisation ``s3xml.document`` used to be."""
    el = ET.Element(root, {"xmlns": s3xml.NS} if namespace else {})
    el.text = text
    _fill(el, children)
    body: bytes = ET.tostring(el, encoding="utf-8", xml_declaration=False)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + body


_TAGS = st.sampled_from(["Key", "Size", "Contents", "Prefix", "A"])
_TEXT = st.text(alphabet=st.sampled_from(["a", "&", "<", ">", '"', "\n", "é", "\ud800", " ", "0"]))
_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), _TEXT)
_VALUES: st.SearchStrategy[Any] = st.recursive(
    _LEAVES, lambda inner: st.lists(st.tuples(_TAGS, inner), max_size=4), max_leaves=12
)
_CHILDREN = st.lists(st.tuples(_TAGS, _VALUES), max_size=5)


def reference_iso8601(ts: float) -> str:
    dt = datetime.datetime.fromtimestamp(ts, tz=datetime.UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


class DocumentTests(SynchronousTestCase):
    @given(
        children=_CHILDREN,
        namespace=st.booleans(),
        text=st.one_of(st.none(), _TEXT),
    )
    def test_same_bytes_as_elementtree(
        self, children: list[s3xml.Child], namespace: bool, text: str | None
    ) -> None:
        self.assertEqual(
            s3xml.document("Root", children, namespace=namespace, text=text),
            reference_document("Root", children, namespace=namespace, text=text),
        )

    def test_listing_shape(self) -> None:
        children: list[s3xml.Child] = [
            ("Name", "b"),
            ("Prefix", ""),
            ("IsTruncated", False),
            ("Contents", [("Key", "a&b<c>"), ("Size", 3), ("Owner", s3xml.owner())]),
            ("CommonPrefixes", [("Prefix", None)]),
        ]
        self.assertEqual(
            s3xml.document("ListBucketResult", children),
            reference_document("ListBucketResult", children),
        )

    def test_empty(self) -> None:
        self.assertEqual(
            s3xml.document("VersioningConfiguration", []),
            reference_document("VersioningConfiguration", []),
        )


_SUMMARIES = st.builds(
    ObjectSummary,
    key=_TEXT.filter(lambda k: bool(k) and "\ud800" not in k),  # keys are valid UTF-8
    size=st.integers(0, 5 * 2**40),
    etag=st.one_of(st.text("0123456789abcdef-", max_size=40), _TEXT),
    last_modified=st.floats(0, 4e9),
    checksum_algorithm=st.one_of(st.none(), st.sampled_from(["crc32", "crc64nvme", "sha256"])),
    checksum_type=st.one_of(st.none(), st.sampled_from(["COMPOSITE", "FULL_OBJECT"])),
)


class ContentsTests(SynchronousTestCase):
    @given(
        st.lists(_SUMMARIES, max_size=5),
        st.sampled_from([None, "url"]),
        st.booleans(),
    )
    def test_same_as_generic_children(
        self, objects: list[ObjectSummary], encoding: str | None, owner: bool
    ) -> None:
        """The one-pass ``<Contents>`` renderer writes what ElementTree writes for the same
        entries built as generic children (the shape ListObjects had before)."""
        entries: list[s3xml.Child] = []
        for o in objects:
            entry: list[s3xml.Child] = [
                ("Key", s3xml.encode_key(o.key, encoding)),
                ("LastModified", s3xml.iso8601(o.last_modified)),
                ("ETag", f'"{o.etag}"'),
                ("Size", o.size),
                ("StorageClass", "STANDARD"),
                *integrity.listing_elements(o.checksum_algorithm, o.checksum_type),
            ]
            if owner:
                entry.append(("Owner", s3xml.owner()))
            entries.append(("Contents", entry))
        fast = [("IsTruncated", False), ("Contents", s3xml.contents(objects, encoding, owner))]
        reference = reference_document("ListBucketResult", [("IsTruncated", False), *entries])
        self.assertEqual(s3xml.document("ListBucketResult", fast), reference)
        # the same entries from listing rows stored with the records
        rows = [(o.key, s3xml.listing_row(record_of(o))) for o in objects]
        from_rows = [
            ("IsTruncated", False),
            ("Contents", s3xml.contents_rows(rows, encoding, owner)),
        ]
        self.assertEqual(s3xml.document("ListBucketResult", from_rows), reference)


def record_of(o: ObjectSummary) -> ObjectRecord:
    checksum = ChecksumValue(o.checksum_algorithm, "AAAA") if o.checksum_algorithm else None
    return ObjectRecord(
        bucket="bkt",
        key=o.key,
        size=o.size,
        etag=o.etag,
        sha256="0" * 64,
        last_modified=o.last_modified,
        checksum=checksum,
        checksum_type=o.checksum_type,
    )


class TimestampTests(SynchronousTestCase):
    @given(st.floats(min_value=-62135596800.0, max_value=253402300799.0))
    def test_iso8601(self, ts: float) -> None:
        try:
            expected = reference_iso8601(ts)
        except (OverflowError, ValueError, OSError):
            return
        self.assertEqual(s3xml.iso8601(ts), expected)

    def test_iso8601_rounding(self) -> None:
        for ts in (0.0, 0.0005, 0.9995, 0.9999995, 1764300000.123456, 1764300000.9999996):
            self.assertEqual(s3xml.iso8601(ts), reference_iso8601(ts))

    @given(st.floats(min_value=0, max_value=253402300799.0))
    def test_http_date(self, ts: float) -> None:
        self.assertEqual(s3xml.http_date(ts), email.utils.formatdate(int(ts), usegmt=True))
