# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Tests for :mod:`artifactd.checksums`."""

from __future__ import annotations

import base64
import hashlib
import itertools
import zlib

from botocore.httpchecksum import (
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.checksums import ALGORITHMS, header_name, new_checksum, normalize_algorithm
from artifactd.errors import InvalidArgument

# botocore's own implementations (what boto3 computes on the client side).
BOTOCORE = {
    "crc32": Crc32Checksum,
    "crc32c": CrtCrc32cChecksum,
    "crc64nvme": CrtCrc64NvmeChecksum,
    "sha1": Sha1Checksum,
    "sha256": Sha256Checksum,
}


def _reflected_table(poly: int) -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE = _reflected_table(0x82F63B78)
_CRC64NVME_TABLE = _reflected_table(0x9A6C9329AC4BC9B5)


def _slow_crc(data: bytes, table: list[int], mask: int) -> int:
    """A table-driven reflected CRC with init = xorout = all ones (CRC-32C, CRC-64/NVME)."""
    crc = mask
    for byte in data:
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ mask


def _pure_python(algorithm: str, data: bytes) -> str:
    """An implementation independent of awscrt, for cross-checking."""
    if algorithm == "crc32c":
        raw = _slow_crc(data, _CRC32C_TABLE, 0xFFFFFFFF).to_bytes(4, "big")
    elif algorithm == "crc64nvme":
        raw = _slow_crc(data, _CRC64NVME_TABLE, 0xFFFFFFFFFFFFFFFF).to_bytes(8, "big")
    elif algorithm == "crc32":
        raw = zlib.crc32(data).to_bytes(4, "big")
    else:
        raw = hashlib.new(algorithm, data).digest()
    return base64.b64encode(raw).decode("ascii")


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _digest(algorithm: str, pieces: list[bytes]) -> str:
    checksum = new_checksum(algorithm)
    for piece in pieces:
        checksum.update(piece)
    return checksum.digest_b64()


class KnownValueTests(SynchronousTestCase):
    def test_hello_world_crc32(self) -> None:
        """crc32(b"hello world") is the value boto3 sends, "DUoRhQ=="."""
        self.assertEqual(_digest("crc32", [b"hello world"]), "DUoRhQ==")

    def test_check_values(self) -> None:
        """Each CRC gives its catalogue check value for b"123456789"."""
        expected = {
            "crc32": 0xCBF43926.to_bytes(4, "big"),
            "crc32c": 0xE3069283.to_bytes(4, "big"),
            "crc64nvme": 0xAE8B14860A799888.to_bytes(8, "big"),
        }
        for algorithm, raw in expected.items():
            checksum = new_checksum(algorithm)
            checksum.update(b"123456789")
            self.assertEqual(checksum.digest(), raw, algorithm)
            self.assertEqual(checksum.digest_b64(), base64.b64encode(raw).decode(), algorithm)

    def test_s3_values(self) -> None:
        """Values Amazon S3 returns for b"abcdefg" and b"hello world" are reproduced."""
        abcdefg = {
            "crc32": "MSpqpg==",
            "crc32c": "5if0QQ==",
            "crc64nvme": "SmzZ/LTp1CA=",
            "sha1": "L7XhNBn8iSRoZeejJPR27GJOh0A=",
            "sha256": "fRpUEnsiJQL1t5tfsIAwYRUqRPkrN+I8ZSe69mXU2po=",
        }
        for algorithm, value in abcdefg.items():
            self.assertEqual(_digest(algorithm, [b"abc", b"defg"]), value, algorithm)
        self.assertEqual(_digest("crc64nvme", [b"hello world"]), "jSnVw/bqjr4=")
        self.assertEqual(_digest("crc32c", [b"a" * 65536, b"a" * 1024]), "sOO8/Q==")

    def test_empty(self) -> None:
        """With no data each algorithm gives the digest of the empty string."""
        for algorithm in ALGORITHMS:
            self.assertEqual(_digest(algorithm, []), _pure_python(algorithm, b""), algorithm)
        self.assertEqual(_digest("crc32", []), "AAAAAA==")

    def test_digest_sizes(self) -> None:
        """Raw digests have the sizes S3 uses: 4, 4, 8, 20 and 32 bytes."""
        sizes = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
        for algorithm, size in sizes.items():
            checksum = new_checksum(algorithm)
            checksum.update(b"\xff" * 100)
            self.assertEqual(len(checksum.digest()), size, algorithm)

    def test_buffer_types(self) -> None:
        """update accepts bytes, bytearray and memoryview alike."""
        data = bytes(range(256)) * 10
        for algorithm in ALGORITHMS:
            values = set()
            for piece in (data, bytearray(data), memoryview(data)):
                checksum = new_checksum(algorithm)
                checksum.update(piece)
                values.add(checksum.digest_b64())
            self.assertEqual(len(values), 1, algorithm)

    def test_digest_does_not_finalize(self) -> None:
        """Reading the digest does not stop the checksum from being updated further."""
        for algorithm in ALGORITHMS:
            checksum = new_checksum(algorithm)
            checksum.update(b"hello ")
            checksum.digest_b64()
            checksum.update(b"world")
            self.assertEqual(checksum.digest_b64(), _pure_python(algorithm, b"hello world"))


class FactoryTests(SynchronousTestCase):
    def test_algorithms(self) -> None:
        """ALGORITHMS is exactly the five S3 flexible checksum algorithms."""
        self.assertEqual(ALGORITHMS, frozenset({"crc32", "crc32c", "crc64nvme", "sha1", "sha256"}))

    def test_case_insensitive(self) -> None:
        """Algorithm names are case-insensitive and reported lower case."""
        for algorithm in ALGORITHMS:
            for spelling in (algorithm, algorithm.upper(), algorithm.capitalize()):
                self.assertEqual(new_checksum(spelling).algorithm, algorithm)
                self.assertEqual(normalize_algorithm(spelling), algorithm)

    def test_unknown(self) -> None:
        """An unknown algorithm name raises InvalidArgument."""
        for name in ("md5", "crc64", "", "sha512", "x-amz-checksum-crc32", "crc32 c"):
            with self.assertRaises(InvalidArgument):
                new_checksum(name)

    def test_header_name(self) -> None:
        """header_name gives the x-amz-checksum-* header for an algorithm."""
        self.assertEqual(header_name("CRC64NVME"), "x-amz-checksum-crc64nvme")
        with self.assertRaises(InvalidArgument):
            header_name("md5")


class ReferenceTests(SynchronousTestCase):
    @settings(deadline=None, max_examples=200)
    @given(
        algorithm=st.sampled_from(sorted(ALGORITHMS)),
        data=st.binary(max_size=4096),
        cuts=st.lists(st.integers(min_value=0, max_value=5000), max_size=8),
    )
    def test_matches_botocore(self, algorithm: str, data: bytes, cuts: list[int]) -> None:
        """Fed in arbitrary pieces, every algorithm equals botocore's one-shot value."""
        reference = BOTOCORE[algorithm]()
        reference.update(data)
        self.assertEqual(_digest(algorithm, _split(data, cuts)), reference.b64digest())

    @settings(deadline=None, max_examples=100)
    @given(
        algorithm=st.sampled_from(sorted(ALGORITHMS)),
        data=st.binary(max_size=2048),
        cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=8),
    )
    def test_matches_pure_python(self, algorithm: str, data: bytes, cuts: list[int]) -> None:
        """Fed in arbitrary pieces, every algorithm equals an implementation without awscrt."""
        self.assertEqual(_digest(algorithm, _split(data, cuts)), _pure_python(algorithm, data))
