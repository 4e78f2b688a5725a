# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Tests for :mod:`artifactd.http.awschunked`."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import itertools
from collections.abc import Callable, Mapping, Sequence

from botocore.httpchecksum import (
    AwsChunkedWrapper,
    Crc32Checksum,
    CrtCrc32cChecksum,
    CrtCrc64NvmeChecksum,
    Sha1Checksum,
    Sha256Checksum,
)
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from artifactd.checksums import ALGORITHMS, new_checksum
from artifactd.errors import (
    IncompleteBody,
    InvalidArgument,
    InvalidEncoding,
    InvalidRequest,
    MalformedTrailerError,
    S3Error,
    SignatureDoesNotMatch,
)
from artifactd.http.awschunked import (
    AwsChunkedDecoder,
    ChunkSignatures,
    parse_trailer_names,
    trailer_checksum_algorithm,
)

BOTOCORE = {
    "crc32": Crc32Checksum,
    "crc32c": CrtCrc32cChecksum,
    "crc64nvme": CrtCrc64NvmeChecksum,
    "sha1": Sha1Checksum,
    "sha256": Sha256Checksum,
}

# https PutObject of b"hello world" by boto3 1.44.8, after HTTP de-chunking.
BOTO3_CAPTURE = b"b\r\nhello world\r\n0\r\nx-amz-checksum-crc32:DUoRhQ==\r\n\r\n"

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
SIG = "0123456789abcdef" * 4


def split(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (taken modulo its length + 1); every piece non-empty."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


cuts_strategy = st.lists(st.integers(min_value=0, max_value=1 << 20), max_size=12)


class Collector:
    """A sink that records what it is given."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []

    def __call__(self, data: bytes) -> None:
        self.pieces.append(data)

    @property
    def payload(self) -> bytes:
        return b"".join(self.pieces)


class Recorder:
    """A fake ChunkSignatures that accepts everything and records the calls in ``log``."""

    def __init__(self, log: list[tuple[str, object, object]] | None = None) -> None:
        self.log: list[tuple[str, object, object]] = [] if log is None else log

    def verify_chunk(self, signature: str, chunk_sha256_hex: str) -> None:
        self.log.append(("chunk", signature, chunk_sha256_hex))

    def verify_trailer(self, signature: str, trailer_bytes: bytes) -> None:
        self.log.append(("trailer", signature, trailer_bytes))


class Rejecter:
    """A fake ChunkSignatures that rejects one given signature."""

    def __init__(self, bad: str) -> None:
        self.bad = bad

    def verify_chunk(self, signature: str, chunk_sha256_hex: str) -> None:
        if signature == self.bad:
            raise SignatureDoesNotMatch()

    def verify_trailer(self, signature: str, trailer_bytes: bytes) -> None:
        if signature == self.bad:
            raise SignatureDoesNotMatch()


class HmacChain:
    """A real SigV4 chunk-signature chain (independent of artifactd.http.sigv4)."""

    def __init__(self, seed: str) -> None:
        key = b"AWS4wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
        for part in ("20130524", "us-east-1", "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.key = key
        self.previous = seed

    def _check(self, signature: str, *parts: str) -> None:
        string_to_sign = "\n".join(
            (
                parts[0],
                "20130524T000000Z",
                "20130524/us-east-1/s3/aws4_request",
                self.previous,
                *parts[1:],
            )
        )
        expected = hmac.new(self.key, string_to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            raise SignatureDoesNotMatch()
        self.previous = signature

    def verify_chunk(self, signature: str, chunk_sha256_hex: str) -> None:
        self._check(signature, "AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256, chunk_sha256_hex)

    def verify_trailer(self, signature: str, trailer_bytes: bytes) -> None:
        self._check(
            signature, "AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(trailer_bytes).hexdigest()
        )


def decode(
    pieces: Sequence[bytes],
    *,
    decoded_length: int | None = None,
    trailer_names: Sequence[str] = (),
    signatures: ChunkSignatures | None = None,
    max_line: int = 4096,
    sink: Callable[[bytes], None] | None = None,
) -> tuple[bytes, Mapping[str, str]]:
    """Feed ``pieces`` to a new decoder, finish it; return (payload, trailers)."""
    collector = Collector()
    decoder = AwsChunkedDecoder(
        sink or collector,
        decoded_length=decoded_length,
        trailer_names=trailer_names,
        signatures=signatures,
        max_line=max_line,
    )
    for piece in pieces:
        decoder.feed(piece)
    trailers = decoder.finish()
    return collector.payload, trailers


def botocore_encode(payload: bytes, algorithm: str | None, chunk_size: int) -> bytes:
    """The aws-chunked body botocore's AwsChunkedWrapper produces for ``payload``."""
    if algorithm is None:
        wrapper = AwsChunkedWrapper(io.BytesIO(payload), chunk_size=chunk_size)
    else:
        wrapper = AwsChunkedWrapper(
            io.BytesIO(payload),
            checksum_cls=BOTOCORE[algorithm],
            checksum_name=f"x-amz-checksum-{algorithm}",
            chunk_size=chunk_size,
        )
    encoded = wrapper.read()
    assert isinstance(encoded, bytes)
    return encoded


def signed_encode(
    payload: bytes,
    chunk_size: int,
    trailers: Sequence[tuple[str, str]] | None,
) -> tuple[bytes, list[tuple[str, object, object]]]:
    """A signed aws-chunked body with made-up signatures, and the verifier calls it implies."""
    out = bytearray()
    calls: list[tuple[str, object, object]] = []
    chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)] + [b""]
    for number, chunk in enumerate(chunks):
        signature = f"{number:064x}"
        out += b"%x;chunk-signature=%s\r\n" % (len(chunk), signature.encode())
        if chunk:
            out += chunk + b"\r\n"
        calls.append(("chunk", signature, hashlib.sha256(chunk).hexdigest()))
    if trailers:
        canonical = b""
        for name, value in trailers:
            out += f"{name}:{value}\r\n".encode()
        for name, value in sorted((n.lower(), v) for n, v in trailers):
            canonical += f"{name}:{value}\n".encode()
        out += b"x-amz-trailer-signature:" + b"f" * 64 + b"\r\n"
        calls.append(("trailer", "f" * 64, canonical))
    out += b"\r\n"
    return bytes(out), calls


