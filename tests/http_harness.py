"""An in-memory artifactd HTTP server for tests: the real :class:`~artifactd.http.site.S3Site`
wired as :mod:`artifactd.service` wires it, over a :class:`StringTransport`.

What differs from production, and only this:

* metadata is :class:`~artifactd.storage.kv.MemoryKV` (no LevelDB);
* the disk pool is a runner that runs its callable inline (``artifactd.testing.inline_runner``)
  or queues it until the test fires it (:class:`ManualRunner`, for backpressure);
* time is a :class:`~twisted.internet.task.Clock` set to :data:`NOW`, which is also the
  timestamp the test signer puts into its SigV4 signatures;
* the site's ``reactor`` (HTTPChannel idle timeouts) is that clock, not the global reactor.

Requests are raw HTTP/1.1 bytes fed to ``site.buildProtocol(addr)``: ``treq.testing.StubTreq``
would build a stock ``Site`` and never exercise ``S3Request`` (research pitfall 25).
"""

from __future__ import annotations

import io
import itertools
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, BinaryIO, ParamSpec, TypeVar
from urllib.parse import quote

from attrs import define, field
from botocore.auth import SIGV4_TIMESTAMP, S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from artifactd.config import Config
from artifactd.credentials import KeyPair, StaticAuthenticator
from artifactd.http.api import S3Api
from artifactd.http.gate import Gate
from artifactd.http.site import S3Site
from artifactd.service import metadata_store
from artifactd.storage.blobs import FileBlobStore, StagingFile
from artifactd.storage.engine import Engine
from artifactd.storage.kv import MemoryKV
from artifactd.storage.layout import Layout
from artifactd.testing import ManualRunner, inline_runner

P = ParamSpec("P")
T = TypeVar("T")

ACCESS_KEY = "AKIDHARNESS000000001"
SECRET_KEY = "harness/secret+key=42"
REGION = "us-east-1"
HOST = "s3.test"
NOW = datetime(2026, 11, 28, 1, 23, 45, tzinfo=UTC)
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


# ------------------------------------------------------------------------- runners
class CountingBlobStore(FileBlobStore):
    """A :class:`FileBlobStore` that counts the staging files it opens."""

    def __init__(self, layout: Layout) -> None:
        super().__init__(layout)
        self.staging_opened = 0

    def open_staging(self, size: int | None = None) -> StagingFile:
        self.staging_opened += 1
        return super().open_staging(size)


# ------------------------------------------------------------------------ responses
@define
class Response:
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    interim: list[int] = field(factory=list)  # 1xx status codes seen before the final response

    def header(self, name: str) -> str | None:
        wanted = name.lower().encode()
        for key, value in self.headers:
            if key.lower() == wanted:
                return value.decode("latin-1")
        return None

    def header_values(self, name: str) -> list[str]:
        wanted = name.lower().encode()
        return [v.decode("latin-1") for k, v in self.headers if k.lower() == wanted]

    def xml(self) -> ET.Element:
        return ET.fromstring(self.body)

    def error(self) -> dict[str, str]:
        """The children of an S3 ``<Error>`` body, by tag."""
        root = self.xml()
        if root.tag != "Error":
            raise AssertionError(f"not an S3 error document: {self.body!r}")
        return {child.tag: child.text or "" for child in root}


def parse_responses(raw: bytes, *, head: bool = False) -> list[Response]:
    """Every complete HTTP/1.1 response in ``raw``; 1xx interim responses are attached to the
    final response that follows them."""
    out: list[Response] = []
    interim: list[int] = []
    pos = 0
    while pos < len(raw):
        end = raw.find(b"\r\n\r\n", pos)
        if end < 0:
            raise AssertionError(f"incomplete response head: {raw[pos:]!r}")
        lines = raw[pos:end].split(b"\r\n")
        version, status_text, *rest = lines[0].split(b" ", 2)
        if not version.startswith(b"HTTP/1."):
            raise AssertionError(f"not an HTTP response: {lines[0]!r}")
        status = int(status_text)
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip(), value.strip()))
        pos = end + 4
        if 100 <= status < 200:
            interim.append(status)
            continue
        lower = {k.lower(): v for k, v in headers}
        if head or status in (204, 304):
            body = b""
        elif lower.get(b"transfer-encoding", b"").lower() == b"chunked":
            body, pos = _dechunk(raw, pos)
        elif b"content-length" in lower:
            n = int(lower[b"content-length"])
            body = raw[pos : pos + n]
            if len(body) != n:
                raise AssertionError(f"truncated body: {len(body)} of {n} bytes")
            pos += n
        else:
            body, pos = raw[pos:], len(raw)
        out.append(Response(status, rest[0] if rest else b"", headers, body, interim))
        interim = []
    if interim:
        out.append(Response(interim[-1], b"", [], b"", interim))
    return out


