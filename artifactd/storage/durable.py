"""Durability primitives every writer uses.  All of them block: disk pool only."""

from __future__ import annotations

import contextlib
import os
from typing import Protocol


class FileSystem(Protocol):
    """The few calls durability needs; tests substitute a recording fake to check their order."""

    def fsync_fd(self, fd: int) -> None: ...
    def fsync_dir(self, path: str) -> None: ...
    def replace(self, src: str, dst: str) -> None: ...
    def unlink(self, path: str) -> None: ...
    def makedirs(self, path: str) -> None: ...


class OSFileSystem:
    def fsync_fd(self, fd: int) -> None:
        os.fsync(fd)

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


def durable_rename(fs: FileSystem, src: str, dst: str) -> None:
    """Rename an already-synced file into place and fsync the target directory, so that after this
    returns the file is reachable under ``dst`` across a crash.  Directories created on the way
    (blob shards) are made durable too, by fsyncing each one's parent."""
    parent = os.path.dirname(dst)
    missing = _missing_dirs(parent)
    fs.makedirs(parent)
    for created in missing:
        fs.fsync_dir(os.path.dirname(created))
    fs.replace(src, dst)
    fs.fsync_dir(parent)


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


def durable_unlink(fs: FileSystem, path: str) -> None:
    """Remove a file and fsync its directory."""
    fs.unlink(path)
    fs.fsync_dir(os.path.dirname(path))