class UnsignedTests(SynchronousTestCase):
    def test_boto3_capture(self) -> None:
        """The exact boto3 body decodes to b"hello world" and its crc32 trailer."""
        payload, trailers = decode(
            [BOTO3_CAPTURE], decoded_length=11, trailer_names=["x-amz-checksum-crc32"]
        )
        self.assertEqual(payload, b"hello world")
        self.assertEqual(trailers, {"x-amz-checksum-crc32": "DUoRhQ=="})

    def test_boto3_capture_every_split(self) -> None:
        """The boto3 body decodes the same when split in two at every possible point."""
        for cut in range(len(BOTO3_CAPTURE) + 1):
            payload, trailers = decode(
                split(BOTO3_CAPTURE, [cut]),
                decoded_length=11,
                trailer_names=["x-amz-checksum-crc32"],
            )
            self.assertEqual(payload, b"hello world")
            self.assertEqual(trailers, {"x-amz-checksum-crc32": "DUoRhQ=="})

    def test_boto3_capture_byte_at_a_time(self) -> None:
        """The boto3 body decodes the same when fed one byte at a time."""
        pieces = [BOTO3_CAPTURE[i : i + 1] for i in range(len(BOTO3_CAPTURE))]
        payload, trailers = decode(pieces, trailer_names="X-Amz-Checksum-CRC32")
        self.assertEqual(payload, b"hello world")
        self.assertEqual(trailers, {"x-amz-checksum-crc32": "DUoRhQ=="})

    @settings(deadline=None, max_examples=300)
    @given(
        payload=st.binary(max_size=3000),
        algorithm=st.sampled_from(sorted(ALGORITHMS)),
        chunk_size=st.integers(min_value=1, max_value=1500),
        cuts=cuts_strategy,
        with_length=st.booleans(),
    )
    def test_botocore_framing(
        self,
        payload: bytes,
        algorithm: str,
        chunk_size: int,
        cuts: list[int],
        with_length: bool,
    ) -> None:
        """botocore's framing, split anywhere, yields the payload and a matching trailer."""
        encoded = botocore_encode(payload, algorithm, chunk_size)
        name = f"x-amz-checksum-{algorithm}"
        decoded, trailers = decode(
            split(encoded, cuts),
            decoded_length=len(payload) if with_length else None,
            trailer_names=[name],
        )
        self.assertEqual(decoded, payload)
        self.assertEqual(list(trailers), [name])
        self.assertEqual(trailer_checksum_algorithm([name]), algorithm)
        checksum = new_checksum(algorithm)
        checksum.update(decoded)
        self.assertEqual(trailers[name], checksum.digest_b64())

    @settings(deadline=None, max_examples=100)
    @given(
        payload=st.binary(max_size=3000),
        chunk_size=st.integers(min_value=1, max_value=1500),
        cuts=cuts_strategy,
    )
    def test_botocore_framing_without_trailer(
        self, payload: bytes, chunk_size: int, cuts: list[int]
    ) -> None:
        """botocore's framing without a checksum (ending 0 CRLF CRLF) decodes, no trailers."""
        encoded = botocore_encode(payload, None, chunk_size)
        self.assertTrue(encoded.endswith(b"0\r\n\r\n"))
        decoded, trailers = decode(split(encoded, cuts), decoded_length=len(payload))
        self.assertEqual(decoded, payload)
        self.assertEqual(trailers, {})

    def test_large_chunks(self) -> None:
        """aws-cli's 1 MiB chunks decode; pieces that are all payload reach the sink uncopied."""
        payload = bytes(range(256)) * (3 * 4096 + 17)
        encoded = botocore_encode(payload, "crc32", 0x100000)
        pieces = split(encoded, range(0, len(encoded), 65536))
        collector = Collector()
        _, trailers = decode(
            pieces,
            decoded_length=len(payload),
            trailer_names=["x-amz-checksum-crc32"],
            sink=collector,
        )
        self.assertEqual(collector.payload, payload)
        whole = [piece for piece in pieces if any(piece is seen for seen in collector.pieces)]
        # Every piece but the few straddling a chunk header is passed on as the same object.
        self.assertGreaterEqual(len(whole), len(pieces) - 8)
        self.assertNotIn(b"", collector.pieces)
        checksum = new_checksum("crc32")
        checksum.update(payload)
        self.assertEqual(trailers, {"x-amz-checksum-crc32": checksum.digest_b64()})

    def test_uppercase_hex_and_trailer_name(self) -> None:
        """Upper-case hex sizes and a mixed-case trailer name are accepted; the name is lowered."""
        body = b"B\r\nhello world\r\n0\r\nX-Amz-Checksum-Crc32:DUoRhQ==\r\n\r\n"
        payload, trailers = decode([body], trailer_names=["x-amz-checksum-crc32"])
        self.assertEqual(payload, b"hello world")
        self.assertEqual(trailers, {"x-amz-checksum-crc32": "DUoRhQ=="})

    def test_empty_payload(self) -> None:
        """An empty object is just the final chunk and the trailer section."""
        payload, trailers = decode(
            [b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"],
            decoded_length=0,
            trailer_names=["x-amz-checksum-crc32"],
        )
        self.assertEqual((payload, dict(trailers)), (b"", {"x-amz-checksum-crc32": "AAAAAA=="}))

    def test_decoded_bytes(self) -> None:
        """decoded_bytes counts the payload bytes passed on so far."""
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=None, trailer_names=(), signatures=None
        )
        decoder.feed(b"b\r\nhello")
        self.assertEqual(decoder.decoded_bytes, 5)
        decoder.feed(b" world\r\n0\r\n\r\n")
        self.assertEqual(decoder.decoded_bytes, 11)
        self.assertEqual(decoder.finish(), {})


