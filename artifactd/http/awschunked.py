"""Incremental decoder for the ``aws-chunked`` content encoding.

Over TLS, boto3 and aws-cli upload with ``Content-Encoding: aws-chunked``,
``X-Amz-Content-SHA256: STREAMING-UNSIGNED-PAYLOAD-TRAILER`` and a checksum trailer.  After the
HTTP layer has removed ``Transfer-Encoding: chunked`` the body looks like::

    b\\r\\n
    hello world\\r\\n
    0\\r\\n
    x-amz-checksum-crc32:DUoRhQ==\\r\\n
    \\r\\n

The grammar accepted (exactly what botocore's ``AwsChunkedWrapper``, the AWS Java/Go SDKs, the
CRT and the AWS documentation produce)::

    body          = *data-chunk final-chunk trailer-section
    data-chunk    = chunk-header <size bytes> CRLF          ; size > 0
    final-chunk   = chunk-header                            ; size == 0, no data, no CRLF
    chunk-header  = 1*16HEXDIG [ ";chunk-signature=" 64LOWERHEX ] CRLF
    trailer-section = *( name ":" value CRLF ) [ "x-amz-trailer-signature:" sig CRLF ] CRLF

so an unsigned body without trailers ends with ``0\\r\\n\\r\\n`` and a signed one with
``0;chunk-signature=<sig>\\r\\n\\r\\n``.  Signed streaming (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD``
and ``...-TRAILER``) requires ``chunk-signature`` on every chunk, including the final one;
unsigned streaming forbids it.

Errors (all :class:`~artifactd.errors.S3Error`), following what Amazon S3 answers:

* bad framing (bad hex size, missing CRLF, bare LF, missing or unexpected ``chunk-signature``,
  data after the end, body ending early) and a decoded length that differs from
  ``X-Amz-Decoded-Content-Length``: ``IncompleteBody``;
* a chunk header or trailer line longer than ``max_line``: ``InvalidEncoding``;
* a trailer that is undeclared, duplicated, empty, not ``name:value``, or declared in
  ``X-Amz-Trailer`` but never sent: ``MalformedTrailerError``;
* a chunk or trailer signature that does not verify: whatever the :class:`ChunkSignatures`
  raises (``SignatureDoesNotMatch``); a missing ``x-amz-trailer-signature`` in a signed stream
  with trailers: ``SignatureDoesNotMatch``.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol

from attrs import define, field

from artifactd.checksums import ALGORITHMS, HEADER_PREFIX
from artifactd.errors import (
    IncompleteBody,
    InvalidArgument,
    InvalidEncoding,
    InvalidRequest,
    MalformedTrailerError,
    SignatureDoesNotMatch,
)

__all__ = [
    "TRAILER_SIGNATURE",
    "AwsChunkedDecoder",
    "ChunkSignatures",
    "parse_trailer_names",
    "trailer_checksum_algorithm",
]

TRAILER_SIGNATURE: Final = "x-amz-trailer-signature"

_CHUNK_HEADER = re.compile(rb"([0-9A-Fa-f]{1,16})(?:;chunk-signature=([0-9a-f]{64}))?")
_TOKEN = re.compile(rb"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(rb"[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*")

# States of the decoder.
_HEADER: Final = 0  # reading a chunk header line
_DATA: Final = 1  # passing chunk data to the sink
_DATA_CRLF: Final = 2  # expecting the CRLF after a chunk's data
_TRAILER: Final = 3  # reading trailer lines, up to the empty line
_DONE: Final = 4  # the empty line that ends the body has been read
_FAILED: Final = 5  # an exception was raised; nothing more is accepted


class ChunkSignatures(Protocol):
    """The signature chain of a signed streaming body (``artifactd.http.sigv4``)."""

    def verify_chunk(self, signature: str, chunk_sha256_hex: str) -> None:
        """Verify one chunk's ``chunk-signature``; raises ``SignatureDoesNotMatch``."""
        ...

    def verify_trailer(self, signature: str, trailer_bytes: bytes) -> None:
        """Verify ``x-amz-trailer-signature`` over the canonical trailer block."""
        ...


