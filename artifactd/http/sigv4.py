"""AWS Signature Version 4 verification for S3 requests.

This module is pure: it performs no I/O, reads no clock (``now`` is passed in) and keeps no
module-level mutable state.  It verifies the three SigV4 forms S3 clients use:

* header authentication (``Authorization: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
  Signature=...``), see :func:`authenticate`;
* presigned URLs (``X-Amz-Algorithm``/``X-Amz-Credential``/... query parameters), see
  :func:`authenticate`;
* the per-chunk signatures of ``aws-chunked`` bodies (``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` and
  its ``-TRAILER`` variant), see :class:`ChunkSignatureVerifier`.

Every failure caused by client input is raised as an :class:`~artifactd.errors.S3Error`
subclass.  Secrets never appear in an error, a ``repr`` or a return value other than the derived
``signing_key`` (which :class:`Verified` keeps out of its ``repr``).

Canonicalisation (what the signature is checked against):

* **URI**: the raw request path is percent-decoded to bytes and re-encoded with every byte
  except ``A-Z a-z 0-9 - _ . ~ /`` escaped as ``%XX``.  This is the form botocore (whose S3
  serializer quotes keys with ``safe="/~"`` and whose S3 signer uses that path verbatim), s3cmd
  and the AWS SDKs sign.  ``//`` and dot segments are kept as they are.
* **Query**: the raw query is split on ``&`` and the first ``=``, each name and value is
  percent-decoded (``+`` stays a literal ``+``, it is *not* a space) and re-encoded with only
  ``A-Z a-z 0-9 - _ . ~`` left bare, pairs are sorted by name then value, a missing ``=`` yields
  ``name=`` and empty segments are dropped.  ``X-Amz-Signature`` is left out for presigned URLs.
* If the signature does not match that canonical form and the request's raw path or query
  differs from it, the form *exactly as sent* (raw path; raw query pairs, sorted) is tried as
  well.  botocore signs a URL it was handed verbatim, so this accepts such clients; it is safe
  because the signature then covers exactly the bytes on the request line.

Consequence for the HTTP layer: it must derive the object key and query arguments from the raw
bytes by percent-decoding only (``unquote``; never ``unquote_plus``), so that what the
signature covers is what the server acts on.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from urllib.parse import quote, unquote_to_bytes

from attrs import define, field, frozen

from artifactd.errors import (
    AccessDenied,
    AuthorizationHeaderMalformed,
    AuthorizationQueryParametersError,
    InvalidAccessKeyId,
    InvalidArgument,
    InvalidRequest,
    RequestTimeTooSkewed,
    S3Error,
    SignatureDoesNotMatch,
)

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGN_EXPIRES",
    "MAX_SKEW",
    "STREAMING_PAYLOAD",
    "STREAMING_PAYLOAD_TRAILER",
    "STREAMING_UNSIGNED_PAYLOAD_TRAILER",
    "UNSIGNED_PAYLOAD",
    "ChunkSignatureVerifier",
    "SignedRequest",
    "Verified",
    "authenticate",
    "canonical_trailer",
]

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOAD = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_PAYLOAD_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_PAYLOAD_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

#: The largest difference between a request's date and the server clock (both auth forms).
MAX_SKEW = timedelta(minutes=15)
#: The longest validity of a presigned URL, in seconds (seven days).
MAX_PRESIGN_EXPIRES = 604800

_SERVICE = "s3"
_TERMINATOR = "aws4_request"
_AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"
_AMZ_DATE_RE = re.compile(r"\d{8}T\d{6}Z")
_DATE_RE = re.compile(r"\d{8}")
_HEX_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_PAYLOAD_TOKENS = frozenset(
    {
        UNSIGNED_PAYLOAD,
        STREAMING_PAYLOAD,
        STREAMING_PAYLOAD_TRAILER,
        STREAMING_UNSIGNED_PAYLOAD_TRAILER,
    }
)
_URI_SAFE = "/~"
_QUERY_SAFE = "-_.~"
_SIGV2_MESSAGE = (
    "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256."
)
_NO_DATE_MESSAGE = "AWS authentication requires a valid Date or x-amz-date header"
_PRESIGN_PARAMS = (
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Signature",
    "X-Amz-Date",
    "X-Amz-SignedHeaders",
    "X-Amz-Expires",
)
_PRESIGN_NAMES = {name.encode("ascii"): name for name in _PRESIGN_PARAMS}


@frozen
class SignedRequest:
    """The parts of an HTTP request that a SigV4 signature covers, exactly as received."""

    method: bytes
    """The request method, e.g. ``b"PUT"``."""
    raw_path: bytes
    """The path as on the request line, still percent-encoded, without the query."""
    raw_query: bytes
    """The raw query string without the ``?`` (may be empty)."""
    headers: Sequence[tuple[bytes, bytes]]
    """Every request header, names in any case, in arrival order, duplicates allowed."""


@frozen
class Verified:
    """The outcome of a successful :func:`authenticate`."""

    access_key: str
    payload_hash: str
    """The payload claim the signature covers: a 64-hex SHA-256 digest, ``UNSIGNED-PAYLOAD`` or
    a ``STREAMING-...`` token.  The caller must still check the body against a digest."""
    signature: str
    """The request's hex signature (the seed of an ``aws-chunked`` signature chain)."""
    signing_key: bytes = field(repr=False)
    """The key derived from the secret for ``scope``; needed for chunk signatures."""
    scope: str
    """The credential scope, e.g. ``"20261128/us-east-1/s3/aws4_request"``."""
    amz_date: str
    """The request timestamp in ISO 8601 basic format, e.g. ``"20261128T012345Z"``."""