def _dechunk(raw: bytes, pos: int) -> tuple[bytes, int]:
    body = bytearray()
    while True:
        end = raw.index(b"\r\n", pos)
        size = int(raw[pos:end].split(b";")[0], 16)
        pos = end + 2
        if size == 0:
            pos = raw.index(b"\r\n", pos) + 2  # no trailers from twisted.web
            return bytes(body), pos
        body += raw[pos : pos + size]
        pos += size + 2


# ------------------------------------------------------------------------- requests
class _FixedTimeSigner(S3SigV4Auth):  # type: ignore[misc]
    """botocore's S3 SigV4 signer with the timestamp given instead of the wall clock.

    Same steps as ``SigV4Auth.add_auth``; only ``get_current_datetime()`` is replaced."""

    def __init__(self, credentials: Credentials, when: datetime) -> None:
        super().__init__(credentials, "s3", REGION)
        self._when = when

    def add_auth(self, request: AWSRequest) -> None:
        request.context["timestamp"] = self._when.strftime(SIGV4_TIMESTAMP)
        self._modify_request_before_signing(request)
        canonical = self.canonical_request(request)
        string_to_sign = self.string_to_sign(request, canonical)
        self._inject_signature_to_request(request, self.signature(string_to_sign, request))


def key_path(bucket: str, key: str | None = None) -> str:
    """The request path botocore would send for a bucket or object (path-style)."""
    path = "/" + quote(bucket, safe="")
    if key is not None:
        path += "/" + quote(key, safe="/~")
    return path


def sign(
    method: str,
    target: str,
    headers: Mapping[str, str] | None = None,
    *,
    payload: bytes | None = b"",
    trailer: str | None = None,
    access_key: str = ACCESS_KEY,
    secret_key: str = SECRET_KEY,
    when: datetime = NOW,
) -> list[tuple[str, str]]:
    """The request headers, signed by botocore: ``headers`` plus Host, X-Amz-Date,
    X-Amz-Content-SHA256 and Authorization.

    ``payload`` is what the X-Amz-Content-SHA256 claim is computed over; with ``trailer`` (e.g.
    ``"x-amz-checksum-crc32"``) the claim is ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` instead.
    """
    all_headers = {"Host": HOST, **(headers or {})}
    request = AWSRequest(
        method=method, url=f"http://{HOST}{target}", headers=all_headers, data=payload or b""
    )
    if trailer is not None:
        request.context["checksum"] = {
            "request_algorithm": {"in": "trailer", "name": trailer, "algorithm": "crc32"}
        }
    _FixedTimeSigner(Credentials(access_key, secret_key), when).add_auth(request)
    return [(str(k), str(v)) for k, v in request.headers.items()]


def serialise(
    method: str, target: str, headers: Iterable[tuple[str, str]], body: bytes = b""
) -> bytes:
    """The raw HTTP/1.1 request: request line, headers, blank line, body as given."""
    head = [f"{method} {target} HTTP/1.1"]
    head.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + body


def http_chunked(data: bytes, sizes: Sequence[int] = (), *, default: int = 4096) -> bytes:
    """``data`` framed with ``Transfer-Encoding: chunked``, chunk sizes taken from ``sizes``
    (cycled, each at least 1) or ``default``."""
    out = bytearray()
    pos = 0
    i = 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else default
        i += 1
        piece = data[pos : pos + size]
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        pos += len(piece)
    out += b"0\r\n\r\n"
    return bytes(out)


def aws_chunked(payload: bytes, *, chunk_size: int = 0x20000) -> bytes:
    """``payload`` framed as botocore frames an https PutObject: aws-chunked with an
    ``x-amz-checksum-crc32`` trailer (``botocore.httpchecksum.AwsChunkedWrapper``)."""
    wrapper = AwsChunkedWrapper(
        io.BytesIO(payload),
        checksum_cls=Crc32Checksum,
        checksum_name="x-amz-checksum-crc32",
        chunk_size=chunk_size,
    )
    framed: bytes = wrapper.read()
    return framed