class SignedTests(SynchronousTestCase):
    @settings(deadline=None, max_examples=200)
    @given(
        payload=st.binary(max_size=2000),
        chunk_size=st.integers(min_value=1, max_value=700),
        cuts=cuts_strategy,
        with_trailer=st.booleans(),
    )
    def test_signed_calls(
        self, payload: bytes, chunk_size: int, cuts: list[int], with_trailer: bool
    ) -> None:
        """Every chunk, the final one too, is verified in order by SHA-256, then the trailer."""
        crc = new_checksum("crc32c")
        crc.update(payload)
        trailers = [("x-amz-checksum-crc32c", crc.digest_b64())] if with_trailer else None
        encoded, expected_calls = signed_encode(payload, chunk_size, trailers)
        log: list[tuple[str, object, object]] = []
        recorder = Recorder(log)

        def sink(data: bytes) -> None:
            log.append(("data", len(data), None))

        collector = Collector()

        def both(data: bytes) -> None:
            sink(data)
            collector(data)

        _, result = decode(
            split(encoded, cuts),
            decoded_length=len(payload),
            trailer_names=[name for name, _ in trailers or ()],
            signatures=recorder,
            sink=both,
        )
        self.assertEqual(collector.payload, payload)
        self.assertEqual(result, dict(trailers or ()))
        self.assertEqual([call for call in log if call[0] != "data"], expected_calls)
        # A chunk's bytes all reach the sink before its signature is checked, and the next
        # chunk's bytes only after it.
        chunks = [payload[i : i + chunk_size] for i in range(0, len(payload), chunk_size)]
        received = 0
        verified = 0
        for kind, value, _ in log:
            if kind == "data":
                assert isinstance(value, int)
                received += value
                self.assertLessEqual(received, sum(len(c) for c in chunks[: verified + 1]))
            elif kind == "chunk":
                self.assertEqual(received, sum(len(c) for c in chunks[: verified + 1]))
                verified += 1

    def test_aws_documentation_example(self) -> None:
        """The AWS sigv4-streaming example (64 KiB + 1 KiB of "a") verifies with real HMACs."""
        body = b"".join(
            [
                b"10000;chunk-signature=",
                b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648\r\n",
                b"a" * 65536,
                b"\r\n400;chunk-signature=",
                b"0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497\r\n",
                b"a" * 1024,
                b"\r\n0;chunk-signature=",
                b"b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9\r\n",
                b"\r\n",
            ]
        )
        chain = HmacChain("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
        payload, trailers = decode(
            split(body, [1000, 70000]), decoded_length=66560, signatures=chain
        )
        self.assertEqual(payload, b"a" * 66560)
        self.assertEqual(trailers, {})
        self.assertEqual(
            chain.previous, "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        )

    def test_aws_documentation_trailer_example(self) -> None:
        """The AWS sigv4-streaming-trailers example (crc32c trailer) verifies with real HMACs."""
        body = b"".join(
            [
                b"10000;chunk-signature=",
                b"b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2\r\n",
                b"a" * 65536,
                b"\r\n400;chunk-signature=",
                b"1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7\r\n",
                b"a" * 1024,
                b"\r\n0;chunk-signature=",
                b"2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992\r\n",
                b"x-amz-checksum-crc32c:sOO8/Q==\r\n",
                b"x-amz-trailer-signature:",
                b"d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435\r\n",
                b"\r\n",
            ]
        )
        chain = HmacChain("106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e")
        payload, trailers = decode(
            split(body, [65600, 66700]),
            decoded_length=66560,
            trailer_names=["x-amz-checksum-crc32c"],
            signatures=chain,
        )
        self.assertEqual(payload, b"a" * 66560)
        self.assertEqual(trailers, {"x-amz-checksum-crc32c": "sOO8/Q=="})

    def test_tampered_chunk_rejected(self) -> None:
        """Changing one payload byte of the AWS example fails with SignatureDoesNotMatch."""
        body = (
            b"10000;chunk-signature="
            b"ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
            b"\r\n" + b"a" * 65535 + b"b\r\n"
        )
        chain = HmacChain("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9")
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=None, trailer_names=(), signatures=chain
        )
        self.assertRaises(SignatureDoesNotMatch, decoder.feed, body)

    def test_verifier_error_propagates_and_sticks(self) -> None:
        """A signature the verifier rejects raises its error; the decoder then stays failed."""
        encoded, _ = signed_encode(b"x" * 100, 40, None)
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=100, trailer_names=(), signatures=Rejecter(f"{1:064x}")
        )
        self.assertRaises(SignatureDoesNotMatch, decoder.feed, encoded)
        self.assertRaises(IncompleteBody, decoder.feed, b"")
        self.assertRaises(IncompleteBody, decoder.finish)

    def test_trailer_signature_rejected(self) -> None:
        """A rejected x-amz-trailer-signature raises SignatureDoesNotMatch."""
        encoded, _ = signed_encode(b"x" * 10, 40, [("x-amz-checksum-crc32", "AAAAAA==")])
        decoder = AwsChunkedDecoder(
            Collector(),
            decoded_length=10,
            trailer_names=["x-amz-checksum-crc32"],
            signatures=Rejecter("f" * 64),
        )
        self.assertRaises(SignatureDoesNotMatch, decoder.feed, encoded)

    def test_missing_chunk_signature(self) -> None:
        """In a signed stream a chunk without chunk-signature is IncompleteBody."""
        for body in (
            b"3\r\nabc\r\n0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n",
            b"3;chunk-signature=" + b"0" * 64 + b"\r\nabc\r\n0\r\n\r\n",
        ):
            self.assertRaises(IncompleteBody, decode, [body], signatures=Recorder())

    def test_malformed_chunk_signature(self) -> None:
        """A short, upper-case or misspelled chunk-signature is IncompleteBody."""
        for extension in (
            b";chunk-signature=" + b"0" * 63,
            b";chunk-signature=" + b"A" * 64,
            b";chunk-signatures=" + b"0" * 64,
            b"; chunk-signature=" + b"0" * 64,
            b";chunk-signature=" + b"0" * 64 + b";x=y",
        ):
            body = b"0" + extension + b"\r\n\r\n"
            self.assertRaises(IncompleteBody, decode, [body], signatures=Recorder())

    def test_missing_trailer_signature(self) -> None:
        """Trailers in a signed stream without x-amz-trailer-signature are rejected."""
        body = b"0;chunk-signature=" + b"0" * 64 + b"\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n"
        self.assertRaises(
            SignatureDoesNotMatch,
            decode,
            [body],
            trailer_names=["x-amz-checksum-crc32"],
            signatures=Recorder(),
        )

    def test_trailer_signature_must_be_last(self) -> None:
        """A trailer after x-amz-trailer-signature is a MalformedTrailerError."""
        body = (
            b"0;chunk-signature=" + b"0" * 64 + b"\r\n"
            b"x-amz-trailer-signature:" + b"f" * 64 + b"\r\n"
            b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n"
        )
        self.assertRaises(
            MalformedTrailerError,
            decode,
            [body],
            trailer_names=["x-amz-checksum-crc32"],
            signatures=Recorder(),
        )


