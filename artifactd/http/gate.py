"""The checks made once a request's headers are in, before ``100 Continue`` and before any body
byte is read: which action it is, who signed it, whether its bucket (and upload) exist, whether its
size is allowed, and how its body must be decoded and verified."""

from __future__ import annotations

import base64
import binascii
import datetime
import re
from collections.abc import Callable, Sequence

from attrs import frozen

from artifactd import errors, integrity, names, preconditions
from artifactd.config import Config
from artifactd.http import copying, sigv4, tagging
from artifactd.http.actions import classify, parse_target
from artifactd.http.awschunked import trailer_checksum_algorithm
from artifactd.http.body import BodyChecks
from artifactd.http.context import RequestContext
from artifactd.http.versioning import VERSION_ID_ACTIONS, check_version_id
from artifactd.http.vhost import bucket_from_host
from artifactd.interfaces import IAuthenticator, IMetadataStore
from artifactd.records import Upload

STREAMED_ACTIONS = frozenset({"PutObject", "UploadPart"})
MAX_XML_BODY = 4 * 1024 * 1024
MAX_OTHER_BODY = 64 * 1024
MAX_PART_SIZE = 5 * 1024**3
MAX_PARTS = 10000

_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z")
_SIGNED_STREAMING = (
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)
_UNSIGNED_STREAMING = ("STREAMING-UNSIGNED-PAYLOAD-TRAILER",)


@frozen
class ChunkedSpec:
    """How to decode an ``aws-chunked`` body."""

    decoded_length: int | None
    trailer_names: tuple[str, ...]
    signatures: sigv4.ChunkSignatureVerifier | None


@frozen
class BodyPlan:
    streamed: bool  # to a staging file (True) or kept in memory (False)
    checks: BodyChecks
    chunked: ChunkedSpec | None


