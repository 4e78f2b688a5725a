"""Durability primitives every writer uses.  All of them block: disk pool only."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from concurrent.futures import Executor
from typing import Protocol


class FileSystem(Protocol):
    """The few calls durability needs; tests substitute a recording fake to check their order."""

    def fsync_fd(self, fd: int) -> None: ...
    def fdatasync_fd(self, fd: int) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def replace(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def makedirs(self, path: str) -> None: ...


class OSFileSystem:
    def fsync_fd(self, fd: int) -> None:
        os.fsync(fd)

    def fdatasync_fd(self, fd: int) -> None:
        os.fdatasync(fd)

    def fsync_dir(self, path: str) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def replace(self, src: str, dst: str) -> None:
        os.replace(src, dst)

    def unlink(self, path: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)

    def makedirs(self, path: str) -> None:
        os.makedirs(path, exist_ok=True)


def durable_rename(fs: FileSystem, src: str, dst: str, pending: set[str] | None = None) -> None:
    """Rename an already-synced file into place and fsync the target directory, so that after this
    returns the file is reachable under ``dst`` across a crash.  Directories created on the way
    (blob shards) are made durable too, by fsyncing each one's parent.

    With ``pending``, the directories to fsync are added to it instead, for the caller to fsync
    each once (:func:`sync_dirs`) before anything depends on the rename being durable."""
    parent = os.path.dirname(dst)
    missing = _missing_dirs(parent)
    fs.makedirs(parent)
    created_in = [os.path.dirname(created) for created in missing]
    if pending is None:
        sync_dirs(fs, created_in)
        fs.replace(src, dst)
        fs.fsync_dir(parent)
    else:
        fs.replace(src, dst)
        pending.update(created_in)
        pending.add(parent)


def sync_dirs(fs: FileSystem, dirs: Iterable[str], executor: Executor | None = None) -> None:
    """fsync each directory, outermost first; or, with ``executor``, all at once.

    Each fsync also flushes the disk's write cache, which costs about as much as the journal
    commit; issued concurrently, the kernel merges those flushes.  The order among the
    directories does not matter to the callers: nothing depends on any of them before all are
    done."""
    ordered = sorted(dirs, key=lambda d: (d.count(os.sep), d))
    if executor is None or len(ordered) < 2:
        for path in ordered:
            fs.fsync_dir(path)
        return
    for future in [executor.submit(fs.fsync_dir, path) for path in ordered]:
        future.result()


def _missing_dirs(path: str) -> list[str]:
    """The directories on the way to ``path`` that do not exist yet, outermost first."""
    missing: list[str] = []
    while path and not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return missing[::-1]


def durable_unlink(fs: FileSystem, path: str, pending: set[str] | None = None) -> None:
    """Remove a file and fsync its directory (or add the directory to ``pending``)."""
    fs.unlink(path)
    sync_parent(fs, path, pending)


def sync_parent(fs: FileSystem, path: str, pending: set[str] | None = None) -> None:
    """Make a change to ``path``'s name (its removal, or a rename away) durable: fsync its
    directory, or add the directory to ``pending``."""
    if pending is None:
        fs.fsync_dir(os.path.dirname(path))
    else:
        pending.add(os.path.dirname(path))