class ErrorTests(SynchronousTestCase):
    def assertDecodeRaises(self, error: type[S3Error], body: bytes, **kwargs: object) -> None:
        """``body`` fails with ``error`` whether fed whole or byte by byte."""
        pieces_options = [[body], [body[i : i + 1] for i in range(len(body))]]
        for pieces in pieces_options:
            with self.assertRaises(error, msg=repr(body)):
                decode(pieces, **kwargs)  # type: ignore[arg-type]

    def test_oversize_header_line(self) -> None:
        """A chunk header line longer than max_line is InvalidEncoding, even unterminated."""
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=None, trailer_names=(), signatures=None
        )
        self.assertRaises(InvalidEncoding, decoder.feed, b"1" * 5000)
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=None, trailer_names=(), signatures=None
        )
        for _ in range(4095):
            decoder.feed(b"0")
        self.assertRaises(InvalidEncoding, decoder.feed, b"0")

    def test_line_limit_boundary(self) -> None:
        """A line of exactly max_line bytes (CRLF included) is accepted, one more is not."""
        self.assertEqual(decode([b"0" * 14 + b"\r\n\r\n"], max_line=16), (b"", {}))
        self.assertDecodeRaises(InvalidEncoding, b"0" * 15 + b"\r\n\r\n", max_line=16)

    def test_oversize_trailer_line(self) -> None:
        """A trailer line longer than max_line is InvalidEncoding."""
        body = b"0\r\nx-amz-checksum-crc32:" + b"A" * 5000 + b"\r\n\r\n"
        self.assertDecodeRaises(InvalidEncoding, body, trailer_names=["x-amz-checksum-crc32"])

    def test_more_than_decoded_length(self) -> None:
        """A chunk header taking the payload past the decoded length fails at once."""
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=10, trailer_names=(), signatures=None
        )
        decoder.feed(b"5\r\nhello\r\n")
        self.assertRaises(IncompleteBody, decoder.feed, b"6\r\n")

    def test_less_than_decoded_length(self) -> None:
        """A final chunk reached before the decoded length is IncompleteBody."""
        self.assertDecodeRaises(IncompleteBody, b"5\r\nhello\r\n0\r\n\r\n", decoded_length=6)

    def test_truncated(self) -> None:
        """Every proper prefix of a valid body fails (at finish at the latest)."""
        for end in range(len(BOTO3_CAPTURE)):
            with self.assertRaises(IncompleteBody):
                decode(
                    [BOTO3_CAPTURE[:end]],
                    decoded_length=11,
                    trailer_names=["x-amz-checksum-crc32"],
                )

    def test_framing_errors(self) -> None:
        """Broken framing (as in S3's own tests) is IncompleteBody."""
        for body in (
            b"A\ndummy data\r\n0\r\n\r\n",
            b"A\r\ndummy data0\r\n\r\n",
            b"A\r\nXYZ\r\ndummy data\r\n0\r\n\r\n",
            b"B\r\ndummy data\r\n0\r\n\r\n",
            b"A\r\nA\r\ndummy data\r\n0\r\n\r\n",
            b"invalid_chunk_size\r\ndummy data\r\n0\r\n\r\n",
            b"A\r\ndummy data\r\nJ\r\n\r\n",
            b"-1\r\n\r\n",
            b" A\r\ndummy data\r\n0\r\n\r\n",
            b"\r\n",
            b"0\r\n\r\n\r\n",
            b"0\r\n\r\nX",
            b"0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n",
            b"0;foo=bar\r\n\r\n",
            b"0\n\r\n",
            b"0\r\r\n\r\n",
            b"1" * 17 + b"\r\n",
        ):
            self.assertDecodeRaises(IncompleteBody, body)

    def test_trailer_errors(self) -> None:
        """Missing, undeclared, duplicated or malformed trailers are MalformedTrailerError."""
        crc = ["x-amz-checksum-crc32"]
        cases: list[tuple[bytes, list[str]]] = [
            (b"0\r\n\r\n", crc),
            (b"0\r\n:AAAAAA==\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", []),
            (b"0\r\ninvalid_trailer:AAAAAA==\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32c:AAAAAA==\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32:AAAAAA==\r\nx-amz-checksum-crc32:AAAAAA==\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32:\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32 :AAAAAA==\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32:AA\x00AA\r\n\r\n", crc),
            (b"0\r\nx-amz-checksum-crc32:\xc3\xa9\r\n\r\n", crc),
            (b"0\r\nx-amz-trailer-signature:" + b"0" * 64 + b"\r\n\r\n", []),
        ]
        for body, names in cases:
            self.assertDecodeRaises(MalformedTrailerError, body, trailer_names=names)

    def test_trailer_value_whitespace(self) -> None:
        """Spaces around a trailer value are dropped."""
        body = b"0\r\nx-amz-checksum-crc32: AAAAAA== \r\n\r\n"
        self.assertEqual(
            decode([body], trailer_names=["x-amz-checksum-crc32"]),
            (b"", {"x-amz-checksum-crc32": "AAAAAA=="}),
        )

    def test_failure_sticks(self) -> None:
        """After an error every later feed or finish raises IncompleteBody."""
        decoder = AwsChunkedDecoder(
            Collector(), decoded_length=None, trailer_names=(), signatures=None
        )
        self.assertRaises(IncompleteBody, decoder.feed, b"zz\r\n")
        self.assertRaises(IncompleteBody, decoder.feed, b"0\r\n\r\n")
        self.assertRaises(IncompleteBody, decoder.finish)

    def test_sink_error_propagates(self) -> None:
        """An exception from the sink propagates unchanged and fails the decoder."""

        def sink(data: bytes) -> None:
            raise OSError("disk full")

        decoder = AwsChunkedDecoder(sink, decoded_length=None, trailer_names=(), signatures=None)
        self.assertRaises(OSError, decoder.feed, b"1\r\nx\r\n")
        self.assertRaises(IncompleteBody, decoder.finish)

    @settings(deadline=None, max_examples=500)
    @given(
        garbage=st.binary(max_size=300),
        cuts=cuts_strategy,
        signed=st.booleans(),
        length=st.none() | st.integers(min_value=0, max_value=100),
    )
    def test_garbage_raises_only_s3_errors(
        self, garbage: bytes, cuts: list[int], signed: bool, length: int | None
    ) -> None:
        """Arbitrary bytes either decode or raise an S3Error, never anything else."""
        with contextlib.suppress(S3Error):
            decode(
                split(garbage, cuts),
                decoded_length=length,
                trailer_names=["x-amz-checksum-crc32"],
                signatures=Recorder() if signed else None,
                max_line=64,
            )

    @settings(deadline=None, max_examples=500)
    @given(
        payload=st.binary(max_size=200),
        chunk_size=st.integers(min_value=1, max_value=100),
        position=st.integers(min_value=0),
        replacement=st.binary(max_size=3),
        cuts=cuts_strategy,
        signed=st.booleans(),
    )
    def test_mutations_raise_only_s3_errors(
        self,
        payload: bytes,
        chunk_size: int,
        position: int,
        replacement: bytes,
        cuts: list[int],
        signed: bool,
    ) -> None:
        """A valid body with a few bytes replaced decodes or raises an S3Error only."""
        if signed:
            encoded, _ = signed_encode(payload, chunk_size, [("x-amz-checksum-sha1", "x")])
        else:
            encoded = botocore_encode(payload, "sha1", chunk_size)
        position %= len(encoded)
        mutated = encoded[:position] + replacement + encoded[position + len(replacement) :]
        assume(mutated != encoded)
        with contextlib.suppress(S3Error):
            decode(
                split(mutated, cuts),
                decoded_length=len(payload),
                trailer_names=["x-amz-checksum-sha1"],
                signatures=Recorder() if signed else None,
            )

    @settings(deadline=None, max_examples=200)
    @given(
        payload=st.binary(max_size=500),
        chunk_size=st.integers(min_value=1, max_value=200),
        end=st.integers(min_value=0),
    )
    def test_truncations_are_incomplete(self, payload: bytes, chunk_size: int, end: int) -> None:
        """Any proper prefix of botocore's framing ends in IncompleteBody."""
        encoded = botocore_encode(payload, "crc32", chunk_size)
        end %= len(encoded)
        with self.assertRaises(IncompleteBody):
            decode(
                [encoded[:end]],
                decoded_length=len(payload),
                trailer_names=["x-amz-checksum-crc32"],
            )