class Gate:
    """Admits or refuses a request from its head.  Reactor thread; reads metadata inline (cheap
    LevelDB gets)."""

    def __init__(
        self,
        config: Config,
        meta: IMetadataStore,
        authenticator: IAuthenticator,
        seconds: Callable[[], float],
    ) -> None:
        self._config = config
        self._meta = meta
        self._auth = authenticator
        self._seconds = seconds

    def admit(
        self,
        ctx: RequestContext,
        raw_uri: bytes,
        headers: Sequence[tuple[bytes, bytes]],
        length: int | None,
    ) -> BodyPlan:
        """Fill in ``ctx`` (target, action, principal) and return how to receive the body;
        raises the S3 error that refuses the request."""
        lower = _lower_headers(headers)
        host_bucket = bucket_from_host(lower.get("host"), self._config.virtual_host_domains)
        target, raw_path, raw_query = parse_target(raw_uri, self._config.base_path, host_bucket)
        ctx.target = target
        ctx.action = classify(ctx.method, target, lower)
        verified = self._authenticate(ctx.method, raw_path, raw_query, headers)
        ctx.principal = verified.access_key
        if ctx.action == "CreateBucket":
            assert target.bucket is not None
            names.check_bucket_name(target.bucket)
        if target.key is not None:
            names.check_key(target.key)
        if ctx.action in VERSION_ID_ACTIONS:
            check_version_id(target.query)
        if ctx.action in ("PutObject", "CreateMultipartUpload") and "x-amz-tagging" in lower:
            tagging.parse_header(lower["x-amz-tagging"].encode("latin-1"))
        if ctx.action in ("PutObject", "CreateMultipartUpload"):
            grouped: dict[bytes, list[bytes]] = {}
            for name, value in headers:
                grouped.setdefault(name.lower(), []).append(value)
            names.check_metadata(names.user_metadata(grouped.items()))
        if ctx.action in copying.COPY_ACTIONS:
            # body-less: refuse a copy whose destination, source or conditions fail from its head
            copying.admit(self._meta, ctx.action, target, lower)
        streamed = ctx.action in STREAMED_ACTIONS
        upload: Upload | None = None
        if streamed:
            upload = self._admit_upload(ctx, lower, length)
        if ctx.action == "PutObject":
            # refuse a conditional write before its body; the metadata store re-checks atomically
            assert target.bucket is not None and target.key is not None
            condition = preconditions.write_condition(lower)
            if condition is not None:
                current = self._meta.get_object(target.bucket, target.key)
                preconditions.check_write(
                    condition,
                    current.etag if current is not None else None,
                    at_commit=False,
                    key=target.key,
                )
        return self._plan(ctx, lower, length, verified, streamed, upload)

    # --------------------------------------------------------------- helpers
    def _authenticate(
        self, method: str, raw_path: bytes, raw_query: bytes, headers: Sequence[tuple[bytes, bytes]]
    ) -> sigv4.Verified:
        now = datetime.datetime.fromtimestamp(self._seconds(), tz=datetime.UTC)
        verified = sigv4.authenticate(
            sigv4.SignedRequest(method.encode(), raw_path, raw_query, tuple(headers)),
            self._auth.secret_for,
            now,
        )
        if verified is None:
            raise errors.AccessDenied("Anonymous access is not allowed; sign requests with SigV4.")
        return verified

    def _admit_upload(
        self, ctx: RequestContext, h: dict[str, str], length: int | None
    ) -> Upload | None:
        """Check a PutObject or UploadPart's size, bucket and upload; returns the upload."""
        target = ctx.target
        assert target is not None and target.bucket is not None and target.key is not None
        if "content-length" not in h and "transfer-encoding" not in h:
            raise errors.MissingContentLength()
        declared = h.get("x-amz-decoded-content-length") or (
            str(length) if length is not None else None
        )
        limit = self._config.max_object_size
        if ctx.action == "UploadPart":
            limit = min(limit, MAX_PART_SIZE)
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise errors.InvalidArgument("Invalid content length.") from None
            if size > limit:
                raise errors.EntityTooLarge(
                    extra={"ProposedSize": str(size), "MaxSizeAllowed": str(limit)}
                )
        bucket = self._meta.get_bucket(target.bucket)
        if bucket is None:
            raise errors.NoSuchBucket(resource=target.bucket, extra={"BucketName": target.bucket})
        ctx.bucket = bucket  # the handler needs it too
        if ctx.action == "UploadPart":
            upload_id = target.query.get("uploadId", "")
            number = target.query.get("partNumber", "")
            part_number = names.parse_count(number)
            if part_number is None or not 1 <= part_number <= MAX_PARTS:
                raise errors.InvalidArgument(
                    "Part number must be an integer between 1 and 10000, inclusive",
                    extra={"ArgumentName": "partNumber", "ArgumentValue": number[:64]},
                )
            upload = self._meta.get_upload(target.bucket, target.key, upload_id)
            if upload is None:
                raise errors.NoSuchUpload(extra={"UploadId": upload_id})
            return upload
        return None

    def _plan(
        self,
        ctx: RequestContext,
        h: dict[str, str],
        length: int | None,
        verified: sigv4.Verified,
        streamed: bool,
        upload: Upload | None = None,
    ) -> BodyPlan:
        content_md5 = h.get("content-md5")
        if content_md5 is not None:
            try:
                if len(base64.b64decode(content_md5, validate=True)) != 16:
                    raise ValueError
            except (ValueError, binascii.Error):
                raise errors.InvalidDigest(extra={"Content-MD5": content_md5}) from None
        payload = verified.payload_hash
        content_sha256 = None
        chunked: ChunkedSpec | None = None
        if _HEX64.match(payload):
            content_sha256 = payload
        elif payload in _SIGNED_STREAMING or payload in _UNSIGNED_STREAMING:
            decoded = h.get("x-amz-decoded-content-length")
            trailers = tuple(
                t.strip().lower() for t in h.get("x-amz-trailer", "").split(",") if t.strip()
            )
            chunked = ChunkedSpec(
                decoded_length=names.parse_count(decoded),
                trailer_names=trailers,
                signatures=sigv4.ChunkSignatureVerifier.for_request(verified)
                if payload in _SIGNED_STREAMING
                else None,
            )
        elif payload != "UNSIGNED-PAYLOAD":
            raise errors.InvalidArgument(
                "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-UNSIGNED-PAYLOAD-TRAILER,"
                " STREAMING-AWS4-HMAC-SHA256-PAYLOAD[-TRAILER] or a SHA-256 hex digest.",
                extra={"ArgumentName": "x-amz-content-sha256"},
            )
        if ctx.action == "CompleteMultipartUpload":
            algorithm, value = None, None  # its x-amz-checksum-* describe the object, not the XML
        elif ctx.action in copying.COPY_ACTIONS:
            algorithm, value = None, None  # no body: a copy's checksum is computed from its source
        else:
            algorithm, value = _checksum_request(h, chunked, upload)
        ctx.checksum_algorithm = algorithm
        if streamed:
            max_size = self._config.max_object_size
        elif ctx.action in ("CompleteMultipartUpload", "DeleteObjects", "CreateBucket"):
            max_size = MAX_XML_BODY
        else:
            max_size = MAX_OTHER_BODY
        if not streamed and length is not None and length > max_size:
            raise errors.MaxMessageLengthExceeded(extra={"MaxMessageLengthBytes": str(max_size)})
        checks = BodyChecks(
            content_md5=content_md5,
            content_sha256=content_sha256,
            checksum_algorithm=algorithm,
            checksum_value=value,
            expected_size=chunked.decoded_length if chunked is not None else length,
            max_size=max_size,
        )
        return BodyPlan(streamed=streamed, checks=checks, chunked=chunked)


def _lower_headers(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers:
        out.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return out


def _checksum_request(
    h: dict[str, str], chunked: ChunkedSpec | None, upload: Upload | None
) -> tuple[str | None, str | None]:
    """The checksum algorithm to compute and the value (base64) the client sent in a header
    (None when it comes in a trailer or is only to be computed)."""
    from_trailer = None
    if chunked is not None:
        from_trailer = trailer_checksum_algorithm(list(chunked.trailer_names))
    return integrity.request_checksum(h, from_trailer, upload)
