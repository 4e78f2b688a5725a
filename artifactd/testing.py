"""Fakes shipped with the package for tests of artifactd and of code built on it.

Nothing here is used in production.  Everything is synchronous and deterministic: no threads, no
reactor, no sockets.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Literal, ParamSpec, TypeVar

from attrs import define, field
from twisted.internet.defer import Deferred, fail, succeed
from twisted.python.failure import Failure

from artifactd.storage.blobs import FileBlobStore
from artifactd.storage.durable import FileSystem, OSFileSystem
from artifactd.storage.engine import Engine, Runner
from artifactd.storage.kv import LevelDBKV, MemoryKV, OrderedKV
from artifactd.storage.layout import Layout
from artifactd.storage.metadata import KVMetadataStore
from artifactd.storage.tiered import TieredBlobStore

P = ParamSpec("P")
T = TypeVar("T")


def inline_runner(f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
    """A :class:`~artifactd.storage.engine.Runner` that calls ``f`` at once, in the calling thread.

    Returns an already-fired Deferred: ``succeed(result)``, or ``fail()`` with whatever ``f``
    raised.  Like ``deferToThreadPool`` it turns every exception, even a ``BaseException``, into a
    failure.
    """
    try:
        result = f(*args, **kwargs)
    except BaseException:
        return fail()
    return succeed(result)


class ManualRunner:
    """A :class:`~artifactd.storage.engine.Runner` that queues each call and returns an unfired
    Deferred; the test runs the calls, in order, with :meth:`fire` or :meth:`fire_all`.  Models a
    disk pool that has not got round to the work yet."""

    def __init__(self) -> None:
        self.pending: list[tuple[Callable[[], Any], Deferred[Any]]] = []

    def __call__(self, f: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Deferred[T]:
        d: Deferred[T] = Deferred()
        self.pending.append((lambda: f(*args, **kwargs), d))
        return d

    def fire(self) -> None:
        """Run the oldest queued call and fire its Deferred with the outcome."""
        call, d = self.pending.pop(0)
        try:
            result = call()
        except BaseException:
            d.errback(Failure())
        else:
            d.callback(result)

    def fire_all(self) -> None:
        """Run queued calls (including those queued meanwhile) until none is left."""
        while self.pending:
            self.fire()


@define
class RecordingFileSystem:
    """A :class:`~artifactd.storage.durable.FileSystem` that performs each operation for real (via
    ``real``) and appends ``(operation, *arguments)`` to ``calls`` first, so tests can check the
    order of durability steps."""

    real: FileSystem = field(factory=OSFileSystem)
    calls: list[tuple[object, ...]] = field(factory=list)

    def fsync_fd(self, fd: int) -> None:
        self.calls.append(("fsync_fd", fd))
        self.real.fsync_fd(fd)

    def fdatasync_fd(self, fd: int) -> None:
        self.calls.append(("fdatasync_fd", fd))
        self.real.fdatasync_fd(fd)

    def fsync_dir(self, path: str) -> None:
        self.calls.append(("fsync_dir", path))
        self.real.fsync_dir(path)

    def replace(self, src: str, dst: str) -> None:
        self.calls.append(("replace", src, dst))
        self.real.replace(src, dst)

    def unlink(self, path: str) -> None:
        self.calls.append(("unlink", path))
        self.real.unlink(path)

    def makedirs(self, path: str) -> None:
        self.calls.append(("makedirs", path))
        self.real.makedirs(path)

    def operations(self) -> list[object]:
        """Just the operation names, in call order."""
        return [call[0] for call in self.calls]


class UnsyncedFileSystem(OSFileSystem):
    """The real file operations without the fsyncs: for tests that never simulate a crash and
    would otherwise spend their time waiting for the disk.  Not durable."""

    def fsync_fd(self, fd: int) -> None:
        pass

    def fdatasync_fd(self, fd: int) -> None:
        pass

    def fsync_dir(self, path: str) -> None:
        pass


def build_engine(
    root: str,
    kv: Literal["memory", "leveldb"] | OrderedKV = "memory",
    run: Runner = inline_runner,
    fs: FileSystem | None = None,
    *,
    tiered: bool = False,
) -> Engine:
    """An :class:`Engine` over a :class:`FileBlobStore` under ``root`` (created if missing) and a
    metadata store over ``kv``: a fresh :class:`MemoryKV`, a :class:`LevelDBKV` in
    ``root/metadata``, or the given store.  ``tiered``: small blobs staged in memory are kept
    in the metadata store (:class:`TieredBlobStore`, as the daemon runs).

    The caller owns the metadata store: close it (``engine.meta.close()``) when done, which matters
    for LevelDB.
    """
    layout = Layout(os.path.abspath(root))
    os.makedirs(layout.root, exist_ok=True)
    blobs = FileBlobStore(layout, fs)
    blobs.prepare()
    store: OrderedKV
    if isinstance(kv, str):
        store = LevelDBKV(layout.metadata) if kv == "leveldb" else MemoryKV()
    else:
        store = kv
    meta = KVMetadataStore(store)
    if tiered:
        return Engine(TieredBlobStore(blobs, meta), meta, run)
    return Engine(blobs, meta, run)
