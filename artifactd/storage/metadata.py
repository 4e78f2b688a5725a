"""The metadata store: buckets, objects, uploads, parts and blob reference counts over an ordered
key-value store (LevelDB in production, :class:`~artifactd.storage.kv.MemoryKV` in tests).

Reads may run on the reactor thread.  Every mutation is one atomic, synced batch (or part of one:
see :meth:`KVMetadataStore.group`); mutations are serialised by an internal lock so
read-modify-write of reference counts is consistent.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Protocol, TypeVar

from attrs import evolve
from zope.interface import implementer

from artifactd import errors
from artifactd.interfaces import IMetadataStore
from artifactd.lru import LRU
from artifactd.preconditions import WriteCondition, check_write
from artifactd.records import (
    Bucket,
    Listed,
    ListPage,
    ObjectRecord,
    ObjectSummary,
    Part,
    RowPage,
    Upload,
    UploadPage,
)
from artifactd.storage import keys
from artifactd.storage.kv import OrderedKV, Overlay, Reader

E = TypeVar("E")
_ROW_TAG = keys.ROW[0]
DECODED_MAX = 8 * 1024 * 1024
"""The memory kept for decoded object records, estimated as three times their stored bytes
(a record of 540 bytes decodes to about 840): some 5,000 records of that size.  Decoding a
record was about 6% of a small GET's cost."""


def _weight_of_record(raw: bytes, record: ObjectRecord) -> int:
    return 3 * len(raw)


def _row_entry(key: str, value: bytes) -> tuple[str, str | ObjectSummary]:
    """A listing entry: the record's stored row, or the summary of a record stored without
    one (by an older version, or a store without ``listing_row``)."""
    if value[0] == _ROW_TAG:
        return key, value[1 : value.index(b"\n")].decode()
    return key, keys.decode_summary(key, value)


_AFTER_ALL = b"\xff"  # never occurs in UTF-8: seeking to prefix + 0xff skips all keys under prefix
_PAST_UPLOADS = keys.SEP + _AFTER_ALL  # after every upload id of one key


class _Writable(Reader, Protocol):
    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None: ...


def _bucket_is_empty(reader: Reader, name: str) -> bool:
    for prefix in (keys.object_prefix(name), keys.upload_prefix(name)):
        for _ in reader.scan(prefix):
            return False
    return True


