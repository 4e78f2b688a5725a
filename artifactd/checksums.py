"""Incremental S3 flexible checksums (``x-amz-checksum-<algorithm>``).

Every checksum object has the same small protocol (:class:`Checksum`): feed it bytes with
``update`` and read the value S3 puts in the ``x-amz-checksum-<algorithm>`` header with
``digest_b64`` (the base64 of the big-endian digest: crc32(b"hello world") is ``"DUoRhQ=="``).

All five algorithms run at C speed and release the GIL on large buffers, so they can be run in
a thread pool over multi-GiB bodies:

* ``crc32``: :func:`zlib.crc32` (faster here than awscrt's crc32);
* ``crc32c`` and ``crc64nvme``: ``awscrt.checksums`` (the AWS Common Runtime, hardware
  accelerated; the same implementation botocore uses when awscrt is installed);
* ``sha1`` and ``sha256``: :mod:`hashlib`.
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from typing import Final, Protocol, cast

from awscrt import checksums as _crt  # type: ignore[import-untyped]

from artifactd.errors import InvalidArgument

__all__ = [
    "ALGORITHMS",
    "HEADER_PREFIX",
    "Buffer",
    "Checksum",
    "header_name",
    "new_checksum",
    "normalize_algorithm",
]

Buffer = bytes | bytearray | memoryview
"""What ``update`` accepts (anything with the buffer protocol that the C functions take)."""

ALGORITHMS: Final[frozenset[str]] = frozenset({"crc32", "crc32c", "crc64nvme", "sha1", "sha256"})
"""The supported algorithm names, lower case (as in ``x-amz-checksum-<name>``)."""

HEADER_PREFIX: Final = "x-amz-checksum-"


class Checksum(Protocol):
    """An incremental checksum."""

    @property
    def algorithm(self) -> str:
        """The lower-case algorithm name, e.g. ``"crc32"``."""
        ...

    def update(self, data: Buffer) -> None:
        """Add ``data`` to the checksummed stream."""
        ...

    def digest(self) -> bytes:
        """The raw digest of everything fed so far (big-endian for the CRCs)."""
        ...

    def digest_b64(self) -> str:
        """``base64(digest())``, the value of the ``x-amz-checksum-<algorithm>`` header."""
        ...


def _crc32c(data: Buffer, previous: int) -> int:
    return cast(int, _crt.crc32c(data, previous))


def _crc64nvme(data: Buffer, previous: int) -> int:
    return cast(int, _crt.crc64nvme(data, previous))


class _Crc32:
    __slots__ = ("_value",)

    algorithm: Final = "crc32"

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer) -> None:
        self._value = zlib.crc32(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")

    def digest_b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _Crc32c:
    __slots__ = ("_value",)

    algorithm: Final = "crc32c"

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer) -> None:
        self._value = _crc32c(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(4, "big")

    def digest_b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _Crc64Nvme:
    __slots__ = ("_value",)

    algorithm: Final = "crc64nvme"

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: Buffer) -> None:
        self._value = _crc64nvme(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(8, "big")

    def digest_b64(self) -> str:
        return base64.b64encode(self.digest()).decode("ascii")


class _Hashlib:
    __slots__ = ("_hash", "algorithm")

    def __init__(self, algorithm: str) -> None:
        self.algorithm = algorithm
        self._hash = hashlib.new(algorithm)

    def update(self, data: Buffer) -> None:
        self._hash.update(data)

    def digest(self) -> bytes:
        return self._hash.digest()

    def digest_b64(self) -> str:
        return base64.b64encode(self._hash.digest()).decode("ascii")


def normalize_algorithm(algorithm: str) -> str:
    """The canonical (lower-case) name of ``algorithm`` (``"CRC32"`` → ``"crc32"``).

    Raises :class:`~artifactd.errors.InvalidArgument` for an unsupported algorithm.
    """
    name = algorithm.strip().lower()
    if name not in ALGORITHMS:
        raise InvalidArgument(
            f"Unsupported checksum algorithm: {algorithm!r}."
            f" Supported: {', '.join(sorted(a.upper() for a in ALGORITHMS))}.",
            extra={"ArgumentName": "x-amz-checksum-algorithm", "ArgumentValue": algorithm},
        )
    return name


def new_checksum(algorithm: str) -> Checksum:
    """A fresh checksum for ``algorithm`` (case-insensitive: ``"CRC32"``, ``"crc32"``...).

    Raises :class:`~artifactd.errors.InvalidArgument` for an unsupported algorithm.
    """
    name = normalize_algorithm(algorithm)
    if name == "crc32":
        return _Crc32()
    if name == "crc32c":
        return _Crc32c()
    if name == "crc64nvme":
        return _Crc64Nvme()
    return _Hashlib(name)


def header_name(algorithm: str) -> str:
    """The header (or trailer) carrying ``algorithm``'s value: ``"x-amz-checksum-crc32"``.

    Raises :class:`~artifactd.errors.InvalidArgument` for an unsupported algorithm.
    """
    return HEADER_PREFIX + normalize_algorithm(algorithm)