class HelperTests(SynchronousTestCase):
    def test_trailer_checksum_algorithm(self) -> None:
        """x-amz-checksum-<alg> trailers map to their algorithm; other names are ignored."""
        for algorithm in ALGORITHMS:
            self.assertEqual(trailer_checksum_algorithm([f"x-amz-checksum-{algorithm}"]), algorithm)
        self.assertEqual(trailer_checksum_algorithm(["X-Amz-Checksum-CRC32C"]), "crc32c")
        self.assertEqual(trailer_checksum_algorithm("x-foo, x-amz-checksum-sha1"), "sha1")
        self.assertIsNone(trailer_checksum_algorithm([]))
        self.assertIsNone(trailer_checksum_algorithm(None))
        self.assertIsNone(trailer_checksum_algorithm(["x-foo"]))

    def test_trailer_checksum_algorithm_errors(self) -> None:
        """An unknown checksum trailer is InvalidArgument, two of them InvalidRequest."""
        self.assertRaises(InvalidArgument, trailer_checksum_algorithm, ["x-amz-checksum-md5"])
        self.assertRaises(
            InvalidRequest,
            trailer_checksum_algorithm,
            ["x-amz-checksum-crc32", "x-amz-checksum-sha1"],
        )

    def test_parse_trailer_names(self) -> None:
        """X-Amz-Trailer values are split on commas, stripped, lowered and de-duplicated."""
        self.assertEqual(
            parse_trailer_names(" X-Amz-Checksum-CRC32 , x-foo,,x-amz-checksum-crc32"),
            ("x-amz-checksum-crc32", "x-foo"),
        )
        self.assertEqual(parse_trailer_names(["a", "B, c"]), ("a", "b", "c"))
        self.assertEqual(parse_trailer_names(None), ())
