"""The metadata store over both ordered key-value stores: MemoryKV and LevelDB."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs
from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from artifactd import errors
from artifactd.http import s3xml
from artifactd.interfaces import IMetadataStore
from artifactd.records import BlobRef, Bucket, ObjectRecord, Part, Upload
from artifactd.storage import keys as codec
from artifactd.storage.kv import LevelDBKV, MemoryKV, OrderedKV
from artifactd.storage.metadata import KVMetadataStore
from tests.strategies import keys
from tests.test_keys import summary_of

if TYPE_CHECKING:
    _Base = SynchronousTestCase
else:
    _Base = object

BUCKET = "bkt"


def digest(n: object) -> str:
    return hashlib.sha256(str(n).encode()).hexdigest()


def blob(n: object, size: int = 1) -> BlobRef:
    return BlobRef(digest(n), size)


def record(key: str, *blobs: BlobRef, bucket: str = BUCKET) -> ObjectRecord:
    return ObjectRecord(
        bucket=bucket,
        key=key,
        size=sum(b.size for b in blobs),
        etag="d41d8cd98f00b204e9800998ecf8427e",
        sha256=digest(key),
        last_modified=1_000_000.0,
        blobs=blobs,
        parts_count=len(blobs) if len(blobs) > 1 else 0,
    )


def part(upload_id: str, number: int, ref: BlobRef) -> Part:
    return Part(upload_id, number, ref.size, "etag", ref, 1_000_000.0)


def utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


# ------------------------------------------------------------------ the brute-force listing model
Entry = tuple[str, bool]  # (key or common prefix, is_common_prefix)


def is_common_prefix(marker: str, prefix: str, delimiter: str) -> bool:
    """Whether ``marker`` has the shape of a common prefix of a ``prefix``/``delimiter`` listing:
    it starts with ``prefix`` and its first ``delimiter`` after the prefix ends it."""
    return (
        bool(delimiter)
        and marker.startswith(prefix)
        and marker.endswith(delimiter)
        and marker.find(delimiter, len(prefix)) == len(marker) - len(delimiter)
    )


def model_listing(
    names: Iterable[str], prefix: str, delimiter: str, start_after: str = ""
) -> list[Entry]:
    """S3's listing by brute force: keys under ``prefix`` after ``start_after`` in UTF-8 byte
    order, each key holding ``delimiter`` after the prefix rolled into its common prefix (listed
    once, where its first key would be); a marker that is itself a common prefix is not repeated.
    """
    entries: list[Entry] = []
    seen: set[str] = set()
    for name in sorted(set(names), key=utf8):
        if not name.startswith(prefix) or utf8(name) <= utf8(start_after):
            continue
        cut = name.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            entries.append((name, False))
            continue
        common = name[: cut + len(delimiter)]
        if common not in seen:
            seen.add(common)
            entries.append((common, True))
    if is_common_prefix(start_after, prefix, delimiter):
        entries = [e for e in entries if e != (start_after, True)]
    return entries


_ALPHABET = ["a", "b", "/", "//", "é", "+", " ", "~", "\x00", "日"]
_listing_keys = st.lists(st.sampled_from(_ALPHABET), min_size=1, max_size=6).map("".join) | keys(
    controls=True, max_bytes=40
)
_delimiters = st.sampled_from(["", "/", "/", "//", "a", "é", "+", "ab"])


def _cuts(name: str, delimiter: str) -> list[str]:
    """Every prefix of ``name`` that ends just after an occurrence of ``delimiter``."""
    if not delimiter:
        return []
    return [name[: i + len(delimiter)] for i in range(len(name)) if name.startswith(delimiter, i)]


@st.composite
def _prefixes(draw: st.DrawFn, names: list[str], delimiter: str) -> str:
    """A listing prefix: "", a whole key, a key cut just after a delimiter (a "directory"), any
    cut of a key, or unrelated text."""
    name = draw(st.sampled_from(names))
    choice = draw(st.integers(0, 4))
    if choice == 0:
        return ""
    if choice == 1:
        return name
    if choice == 2 and _cuts(name, delimiter):
        return draw(st.sampled_from(_cuts(name, delimiter)))
    if choice == 3:
        return draw(st.lists(st.sampled_from(_ALPHABET), max_size=3).map("".join))
    return name[: draw(st.integers(0, len(name)))]


@st.composite
def _listings(
    draw: st.DrawFn, *, nul: bool = True, max_size: int = 25
) -> tuple[list[str], str, str]:
    """Distinct keys, a prefix and a delimiter for a listing.  Half the time every "directory" of
    each key is also a key, as consoles create folder-marker objects."""
    names = draw(
        st.lists(
            _listing_keys if nul else _listing_keys.filter(lambda k: "\x00" not in k),
            min_size=1,
            max_size=max_size,
        )
    )
    delimiter = draw(_delimiters)
    if draw(st.booleans()):
        names += [cut for name in names for cut in _cuts(name, delimiter)]
    names = sorted(set(names))
    return names, draw(_prefixes(names, delimiter)), delimiter


class MetadataStoreTestsMixin(_Base):
    """Tests of :class:`KVMetadataStore` whatever the ordered store underneath."""

    def make_kv(self) -> OrderedKV:
        raise NotImplementedError

    # how object records' listing rows are rendered (None: stored without rows, as older
    # versions stored them)
    listing_row: Callable[[ObjectRecord], str] | None = None

    def setUp(self) -> None:
        self.kv = self.make_kv()
        self.store = KVMetadataStore(self.kv, listing_row=type(self).listing_row)
        self.addCleanup(self.store.close)
        self.assertTrue(self.store.create_bucket(Bucket(BUCKET, 1.0)))
        self._buckets = itertools.count()

    def fresh_bucket(self) -> str:
        """A new, empty bucket: hypothesis examples share one store, so each gets its own."""
        name = f"case-{next(self._buckets):05d}"
        self.assertTrue(self.store.create_bucket(Bucket(name, 2.0)))
        return name

    def refcounts(self, *refs: BlobRef) -> list[int]:
        return [self.store.refcount(r.digest) for r in refs]

    # ---------------------------------------------------------------- interface
    def test_deleted_bucket_is_forgotten(self) -> None:
        """Bucket records are remembered between reads, but a deleted bucket is gone for
        readers once the deletion is durable: at once outside a group, at the group's batch
        inside one (until then readers still see it, as they see every staged change)."""
        name = self.fresh_bucket()
        self.assertEqual(self.store.get_bucket(name), Bucket(name, 2.0))
        self.store.delete_bucket(name)
        self.assertIsNone(self.store.get_bucket(name))
        self.assertTrue(self.store.create_bucket(Bucket(name, 3.0)))
        self.assertEqual(self.store.get_bucket(name), Bucket(name, 3.0))
        with self.store.group():
            self.store.delete_bucket(name)
            self.assertEqual(self.store.get_bucket(name), Bucket(name, 3.0))  # not durable yet
        self.assertIsNone(self.store.get_bucket(name))
        self.assertNotIn(name, [b.name for b in self.store.list_buckets()])

    def test_interface(self) -> None:
        """KVMetadataStore provides IMetadataStore."""
        self.assertTrue(verifyObject(IMetadataStore, self.store))

    # ------------------------------------------------------------------ buckets
    def test_create_bucket_once(self) -> None:
        """Creating a bucket records it; creating it again returns False and keeps the first."""
        self.assertTrue(self.store.create_bucket(Bucket("other", 5.0)))
        self.assertFalse(self.store.create_bucket(Bucket("other", 6.0)))
        self.assertEqual(self.store.get_bucket("other"), Bucket("other", 5.0))
        self.assertIsNone(self.store.get_bucket("missing"))

    def test_list_buckets_in_name_order(self) -> None:
        """list_buckets returns every bucket sorted by name."""
        for name in ["zed", "b-1", "b.1", "b10", "b2", "aaa"]:
            self.store.create_bucket(Bucket(name, 0.0))
        self.assertEqual(
            [b.name for b in self.store.list_buckets()],
            sorted(["zed", "b-1", "b.1", "b10", "b2", "aaa", BUCKET]),
        )

    def test_delete_empty_bucket(self) -> None:
        """An empty bucket can be deleted, after which it is gone."""
        self.store.delete_bucket(BUCKET)
        self.assertIsNone(self.store.get_bucket(BUCKET))
        self.assertEqual(self.store.list_buckets(), [])

    def test_delete_missing_bucket(self) -> None:
        """Deleting a bucket that does not exist raises NoSuchBucket."""
        self.assertRaises(errors.NoSuchBucket, self.store.delete_bucket, "missing")

    def test_delete_bucket_with_object(self) -> None:
        """A bucket holding an object cannot be deleted (BucketNotEmpty) and stays."""
        self.store.put_object(record("k"))
        self.assertFalse(self.store.bucket_is_empty(BUCKET))
        self.assertRaises(errors.BucketNotEmpty, self.store.delete_bucket, BUCKET)
        self.assertIsNotNone(self.store.get_bucket(BUCKET))
        self.store.delete_object(BUCKET, "k")
        self.store.delete_bucket(BUCKET)

    def test_delete_bucket_with_upload(self) -> None:
        """A bucket holding only a multipart upload is not empty either."""
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        self.assertFalse(self.store.bucket_is_empty(BUCKET))
        self.assertRaises(errors.BucketNotEmpty, self.store.delete_bucket, BUCKET)
        self.store.abort_upload(upload)
        self.assertTrue(self.store.bucket_is_empty(BUCKET))

    def test_bucket_contents_are_apart(self) -> None:
        """Objects of a bucket whose name extends another's do not make the other non-empty."""
        self.store.create_bucket(Bucket(BUCKET + "a", 0.0))
        self.store.put_object(record("k", bucket=BUCKET + "a"))
        self.assertTrue(self.store.bucket_is_empty(BUCKET))
        self.assertEqual(self.store.list_objects(BUCKET, "", "", "", 10).objects, ())

    def test_writes_need_a_bucket(self) -> None:
        """Putting an object or starting an upload in a missing bucket raises NoSuchBucket."""
        self.assertRaises(errors.NoSuchBucket, self.store.put_object, record("k", bucket="nope"))
        self.assertRaises(
            errors.NoSuchBucket, self.store.create_upload, Upload("nope", "k", "u", 0.0)
        )
        self.assertIsNone(self.store.get_object("nope", "k"))

    # ------------------------------------------------------------------ objects
    def test_put_object_counts_references(self) -> None:
        """A new object adds one reference to each of its blobs and releases nothing."""
        rec = record("k", blob(1), blob(2))
        self.assertEqual(self.store.put_object(rec), [])
        self.assertEqual(self.store.get_object(BUCKET, "k"), rec)
        self.assertEqual(self.refcounts(blob(1), blob(2)), [1, 1])

    def test_reads_decode_each_stored_record_once(self) -> None:
        """Reading an object again does not decode its stored record again, while whatever is
        written since (a new version, a deletion) is what the next read returns."""
        decoded: list[bytes] = []
        decode_object = codec.decode_object

        def counted(raw: bytes) -> ObjectRecord:
            decoded.append(raw)
            return decode_object(raw)

        self.patch(codec, "decode_object", counted)
        first = record("k", blob(1))
        self.store.put_object(first)
        for _ in range(3):
            self.assertEqual(self.store.get_object(BUCKET, "k"), first)
        self.assertEqual(len(decoded), 1)
        second = attrs.evolve(record("k", blob(2)), etag="other")
        self.store.put_object(second)
        decoded.clear()  # (a replacing write decodes the record it replaces)
        self.assertEqual(self.store.get_object(BUCKET, "k"), second)
        self.assertEqual(len(decoded), 1)
        self.store.put_object(first)  # the first version's bytes again: remembered
        decoded.clear()
        self.assertEqual(self.store.get_object(BUCKET, "k"), first)
        self.assertEqual(decoded, [])
        self.store.delete_object(BUCKET, "k")
        self.assertIsNone(self.store.get_object(BUCKET, "k"))

    def test_replace_releases_old_blob(self) -> None:
        """Replacing an object releases the blobs only the old version referenced."""
        self.store.put_object(record("k", blob(1), blob(2)))
        self.assertEqual(self.store.put_object(record("k", blob(2), blob(3))), [digest(1)])
        self.assertEqual(self.refcounts(blob(1), blob(2), blob(3)), [0, 1, 1])

    def test_replace_with_same_blob(self) -> None:
        """Replacing an object with the same content keeps the count at one, releasing nothing."""
        self.store.put_object(record("k", blob(1)))
        self.assertEqual(self.store.put_object(record("k", blob(1))), [])
        self.assertEqual(self.refcounts(blob(1)), [1])

    def test_shared_blob_released_with_last_reference(self) -> None:
        """A blob shared by two objects is released only when the second one goes."""
        self.store.put_object(record("a", blob(1)))
        self.store.put_object(record("b", blob(1)))
        self.assertEqual(self.refcounts(blob(1)), [2])
        self.assertEqual(self.store.delete_object(BUCKET, "a"), (True, []))
        self.assertEqual(self.store.delete_object(BUCKET, "b"), (True, [digest(1)]))
        self.assertEqual(self.refcounts(blob(1)), [0])

    def test_repeated_blob_in_one_object(self) -> None:
        """An object listing the same blob twice holds two references and releases it once."""
        self.store.put_object(record("k", blob(1), blob(1)))
        self.assertEqual(self.refcounts(blob(1)), [2])
        self.assertEqual(self.store.delete_object(BUCKET, "k"), (True, [digest(1)]))

    def test_delete_missing_object(self) -> None:
        """Deleting an absent object reports it did not exist and releases nothing."""
        self.assertEqual(self.store.delete_object(BUCKET, "nothing"), (False, []))
        self.assertEqual(self.store.delete_object("nope", "nothing"), (False, []))

    def test_no_refcount_rows_left(self) -> None:
        """A count that drops to zero is deleted, not stored as zero."""
        self.store.put_object(record("k", blob(1)))
        self.store.delete_object(BUCKET, "k")
        self.assertEqual(list(self.kv.scan(codec.REFCOUNT)), [])

    # ------------------------------------------------------------------ listing
    def list_all(
        self, bucket: str, prefix: str, delimiter: str, start_after: str = ""
    ) -> list[Entry]:
        page = self.store.list_objects(bucket, prefix, delimiter, start_after, 100_000)
        self.assertFalse(page.is_truncated)
        return _merge(page.objects, page.common_prefixes)

    def test_listing_example(self) -> None:
        """A delimiter listing rolls keys into common prefixes and sorts by UTF-8 bytes."""
        for key in ["a/b", "a/c", "a", "a+", "b//c", "b/", "é", "z", "\U0001f600"]:
            self.store.put_object(record(key))
        self.assertEqual(
            self.list_all(BUCKET, "", "/"),
            [
                ("a", False),
                ("a+", False),
                ("a/", True),
                ("b/", True),
                ("z", False),
                ("é", False),
                ("\U0001f600", False),
            ],
        )
        self.assertEqual(self.list_all(BUCKET, "b/", "/"), [("b/", False), ("b//", True)])

    def test_marker_equal_to_prefix(self) -> None:
        """With prefix 'a/', a marker 'a/' (the key 'a/' itself) lists what follows it."""
        for key in ["a/", "a/b", "a/c/d", "b"]:
            self.store.put_object(record(key))
        first = self.store.list_objects(BUCKET, "a/", "/", "", 1)
        self.assertEqual((first.is_truncated, first.next_marker), (True, "a/"))
        rest = self.store.list_objects(BUCKET, "a/", "/", "a/", 10)
        self.assertEqual(
            _merge(rest.objects, rest.common_prefixes), [("a/b", False), ("a/c/", True)]
        )

    def test_marker_that_is_a_common_prefix(self) -> None:
        """A marker equal to a common prefix skips every key under it and does not repeat it."""
        for key in ["a/1", "a/2", "a/x/y", "ab", "b/1"]:
            self.store.put_object(record(key))
        self.assertEqual(self.list_all(BUCKET, "", "/", "a/"), [("ab", False), ("b/", True)])

    def test_records_come_back_whole(self) -> None:
        """Listed objects are the stored records, every field intact."""
        recs = [record("x", blob(1)), record("y", blob(2), blob(3))]
        for rec in recs:
            self.store.put_object(rec)
        self.assertEqual(self.store.list_objects(BUCKET, "", "", "", 10).objects, tuple(recs))

    @given(st.data())
    def test_pages_reproduce_model_listing(self, data: st.DataObject) -> None:
        """Pages walked via next_marker reproduce the model listing exactly, truncated correctly."""
        bucket = self.fresh_bucket()
        names, prefix, delimiter = data.draw(_listings())
        for name in names:
            self.store.put_object(record(name, bucket=bucket))
        max_keys = data.draw(st.integers(1, 6))
        expected = model_listing(names, prefix, delimiter)

        seen: list[Entry] = []
        marker = ""
        for _ in range(len(expected) + 1):
            page = self.store.list_objects(bucket, prefix, delimiter, marker, max_keys)
            summaries = self.store.list_summaries(bucket, prefix, delimiter, marker, max_keys)
            self.assertEqual(
                attrs.evolve(summaries, objects=tuple(map(summary_of, page.objects))), summaries
            )
            self.assertEqual(list(page.objects), sorted(page.objects, key=lambda r: utf8(r.key)))
            self.assertEqual(list(page.common_prefixes), sorted(page.common_prefixes, key=utf8))
            if not delimiter:  # the row listing pages alike and renders the same XML
                rows = self.store.list_rows(bucket, prefix, marker, max_keys)
                self.assertEqual(
                    ([k for k, _ in rows.entries], rows.is_truncated, rows.next_marker),
                    ([o.key for o in page.objects], page.is_truncated, page.next_marker),
                )
                self.assertEqual(
                    s3xml.contents_rows(rows.entries, "url", True),
                    s3xml.contents(summaries.objects, "url", True),
                )
            got = _merge(page.objects, page.common_prefixes)
            self.assertLessEqual(len(got), max_keys)
            seen.extend(got)
            self.assertEqual(page.is_truncated, len(seen) < len(expected), (seen, expected))
            if not page.is_truncated:
                self.assertIsNone(page.next_marker)
                break
            self.assertEqual(len(got), max_keys)
            self.assertEqual(page.next_marker, got[-1][0])
            assert page.next_marker is not None
            marker = page.next_marker
        self.assertEqual(seen, expected)

    @given(st.data())
    def test_start_after_matches_model(self, data: st.DataObject) -> None:
        """A listing after any marker (key, common prefix, cut, text) matches the model."""
        bucket = self.fresh_bucket()
        names, prefix, delimiter = data.draw(_listings())
        for name in names:
            self.store.put_object(record(name, bucket=bucket))
        commons = [e[0] for e in model_listing(names, prefix, delimiter) if e[1]]
        marker = data.draw(
            st.sampled_from(names)
            | st.just(prefix)
            | _prefixes(names, delimiter)
            | _listing_keys
            | (st.sampled_from(commons) if commons else st.just(""))
        )
        self.assertEqual(
            self.list_all(bucket, prefix, delimiter, marker),
            model_listing(names, prefix, delimiter, marker),
        )

    # -------------------------------------------------------- uploads and parts
    def test_upload_round_trip(self) -> None:
        """A created upload reads back, appears in all_uploads, and is scoped to its key."""
        upload = Upload(
            BUCKET, "k", "u1", 5.0, "text/plain", (("cache-control", "x"),), (("a", "b"),)
        )
        self.store.create_upload(upload)
        self.assertEqual(self.store.get_upload(BUCKET, "k", "u1"), upload)
        self.assertIsNone(self.store.get_upload(BUCKET, "other", "u1"))
        self.assertEqual(list(self.store.all_uploads()), [upload])

    def test_put_part_needs_upload(self) -> None:
        """A part for an unknown upload raises NoSuchUpload and records nothing."""
        self.assertRaises(
            errors.NoSuchUpload, self.store.put_part, BUCKET, "k", part("u1", 1, blob(1))
        )
        self.assertEqual(self.refcounts(blob(1)), [0])
        self.assertEqual(self.store.list_parts("u1", 0, 10), ([], False))

    def test_replace_part_releases_old_blob(self) -> None:
        """Uploading a part number again releases the blob of the part it replaces."""
        self.store.create_upload(Upload(BUCKET, "k", "u1", 1.0))
        self.assertEqual(self.store.put_part(BUCKET, "k", part("u1", 1, blob(1))), [])
        self.assertEqual(self.store.put_part(BUCKET, "k", part("u1", 1, blob(2))), [digest(1)])
        self.assertEqual(self.store.put_part(BUCKET, "k", part("u1", 1, blob(2))), [])
        self.assertEqual(self.refcounts(blob(1), blob(2)), [0, 1])
        self.assertEqual(self.store.list_parts("u1", 0, 10), ([part("u1", 1, blob(2))], False))

    def test_list_parts_pages(self) -> None:
        """list_parts returns parts above `after` in numeric order, max_parts at a time."""
        self.store.create_upload(Upload(BUCKET, "k", "u1", 1.0))
        self.store.create_upload(Upload(BUCKET, "k", "u2", 1.0))
        numbers = [10_000, 1, 256, 2, 10, 9]
        for n in numbers:
            self.store.put_part(BUCKET, "k", part("u1", n, blob(n)))
        self.store.put_part(BUCKET, "k", part("u2", 3, blob(3)))
        parts, more = self.store.list_parts("u1", 0, 4)
        self.assertEqual(([p.part_number for p in parts], more), ([1, 2, 9, 10], True))
        parts, more = self.store.list_parts("u1", 10, 4)
        self.assertEqual(([p.part_number for p in parts], more), ([256, 10_000], False))
        parts, more = self.store.list_parts("u1", 9, 2)
        self.assertEqual(([p.part_number for p in parts], more), ([10, 256], True))

    def test_complete_moves_references(self) -> None:
        """Completion keeps used part refs, releases unused and replaced blobs, drops the upload."""
        self.store.put_object(record("k", blob("old")))
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        for n in (1, 2, 3):
            self.store.put_part(BUCKET, "k", part("u1", n, blob(n)))
        final = record("k", blob(1), blob(3))
        released = self.store.complete_upload(upload, final)
        self.assertEqual(sorted(released), sorted([digest(2), digest("old")]))
        self.assertEqual(self.store.get_object(BUCKET, "k"), final)
        self.assertEqual(self.refcounts(blob(1), blob(2), blob(3)), [1, 0, 1])
        self.assertIsNone(self.store.get_upload(BUCKET, "k", "u1"))
        self.assertEqual(self.store.list_parts("u1", 0, 10), ([], False))
        self.assertEqual(list(self.kv.scan(codec.PART)), [])

    def test_complete_with_shared_blob(self) -> None:
        """A part blob another object also holds keeps both references through completion."""
        self.store.put_object(record("other", blob(1)))
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        self.store.put_part(BUCKET, "k", part("u1", 1, blob(1)))
        self.store.put_part(BUCKET, "k", part("u1", 2, blob(1)))
        self.assertEqual(self.refcounts(blob(1)), [3])
        self.assertEqual(self.store.complete_upload(upload, record("k", blob(1))), [])
        self.assertEqual(self.refcounts(blob(1)), [2])

    def test_complete_refuses_foreign_blob(self) -> None:
        """Completing with a blob that is no longer a part raises InvalidPart, changing nothing."""
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        self.store.put_part(BUCKET, "k", part("u1", 1, blob(1)))
        self.store.put_part(BUCKET, "k", part("u1", 1, blob(2)))  # replaces blob 1
        self.assertRaises(
            errors.InvalidPart, self.store.complete_upload, upload, record("k", blob(1))
        )
        self.assertIsNone(self.store.get_object(BUCKET, "k"))
        self.assertEqual(self.refcounts(blob(1), blob(2)), [0, 1])
        self.assertIsNotNone(self.store.get_upload(BUCKET, "k", "u1"))

    def test_abort_releases_parts(self) -> None:
        """Aborting releases every part blob no object holds, and removes upload and parts."""
        self.store.put_object(record("other", blob(2)))
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        for n in (1, 2):
            self.store.put_part(BUCKET, "k", part("u1", n, blob(n)))
        self.assertEqual(self.store.abort_upload(upload), [digest(1)])
        self.assertEqual(self.refcounts(blob(1), blob(2)), [0, 1])
        self.assertIsNone(self.store.get_upload(BUCKET, "k", "u1"))
        self.assertEqual(list(self.store.all_uploads()), [])

    def test_no_such_upload_after_completion_or_abort(self) -> None:
        """Once completed or aborted, an upload refuses parts, completion and abort."""
        for finish in ("complete", "abort"):
            upload = Upload(BUCKET, "k", f"u-{finish}", 1.0)
            self.store.create_upload(upload)
            self.store.put_part(BUCKET, "k", part(upload.upload_id, 1, blob(1)))
            if finish == "complete":
                self.store.complete_upload(upload, record("k", blob(1)))
            else:
                self.store.abort_upload(upload)
            self.assertRaises(
                errors.NoSuchUpload,
                self.store.put_part,
                BUCKET,
                "k",
                part(upload.upload_id, 2, blob(2)),
            )
            self.assertRaises(
                errors.NoSuchUpload, self.store.complete_upload, upload, record("k", blob(2))
            )
            self.assertRaises(errors.NoSuchUpload, self.store.abort_upload, upload)
        self.assertEqual(self.refcounts(blob(1), blob(2)), [1, 0])

    @given(st.data())
    def test_upload_pages_reproduce_model(self, data: st.DataObject) -> None:
        """Upload pages walked via the next markers reproduce the model listing exactly."""
        bucket = self.fresh_bucket()
        names, prefix, delimiter = data.draw(_listings(nul=False, max_size=6))
        upload_keys = [
            name for name in names for _ in range(data.draw(st.integers(1, 3), label="uploads"))
        ]
        ids = data.draw(
            st.lists(
                st.text("0123456789abcdef", min_size=1, max_size=4),
                min_size=len(upload_keys),
                max_size=len(upload_keys),
                unique=True,
            )
        )
        uploads = [Upload(bucket, k, i, 1.0) for k, i in zip(upload_keys, ids, strict=True)]
        for upload in uploads:
            self.store.create_upload(upload)
        max_uploads = data.draw(st.integers(1, 5))
        expected = _model_uploads(uploads, prefix, delimiter)

        seen: list[tuple[str, str | None]] = []
        key_marker, id_marker = "", ""
        for _ in range(len(expected) + 1):
            page = self.store.list_uploads(
                bucket, prefix, delimiter, key_marker, id_marker, max_uploads
            )
            got = sorted(
                [(u.key, u.upload_id) for u in page.uploads]
                + [(p, None) for p in page.common_prefixes],
                key=lambda e: (utf8(e[0]), e[1] or ""),
            )
            self.assertLessEqual(len(got), max_uploads)
            seen.extend(got)
            self.assertEqual(page.is_truncated, len(seen) < len(expected), (seen, expected))
            if not page.is_truncated:
                break
            self.assertEqual((page.next_key_marker, page.next_upload_id_marker), got[-1])
            assert page.next_key_marker is not None
            key_marker, id_marker = page.next_key_marker, page.next_upload_id_marker or ""
        self.assertEqual(seen, expected)

    def test_upload_listing_with_nul_in_prefix_or_marker(self) -> None:
        """NUL separates a key from its upload ids in the encoding, yet no key holds one: a prefix
        with NUL matches no upload, and a key marker with NUL sorts after the text before it."""
        for k, u in [("a", "u1"), ("a\x01", "u2"), ("b", "u3")]:
            self.store.create_upload(Upload(BUCKET, k, u, 1.0))
        page = self.store.list_uploads(BUCKET, "a\x00", "", "", "", 10)
        self.assertEqual((page.uploads, page.common_prefixes, page.is_truncated), ((), (), False))
        page = self.store.list_uploads(BUCKET, "", "", "a\x00", "u0", 10)
        self.assertEqual([u.upload_id for u in page.uploads], ["u2", "u3"])
        page = self.store.list_uploads(BUCKET, "", "", "\x00", "", 10)
        self.assertEqual([u.upload_id for u in page.uploads], ["u1", "u2", "u3"])

    def test_upload_listing_resumes_inside_a_key(self) -> None:
        """A page boundary between two uploads of one key loses neither."""
        for k, u in [("k", "u1"), ("k", "u2"), ("k", "u3"), ("l", "u4")]:
            self.store.create_upload(Upload(BUCKET, k, u, 1.0))
        page = self.store.list_uploads(BUCKET, "", "", "k", "u1", 2)
        self.assertEqual([u.upload_id for u in page.uploads], ["u2", "u3"])
        self.assertEqual((page.is_truncated, page.next_upload_id_marker), (True, "u3"))
        page = self.store.list_uploads(BUCKET, "", "", "k", "", 10)
        self.assertEqual([u.upload_id for u in page.uploads], ["u4"])

    # -------------------------------------------------------------- repair
    def test_repair_refcounts(self) -> None:
        """repair_refcounts rewrites wrong, missing and stray counts and reports how many."""
        self.store.put_object(record("a", blob(1), blob(2)))
        self.store.put_object(record("b", blob(2)))
        upload = Upload(BUCKET, "k", "u1", 1.0)
        self.store.create_upload(upload)
        self.store.put_part(BUCKET, "k", part("u1", 1, blob(3)))
        self.kv.write(
            {codec.refcount_key(digest(2)): b"7", codec.refcount_key(digest("stray")): b"1"},
            {codec.refcount_key(digest(3))},
        )
        fixed, referenced = self.store.repair_refcounts()
        self.assertEqual(fixed, 3)
        self.assertEqual(referenced, {digest(1), digest(2), digest(3)})
        self.assertEqual(self.refcounts(blob(1), blob(2), blob(3), blob("stray")), [1, 2, 1, 0])
        self.assertEqual(self.store.repair_refcounts(), (0, referenced))
        # the repaired counts behave: releasing the last references releases the blobs
        self.assertEqual(self.store.delete_object(BUCKET, "a"), (True, [digest(1)]))
        self.assertEqual(self.store.abort_upload(upload), [digest(3)])