def authenticate(
    req: SignedRequest, lookup_secret: Callable[[str], str | None], now: datetime
) -> Verified | None:
    """Verify the SigV4 signature of ``req`` at time ``now``.

    Returns ``None`` when the request carries no credentials at all (no ``Authorization``
    header and no signature query parameters); the caller decides what anonymous requests may
    do.  Returns a :class:`Verified` only when the signature is valid for the secret that
    ``lookup_secret`` returns for the claimed access key, every ``x-amz-*`` header present is
    signed, and the request is within its time limits.  Otherwise raises an ``S3Error``:

    * ``InvalidRequest`` for SigV2 (``Authorization: AWS ...`` or ``AWSAccessKeyId`` queries),
      or a header-authenticated request without ``x-amz-content-sha256``;
    * ``InvalidArgument`` for both an ``Authorization`` header and signature query parameters,
      or an invalid ``x-amz-content-sha256`` value;
    * ``AuthorizationHeaderMalformed`` / ``AuthorizationQueryParametersError`` for malformed
      credentials (including an unsupported algorithm or a service other than ``s3``);
    * ``AccessDenied`` for a missing or unparsable date, unsigned ``x-amz-*`` headers, or a
      presigned URL that has expired or is not valid yet;
    * ``RequestTimeTooSkewed`` when a header-authenticated request is dated more than
      :data:`MAX_SKEW` away from ``now``;
    * ``InvalidAccessKeyId`` when ``lookup_secret`` returns ``None``;
    * ``SignatureDoesNotMatch`` when the signature is wrong.

    Any region in the credential scope is accepted.  ``now`` should be timezone-aware; a naive
    ``now`` is taken to be UTC.
    """
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    headers = _header_map(req.headers)
    params = _parse_query(req.raw_query)
    names = {p[2] for p in params}
    authorization = headers.get("authorization")
    presigned = not names.isdisjoint((b"X-Amz-Algorithm", b"X-Amz-Credential", b"X-Amz-Signature"))
    sigv2_query = b"AWSAccessKeyId" in names or b"Signature" in names
    if authorization is None and not presigned and not sigv2_query:
        return None
    if (authorization is not None and (presigned or sigv2_query)) or (presigned and sigv2_query):
        raise InvalidArgument(
            "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter,"
            " Signature query string parameter or the Authorization header should be specified",
            extra={"ArgumentName": "Authorization"},
        )
    if authorization is not None:
        claim = _claim_from_header(b",".join(authorization), headers)
    elif presigned:
        claim = _claim_from_query(params, headers)
    else:
        raise InvalidRequest(_SIGV2_MESSAGE)

    secret = lookup_secret(claim.access_key)
    if secret is None:
        raise InvalidAccessKeyId(extra={"AWSAccessKeyId": claim.access_key})
    claim.check_time(now)

    signing_key = _signing_key(secret, claim.date, claim.region, _SERVICE)
    scope = f"{claim.date}/{claim.region}/{_SERVICE}/{_TERMINATOR}"
    canonical_headers = _canonical_headers(claim.signed_headers, headers)
    strings_to_sign = [
        _string_to_sign(claim, scope, req.method, uri, query, canonical_headers)
        for uri, query in _canonical_targets(req, params, presigned=claim.presigned)
    ]
    for string_to_sign in strings_to_sign:
        if _same_signature(_hmac_hex(signing_key, string_to_sign), claim.signature):
            return Verified(
                access_key=claim.access_key,
                payload_hash=claim.payload_hash,
                signature=claim.signature,
                signing_key=signing_key,
                scope=scope,
                amz_date=claim.amz_date,
            )
    raise SignatureDoesNotMatch(
        extra={
            "AWSAccessKeyId": claim.access_key,
            "StringToSign": strings_to_sign[0],
            "SignatureProvided": claim.signature,
        }
    )