def put_request(
    bucket: str,
    key: str,
    payload: bytes,
    *,
    encoding: str = "plain",
    expect: bool = False,
    headers: Mapping[str, str] | None = None,
    http_chunks: Sequence[int] = (),
    aws_chunk_size: int = 0x20000,
    sign_payload: bytes | None = None,
    secret_key: str = SECRET_KEY,
    query: str = "",
) -> bytes:
    """A signed PutObject as raw bytes.

    ``encoding`` is ``"plain"`` (Content-Length, signed payload), ``"chunked"``
    (Transfer-Encoding: chunked, signed payload) or ``"aws-chunked"`` (botocore's https
    default: Transfer-Encoding: chunked around aws-chunked with a CRC32 trailer).
    ``sign_payload`` signs a different body's SHA-256 (to forge a mismatch); ``query`` (e.g.
    ``"?partNumber=1&uploadId=..."``) makes it an UploadPart.
    """
    target = key_path(bucket, key) + query
    extra: dict[str, str] = dict(headers or {})
    if expect:
        extra["Expect"] = "100-continue"
    claimed = payload if sign_payload is None else sign_payload
    if encoding == "plain":
        extra["Content-Length"] = str(len(payload))
        signed = sign("PUT", target, extra, payload=claimed, secret_key=secret_key)
        return serialise("PUT", target, signed, payload)
    if encoding == "chunked":
        extra["Transfer-Encoding"] = "chunked"
        signed = sign("PUT", target, extra, payload=claimed, secret_key=secret_key)
        return serialise("PUT", target, signed, http_chunked(payload, http_chunks))
    if encoding == "aws-chunked":
        extra.update(
            {
                "Transfer-Encoding": "chunked",
                "Content-Encoding": "aws-chunked",
                "X-Amz-Trailer": "x-amz-checksum-crc32",
                "X-Amz-Decoded-Content-Length": str(len(payload)),
                "x-amz-sdk-checksum-algorithm": "CRC32",
            }
        )
        signed = sign(
            "PUT",
            target,
            extra,
            payload=None,
            trailer="x-amz-checksum-crc32",
            secret_key=secret_key,
        )
        framed = aws_chunked(payload, chunk_size=aws_chunk_size)
        return serialise("PUT", target, signed, http_chunked(framed, http_chunks))
    raise ValueError(encoding)


def signed_request(
    method: str,
    target: str,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> bytes:
    """A signed request with a plain (Content-Length when non-empty) body."""
    extra = dict(headers or {})
    if body or method in ("PUT", "POST"):
        extra["Content-Length"] = str(len(body))
    return serialise(method, target, sign(method, target, extra, payload=body), body)


def split_head(raw: bytes) -> tuple[bytes, bytes]:
    """A raw request's head (through the blank line) and its body bytes."""
    end = raw.index(b"\r\n\r\n") + 4
    return raw[:end], raw[end:]


def split_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    """``data`` cut at ``cuts`` (each taken modulo ``len(data) + 1``); every piece non-empty."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


# -------------------------------------------------------------------------- harness
class RecordingTransport(StringTransport):
    """A StringTransport that also appends each write to a shared event list."""

    def __init__(self, events: list[tuple[Any, ...]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.events = events

    def write(self, data: bytes) -> None:
        self.events.append(("write", data))
        super().write(data)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        joined = b"".join(data)
        self.events.append(("write", joined))
        super().write(joined)


class Connection:
    """One client connection to the harness's site."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness
        self.events: list[tuple[Any, ...]] = []
        self.protocol: IProtocol = harness.site.buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 40000)
        )
        self.transport = RecordingTransport(
            self.events,
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000),
            hostAddress=IPv4Address("TCP", "127.0.0.1", 9000),
        )
        self.protocol.makeConnection(self.transport)

    def feed(self, data: bytes) -> None:
        """Deliver ``data`` as one read, then let due timed calls run (the disk pool is left
        alone: with a :class:`ManualRunner` the test decides when it runs)."""
        self.protocol.dataReceived(data)
        self.harness.pump()

    def feed_pieces(self, pieces: Iterable[bytes]) -> None:
        for piece in pieces:
            self.feed(piece)

    def disconnect(self) -> None:
        """The client goes away: as a TCP transport does on connection loss, stop the
        transport's producer (the channel, which stops a response producer), then tell the
        protocol."""
        producer = self.transport.producer
        if producer is not None:
            producer.stopProducing()
        self.transport.disconnected = True
        self.protocol.connectionLost(Failure(ConnectionDone("client went away")))
        self.harness.pump()

    def responses(self, *, head: bool = False) -> list[Response]:
        return parse_responses(self.transport.value(), head=head)

    def response(self, *, head: bool = False) -> Response:
        found = self.responses(head=head)
        if len(found) != 1:
            raise AssertionError(f"expected one response, got {len(found)}: {found!r}")
        return found[0]


