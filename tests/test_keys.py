"""The pure codecs between metadata records and LevelDB keys and values."""

from __future__ import annotations

import attrs
from hypothesis import assume, given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.records import (
    BlobRef,
    Bucket,
    ChecksumValue,
    ObjectRecord,
    ObjectSummary,
    Part,
    Upload,
)
from artifactd.storage import keys as codec
from tests.strategies import bucket_names, keys, metadata

_times = st.floats(min_value=0, max_value=4e9, allow_nan=False, allow_infinity=False)
_hex = st.text("0123456789abcdef", min_size=64, max_size=64)
_text = st.text(st.characters(codec="utf-8"), max_size=20)
_pairs = st.lists(st.tuples(_text, _text), max_size=4).map(tuple)
_blobs = st.builds(BlobRef, digest=_hex, size=st.integers(0, 2**53))
# Upload ids never contain the 0x00 separator (artifactd makes them from hex digits).
_upload_ids = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1)

_object_records = st.builds(
    ObjectRecord,
    bucket=bucket_names(),
    key=keys(controls=True),
    size=st.integers(0, 2**53),
    etag=st.text("0123456789abcdef-", max_size=40),
    sha256=_hex,
    last_modified=_times,
    content_type=_text,
    headers=_pairs,
    metadata=metadata().map(lambda d: tuple(sorted(d.items()))),
    blobs=st.lists(_blobs, max_size=5).map(tuple),
    parts_count=st.integers(0, 10_000),
    version_id=st.none() | _text,
)
_uploads = st.builds(
    Upload,
    bucket=bucket_names(),
    key=keys(controls=True),
    upload_id=_upload_ids,
    initiated=_times,
    content_type=_text,
    headers=_pairs,
    metadata=metadata().map(lambda d: tuple(sorted(d.items()))),
)
_parts = st.builds(
    Part,
    upload_id=_upload_ids,
    part_number=st.integers(1, 10_000),
    size=st.integers(0, 2**53),
    etag=st.text("0123456789abcdef", max_size=32),
    blob=_blobs,
    last_modified=_times,
)


class ObjectKeyOrderTests(SynchronousTestCase):
    @given(bucket_names(), keys(controls=True), keys(controls=True))
    def test_order_is_utf8_byte_order(self, bucket: str, k1: str, k2: str) -> None:
        """Object keys in one bucket sort exactly as their UTF-8 encodings (S3 listing order)."""
        a, b = codec.object_key(bucket, k1), codec.object_key(bucket, k2)
        self.assertEqual(a < b, k1.encode() < k2.encode())
        self.assertEqual(a == b, k1 == k2)

    @given(keys(controls=True), keys(controls=True))
    def test_order_against_code_points(self, k1: str, k2: str) -> None:
        """Without surrogates, UTF-8 byte order is code-point order (Python's str order)."""
        self.assertEqual(k1.encode() < k2.encode(), k1 < k2)

    @given(bucket_names(), keys(controls=True))
    def test_object_key_name_round_trip(self, bucket: str, key: str) -> None:
        """object_key_name inverts object_key."""
        raw = codec.object_key(bucket, key)
        self.assertTrue(raw.startswith(codec.object_prefix(bucket)))
        self.assertEqual(codec.object_key_name(bucket, raw), key)

    @given(bucket_names(), bucket_names(), keys(controls=True))
    def test_buckets_do_not_overlap(self, b1: str, b2: str, key: str) -> None:
        """No object of one bucket falls under another bucket's object prefix."""
        assume(b1 != b2)
        self.assertFalse(codec.object_key(b1, key).startswith(codec.object_prefix(b2)))
        self.assertFalse(codec.upload_key(b1, key, "u").startswith(codec.upload_prefix(b2)))

    def test_tables_are_disjoint(self) -> None:
        """Each record type lives under its own one-byte tag."""
        made = [
            codec.bucket_key("bkt"),
            codec.object_key("bkt", "k"),
            codec.upload_key("bkt", "k", "u"),
            codec.part_key("u", 1),
            codec.refcount_key("0" * 64),
        ]
        self.assertEqual(len({raw[:1] for raw in made}), len(made))


class UploadAndPartKeyTests(SynchronousTestCase):
    @given(
        bucket_names(),
        st.tuples(keys(), _upload_ids),
        st.tuples(keys(), _upload_ids),
    )
    def test_uploads_order_by_key_then_id(
        self, bucket: str, a: tuple[str, str], b: tuple[str, str]
    ) -> None:
        """Upload keys sort by (object key bytes, upload id bytes) for keys without NUL."""
        ka = codec.upload_key(bucket, *a)
        kb = codec.upload_key(bucket, *b)
        self.assertEqual(ka < kb, (a[0].encode(), a[1].encode()) < (b[0].encode(), b[1].encode()))

    @given(_upload_ids, st.integers(1, 2**32 - 1), st.integers(1, 2**32 - 1))
    def test_part_keys_order_numerically(self, upload_id: str, n1: int, n2: int) -> None:
        """Part keys of one upload sort by part number as integers, not as decimal strings."""
        self.assertEqual(codec.part_key(upload_id, n1) < codec.part_key(upload_id, n2), n1 < n2)
        self.assertTrue(codec.part_key(upload_id, n1).startswith(codec.part_prefix(upload_id)))

    def test_part_keys_order_numerically_examples(self) -> None:
        """Part 9 sorts before part 10 and part 255 before part 256 (no byte-wise surprises)."""
        numbers = [1, 2, 9, 10, 99, 100, 255, 256, 1000, 9999, 10_000]
        raw = [codec.part_key("u", n) for n in numbers]
        self.assertEqual(sorted(raw), raw)

    @given(_upload_ids, _upload_ids, st.integers(1, 10_000))
    def test_parts_of_other_uploads_are_apart(self, u1: str, u2: str, n: int) -> None:
        """A part key of one upload never falls under another upload's part prefix."""
        assume(u1 != u2)
        self.assertFalse(codec.part_key(u1, n).startswith(codec.part_prefix(u2)))