@define
class ChunkSignatureVerifier:
    """Verifies the signature chain of an ``aws-chunked`` body, one chunk at a time.

    Each chunk's signature signs the previous signature (the request's seed signature for the
    first chunk), so chunks must be verified in order, ending with the final zero-length chunk
    and, for ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER``, the trailer.
    """

    _signing_key: bytes = field(repr=False)
    _amz_date: str
    _scope: str
    _previous: str

    @classmethod
    def for_request(cls, verified: Verified) -> ChunkSignatureVerifier:
        """Start the chain at ``verified``'s seed signature.

        Raises ``ValueError`` (a caller bug, not a client error) unless ``verified`` claims a
        signed streaming payload (:data:`STREAMING_PAYLOAD` or :data:`STREAMING_PAYLOAD_TRAILER`).
        """
        if verified.payload_hash not in (STREAMING_PAYLOAD, STREAMING_PAYLOAD_TRAILER):
            raise ValueError(f"not a signed streaming payload: {verified.payload_hash!r}")
        return cls(verified.signing_key, verified.amz_date, verified.scope, verified.signature)

    def verify_chunk(self, signature: str, chunk_sha256_hex: str) -> None:
        """Check the ``chunk-signature`` of a chunk whose data has SHA-256 ``chunk_sha256_hex``.

        Raises ``SignatureDoesNotMatch`` on mismatch (the chain is then left unchanged);
        otherwise ``signature`` becomes the previous signature for the next chunk.
        """
        self._advance(signature, "AWS4-HMAC-SHA256-PAYLOAD", EMPTY_SHA256, chunk_sha256_hex.lower())

    def verify_trailer(self, signature: str, trailer_bytes: bytes) -> None:
        """Check the ``x-amz-trailer-signature`` of the trailing headers.

        ``trailer_bytes`` is the canonical trailer block: each trailing header except
        ``x-amz-trailer-signature`` as ``name:value\\n`` (LF, not CRLF), as built by
        :func:`canonical_trailer`.  Raises ``SignatureDoesNotMatch`` on mismatch.
        """
        self._advance(
            signature, "AWS4-HMAC-SHA256-TRAILER", hashlib.sha256(trailer_bytes).hexdigest()
        )

    def _advance(self, signature: str, algorithm: str, *hashes: str) -> None:
        string_to_sign = "\n".join(
            (algorithm, self._amz_date, self._scope, self._previous, *hashes)
        )
        if not _same_signature(_hmac_hex(self._signing_key, string_to_sign), signature):
            raise SignatureDoesNotMatch(
                extra={"StringToSign": string_to_sign, "SignatureProvided": signature}
            )
        self._previous = signature