def _merge(objects: Iterable[ObjectRecord], prefixes: Iterable[str]) -> list[Entry]:
    """One page's objects and common prefixes as a single list in S3 order."""
    entries = [(o.key, False) for o in objects] + [(p, True) for p in prefixes]
    return sorted(entries, key=lambda e: utf8(e[0]))


def _model_uploads(
    uploads: list[Upload], prefix: str, delimiter: str
) -> list[tuple[str, str | None]]:
    entries: list[tuple[str, str | None]] = []
    seen: set[str] = set()
    for upload in sorted(uploads, key=lambda u: (utf8(u.key), u.upload_id)):
        if not upload.key.startswith(prefix):
            continue
        cut = upload.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut < 0:
            entries.append((upload.key, upload.upload_id))
            continue
        common = upload.key[: cut + len(delimiter)]
        if common not in seen:
            seen.add(common)
            entries.append((common, None))
    return entries


class MemoryKVMetadataStoreTests(MetadataStoreTestsMixin, SynchronousTestCase):
    def make_kv(self) -> OrderedKV:
        return MemoryKV()


class MixedRowsTests(SynchronousTestCase):
    def test_records_with_and_without_rows_list_alike(self) -> None:
        """A bucket holding records written without listing rows (an older version) and with
        them lists as one: the same keys in order and the same XML as from summaries."""
        kv = MemoryKV()
        old, new = KVMetadataStore(kv), KVMetadataStore(kv, listing_row=s3xml.listing_row)
        self.assertTrue(old.create_bucket(Bucket(BUCKET, 1.0)))
        for i in range(10):
            (old if i % 3 else new).put_object(record(f"k{i}", blob(i + 1)))
        rows = new.list_rows(BUCKET, "", "", 1000)
        self.assertEqual(
            [isinstance(row, str) for _, row in rows.entries], [i % 3 == 0 for i in range(10)]
        )
        self.assertEqual(
            s3xml.contents_rows(rows.entries, None, False),
            s3xml.contents(new.list_summaries(BUCKET, "", "", "", 1000).objects, None, False),
        )


class MemoryKVRowsMetadataStoreTests(MetadataStoreTestsMixin, SynchronousTestCase):
    """The same with object records stored with their listing rows, as the daemon stores them
    (``artifactd.service.metadata_store``)."""

    listing_row = staticmethod(s3xml.listing_row)

    def make_kv(self) -> OrderedKV:
        return MemoryKV()


class LevelDBMetadataStoreTests(MetadataStoreTestsMixin, SynchronousTestCase):
    def make_kv(self) -> OrderedKV:
        self.path = self.mktemp()
        return LevelDBKV(self.path)

    def test_survives_reopen(self) -> None:
        """Records and counts written are there after closing and reopening the database."""
        self.store.put_object(record("k", blob(1)))
        self.store.close()
        self.store = KVMetadataStore(LevelDBKV(self.path))
        self.addCleanup(self.store.close)
        self.assertEqual(self.store.get_object(BUCKET, "k"), record("k", blob(1)))
        self.assertEqual(self.refcounts(blob(1)), [1])
