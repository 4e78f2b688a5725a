"""The ordered key-value layer under the metadata store: LevelDB in production, a sorted dict in
tests.  Only this module and :mod:`artifactd.storage.memory` know about plyvel.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol


class Reader(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Pairs whose key starts with ``prefix`` and is >= ``start``, in byte order."""
        ...


class OrderedKV(Reader, Protocol):
    def snapshot(self) -> AbstractContextManager[Reader]:
        """A consistent read view, released on exit."""
        ...

    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
        """Apply all changes atomically and durably (synced) before returning."""
        ...

    def close(self) -> None: ...


def _upper_bound(prefix: bytes) -> bytes | None:
    """The smallest key greater than every key that starts with ``prefix``."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return None
    return stripped[:-1] + bytes([stripped[-1] + 1])


class LevelDBKV:
    """plyvel behind :class:`OrderedKV`.  Thread-safe; ``close`` only after all users finished.

    ``sync=False`` makes :meth:`write` atomic but not durable (no sync of LevelDB's log): only for
    offline tools that fill a database in bulk while no daemon runs (``bench/populate.py``); the
    daemon always uses the default.
    """

    def __init__(self, path: str, *, sync: bool = True) -> None:
        import plyvel

        self._sync = sync
        self._db: Any = plyvel.DB(
            path,
            create_if_missing=True,
            paranoid_checks=True,
            lru_cache_size=32 * 1024 * 1024,
            bloom_filter_bits=10,
        )

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._db, prefix, start)

    @contextmanager
    def snapshot(self) -> Iterator[Reader]:
        snap = self._db.snapshot()
        try:
            yield _LevelDBReader(snap)
        finally:
            snap.close()

    def compact(self) -> None:
        """Compact the whole database (blocks; offline tools only: a freshly bulk-loaded
        database is otherwise compacted in the background for a while after it opens)."""
        self._db.compact_range()

    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
        with self._db.write_batch(sync=self._sync) as batch:
            for key in deletes:
                batch.delete(key)
            for key, value in puts.items():
                batch.put(key, value)

    def close(self) -> None:
        self._db.close()


class _LevelDBReader:
    def __init__(self, snap: Any) -> None:
        self._snap = snap

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._snap.get(key)
        return value

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._snap, prefix, start)


def _scan(source: Any, prefix: bytes, start: bytes) -> Iterator[tuple[bytes, bytes]]:
    lower = max(prefix, start)
    it = source.iterator(start=lower, stop=_upper_bound(prefix))
    try:
        yield from it
    finally:
        it.close()


class MemoryKV:
    """An in-memory :class:`OrderedKV` (a sorted key list plus a dict), for tests."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._keys: list[bytes] = []
        self._values: dict[bytes, bytes] = {}
        self.writes = 0

    def get(self, key: bytes) -> bytes | None:
        with self._lock:
            return self._values.get(key)

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        with self._lock:
            keys = self._keys
            i = bisect.bisect_left(keys, max(prefix, start))
            out: list[tuple[bytes, bytes]] = []
            while i < len(keys) and keys[i].startswith(prefix):
                out.append((keys[i], self._values[keys[i]]))
                i += 1
        return iter(out)

    @contextmanager
    def snapshot(self) -> Iterator[Reader]:
        yield self

    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
        with self._lock:
            self.writes += 1
            for key in deletes:
                if key in self._values:
                    del self._values[key]
                    del self._keys[bisect.bisect_left(self._keys, key)]
            for key, value in puts.items():
                if key not in self._values:
                    bisect.insort(self._keys, key)
                self._values[key] = value

    def close(self) -> None:
        pass


class Overlay:
    """Changes staged over an :class:`OrderedKV` and written to it as one atomic batch.

    Reads (``get``, ``scan``) see the base with the staged changes applied; ``write`` only
    stages.  :meth:`flush` writes everything staged in one synced batch of the base.  Used by
    the metadata store to group the mutations of several concurrent commits into one sync.
    Not thread-safe: one writer at a time (the metadata store's lock).
    """

    def __init__(self, base: OrderedKV) -> None:
        self._base = base
        self._puts: dict[bytes, bytes] = {}
        self._deletes: set[bytes] = set()
        # what ``get`` read from the base: the one writer changes the base only by ``flush``,
        # so within a group a key is read once (the commits of a group share their bucket,
        # and a reference count is read by the blob store, then by the commit)
        self._read: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self._puts:
            return self._puts[key]
        if key in self._deletes:
            return None
        try:
            return self._read[key]
        except KeyError:
            value = self._read[key] = self._base.get(key)
            return value

    def scan(self, prefix: bytes, start: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        lower = max(prefix, start)
        staged = sorted(k for k in self._puts if k.startswith(prefix) and k >= lower)
        i = 0
        for key, value in self._base.scan(prefix, start):
            while i < len(staged) and staged[i] < key:
                yield staged[i], self._puts[staged[i]]
                i += 1
            if i < len(staged) and staged[i] == key:
                yield key, self._puts[key]
                i += 1
            elif key not in self._deletes:
                yield key, value
        for k in staged[i:]:
            yield k, self._puts[k]

    def write(self, puts: Mapping[bytes, bytes], deletes: set[bytes]) -> None:
        for key in deletes:
            self._puts.pop(key, None)
            self._deletes.add(key)
        for key, value in puts.items():
            self._deletes.discard(key)
            self._puts[key] = value

    def flush(self) -> int:
        """Write the staged changes to the base in one synced batch; returns how many keys."""
        if self._puts or self._deletes:
            self._base.write(self._puts, self._deletes)
        n = len(self._puts) + len(self._deletes)
        self._puts, self._deletes, self._read = {}, set(), {}
        return n