def canonical_trailer(fields: Iterable[tuple[bytes, bytes]]) -> bytes:
    """Build the bytes a trailer signature covers from the trailing header fields.

    ``fields`` are ``(name, value)`` pairs as parsed from the trailer lines.  The result has one
    ``name:value\\n`` line per field, the name lower-cased and the value stripped, sorted by name
    (SDKs send them sorted already), without ``x-amz-trailer-signature``.  This matches the
    AWS documentation's example (``x-amz-checksum-crc32c:sOO8/Q==\\n``) and the AWS SDKs.
    """
    lines = [
        (name.strip().lower(), value.strip())
        for name, value in fields
        if name.strip().lower() != b"x-amz-trailer-signature"
    ]
    lines.sort(key=lambda line: line[0])
    return b"".join(name + b":" + value + b"\n" for name, value in lines)


# -- request parsing ---------------------------------------------------------------------------


_Param = tuple[bytes, bytes, bytes, bytes]
"""One query parameter: ``(raw_name, raw_value, name, value)``, the raw forms as sent and the
percent-decoded ones (a plain tuple: a NamedTuple costs a Python-level ``__new__`` per
parameter, six or more per presigned request)."""


@frozen
class _Claim:
    """What a request claims about its signature, validated but not yet verified."""

    presigned: bool
    access_key: str
    date: str
    region: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str
    request_time: datetime
    raw_time: str
    payload_hash: str
    expires: int | None

    def check_time(self, now: datetime) -> None:
        if self.expires is None:
            if abs(now - self.request_time) > MAX_SKEW:
                raise RequestTimeTooSkewed(
                    extra={
                        "RequestTime": self.raw_time,
                        "ServerTime": _iso8601(now),
                        "MaxAllowedSkewMilliseconds": str(MAX_SKEW // timedelta(milliseconds=1)),
                    }
                )
            return
        if self.request_time - now > MAX_SKEW:
            raise AccessDenied("Request is not valid yet")
        expiry = self.request_time + timedelta(seconds=self.expires)
        if now > expiry:
            raise AccessDenied(
                "Request has expired",
                extra={
                    "X-Amz-Expires": str(self.expires),
                    "Expires": _iso8601(expiry),
                    "ServerTime": _iso8601(now),
                },
            )


def _header_map(headers: Sequence[tuple[bytes, bytes]]) -> dict[str, list[bytes]]:
    result: dict[str, list[bytes]] = {}
    for name, value in headers:
        result.setdefault(name.strip().lower().decode("latin-1"), []).append(value)
    return result


@functools.lru_cache(maxsize=4096)
def _unquote_escaped(raw: bytes) -> bytes:
    """``unquote_to_bytes`` of a query part that has a ``%``.  Remembered: the escaped values
    of a client's queries recur (the credential, ``/`` in keys)."""
    return unquote_to_bytes(raw)


def _parse_query(raw_query: bytes) -> list[_Param]:
    params = []
    for part in raw_query.split(b"&"):
        if part:
            raw_name, _, raw_value = part.partition(b"=")
            params.append(
                (
                    raw_name,
                    raw_value,
                    _unquote_escaped(raw_name) if b"%" in raw_name else raw_name,
                    _unquote_escaped(raw_value) if b"%" in raw_value else raw_value,
                )
            )
    return params


def _claim_from_header(authorization: bytes, headers: Mapping[str, list[bytes]]) -> _Claim:
    value = authorization.decode("latin-1").strip()
    scheme, _, rest = value.partition(" ")
    if scheme == "AWS":
        raise InvalidRequest(_SIGV2_MESSAGE)
    if scheme != ALGORITHM:
        raise AuthorizationHeaderMalformed(
            f"The authorization header is malformed; unsupported algorithm {scheme!r}."
            f" Only {ALGORITHM} (Signature Version 4) is supported."
        )
    fields: dict[str, str] = {}
    for component in (c.strip() for c in rest.split(",")):
        key, eq, val = component.partition("=")
        if not eq or key not in ("Credential", "SignedHeaders", "Signature") or key in fields:
            raise AuthorizationHeaderMalformed(
                f"The authorization header is malformed; unexpected component {component!r}."
            )
        fields[key] = val.strip()
    if len(fields) != 3:
        raise AuthorizationHeaderMalformed(
            "The authorization header is malformed; it must contain Credential, SignedHeaders"
            " and Signature."
        )
    prefix = "The authorization header is malformed; "
    access_key, date, region = _parse_credential(
        fields["Credential"], AuthorizationHeaderMalformed, prefix
    )
    signed_headers = _parse_signed_headers(
        fields["SignedHeaders"], AuthorizationHeaderMalformed, prefix
    )

    if "x-amz-date" in headers:
        raw_time = _single(headers, "x-amz-date")
        request_time = _parse_amz_date(raw_time)
        if request_time is None:
            raise AccessDenied(_NO_DATE_MESSAGE)
    elif "date" in headers:
        raw_time = _single(headers, "date")
        request_time = _parse_http_date(raw_time)
        if "date" not in signed_headers:
            raise AccessDenied("The Date header must be signed.")
    else:
        raise AccessDenied(_NO_DATE_MESSAGE)
    amz_date = request_time.strftime(_AMZ_DATE_FORMAT)
    if amz_date[:8] != date:
        raise AuthorizationHeaderMalformed(
            prefix + "Invalid credential date. Date is not the same as X-Amz-Date."
        )

    if "x-amz-content-sha256" not in headers:
        raise InvalidRequest("Missing required header for this request: x-amz-content-sha256")
    payload_hash = b",".join(headers["x-amz-content-sha256"]).decode("latin-1")
    if payload_hash not in _PAYLOAD_TOKENS and not _HEX_SHA256_RE.fullmatch(payload_hash):
        raise InvalidArgument(
            "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, STREAMING-AWS4-HMAC-SHA256-PAYLOAD,"
            " STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER, STREAMING-UNSIGNED-PAYLOAD-TRAILER"
            " or a valid sha256 value.",
            extra={"ArgumentName": "x-amz-content-sha256", "ArgumentValue": payload_hash},
        )
    _require_signed_amz_headers(headers, signed_headers)
    return _Claim(
        presigned=False,
        access_key=access_key,
        date=date,
        region=region,
        signed_headers=signed_headers,
        signature=fields["Signature"],
        amz_date=amz_date,
        request_time=request_time,
        raw_time=raw_time,
        payload_hash=payload_hash,
        expires=None,
    )


def _claim_from_query(params: Sequence[_Param], headers: Mapping[str, list[bytes]]) -> _Claim:
    error = AuthorizationQueryParametersError
    values: dict[str, str] = {}
    for _, _, raw_name_decoded, value in params:
        # bytes that decode to one of these ASCII names are that name: match on bytes
        name = _PRESIGN_NAMES.get(raw_name_decoded)
        if name is not None:
            if name in values:
                raise error(f"The {name} parameter must appear only once.")
            values[name] = value.decode("utf-8", "replace")
    if len(values) != len(_PRESIGN_PARAMS):
        raise error(
            "Query-string authentication version 4 requires the X-Amz-Algorithm,"
            " X-Amz-Credential, X-Amz-Signature, X-Amz-Date, X-Amz-SignedHeaders,"
            " and X-Amz-Expires parameters."
        )
    if values["X-Amz-Algorithm"] != ALGORITHM:
        raise error(f'X-Amz-Algorithm only supports "{ALGORITHM}"')
    prefix = "Error parsing the X-Amz-Credential parameter; "
    access_key, date, region = _parse_credential(values["X-Amz-Credential"], error, prefix)
    signed_headers = _parse_signed_headers(
        values["X-Amz-SignedHeaders"], error, "Error parsing the X-Amz-SignedHeaders parameter; "
    )
    raw_time = values["X-Amz-Date"]
    request_time = _parse_amz_date(raw_time)
    if request_time is None:
        raise error("X-Amz-Date must be in the ISO8601 Long Format \"yyyyMMdd'T'HHmmss'Z'\"")
    if raw_time[:8] != date:
        raise error(prefix + "Invalid credential date. Date is not the same as X-Amz-Date.")
    raw_expires = values["X-Amz-Expires"]
    if not raw_expires.isascii() or not raw_expires.isdigit():
        raise error("X-Amz-Expires should be a number")
    expires = int(raw_expires)
    if expires > MAX_PRESIGN_EXPIRES:
        raise error(
            f"X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGN_EXPIRES}"
        )
    if expires < 1:
        raise error("X-Amz-Expires must be at least 1 second")
    _require_signed_amz_headers(headers, signed_headers)
    payload_hash = UNSIGNED_PAYLOAD
    if "x-amz-content-sha256" in signed_headers and "x-amz-content-sha256" in headers:
        payload_hash = b",".join(headers["x-amz-content-sha256"]).decode("latin-1")
    return _Claim(
        presigned=True,
        access_key=access_key,
        date=date,
        region=region,
        signed_headers=signed_headers,
        signature=values["X-Amz-Signature"],
        amz_date=raw_time,
        request_time=request_time,
        raw_time=raw_time,
        payload_hash=payload_hash,
        expires=expires,
    )


def _parse_credential(value: str, error: type[S3Error], prefix: str) -> tuple[str, str, str]:
    """Split ``AKID/YYYYMMDD/REGION/s3/aws4_request`` into access key, date and region."""
    parsed = _split_credential(value)
    if isinstance(parsed, str):
        raise error(prefix + parsed)
    return parsed


@functools.lru_cache(maxsize=1024)
def _split_credential(value: str) -> tuple[str, str, str] | str:
    """:func:`_parse_credential`'s result, or what is wrong with ``value``.  Remembered: a
    client sends the same credential all day."""
    parts = value.rsplit("/", 4)
    if len(parts) != 5 or not all(parts) or not _DATE_RE.fullmatch(parts[1]):
        return (
            "the Credential is mal-formed; expecting"
            ' "<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request".'
        )
    access_key, date, region, service, terminator = parts
    if service != _SERVICE:
        return f'incorrect service "{service}". This endpoint belongs to "s3".'
    if terminator != _TERMINATOR:
        return f'incorrect terminal "{terminator}". This endpoint uses "aws4_request".'
    return access_key, date, region


def _parse_signed_headers(value: str, error: type[S3Error], prefix: str) -> tuple[str, ...]:
    parsed = _split_signed_headers(value)
    if isinstance(parsed, str):
        raise error(prefix + parsed)
    return parsed


@functools.lru_cache(maxsize=1024)
def _split_signed_headers(value: str) -> tuple[str, ...] | str:
    """The signed header names, or what is wrong with ``value``.  Remembered: a
    client signs the same headers request after request."""
    names = tuple(value.split(";"))
    if not all(n and n == n.lower() and n.isascii() for n in names):
        return "SignedHeaders must be a ';'-separated list of lower-case names."
    if "host" not in names:
        return "SignedHeaders must include host."
    return names


def _require_signed_amz_headers(
    headers: Mapping[str, list[bytes]], signed_headers: Sequence[str]
) -> None:
    unsigned = sorted(n for n in headers if n.startswith("x-amz-") and n not in signed_headers)
    if unsigned:
        raise AccessDenied(
            "There were headers present in the request which were not signed",
            extra={"HeadersNotSigned": ", ".join(unsigned)},
        )


def _single(headers: Mapping[str, list[bytes]], name: str) -> str:
    values = headers[name]
    if len(values) != 1:
        raise AccessDenied(_NO_DATE_MESSAGE)
    return values[0].decode("latin-1").strip()


@functools.lru_cache(maxsize=1024)
def _parse_amz_date(value: str) -> datetime | None:
    """Parse ``YYYYMMDDTHHMMSSZ``; ``None`` if ``value`` is not such a (valid) timestamp.
    Remembered: the requests of a busy second share their timestamp."""
    if _AMZ_DATE_RE.fullmatch(value):
        try:
            if not value.isascii():  # Unicode digits: as strptime reads them
                return datetime.strptime(value, _AMZ_DATE_FORMAT).replace(tzinfo=UTC)
            return datetime(
                int(value[0:4]),
                int(value[4:6]),
                int(value[6:8]),
                int(value[9:11]),
                int(value[11:13]),
                int(value[13:15]),
                tzinfo=UTC,
            )
        except ValueError:
            pass
    return None


def _parse_http_date(value: str) -> datetime:
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        raise AccessDenied(_NO_DATE_MESSAGE) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).replace(microsecond=0)