def parse_trailer_names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """The trailer names declared by ``X-Amz-Trailer``: lower-cased, stripped, de-duplicated.

    ``value`` is the header value (a comma-separated list) or several such values.
    """
    if value is None:
        return ()
    parts = [value] if isinstance(value, str) else list(value)
    names: list[str] = []
    for part in parts:
        for item in part.split(","):
            name = item.strip().lower()
            if name and name not in names:
                names.append(name)
    return tuple(names)


def trailer_checksum_algorithm(trailer_names: str | Iterable[str] | None) -> str | None:
    """The checksum algorithm carried by the trailers, if any.

    ``["x-amz-checksum-crc32"]`` → ``"crc32"``; no ``x-amz-checksum-*`` trailer → ``None``.
    Raises ``InvalidArgument`` for an unsupported ``x-amz-checksum-*`` trailer and
    ``InvalidRequest`` if more than one checksum trailer is declared.
    """
    found: str | None = None
    for name in parse_trailer_names(trailer_names):
        if not name.startswith(HEADER_PREFIX):
            continue
        algorithm = name[len(HEADER_PREFIX) :]
        if algorithm not in ALGORITHMS:
            raise InvalidArgument(
                f"Unsupported checksum trailer: {name}.",
                extra={"ArgumentName": "x-amz-trailer", "ArgumentValue": name},
            )
        if found is not None:
            raise InvalidRequest(
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not"
                " allowed."
            )
        found = algorithm
    return found