class RoundTripTests(SynchronousTestCase):
    @given(st.builds(Bucket, name=bucket_names(), created=_times))
    def test_bucket(self, bucket: Bucket) -> None:
        """decode_bucket inverts encode_bucket."""
        self.assertEqual(codec.decode_bucket(codec.encode_bucket(bucket)), bucket)

    @given(_object_records)
    def test_object(self, record: ObjectRecord) -> None:
        """decode_object inverts encode_object for every field."""
        self.assertEqual(codec.decode_object(codec.encode_object(record)), record)

    @given(_object_records, st.text().filter(lambda t: "\n" not in t))
    def test_object_with_listing_row(self, record: ObjectRecord, row: str) -> None:
        """A record stored with a listing row decodes as without one; the row reads back."""
        raw = codec.encode_object(record, row)
        self.assertEqual(codec.decode_object(raw), record)
        self.assertEqual(codec.decode_summary(record.key, raw), summary_of(record))
        self.assertEqual(raw, codec.ROW + row.encode() + b"\n" + codec.encode_object(record))

    def test_listing_row_is_one_line(self) -> None:
        record = ObjectRecord("bkt", "k", 3, "e", "0" * 64, 1.5)
        self.assertRaises(ValueError, codec.encode_object, record, "two\nlines")

    @given(_uploads)
    def test_upload(self, upload: Upload) -> None:
        """decode_upload inverts encode_upload."""
        self.assertEqual(codec.decode_upload(codec.encode_upload(upload)), upload)

    @given(_parts)
    def test_part(self, part: Part) -> None:
        """decode_part inverts encode_part."""
        self.assertEqual(codec.decode_part(codec.encode_part(part)), part)

    @given(st.integers(0, 2**63))
    def test_count(self, count: int) -> None:
        """decode_count inverts encode_count."""
        self.assertEqual(codec.decode_count(codec.encode_count(count)), count)

    def test_missing_count_is_zero(self) -> None:
        """An absent reference count reads as zero."""
        self.assertEqual(codec.decode_count(None), 0)

    def test_old_object_record_reads_with_defaults(self) -> None:
        """A stored object without the optional fields decodes with the record's defaults."""
        raw = (
            b'{"bucket":"bkt","key":"k","size":3,"etag":"e","sha256":"'
            + b"0" * 64
            + b'","mtime":1.5}'
        )
        record = codec.decode_object(raw)
        self.assertEqual(record, ObjectRecord("bkt", "k", 3, "e", "0" * 64, 1.5))


def summary_of(record: ObjectRecord) -> ObjectSummary:
    return ObjectSummary(
        key=record.key,
        size=record.size,
        etag=record.etag,
        last_modified=record.last_modified,
        checksum_algorithm=record.checksum.algorithm if record.checksum else None,
        checksum_type=record.checksum_type,
    )


_TRICKY = st.sampled_from(
    ['"size":1,', '"etag":"x",', '"mtime":1,', '"ck":["a",', '"ckt":"B"}', '\\"', "\\", '"']
)


class SummaryTests(SynchronousTestCase):
    """decode_summary reads a record's listing fields as decode_object does."""

    @given(
        _object_records,
        st.none() | st.builds(ChecksumValue, st.sampled_from(["crc32", "sha256"]), _text),
        st.none() | st.sampled_from(["FULL_OBJECT", "COMPOSITE"]) | _text,
    )
    def test_same_as_decode_object(
        self, record: ObjectRecord, checksum: ChecksumValue | None, checksum_type: str | None
    ) -> None:
        record = attrs.evolve(record, checksum=checksum, checksum_type=checksum_type)
        raw = codec.encode_object(record)
        self.assertEqual(codec.decode_summary(record.key, raw), summary_of(record))

    @given(
        _object_records,
        st.lists(st.tuples(_TRICKY, _TRICKY), max_size=3),
        st.lists(_TRICKY, max_size=2).map("".join),
    )
    def test_field_names_inside_strings(
        self, record: ObjectRecord, pairs: list[tuple[str, str]], etag_tail: str
    ) -> None:
        """Field names and quotes inside keys, metadata, tags or an odd etag change nothing."""
        record = attrs.evolve(
            record,
            key=record.key + "".join(a for a, _ in pairs),
            metadata=tuple(pairs),
            tags=tuple(pairs),
            etag=record.etag + etag_tail,
        )
        raw = codec.encode_object(record)
        self.assertEqual(codec.decode_summary(record.key, raw), summary_of(record))

    def test_other_encodings_fall_back(self) -> None:
        """A record in another (older or hand-made) JSON form is decoded in full."""
        raw = (
            b'{"key": "k", "bucket": "b", "size": 3, "etag": "e", "sha256": "s",'
            b' "mtime": 5, "ck": ["crc32", "AAAAAA=="], "ckt": "FULL_OBJECT"}'
        )
        self.assertEqual(
            codec.decode_summary("k", raw),
            ObjectSummary("k", 3, "e", 5.0, "crc32", "FULL_OBJECT"),
        )