# -- canonical request -------------------------------------------------------------------------


def _canonical_targets(
    req: SignedRequest, params: Sequence[_Param], *, presigned: bool
) -> list[tuple[bytes, bytes]]:
    """The ``(canonical URI, canonical query)`` forms to try, the S3-canonical one first."""
    pairs = []
    raw_pairs = []
    as_sent = True  # every pair's raw form is its canonical form
    for raw_name, raw_value, name, value in params:
        if presigned and name == b"X-Amz-Signature":
            continue
        pair = (_quote_query(name), _quote_query(value))
        pairs.append(pair)
        raw_pairs.append((raw_name, raw_value))
        if as_sent and pair != (raw_name, raw_value):
            as_sent = False
    pairs.sort()
    uri = _canonical_path(req.raw_path) or b"/"
    query = b"&".join([n + b"=" + v for n, v in pairs])
    raw_uri = req.raw_path or b"/"
    if as_sent:
        raw_query = query  # the same pairs, so the same sorted order
    else:
        raw_pairs.sort()
        raw_query = b"&".join([n + b"=" + v for n, v in raw_pairs])
    targets = [(uri, query)]
    if (raw_uri, raw_query) != (uri, query):
        targets.append((raw_uri, raw_query))
    return targets


_PLAIN_PATH = re.compile(rb"[A-Za-z0-9_.~/-]*")  # what canonicalisation leaves as it is