@define(eq=False)
class AwsChunkedDecoder:
    """Decode an ``aws-chunked`` body fed in arbitrary pieces; pass the payload to ``sink``.

    ``feed`` takes the body as delivered by the HTTP layer (already HTTP-dechunked), split
    anywhere; ``finish`` is called once the body has ended and returns the trailers.

    Memory is constant: payload bytes are never accumulated.  When a piece is entirely payload
    it is passed to ``sink`` as is; otherwise the payload parts of it are passed as slices.
    Only the current chunk header or trailer line is buffered (at most ``max_line`` bytes,
    CRLF included), plus the parsed trailers (each a declared name, so at most
    ``len(trailer_names)`` lines).

    ``decoded_length`` is ``X-Amz-Decoded-Content-Length`` (``None`` if absent): a chunk header
    that would take the payload past it fails at once, and a final chunk reached with fewer
    bytes fails then, both with ``IncompleteBody``.

    ``trailer_names`` are the names declared by ``X-Amz-Trailer``.  Only those may be sent, each
    at most once, and each must be sent.  Checking a trailer checksum's *value* is the
    caller's job (see :func:`trailer_checksum_algorithm`).

    ``signatures`` is given for signed streaming.  Each chunk's SHA-256 is computed as its
    bytes arrive, and ``signatures.verify_chunk(signature, sha256_hex)`` is called, in order,
    as soon as the chunk's last byte has arrived (for the final zero-length chunk: when its
    header is read).  If the stream has trailers, ``signatures.verify_trailer(signature,
    canonical)`` is called when the trailer section ends, where ``canonical`` is one
    ``name:value\\n`` line per trailer (name lower-cased, value stripped, sorted by name,
    without ``x-amz-trailer-signature``), the same bytes as ``sigv4.canonical_trailer``.

    **Guarantee for signed streams:** a chunk's bytes reach ``sink`` *before* its signature is
    verified (holding back a chunk of up to several MiB would mean buffering it).  So bytes
    given to ``sink`` are authenticated only once ``finish`` has returned: a caller must
    discard everything it received (the staged object) if ``feed`` or ``finish`` raises.  The
    same holds for framing errors and trailer checksums.

    Any exception (from the decoder, the sink or the verifier) leaves the decoder failed: later
    calls raise ``IncompleteBody``.  Exceptions raised by ``sink`` propagate unchanged; the
    decoder itself raises only :class:`~artifactd.errors.S3Error`.
    """

    sink: Callable[[bytes], None]
    decoded_length: int | None = field(kw_only=True)
    trailer_names: tuple[str, ...] = field(kw_only=True, converter=parse_trailer_names)
    signatures: ChunkSignatures | None = field(kw_only=True)
    max_line: int = field(kw_only=True, default=4096)

    _state: int = field(init=False, default=_HEADER)
    _line: bytearray = field(init=False, factory=bytearray, repr=False)
    _remaining: int = field(init=False, default=0)  # bytes of the current chunk still due
    _crlf_seen: int = field(init=False, default=0)  # bytes of the post-data CRLF already seen
    _decoded: int = field(init=False, default=0)  # payload bytes announced by chunk headers
    _chunk_signature: str = field(init=False, default="")
    _chunk_hash: hashlib._Hash | None = field(init=False, default=None, repr=False)
    _trailers: dict[str, str] = field(init=False, factory=dict)
    _trailer_signature: str | None = field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        if self.decoded_length is not None and self.decoded_length < 0:
            raise ValueError("decoded_length must not be negative")
        if self.max_line < 8:
            raise ValueError("max_line is too small")

    # -- public API -----------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Decode the next piece of the body, calling ``sink`` with its payload bytes."""
        if self._state == _FAILED:
            raise IncompleteBody("The aws-chunked body could not be decoded.")
        try:
            self._feed(data)
        except BaseException:
            self._state = _FAILED
            raise

    def finish(self) -> Mapping[str, str]:
        """End of body: check it was complete; return the trailers (lower-case names)."""
        if self._state != _DONE:
            self._state = _FAILED
            raise IncompleteBody(
                "The aws-chunked body ended before its final chunk and trailer section."
            )
        return dict(self._trailers)

    @property
    def decoded_bytes(self) -> int:
        """The payload bytes passed to ``sink`` so far."""
        return self._decoded - self._remaining

    # -- decoding -------------------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        n = len(data)
        pos = 0
        while pos < n:
            state = self._state
            if state == _DATA:
                take = min(self._remaining, n - pos)
                piece = data if take == n else data[pos : pos + take]
                pos += take
                self._remaining -= take
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                self.sink(piece)
                if self._remaining == 0:
                    self._end_of_chunk_data()
            elif state == _DATA_CRLF:
                while self._crlf_seen < 2 and pos < n:
                    if data[pos] != b"\r\n"[self._crlf_seen]:
                        raise IncompleteBody("Chunk data is not followed by CRLF.")
                    pos += 1
                    self._crlf_seen += 1
                if self._crlf_seen == 2:
                    self._state = _HEADER
            elif state in (_HEADER, _TRAILER):
                line, pos = self._take_line(data, pos)
                if line is None:
                    return
                if state == _HEADER:
                    self._chunk_header(line)
                else:
                    self._trailer_line(line)
            else:
                raise IncompleteBody("Unexpected data after the end of the aws-chunked body.")

    def _take_line(self, data: bytes, pos: int) -> tuple[bytes | None, int]:
        """The next complete line (without its CRLF) and the position after it, or
        ``(None, len(data))`` once the rest of ``data`` has been buffered."""
        buffered = self._line
        room = self.max_line - len(buffered)
        end = min(len(data), pos + room)
        idx = data.find(b"\n", pos, end)
        if idx < 0:
            if end - pos >= room:
                raise InvalidEncoding(
                    f"An aws-chunked header or trailer line is longer than {self.max_line} bytes."
                )
            buffered += data[pos:end]
            return None, end
        if buffered:
            buffered += data[pos : idx + 1]
            line = bytes(buffered)
            buffered.clear()
        else:
            line = data[pos : idx + 1]
        if len(line) < 2 or line[-2] != 0x0D:
            raise IncompleteBody("An aws-chunked line does not end with CRLF.")
        return line[:-2], idx + 1

    def _chunk_header(self, line: bytes) -> None:
        match = _CHUNK_HEADER.fullmatch(line)
        if match is None:
            raise IncompleteBody("Malformed aws-chunked chunk header.")
        size = int(match.group(1), 16)
        signature = match.group(2)
        if self.signatures is not None:
            if signature is None:
                raise IncompleteBody("A chunk of a signed streaming body has no chunk-signature.")
            self._chunk_signature = signature.decode("ascii")
            self._chunk_hash = hashlib.sha256()
        elif signature is not None:
            raise IncompleteBody("A chunk of an unsigned streaming body has a chunk-signature.")
        self._decoded += size
        if self.decoded_length is not None and self._decoded > self.decoded_length:
            raise IncompleteBody(
                "The aws-chunked body has more data than X-Amz-Decoded-Content-Length"
                f" ({self.decoded_length} bytes)."
            )
        if size:
            self._remaining = size
            self._state = _DATA
            return
        # The final chunk: no data, no CRLF of its own; the trailer section follows.
        if self.decoded_length is not None and self._decoded != self.decoded_length:
            raise IncompleteBody(
                f"The aws-chunked body has {self._decoded} bytes of data but"
                f" X-Amz-Decoded-Content-Length is {self.decoded_length}."
            )
        self._verify_chunk()
        self._state = _TRAILER

    def _end_of_chunk_data(self) -> None:
        self._verify_chunk()
        self._crlf_seen = 0
        self._state = _DATA_CRLF

    def _verify_chunk(self) -> None:
        if self.signatures is not None and self._chunk_hash is not None:
            digest = self._chunk_hash.hexdigest()
            self._chunk_hash = None
            self.signatures.verify_chunk(self._chunk_signature, digest)

    def _trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_of_trailers()
            return
        colon = line.find(b":")
        raw_name = line[:colon] if colon >= 0 else line
        if colon <= 0 or _TOKEN.fullmatch(raw_name) is None:
            raise MalformedTrailerError("A trailer line is not of the form name:value.")
        raw_value = line[colon + 1 :].strip(b" \t")
        if _VALUE.fullmatch(raw_value) is None:
            raise MalformedTrailerError("A trailer has an empty or invalid value.")
        name = raw_name.decode("ascii").lower()
        value = raw_value.decode("ascii")
        if self._trailer_signature is not None:
            raise MalformedTrailerError(f"{TRAILER_SIGNATURE} must be the last trailer.")
        if name == TRAILER_SIGNATURE:
            if self.signatures is None:
                raise MalformedTrailerError(
                    f"{TRAILER_SIGNATURE} was sent with an unsigned streaming body."
                )
            self._trailer_signature = value
            return
        if name not in self.trailer_names:
            raise MalformedTrailerError(f"The trailer {name} was not declared in X-Amz-Trailer.")
        if name in self._trailers:
            raise MalformedTrailerError(f"The trailer {name} was sent more than once.")
        self._trailers[name] = value

    def _end_of_trailers(self) -> None:
        missing = [name for name in self.trailer_names if name not in self._trailers]
        if missing:
            raise MalformedTrailerError(
                f"The trailer {', '.join(missing)} declared in X-Amz-Trailer was not sent."
            )
        if self.signatures is not None:
            if self._trailer_signature is None:
                if self._trailers:
                    raise SignatureDoesNotMatch(
                        f"The signed streaming body has trailers but no {TRAILER_SIGNATURE}."
                    )
            else:
                self.signatures.verify_trailer(self._trailer_signature, self._canonical_trailer())
        self._state = _DONE

    def _canonical_trailer(self) -> bytes:
        return b"".join(
            f"{name}:{value}\n".encode("ascii") for name, value in sorted(self._trailers.items())
        )
