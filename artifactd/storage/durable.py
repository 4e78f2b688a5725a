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
    returns the file is reachable under ``dst`` across a crash."""
    parent = os.path.dirname(dst)
    fs.makedirs(parent)
    fs.replace(src, dst)
    fs.fsync_dir(parent)


def durable_unlink(fs: FileSystem, path: str) -> None:
    """Remove a file and fsync its directory."""
    fs.unlink(path)
    fs.fsync_dir(os.path.dirname(path))