def _canonical_path(raw_path: bytes) -> bytes:
    """``raw_path`` decoded and re-encoded as SigV4 encodes a path (a path of unreserved
    characters and ``/`` only, the common case, is its own canonical form)."""
    if _PLAIN_PATH.fullmatch(raw_path):
        return raw_path
    return quote(unquote_to_bytes(raw_path), safe=_URI_SAFE).encode("ascii")


@functools.lru_cache(maxsize=4096)
def _quote_query(value: bytes) -> bytes:
    """A query name or value (decoded) encoded as SigV4 encodes it.  Remembered: most of a
    client's query values recur from request to request (credential, algorithm, expiry)."""
    return quote(value, safe=_QUERY_SAFE).encode("ascii")


def _canonical_headers(signed_headers: Sequence[str], headers: Mapping[str, list[bytes]]) -> bytes:
    """One ``name:value\\n`` line per signed header, in the order the client listed them.

    Duplicate headers are joined with ``,``; each value has leading and trailing whitespace
    removed and inner runs of whitespace collapsed to one space.  A signed header that is
    absent contributes an empty value.
    """
    return b"".join(
        name.encode("ascii")
        + b":"
        + b",".join(b" ".join(value.split()) for value in headers.get(name, ()))
        + b"\n"
        for name in signed_headers
    )