@implementer(IMetadataStore)
class KVMetadataStore:
    def __init__(
        self, kv: OrderedKV, listing_row: Callable[[ObjectRecord], str] | None = None
    ) -> None:
        self._kv = kv
        # Each object record is stored with its entry in a listing, rendered by ``listing_row``
        # when it is written, so a listing page is a scan and a join (:meth:`list_rows`).
        self._listing_row = listing_row
        # Mutations read and write through ``_w``: the store itself, or during :meth:`group`
        # an overlay whose changes reach the store in one synced batch.  Other reads see
        # ``_kv``, so they never see a change before it is durable.
        self._w: _Writable = kv
        self._lock = threading.RLock()
        # Object records decoded (on the reactor, for every GET and HEAD), by their stored
        # bytes: the same bytes always decode to the same record, so nothing here is stale.
        self._decoded: LRU[bytes, ObjectRecord] = LRU(DECODED_MAX, _weight_of_record)
        # Bucket records, read on every request, change only when a bucket is deleted: existing
        # ones are remembered.  A deletion clears them once it is durable; a reader that raced
        # it does not keep what it read (see get_bucket).
        self._buckets: dict[str, Bucket] = {}
        self._buckets_generation = 0
        self._bucket_deleted = False

    @contextmanager
    def group(self) -> Iterator[None]:
        """Stage every mutation made inside the block (by this thread; the store's lock is
        held throughout) and write them all in ONE synced batch when the block exits without an
        exception.  Mutations inside the block see each other's changes; readers outside it see
        none of them until the batch is written.  An exception discards every staged change."""
        with self._lock:
            overlay = Overlay(self._kv)
            self._w = overlay
            try:
                yield
            finally:
                self._w = self._kv
            overlay.flush()
            if self._bucket_deleted:
                self._forget_buckets()

    def _forget_buckets(self) -> None:
        self._bucket_deleted = False
        self._buckets_generation += 1
        self._buckets.clear()

    # ------------------------------------------------------------------ reads
    def get_bucket(self, name: str) -> Bucket | None:
        bucket = self._buckets.get(name)
        if bucket is not None:
            return bucket
        generation = self._buckets_generation
        raw = self._kv.get(keys.bucket_key(name))
        if raw is None:
            return None
        bucket = keys.decode_bucket(raw)
        self._buckets[name] = bucket
        if generation != self._buckets_generation:  # a deletion became durable meanwhile
            self._buckets.pop(name, None)
        return bucket

    def list_buckets(self) -> list[Bucket]:
        return [keys.decode_bucket(v) for _, v in self._kv.scan(keys.BUCKET)]

    def bucket_is_empty(self, name: str) -> bool:
        return _bucket_is_empty(self._kv, name)

    def get_object(self, bucket: str, key: str) -> ObjectRecord | None:
        raw = self._kv.get(keys.object_key(bucket, key))
        if raw is None:
            return None
        record = self._decoded.get(raw)
        if record is None:
            record = keys.decode_object(raw)
            self._decoded.add(raw, record)
        return record

    def list_objects(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage[ObjectRecord]:
        return self._list(
            bucket, prefix, delimiter, start_after, max_keys, lambda _, raw: keys.decode_object(raw)
        )

    def list_summaries(
        self, bucket: str, prefix: str, delimiter: str, start_after: str, max_keys: int
    ) -> ListPage[ObjectSummary]:
        return self._list(bucket, prefix, delimiter, start_after, max_keys, keys.decode_summary)

    def _list(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        start_after: str,
        max_keys: int,
        decode: Callable[[str, bytes], Listed],
    ) -> ListPage[Listed]:
        base = keys.object_prefix(bucket)
        if max_keys <= 0:
            return ListPage((), (), False, None)
        objects: list[Listed] = []
        prefixes: list[str] = []
        if not delimiter:  # nothing rolls up: a plain scan, without _rolled_up's layers
            return self._list_flat(bucket, prefix, start_after, max_keys, decode)
        with self._kv.snapshot() as reader:
            entries = _rolled_up(
                reader, base, prefix, delimiter, start_after, lambda raw: raw[len(base) :]
            )
            last: str | None = None
            for name, value in entries:
                if len(objects) + len(prefixes) == max_keys:
                    return ListPage(tuple(objects), tuple(prefixes), True, last)
                if value is None:
                    prefixes.append(name)
                else:
                    objects.append(decode(name, value))
                last = name
        return ListPage(tuple(objects), tuple(prefixes), False, None)

    def _list_flat(
        self,
        bucket: str,
        prefix: str,
        start_after: str,
        max_keys: int,
        decode: Callable[[str, bytes], Listed],
    ) -> ListPage[Listed]:
        """:meth:`_list` without a delimiter (the common listing)."""
        objects, truncated = self._scan_flat(bucket, prefix, start_after, max_keys, decode)
        return ListPage(tuple(objects), (), truncated, objects[-1].key if truncated else None)

    def list_rows(self, bucket: str, prefix: str, start_after: str, max_keys: int) -> RowPage:
        if max_keys <= 0:
            return RowPage((), False, None)
        entries, truncated = self._scan_flat(bucket, prefix, start_after, max_keys, _row_entry)
        return RowPage(tuple(entries), truncated, entries[-1][0] if truncated else None)

    def _scan_flat(
        self,
        bucket: str,
        prefix: str,
        start_after: str,
        max_keys: int,
        decode: Callable[[str, bytes], E],
    ) -> tuple[list[E], bool]:
        """``decode(key, value)`` of the first ``max_keys`` objects after ``start_after`` under
        ``prefix``, in order, and whether more follow."""
        base = keys.object_prefix(bucket)
        scan_prefix = base + prefix.encode("utf-8", "surrogatepass")
        start = (
            base + start_after.encode("utf-8", "surrogatepass") + b"\x00" if start_after else b""
        )
        skip = len(base)
        entries: list[E] = []
        append = entries.append
        with self._kv.snapshot() as reader:
            for raw, value in reader.scan(scan_prefix, start):
                if len(entries) == max_keys:
                    return entries, True
                append(decode(raw[skip:].decode("utf-8", "surrogatepass"), value))
        return entries, False

    def _encode(self, record: ObjectRecord) -> bytes:
        row = self._listing_row(record) if self._listing_row is not None else None
        return keys.encode_object(record, row)

    def get_upload(self, bucket: str, key: str, upload_id: str) -> Upload | None:
        raw = self._kv.get(keys.upload_key(bucket, key, upload_id))
        return keys.decode_upload(raw) if raw is not None else None

    def list_parts(self, upload_id: str, after: int, max_parts: int) -> tuple[list[Part], bool]:
        parts: list[Part] = []
        start = keys.part_key(upload_id, after + 1) if after >= 0 else b""
        for _, value in self._kv.scan(keys.part_prefix(upload_id), start):
            if len(parts) == max_parts:
                return parts, True
            parts.append(keys.decode_part(value))
        return parts, False

    def list_uploads(
        self,
        bucket: str,
        prefix: str,
        delimiter: str,
        key_marker: str,
        upload_id_marker: str,
        max_uploads: int,
    ) -> UploadPage:
        base = keys.upload_prefix(bucket)
        uploads: list[Upload] = []
        prefixes: list[str] = []
        if "\x00" in prefix:  # no key holds NUL, and NUL separates a key from its upload ids
            return UploadPage((), (), False, None, None)
        if "\x00" in key_marker:  # every key after it is after the text before the NUL
            key_marker, upload_id_marker = key_marker[: key_marker.index("\x00")], ""
        start_after = key_marker
        skip_key_equal = False
        if key_marker and upload_id_marker:
            # resume inside key_marker's uploads, after upload_id_marker
            start_after = key_marker
            skip_key_equal = True
        with self._kv.snapshot() as reader:

            def name_of(raw: bytes) -> bytes:
                return raw[len(base) :].rsplit(keys.SEP, 1)[0]

            entries: Iterable[tuple[str, bytes | None]]
            if skip_key_equal:
                same = (
                    (key_marker, v)
                    for k, v in reader.scan(
                        base + key_marker.encode("utf-8", "surrogatepass") + keys.SEP,
                        keys.upload_key(bucket, key_marker, upload_id_marker) + b"\x00",
                    )
                    if k.startswith(base + key_marker.encode() + keys.SEP)
                )
                entries = _chain(
                    same,
                    _rolled_up(
                        reader, base, prefix, delimiter, start_after, name_of, _PAST_UPLOADS
                    ),
                )
            else:
                entries = _rolled_up(
                    reader, base, prefix, delimiter, start_after, name_of, _PAST_UPLOADS
                )
            last_key: str | None = None
            last_id: str | None = None
            for name, value in entries:
                if len(uploads) + len(prefixes) == max_uploads:
                    return UploadPage(tuple(uploads), tuple(prefixes), True, last_key, last_id)
                if value is None:
                    prefixes.append(name)
                    last_key, last_id = name, None
                else:
                    upload = keys.decode_upload(value)
                    uploads.append(upload)
                    last_key, last_id = upload.key, upload.upload_id
        return UploadPage(tuple(uploads), tuple(prefixes), False, None, None)

    def all_uploads(self) -> Iterator[Upload]:
        for _, value in self._kv.scan(keys.UPLOAD):
            yield keys.decode_upload(value)

    def refcount(self, digest: str) -> int:
        # through the writer: inside a group the engine must see the counts staged so far
        return keys.decode_count(self._w.get(keys.refcount_key(digest)))

    # -------------------------------------------------------------- mutations
    def create_bucket(self, bucket: Bucket) -> bool:
        with self._lock:
            k = keys.bucket_key(bucket.name)
            if self._w.get(k) is not None:
                return False
            self._w.write({k: keys.encode_bucket(bucket)}, set())
            return True

    def delete_bucket(self, name: str) -> None:
        with self._lock:
            self._require_bucket(name)
            if not _bucket_is_empty(self._w, name):
                raise errors.BucketNotEmpty(resource=name, extra={"BucketName": name})
            self._w.write({}, {keys.bucket_key(name)})
            self._bucket_deleted = True
            if self._w is self._kv:  # durable now; in a group, once the group's batch is
                self._forget_buckets()

    def put_object(
        self, record: ObjectRecord, condition: WriteCondition | None = None
    ) -> list[str]:
        with self._lock:
            self._require_bucket(record.bucket)
            k = keys.object_key(record.bucket, record.key)
            delta: Counter[str] = Counter(b.digest for b in record.blobs)
            old = self._w.get(k)
            current = keys.decode_object(old) if old is not None else None
            check_write(condition, current.etag if current else None, at_commit=True)
            if current is not None:
                delta.subtract(b.digest for b in current.blobs)
            puts = {k: self._encode(record)}
            return self._commit(puts, set(), delta)

    def delete_object(self, bucket: str, key: str) -> tuple[bool, list[str]]:
        with self._lock:
            k = keys.object_key(bucket, key)
            old = self._w.get(k)
            if old is None:
                return False, []
            delta: Counter[str] = Counter()
            delta.subtract(b.digest for b in keys.decode_object(old).blobs)
            return True, self._commit({}, {k}, delta)

    def set_object_tags(
        self, bucket: str, key: str, tags: tuple[tuple[str, str], ...]
    ) -> ObjectRecord:
        with self._lock:
            self._require_bucket(bucket)
            k = keys.object_key(bucket, key)
            old = self._w.get(k)
            if old is None:
                raise errors.NoSuchKey(resource=f"/{bucket}/{key}", extra={"Key": key})
            record = evolve(keys.decode_object(old), tags=tags)
            self._w.write({k: self._encode(record)}, set())
            return record

    def create_upload(self, upload: Upload) -> None:
        with self._lock:
            self._require_bucket(upload.bucket)
            k = keys.upload_key(upload.bucket, upload.key, upload.upload_id)
            self._w.write({k: keys.encode_upload(upload)}, set())

    def put_part(self, bucket: str, key: str, part: Part) -> list[str]:
        with self._lock:
            if self._w.get(keys.upload_key(bucket, key, part.upload_id)) is None:
                raise errors.NoSuchUpload(extra={"UploadId": part.upload_id})
            k = keys.part_key(part.upload_id, part.part_number)
            delta: Counter[str] = Counter({part.blob.digest: 1})
            old = self._w.get(k)
            if old is not None:
                delta[keys.decode_part(old).blob.digest] -= 1
            return self._commit({k: keys.encode_part(part)}, set(), delta)

    def complete_upload(
        self, upload: Upload, record: ObjectRecord, condition: WriteCondition | None = None
    ) -> list[str]:
        with self._lock:
            self._require_bucket(record.bucket)
            uk = keys.upload_key(upload.bucket, upload.key, upload.upload_id)
            if self._w.get(uk) is None:
                raise errors.NoSuchUpload(extra={"UploadId": upload.upload_id})
            ok = keys.object_key(record.bucket, record.key)
            old = self._w.get(ok)
            current = keys.decode_object(old) if old is not None else None
            check_write(condition, current.etag if current else None, at_commit=True)
            deletes, delta = self._upload_removal(upload)
            if any(delta[b.digest] >= 0 for b in record.blobs):
                # a blob that is no longer one of the upload's parts (replaced meanwhile)
                raise errors.InvalidPart(extra={"UploadId": upload.upload_id})
            deletes.add(uk)
            delta.update(b.digest for b in record.blobs)
            if current is not None:
                delta.subtract(b.digest for b in current.blobs)
            return self._commit({ok: self._encode(record)}, deletes, delta)

    def abort_upload(self, upload: Upload) -> list[str]:
        with self._lock:
            uk = keys.upload_key(upload.bucket, upload.key, upload.upload_id)
            if self._w.get(uk) is None:
                raise errors.NoSuchUpload(extra={"UploadId": upload.upload_id})
            deletes, delta = self._upload_removal(upload)
            deletes.add(uk)
            return self._commit({}, deletes, delta)

    def repair_refcounts(self) -> tuple[int, set[str]]:
        with self._lock:
            counts: Counter[str] = Counter()
            for _, value in self._w.scan(keys.OBJECT):
                counts.update(b.digest for b in keys.decode_object(value).blobs)
            for _, value in self._w.scan(keys.PART):
                counts[keys.decode_part(value).blob.digest] += 1
            puts: dict[bytes, bytes] = {}
            deletes: set[bytes] = set()
            stored: set[str] = set()
            for k, value in self._w.scan(keys.REFCOUNT):
                digest = k[len(keys.REFCOUNT) :].decode()
                stored.add(digest)
                if counts.get(digest, 0) == 0:
                    deletes.add(k)
                elif keys.decode_count(value) != counts[digest]:
                    puts[k] = keys.encode_count(counts[digest])
            for digest, n in counts.items():
                if digest not in stored:
                    puts[keys.refcount_key(digest)] = keys.encode_count(n)
            if puts or deletes:
                self._w.write(puts, deletes)
            return len(puts) + len(deletes), set(counts)

    # ---------------------------------------------------------- small blobs
    def get_small_blob(self, digest: str) -> bytes | None:
        return self._kv.get(keys.small_blob_key(digest))

    def has_small_blob(self, digest: str) -> bool:
        # through the writer: inside a group the engine must see the blobs staged so far
        return self._w.get(keys.small_blob_key(digest)) is not None

    def put_small_blob(self, digest: str, data: bytes) -> None:
        with self._lock:
            self._w.write({keys.small_blob_key(digest): data}, set())

    def delete_small_blobs(self, digests: Iterable[str]) -> None:
        with self._lock:  # only those that exist: a file blob's deletion writes nothing here
            doomed = {k for k in map(keys.small_blob_key, digests) if self._w.get(k) is not None}
            if doomed:
                self._w.write({}, doomed)

    def small_blob_digests(self) -> Iterator[str]:
        for k, _ in self._kv.scan(keys.SMALL_BLOB):
            yield k[len(keys.SMALL_BLOB) :].decode()

    def close(self) -> None:
        self._kv.close()

    # ---------------------------------------------------------------- helpers
    def _require_bucket(self, name: str) -> None:
        if self._w.get(keys.bucket_key(name)) is None:
            raise errors.NoSuchBucket(resource=name, extra={"BucketName": name})

    def _upload_removal(self, upload: Upload) -> tuple[set[bytes], Counter[str]]:
        deletes: set[bytes] = set()
        delta: Counter[str] = Counter()
        for k, value in self._w.scan(keys.part_prefix(upload.upload_id)):
            deletes.add(k)
            delta[keys.decode_part(value).blob.digest] -= 1
        return deletes, delta

    def _commit(
        self, puts: dict[bytes, bytes], deletes: set[bytes], delta: Counter[str]
    ) -> list[str]:
        """Apply the record changes plus the reference-count ``delta`` in one batch; returns the
        digests whose count reached zero."""
        released: list[str] = []
        for digest, change in delta.items():
            if change == 0:
                continue
            rk = keys.refcount_key(digest)
            count = keys.decode_count(self._w.get(rk)) + change
            if count <= 0:
                deletes.add(rk)
                released.append(digest)
            else:
                puts[rk] = keys.encode_count(count)
        self._w.write(puts, deletes)
        return released


def _chain(
    *iterables: Iterable[tuple[str, bytes | None]],
) -> Iterator[tuple[str, bytes | None]]:
    for it in iterables:
        yield from it


def _rolled_up(
    reader: Reader,
    base: bytes,
    prefix: str,
    delimiter: str,
    start_after: str,
    name_of: Callable[[bytes], bytes],
    past_marker: bytes = b"\x00",
) -> Iterator[tuple[str, bytes | None]]:
    """Entries under ``base + prefix`` after ``start_after``: ``(key, value)`` for keys and
    ``(common_prefix, None)`` for each group of keys sharing a delimited prefix, once, in order."""
    scan_prefix = base + prefix.encode("utf-8", "surrogatepass")
    marker = start_after.encode("utf-8", "surrogatepass")
    if (
        delimiter
        and start_after.startswith(prefix)
        and start_after.endswith(delimiter)
        and start_after.find(delimiter, len(prefix)) == len(start_after) - len(delimiter)
    ):
        # the marker is a common prefix returned earlier: skip everything under it
        start = base + marker + _AFTER_ALL
    elif start_after:
        start = base + marker + past_marker
    else:
        start = scan_prefix
    delim = delimiter.encode("utf-8", "surrogatepass")
    plen = len(prefix.encode("utf-8", "surrogatepass"))
    while True:
        advanced = False
        for raw, value in reader.scan(scan_prefix, start):
            name: bytes = name_of(raw)
            if delim:
                cut = name.find(delim, plen)
                if cut >= 0:
                    common = name[: cut + len(delim)]
                    yield common.decode("utf-8", "surrogatepass"), None
                    start = base + common + _AFTER_ALL
                    advanced = True
                    break
            yield name.decode("utf-8", "surrogatepass"), value
        if not advanced:
            return