class Harness:
    """The site and its stores, in memory (blobs in a temp directory)."""

    def __init__(
        self,
        root: str,
        *,
        config: Config | None = None,
        runner: Callable[..., Deferred[Any]] | None = None,
    ) -> None:
        self.config = config or Config(
            data_dir=root, root_access_key=ACCESS_KEY, root_secret_key=SECRET_KEY
        )
        self.layout = Layout(os.path.abspath(root))
        os.makedirs(self.layout.root, exist_ok=True)
        self.clock = Clock()
        self.clock.advance(NOW.timestamp())
        self.run: Callable[..., Deferred[Any]] = runner if runner is not None else inline_runner
        self.blobs = CountingBlobStore(self.layout)
        self.blobs.prepare()
        self.meta = metadata_store(MemoryKV())
        self.engine = Engine(self.blobs, self.meta, self.run)
        pair = KeyPair(ACCESS_KEY, SECRET_KEY)
        gate = Gate(self.config, self.meta, StaticAuthenticator(pair), self.clock.seconds)
        api = S3Api(self.config, self.engine, self.meta, self.clock)
        self.site = S3Site(
            api.resource(),
            gate=gate,
            engine=self.engine,
            blobs=self.blobs,
            run=self.run,
            clock=self.clock,
            max_request_head_bytes=self.config.max_request_head_bytes,
            max_headers=self.config.max_headers,
        )
        self.site.reactor = self.clock

    def pump(self) -> None:
        """Run every timed call due now (the download producer's next turn, ...)."""
        for _ in range(100000):
            due = [c for c in self.clock.getDelayedCalls() if c.getTime() <= self.clock.seconds()]
            if not due:
                return
            self.clock.advance(0)
        raise AssertionError("the clock never settles")

    def settle(self) -> None:
        """Run queued disk-pool work and due timed calls until nothing is left."""
        run = self.run
        while True:
            self.pump()
            if not (isinstance(run, ManualRunner) and run.pending):
                return
            run.fire_all()

    def connect(self) -> Connection:
        return Connection(self)

    def send(self, raw: bytes | Iterable[bytes], *, head: bool = False) -> Response:
        """Send one request on a new connection (as one piece or the pieces given), let the
        disk pool finish, and return its response."""
        conn = self.connect()
        for piece in [raw] if isinstance(raw, bytes) else raw:
            conn.feed(piece)
            self.settle()
        return conn.response(head=head)

    # conveniences -----------------------------------------------------------------
    def create_bucket(self, name: str) -> Response:
        response = self.send(signed_request("PUT", key_path(name)))
        if response.status != 200:
            raise AssertionError(f"CreateBucket {name}: {response!r}")
        return response

    def get(self, bucket: str, key: str, headers: Mapping[str, str] | None = None) -> Response:
        return self.send(signed_request("GET", key_path(bucket, key), headers=headers))

    def staging_files(self) -> list[str]:
        """The staging directory's files but the spares the blob store keeps on purpose."""
        spares = (
            {os.path.basename(s.path) for s in self.blobs.spares.spares}
            if self.blobs.spares
            else set()
        )
        return sorted(set(os.listdir(self.layout.staging)) - spares)

    def blob_files(self) -> list[str]:
        found: list[str] = []
        for dirpath, _dirs, files in os.walk(self.layout.blobs):
            found.extend(os.path.join(dirpath, f) for f in files)
        return sorted(found)

    def open_blob(self, digest: str) -> BinaryIO:
        return self.blobs.open_blob(digest)