def _string_to_sign(
    claim: _Claim, scope: str, method: bytes, uri: bytes, query: bytes, canonical_headers: bytes
) -> str:
    canonical_request = b"\n".join(
        (
            method,
            uri,
            query,
            canonical_headers,
            ";".join(claim.signed_headers).encode("ascii"),
            claim.payload_hash.encode("latin-1"),
        )
    )
    digest = hashlib.sha256(canonical_request).hexdigest()
    return "\n".join((ALGORITHM, claim.amz_date, scope, digest))


# -- primitives --------------------------------------------------------------------------------


# HMAC objects rather than the one-shot ``hmac.digest``: as fast for these short messages (~1.5
# us), but ``hmac.digest`` lets go of the GIL around every call, and on the reactor thread under
# load a waiting thread (the committer) then runs first while the reactor waits behind it.  An
# HMAC object keeps the GIL for messages under 2048 bytes, as a string to sign is.
def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), "sha256").digest()


def _hmac_hex(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode("utf-8"), "sha256").hexdigest()


@functools.lru_cache(maxsize=256)
def _signing_key(secret: str, date: str, region: str, service: str) -> bytes:
    """The derived key for one scope.  Memoised: it depends only on its arguments, and a client
    signs many requests per day and region with one secret."""
    key = _hmac(("AWS4" + secret).encode("utf-8"), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, _TERMINATOR)


def _same_signature(expected: str, provided: str) -> bool:
    """Constant-time comparison of a computed hex signature with a client-provided string."""
    return hmac.compare_digest(expected.encode("ascii"), provided.encode("utf-8", "surrogatepass"))


def _iso8601(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
