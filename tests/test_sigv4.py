# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Tests for :mod:`artifactd.http.sigv4`: botocore-signed requests verify, tampering does not."""

from __future__ import annotations

import hashlib
import hmac
import string
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore.auth
import botocore.session
from botocore.auth import HmacV1Auth, S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest, AWSResponse
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.utils import percent_encode_sequence
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

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
from artifactd.http.sigv4 import (
    EMPTY_SHA256,
    STREAMING_PAYLOAD,
    STREAMING_PAYLOAD_TRAILER,
    UNSIGNED_PAYLOAD,
    ChunkSignatureVerifier,
    SignedRequest,
    Verified,
    authenticate,
    canonical_trailer,
)

ACCESS_KEY = "AKIDARTIFACTD000TEST"
SECRET_KEY = "s3cr3t/Key+with=odd&chars~"
REGION = "us-east-1"
ENDPOINT = "http://s3.test:9000"
FIXED = datetime(2026, 11, 28, 1, 23, 45, tzinfo=UTC)

DOC_ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"
DOC_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
DOC_NOW = datetime(2013, 5, 24, 0, 1, tzinfo=UTC)


def lookup(access_key: str) -> str | None:
    """The credential store of the tests: one key pair plus the AWS documentation's."""
    return {ACCESS_KEY: SECRET_KEY, DOC_ACCESS_KEY: DOC_SECRET_KEY}.get(access_key)


try:  # botocore uses the awscrt (aws-c-auth) signers when awscrt is installed.
    import botocore.crt.auth as crt_auth
except ImportError:  # pragma: no cover
    crt_auth = None

#: botocore's pure-Python signers, plus the awscrt-backed ones real clients use when available.
HEADER_SIGNERS: list[Any] = [S3SigV4Auth]
QUERY_SIGNERS: list[Any] = [S3SigV4QueryAuth]
if crt_auth is not None:
    HEADER_SIGNERS.append(crt_auth.CrtS3SigV4Auth)
    QUERY_SIGNERS.append(crt_auth.CrtS3SigV4QueryAuth)


@contextmanager
def _clock(when: datetime) -> Iterator[None]:
    """Make every botocore signer believe it is ``when``."""

    def now(remove_tzinfo: bool = True) -> datetime:
        return when.replace(tzinfo=None) if remove_tzinfo else when

    with ExitStack() as stack:
        for module in (botocore.auth, crt_auth):
            if module is not None:
                stack.enter_context(mock.patch.object(module, "get_current_datetime", now))
        yield


def _latin1(text: str | bytes) -> bytes:
    return text if isinstance(text, bytes) else text.encode("latin-1")


def _wire(req: Any) -> SignedRequest:
    """What a server receives for a botocore request: request line, Host, then its headers."""
    parts = urlsplit(req.url)
    headers = [(_latin1(k), _latin1(v)) for k, v in req.headers.items()]
    if not any(name.lower() == b"host" for name, _ in headers):
        headers.insert(0, (b"Host", parts.netloc.encode("ascii")))
    return SignedRequest(
        method=req.method.encode("ascii"),
        raw_path=parts.path.encode("ascii"),
        raw_query=parts.query.encode("ascii"),
        headers=headers,
    )


def url_for(key: str, params: Sequence[tuple[str, str]] = (), bucket: str = "bkt") -> str:
    """A URL built the way botocore's S3 serializer builds one."""
    url = f"{ENDPOINT}/{bucket}/{quote(key.encode('utf-8'), safe='/~')}"
    return url + ("?" + percent_encode_sequence(list(params)) if params else "")


def sign(
    method: str,
    url: str,
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    when: datetime = FIXED,
    region: str = REGION,
    access_key: str = ACCESS_KEY,
    signer: Any = S3SigV4Auth,
) -> SignedRequest:
    """Sign with a botocore header signer (``S3SigV4Auth`` by default) at ``when``."""
    req = AWSRequest(method=method, url=url, data=body)
    for name, value in headers:
        req.headers[name] = value  # HTTPHeaders appends: repeated names become duplicates
    with _clock(when):
        signer(Credentials(access_key, SECRET_KEY), "s3", region).add_auth(req)
    return _wire(req)


def presign(
    method: str,
    url: str,
    expires: int = 3600,
    when: datetime = FIXED,
    headers: Sequence[tuple[str, str]] = (),
    access_key: str = ACCESS_KEY,
    signer: Any = S3SigV4QueryAuth,
) -> SignedRequest:
    """Sign with a botocore presigner (``S3SigV4QueryAuth`` by default) at ``when``."""
    req = AWSRequest(method=method, url=url)
    for name, value in headers:
        req.headers[name] = value
    with _clock(when):
        signer(Credentials(access_key, SECRET_KEY), "s3", REGION, expires).add_auth(req)
    return _wire(req)


def replace_header(req: SignedRequest, name: bytes, value: bytes) -> SignedRequest:
    """``req`` with every ``name`` header replaced by one with ``value``."""
    kept = [(n, v) for n, v in req.headers if n.lower() != name.lower()]
    return SignedRequest(req.method, req.raw_path, req.raw_query, [*kept, (name, value)])


def header(req: SignedRequest, name: bytes) -> bytes:
    """The (single) value of header ``name`` in ``req``."""
    (value,) = [v for n, v in req.headers if n.lower() == name.lower()]
    return value


def flip(text: bytes, index: int) -> bytes:
    """``text`` with the hex digit at ``index`` changed to a different one."""
    digit = text[index : index + 1]
    return text[:index] + (b"0" if digit != b"0" else b"1") + text[index + 1 :]


# -- strategies --------------------------------------------------------------------------------

SPECIALS = ["+", "%", " ", "//", "~", "=", "&", ";", ":", "@", "!", "*", "'", "(", ")", ","]
keys = st.one_of(
    st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), min_size=1),
    st.lists(st.sampled_from([*SPECIALS, "a", "é", "/", ".", "..", "%20", "ü€"]), min_size=1).map(
        "".join
    ),
)
param_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12
).filter(
    lambda n: (
        not n.lower().startswith("x-amz-") and n.lower() not in ("signature", "awsaccesskeyid")
    )
)
param_values = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)
params = st.lists(st.tuples(param_names, param_values), max_size=5)
meta_names = st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=10).map(
    lambda n: "x-amz-meta-" + n
)
meta_values = st.text(
    st.sampled_from(string.ascii_letters + string.digits + "  \t!\"#$%&'()*+,-./:;<=>?@[]^_`{|}~"),
    max_size=30,
)
meta_headers = st.lists(st.tuples(meta_names, meta_values), max_size=4)
methods = st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD"])
header_signers = st.sampled_from(HEADER_SIGNERS)
query_signers = st.sampled_from(QUERY_SIGNERS)


class HeaderAuthTests(SynchronousTestCase):
    """Requests signed by botocore's header signers (pure Python and awscrt)."""

    @settings(deadline=None)
    @given(header_signers, methods, keys, params, meta_headers, st.binary(max_size=64))
    def test_botocore_signed_requests_verify(
        self,
        signer: Any,
        method: str,
        key: str,
        query: list[tuple[str, str]],
        meta: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        """Any key, query, metadata and body botocore signs is accepted with its claims."""
        req = sign(method, url_for(key, query), meta, body, signer=signer)
        verified = authenticate(req, lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.access_key, ACCESS_KEY)
        self.assertEqual(verified.payload_hash, hashlib.sha256(body).hexdigest())
        self.assertEqual(verified.amz_date, "20261128T012345Z")
        self.assertEqual(verified.scope, "20261128/us-east-1/s3/aws4_request")
        self.assertEqual(verified.signature, header(req, b"Authorization").split(b"=")[-1].decode())

    @settings(deadline=None)
    @given(keys, st.integers(min_value=0, max_value=63))
    def test_flipped_signature_rejected(self, key: str, index: int) -> None:
        """Changing any hex digit of the signature gives SignatureDoesNotMatch."""
        req = sign("PUT", url_for(key), body=b"data")
        authorization = header(req, b"Authorization")
        at = len(authorization) - 64 + index
        req = replace_header(req, b"Authorization", flip(authorization, at))
        error = self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)
        self.assertEqual(error.extra["AWSAccessKeyId"], ACCESS_KEY)
        self.assertIn("StringToSign", error.extra)
        self.assertNotIn(SECRET_KEY, repr(error.extra) + str(error))

    @settings(deadline=None)
    @given(methods, methods, keys)
    def test_changed_method_rejected(self, signed: str, sent: str, key: str) -> None:
        """A request sent with a different method than signed gives SignatureDoesNotMatch."""
        req = sign(signed, url_for(key))
        req = SignedRequest(sent.encode(), req.raw_path, req.raw_query, req.headers)
        if signed == sent:
            self.assertIsNotNone(authenticate(req, lookup, FIXED))
        else:
            self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    @settings(deadline=None)
    @given(keys, keys)
    def test_changed_path_rejected(self, key: str, other: str) -> None:
        """A request sent to another key than signed gives SignatureDoesNotMatch."""
        req = sign("GET", url_for(key))
        moved = _wire(AWSRequest(method="GET", url=url_for(other)))
        req = SignedRequest(req.method, moved.raw_path, req.raw_query, req.headers)
        if key == other:
            self.assertIsNotNone(authenticate(req, lookup, FIXED))
        else:
            self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    @settings(deadline=None)
    @given(keys, params, param_names)
    def test_changed_query_rejected(
        self, key: str, query: list[tuple[str, str]], extra: str
    ) -> None:
        """Adding a query parameter after signing gives SignatureDoesNotMatch."""
        req = sign("GET", url_for(key, query))
        added = percent_encode_sequence([(extra, "1")]).encode()
        raw_query = req.raw_query + b"&" + added if req.raw_query else added
        req = SignedRequest(req.method, req.raw_path, raw_query, req.headers)
        self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    @settings(deadline=None)
    @given(meta_headers.filter(bool), st.data())
    def test_changed_signed_header_rejected(
        self, meta: list[tuple[str, str]], data: st.DataObject
    ) -> None:
        """Changing the value of a signed header gives SignatureDoesNotMatch."""
        req = sign("PUT", url_for("k"), meta)
        name = data.draw(st.sampled_from([n for n, _ in meta]))
        values = [v for n, v in req.headers if n.decode().lower() == name]
        req = replace_header(req, name.encode(), b",".join(values) + b"z")
        self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    def test_header_whitespace_is_canonicalised(self) -> None:
        """Signed header values are compared trimmed with inner whitespace runs collapsed."""
        req = sign("PUT", url_for("k"), [("x-amz-meta-a", "  one   two \t three  ")])
        respaced = replace_header(req, b"x-amz-meta-a", b"one two three")
        self.assertIsNotNone(authenticate(respaced, lookup, FIXED))

    def test_duplicate_headers_are_joined(self) -> None:
        """Repeated headers are signed as one comma-joined value, in arrival order."""
        req = sign("PUT", url_for("k"), [("x-amz-meta-a", "one"), ("x-amz-meta-a", " two ")])
        self.assertIsNotNone(authenticate(req, lookup, FIXED))
        swapped = [h for h in req.headers if h[0] != b"x-amz-meta-a"]
        swapped += [(b"x-amz-meta-a", b"two"), (b"x-amz-meta-a", b"one")]
        req = SignedRequest(req.method, req.raw_path, req.raw_query, swapped)
        self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    def test_header_names_any_case(self) -> None:
        """Header names are matched case-insensitively."""
        req = sign("PUT", url_for("k"), [("X-Amz-Meta-Case", "v")])
        upper = [(n.upper(), v) for n, v in req.headers]
        self.assertIsNotNone(
            authenticate(
                SignedRequest(req.method, req.raw_path, req.raw_query, upper), lookup, FIXED
            )
        )

    @settings(deadline=None)
    @given(st.text(string.ascii_lowercase + string.digits + "-", min_size=1, max_size=20))
    def test_any_region_accepted(self, region: str) -> None:
        """A signature scoped to any region verifies, and the scope names that region."""
        verified = authenticate(sign("GET", url_for("k"), region=region), lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.scope, f"20261128/{region}/s3/aws4_request")

    def test_signing_key_is_derived_key(self) -> None:
        """The returned signing key is the SigV4 key for the scope, and is not in the repr."""
        verified = authenticate(sign("GET", url_for("k")), lookup, FIXED)
        assert verified is not None
        key = ("AWS4" + SECRET_KEY).encode()
        for part in ("20261128", REGION, "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        self.assertEqual(verified.signing_key, key)
        self.assertNotIn(repr(key), repr(verified))

    def test_literal_url_as_signed_by_botocore(self) -> None:
        """A path and query botocore signed verbatim (not re-encoded) verify as sent."""
        url = f"{ENDPOINT}/bkt/it's!(a)*key?list-type=2&prefix=a+b"
        self.assertIsNotNone(authenticate(sign("GET", url), lookup, FIXED))

    def test_plus_is_not_space(self) -> None:
        """A literal '+' in a key is not interchangeable with an encoded space."""
        req = sign("GET", url_for("a+b"))
        spaced = SignedRequest(req.method, b"/bkt/a%20b", req.raw_query, req.headers)
        self.assertRaises(SignatureDoesNotMatch, authenticate, spaced, lookup, FIXED)

    def test_date_header_instead_of_x_amz_date(self) -> None:
        """A request dated by a signed Date header (no x-amz-date) verifies."""
        req = sign("GET", url_for("k"), [("Date", "whatever botocore replaces")])
        self.assertEqual(header(req, b"Date"), b"Sat, 28 Nov 2026 01:23:45 -0000")
        verified = authenticate(req, lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.amz_date, "20261128T012345Z")

    def test_unsigned_payload_claim(self) -> None:
        """An UNSIGNED-PAYLOAD claim in x-amz-content-sha256 is signed and returned."""
        aws = AWSRequest(method="PUT", url=url_for("k"), data=b"body")
        aws.context["client_config"] = Config(s3={"payload_signing_enabled": False})
        with _clock(FIXED):
            S3SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(aws)
        verified = authenticate(_wire(aws), lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.payload_hash, UNSIGNED_PAYLOAD)

    def test_no_credentials(self) -> None:
        """A request without Authorization or signature parameters yields None."""
        plain = _wire(AWSRequest(method="GET", url=url_for("k", [("list-type", "2")])))
        self.assertIsNone(authenticate(plain, lookup, FIXED))

    def test_unknown_access_key(self) -> None:
        """An access key the store does not know gives InvalidAccessKeyId."""
        req = sign("GET", url_for("k"), access_key="AKIDUNKNOWN")
        error = self.assertRaises(InvalidAccessKeyId, authenticate, req, lookup, FIXED)
        self.assertEqual(error.extra["AWSAccessKeyId"], "AKIDUNKNOWN")

    def test_wrong_secret(self) -> None:
        """A signature made with another secret gives SignatureDoesNotMatch."""
        req = sign("GET", url_for("k"))
        self.assertRaises(
            SignatureDoesNotMatch, authenticate, req, lambda _ak: "other-secret", FIXED
        )

    @settings(deadline=None)
    @given(st.integers(min_value=-15 * 60, max_value=15 * 60))
    def test_skew_within_limit(self, seconds: int) -> None:
        """A request dated up to 15 minutes from the server clock verifies."""
        req = sign("GET", url_for("k"))
        self.assertIsNotNone(authenticate(req, lookup, FIXED + timedelta(seconds=seconds)))

    @settings(deadline=None)
    @given(st.integers(min_value=15 * 60 + 1, max_value=10**7), st.booleans())
    def test_skew_beyond_limit(self, seconds: int, ahead: bool) -> None:
        """A request dated more than 15 minutes away gives RequestTimeTooSkewed with details."""
        now = FIXED + timedelta(seconds=seconds if ahead else -seconds)
        req = sign("GET", url_for("k"))
        error = self.assertRaises(RequestTimeTooSkewed, authenticate, req, lookup, now)
        self.assertEqual(
            error.extra,
            {
                "RequestTime": "20261128T012345Z",
                "ServerTime": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "MaxAllowedSkewMilliseconds": "900000",
            },
        )

    def test_naive_now_is_utc(self) -> None:
        """A naive ``now`` is taken as UTC."""
        req = sign("GET", url_for("k"))
        self.assertIsNotNone(authenticate(req, lookup, FIXED.replace(tzinfo=None)))

    def test_missing_content_sha256(self) -> None:
        """Header auth without x-amz-content-sha256 gives InvalidRequest naming the header."""
        aws = AWSRequest(method="GET", url=url_for("k"))
        with _clock(FIXED):
            botocore.auth.SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY), "s3", REGION).add_auth(aws)
        error = self.assertRaises(InvalidRequest, authenticate, _wire(aws), lookup, FIXED)
        self.assertIn("x-amz-content-sha256", error.message)

    def test_invalid_content_sha256(self) -> None:
        """An x-amz-content-sha256 that is neither a digest nor a known token is rejected."""
        req = sign("PUT", url_for("k"), [("X-Amz-Content-SHA256", "abc")])
        req = replace_header(req, b"X-Amz-Content-SHA256", b"not-a-digest")
        self.assertRaises(InvalidArgument, authenticate, req, lookup, FIXED)

    def test_unsigned_amz_header(self) -> None:
        """An x-amz-* header that is not signed gives AccessDenied naming it."""
        req = sign("PUT", url_for("k"))
        req = SignedRequest(
            req.method, req.raw_path, req.raw_query, [*req.headers, (b"X-Amz-ACL", b"public")]
        )
        error = self.assertRaises(AccessDenied, authenticate, req, lookup, FIXED)
        self.assertEqual(error.extra["HeadersNotSigned"], "x-amz-acl")

    def test_sigv2_header(self) -> None:
        """A SigV2 ``Authorization: AWS ...`` header is refused with a message naming SigV4."""
        aws = AWSRequest(method="GET", url=url_for("k"))
        HmacV1Auth(Credentials(ACCESS_KEY, SECRET_KEY)).add_auth(aws)
        error = self.assertRaises(InvalidRequest, authenticate, _wire(aws), lookup, FIXED)
        self.assertIn("AWS4-HMAC-SHA256", error.message)

    def test_malformed_authorization(self) -> None:
        """Malformed or unsupported Authorization headers give AuthorizationHeaderMalformed."""
        req = sign("GET", url_for("k"))
        good = header(req, b"Authorization").decode()
        credential = f"{ACCESS_KEY}/20261128/us-east-1/s3/aws4_request"
        signed = "host;x-amz-content-sha256;x-amz-date"
        signature = "Signature=" + "0" * 64
        for value in [
            "",
            "AWS4-HMAC-SHA256",
            "Bearer token",
            good.replace("AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256"),
            good.replace("/s3/", "/ec2/"),
            good.replace("aws4_request", "aws5_request"),
            good.replace("/20261128/", "/2026-11-28/"),
            good.replace("/20261128/", "/20261127/"),
            good.replace(f"{ACCESS_KEY}/", ""),
            good.replace("SignedHeaders=host;", "SignedHeaders="),
            good.replace("SignedHeaders=host", "SignedHeaders=Host"),
            f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}",
            f"AWS4-HMAC-SHA256 Credential={credential}, {signature}, {signature}",
            f"AWS4-HMAC-SHA256 Credential={credential}, SignedHeaders={signed}, {signature}, X=1",
        ]:
            bad = replace_header(req, b"Authorization", value.encode())
            self.assertRaises(AuthorizationHeaderMalformed, authenticate, bad, lookup, FIXED)

    def test_missing_or_bad_date(self) -> None:
        """A request with no usable date gives AccessDenied."""
        req = sign("GET", url_for("k"))
        undated = [h for h in req.headers if h[0].lower() != b"x-amz-date"]
        for headers in [undated, [*undated, (b"X-Amz-Date", b"20261328T012345Z")]]:
            bad = SignedRequest(req.method, req.raw_path, req.raw_query, headers)
            self.assertRaises(AccessDenied, authenticate, bad, lookup, FIXED)

    def test_header_and_query_auth_together(self) -> None:
        """An Authorization header plus presign parameters gives InvalidArgument."""
        req = presign("GET", url_for("k"))
        signed = sign("GET", url_for("k"))
        both = SignedRequest(req.method, req.raw_path, req.raw_query, signed.headers)
        self.assertRaises(InvalidArgument, authenticate, both, lookup, FIXED)

    def test_aws_documentation_get_object(self) -> None:
        """The AWS documentation's GET Object example verifies."""
        auth = (
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
            "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,"
            "Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        )
        headers = [
            (b"Host", b"examplebucket.s3.amazonaws.com"),
            (b"Range", b"bytes=0-9"),
            (b"x-amz-content-sha256", EMPTY_SHA256.encode()),
            (b"x-amz-date", b"20130524T000000Z"),
            (b"Authorization", auth.encode()),
        ]
        req = SignedRequest(b"GET", b"/test.txt", b"", headers)
        self.assertIsNotNone(authenticate(req, lookup, DOC_NOW))


class PresignedTests(SynchronousTestCase):
    """Presigned URLs made by botocore's query signers (pure Python and awscrt)."""

    @settings(deadline=None)
    @given(query_signers, methods, keys, params, st.integers(min_value=1, max_value=604800))
    def test_presigned_urls_verify(
        self, signer: Any, method: str, key: str, query: list[tuple[str, str]], expires: int
    ) -> None:
        """Any key and query botocore presigns is accepted until it expires."""
        req = presign(method, url_for(key, query), expires, signer=signer)
        later = FIXED + timedelta(seconds=expires)
        for now in (FIXED - timedelta(minutes=15), FIXED, later):
            verified = authenticate(req, lookup, now)
            assert verified is not None
            self.assertEqual(verified.payload_hash, UNSIGNED_PAYLOAD)
            self.assertEqual(verified.access_key, ACCESS_KEY)
        error = self.assertRaises(
            AccessDenied, authenticate, req, lookup, later + timedelta(seconds=1)
        )
        self.assertEqual(error.message, "Request has expired")
        self.assertEqual(
            error.extra,
            {
                "X-Amz-Expires": str(expires),
                "Expires": later.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "ServerTime": (later + timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            },
        )

    @settings(deadline=None)
    @given(keys, st.integers(min_value=0, max_value=63))
    def test_flipped_presigned_signature_rejected(self, key: str, index: int) -> None:
        """Changing any hex digit of X-Amz-Signature gives SignatureDoesNotMatch."""
        req = presign("GET", url_for(key))
        at = len(req.raw_query) - 64 + index
        req = SignedRequest(req.method, req.raw_path, flip(req.raw_query, at), req.headers)
        self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    @settings(deadline=None)
    @given(keys, keys)
    def test_presigned_for_other_key_rejected(self, key: str, other: str) -> None:
        """A presigned URL used for another key gives SignatureDoesNotMatch."""
        req = presign("GET", url_for(key))
        moved = _wire(AWSRequest(method="GET", url=url_for(other)))
        req = SignedRequest(req.method, moved.raw_path, req.raw_query, req.headers)
        if key == other:
            self.assertIsNotNone(authenticate(req, lookup, FIXED))
        else:
            self.assertRaises(SignatureDoesNotMatch, authenticate, req, lookup, FIXED)

    def test_not_yet_valid(self) -> None:
        """A presigned URL dated more than 15 minutes ahead gives AccessDenied."""
        req = presign("GET", url_for("k"))
        now = FIXED - timedelta(minutes=15, seconds=1)
        error = self.assertRaises(AccessDenied, authenticate, req, lookup, now)
        self.assertIn("not valid yet", error.message)

    def test_expires_out_of_range(self) -> None:
        """X-Amz-Expires not a number in 1..604800 gives AuthorizationQueryParametersError."""
        for expires in ("0", "604801", "-5", "abc", "", "1e3"):
            req = presign("GET", url_for("k"), 60)
            raw_query = req.raw_query.replace(
                b"X-Amz-Expires=60", b"X-Amz-Expires=" + expires.encode()
            )
            bad = SignedRequest(req.method, req.raw_path, raw_query, req.headers)
            self.assertRaises(AuthorizationQueryParametersError, authenticate, bad, lookup, FIXED)

    def test_malformed_parameters(self) -> None:
        """Missing, repeated or wrong presign parameters give AuthorizationQueryParametersError."""
        req = presign("GET", url_for("k"))
        query = req.raw_query
        credential = (
            b"X-Amz-Credential="
            + quote(f"{ACCESS_KEY}/20261128/us-east-1/s3/aws4_request", safe="").encode()
        )
        for raw_query in [
            query.replace(b"AWS4-HMAC-SHA256", b"AWS4-HMAC-SHA512"),
            query.replace(b"X-Amz-Date=", b"X-Amz-Datum="),
            query.replace(b"X-Amz-SignedHeaders=host", b"X-Amz-SignedHeaders=range"),
            query.replace(b"%2Fs3%2F", b"%2Fiam%2F"),
            query.replace(b"T012345Z", b"T01:23:45Z"),
            query.replace(b"X-Amz-Date=20261128T", b"X-Amz-Date=20261328T"),
            query.replace(b"20261128T", b"20261127T"),
            query + b"&" + credential,
            credential,
        ]:
            bad = SignedRequest(req.method, req.raw_path, raw_query, req.headers)
            self.assertRaises(AuthorizationQueryParametersError, authenticate, bad, lookup, FIXED)

    def test_malformed_parameters_refused_every_time(self) -> None:
        """The parsers of the credential, date and signed headers are memoised; a malformed
        value is refused on every request, and a good one still verifies after it."""
        req = presign("GET", url_for("k"))
        query = req.raw_query
        for raw_query in [
            query.replace(b"%2Fs3%2F", b"%2Fiam%2F"),
            query.replace(b"X-Amz-Date=20261128T", b"X-Amz-Date=20261328T"),
            query.replace(b"X-Amz-SignedHeaders=host", b"X-Amz-SignedHeaders=Host"),
        ]:
            bad = SignedRequest(req.method, req.raw_path, raw_query, req.headers)
            for _ in range(3):
                self.assertRaises(
                    AuthorizationQueryParametersError, authenticate, bad, lookup, FIXED
                )
            self.assertIsNotNone(authenticate(req, lookup, FIXED))

    def test_query_as_sent_differs_from_canonical(self) -> None:
        """A query signed with lower-case escapes (not SigV4's canonical form) verifies as
        sent, and only as sent."""
        url = f"{ENDPOINT}/bkt/k?prefix=a%2fb&list-type=2"
        req = sign("GET", url)
        self.assertIn(b"a%2fb", req.raw_query)
        self.assertIsNotNone(authenticate(req, lookup, FIXED))
        upper = req.raw_query.replace(b"a%2fb", b"a%2Fb")
        moved = SignedRequest(req.method, req.raw_path, upper, req.headers)
        self.assertRaises(SignatureDoesNotMatch, authenticate, moved, lookup, FIXED)

    def test_unknown_access_key(self) -> None:
        """A presigned URL with an unknown access key gives InvalidAccessKeyId."""
        req = presign("GET", url_for("k"), access_key="AKIDUNKNOWN")
        self.assertRaises(InvalidAccessKeyId, authenticate, req, lookup, FIXED)

    def test_sigv2_query(self) -> None:
        """A SigV2 presigned URL (AWSAccessKeyId, Signature) is refused naming SigV4."""
        req = SignedRequest(
            b"GET", b"/bkt/k", b"AWSAccessKeyId=AK&Expires=1&Signature=x", [(b"Host", b"h")]
        )
        error = self.assertRaises(InvalidRequest, authenticate, req, lookup, FIXED)
        self.assertIn("AWS4-HMAC-SHA256", error.message)

    def test_signed_headers_and_payload_claim(self) -> None:
        """Headers signed into a presigned URL are enforced; a signed payload claim is returned."""
        digest = hashlib.sha256(b"body").hexdigest()
        headers = [("x-amz-meta-a", "b"), ("X-Amz-Content-SHA256", digest)]
        req = presign("PUT", url_for("k"), headers=headers)
        verified = authenticate(req, lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.payload_hash, digest)
        bad = replace_header(req, b"x-amz-meta-a", b"c")
        self.assertRaises(SignatureDoesNotMatch, authenticate, bad, lookup, FIXED)

    def test_unsigned_amz_header(self) -> None:
        """An x-amz-* header not signed into the presigned URL gives AccessDenied."""
        req = presign("PUT", url_for("k"))
        req = SignedRequest(
            req.method, req.raw_path, req.raw_query, [*req.headers, (b"x-amz-acl", b"public")]
        )
        self.assertRaises(AccessDenied, authenticate, req, lookup, FIXED)

    def test_aws_documentation_presigned_url(self) -> None:
        """The AWS documentation's presigned GET example verifies."""
        query = (
            b"X-Amz-Algorithm=AWS4-HMAC-SHA256"
            b"&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20130524%2Fus-east-1%2Fs3%2Faws4_request"
            b"&X-Amz-Date=20130524T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host"
            b"&X-Amz-Signature=aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
        )
        headers = [(b"Host", b"examplebucket.s3.amazonaws.com")]
        req = SignedRequest(b"GET", b"/test.txt", query, headers)
        self.assertIsNotNone(authenticate(req, lookup, DOC_NOW))


class _EmptyBody:
    """The raw body of a canned botocore response."""

    def stream(self, **kwargs: object) -> Iterator[bytes]:
        """Yield nothing."""
        return iter(())


class ClientTests(SynchronousTestCase):
    """Requests made through a real botocore S3 client."""

    def setUp(self) -> None:
        """Create a path-style client whose requests are captured instead of sent."""
        self.sent: list[Any] = []
        self.client = botocore.session.get_session().create_client(
            "s3",
            region_name="eu-central-1",
            endpoint_url=ENDPOINT,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )
        self.client.meta.events.register("before-send.s3.*", self._capture)

    def _capture(self, request: Any, **kwargs: object) -> AWSResponse:
        self.sent.append(request)
        return AWSResponse(request.url, 200, {}, _EmptyBody())

    @settings(deadline=None, max_examples=50)
    @given(keys, st.dictionaries(st.text(string.ascii_lowercase, min_size=1), meta_values))
    def test_put_object(self, key: str, metadata: dict[str, str]) -> None:
        """Whatever put_object sends for any key and metadata verifies."""
        del self.sent[:]
        with _clock(FIXED):
            self.client.put_object(Bucket="bkt", Key=key, Body=b"payload", Metadata=metadata)
        (request,) = self.sent
        verified = authenticate(_wire(request), lookup, FIXED)
        assert verified is not None
        self.assertEqual(verified.payload_hash, hashlib.sha256(b"payload").hexdigest())
        self.assertEqual(verified.scope, "20261128/eu-central-1/s3/aws4_request")

    @settings(deadline=None, max_examples=50)
    @given(keys, st.text(max_size=10))
    def test_list_objects(self, prefix: str, delimiter: str) -> None:
        """Whatever list_objects_v2 sends for any prefix and delimiter verifies."""
        del self.sent[:]
        with _clock(FIXED):
            self.client.list_objects_v2(Bucket="bkt", Prefix=prefix, Delimiter=delimiter)
        (request,) = self.sent
        self.assertIsNotNone(authenticate(_wire(request), lookup, FIXED))

    @settings(deadline=None, max_examples=50)
    @given(keys)
    def test_generate_presigned_url(self, key: str) -> None:
        """A presigned get_object URL for any key verifies."""
        with _clock(FIXED):
            url = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": "bkt", "Key": key}, ExpiresIn=600
            )
        parts = urlsplit(url)
        req = SignedRequest(
            b"GET", parts.path.encode(), parts.query.encode(), [(b"Host", parts.netloc.encode())]
        )
        self.assertIsNotNone(authenticate(req, lookup, FIXED))


# AWS documentation, "Signature calculations for the Authorization header: transferring payload
# in multiple chunks" and "... including trailing headers" (sigv4-streaming.html,
# sigv4-streaming-trailers.html).
STREAMING_AUTH = (
    "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,"
    "SignedHeaders={},Signature={}"
)
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNKS = [
    "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9",
]
TRAILER_SEED = "106e2a8a18243abcf37539882f36619c00e2dfc72633413f02d3b74544bfeb8e"
TRAILER_CHUNKS = [
    "b474d8862b1487a5145d686f57f013e54db672cee1c953b3010fb58501ef5aa2",
    "1c1344b170168f8e65b41376b44b20fe354e373826ccbbe2c1d40a8cae51e5c7",
    "2ca2aba2005185cf7159c6277faf83795951dd77a3a99e6e65d5c9f85863f992",
]
TRAILER_SIGNATURE = "d81f82fc3505edab99d459891051a732e8730629a2e4a59689829ca17fe2e435"
CHUNK_DATA = [b"a" * 65536, b"a" * 1024, b""]


def streaming_request(trailer: bool) -> SignedRequest:
    """The AWS documentation's chunked PUT request (with or without a trailing checksum)."""
    headers = [
        (b"Host", b"s3.amazonaws.com"),
        (b"x-amz-date", b"20130524T000000Z"),
        (b"x-amz-storage-class", b"REDUCED_REDUNDANCY"),
        (b"Content-Encoding", b"aws-chunked"),
        (b"x-amz-decoded-content-length", b"66560"),
        (b"Content-Length", b"66824"),
    ]
    if trailer:
        signed = (
            "content-encoding;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class;x-amz-trailer"
        )
        headers += [
            (b"x-amz-content-sha256", STREAMING_PAYLOAD_TRAILER.encode()),
            (b"x-amz-trailer", b"x-amz-checksum-crc32c"),
            (b"Authorization", STREAMING_AUTH.format(signed, TRAILER_SEED).encode()),
        ]
    else:
        signed = (
            "content-encoding;content-length;host;x-amz-content-sha256;x-amz-date;"
            "x-amz-decoded-content-length;x-amz-storage-class"
        )
        headers += [
            (b"x-amz-content-sha256", STREAMING_PAYLOAD.encode()),
            (b"Authorization", STREAMING_AUTH.format(signed, SEED).encode()),
        ]
    return SignedRequest(b"PUT", b"/examplebucket/chunkObject.txt", b"", headers)


def streaming_verified(trailer: bool) -> Verified:
    """The verified seed request of the AWS documentation's chunked example."""
    verified = authenticate(streaming_request(trailer), lookup, DOC_NOW)
    assert verified is not None
    return verified


class ChunkSignatureTests(SynchronousTestCase):
    """The ``aws-chunked`` signature chain."""

    def test_aws_documentation_chunks(self) -> None:
        """The AWS documentation's seed and chunk signatures verify in order."""
        verified = streaming_verified(trailer=False)
        self.assertEqual(verified.payload_hash, STREAMING_PAYLOAD)
        self.assertEqual(verified.signature, SEED)
        chain = ChunkSignatureVerifier.for_request(verified)
        for signature, data in zip(CHUNKS, CHUNK_DATA, strict=True):
            chain.verify_chunk(signature, hashlib.sha256(data).hexdigest())

    def test_aws_documentation_trailer(self) -> None:
        """The AWS documentation's trailing-checksum example verifies, trailer included."""
        verified = streaming_verified(trailer=True)
        self.assertEqual(verified.payload_hash, STREAMING_PAYLOAD_TRAILER)
        chain = ChunkSignatureVerifier.for_request(verified)
        for signature, data in zip(TRAILER_CHUNKS, CHUNK_DATA, strict=True):
            chain.verify_chunk(signature, hashlib.sha256(data).hexdigest())
        trailer = canonical_trailer(
            [(b"x-amz-checksum-crc32c", b"sOO8/Q=="), (b"x-amz-trailer-signature", b"ignored")]
        )
        self.assertEqual(trailer, b"x-amz-checksum-crc32c:sOO8/Q==\n")
        chain.verify_trailer(TRAILER_SIGNATURE, trailer)

    def test_tampered_trailer_rejected(self) -> None:
        """A trailer value other than the signed one gives SignatureDoesNotMatch."""
        chain = ChunkSignatureVerifier.for_request(streaming_verified(trailer=True))
        for signature, data in zip(TRAILER_CHUNKS, CHUNK_DATA, strict=True):
            chain.verify_chunk(signature, hashlib.sha256(data).hexdigest())
        self.assertRaises(
            SignatureDoesNotMatch,
            chain.verify_trailer,
            TRAILER_SIGNATURE,
            b"x-amz-checksum-crc32c:sOO8/A==\n",
        )

    @settings(deadline=None)
    @given(st.integers(min_value=0, max_value=2), st.integers(min_value=0, max_value=63))
    def test_tampered_chunk_signature_rejected(self, which: int, index: int) -> None:
        """A changed chunk signature is rejected and leaves the chain where it was."""
        chain = ChunkSignatureVerifier.for_request(streaming_verified(trailer=False))
        for signature, data in zip(CHUNKS[:which], CHUNK_DATA, strict=False):
            chain.verify_chunk(signature, hashlib.sha256(data).hexdigest())
        digest = hashlib.sha256(CHUNK_DATA[which]).hexdigest()
        bad = flip(CHUNKS[which].encode(), index).decode()
        self.assertRaises(SignatureDoesNotMatch, chain.verify_chunk, bad, digest)
        chain.verify_chunk(CHUNKS[which], digest)

    def test_chunks_out_of_order_rejected(self) -> None:
        """Chunk signatures only verify in chain order."""
        chain = ChunkSignatureVerifier.for_request(streaming_verified(trailer=False))
        digest = hashlib.sha256(CHUNK_DATA[1]).hexdigest()
        self.assertRaises(SignatureDoesNotMatch, chain.verify_chunk, CHUNKS[1], digest)

    def test_wrong_data_rejected(self) -> None:
        """A chunk whose data differs from the signed data is rejected."""
        chain = ChunkSignatureVerifier.for_request(streaming_verified(trailer=False))
        digest = hashlib.sha256(b"b" * 65536).hexdigest()
        self.assertRaises(SignatureDoesNotMatch, chain.verify_chunk, CHUNKS[0], digest)

    def test_non_streaming_request(self) -> None:
        """A chain cannot be started for a request that does not claim a signed stream."""
        verified = authenticate(sign("PUT", url_for("k"), body=b"x"), lookup, FIXED)
        assert verified is not None
        self.assertRaises(ValueError, ChunkSignatureVerifier.for_request, verified)

    def test_errors_are_s3_errors(self) -> None:
        """Chunk signature failures are S3 errors that do not reveal the signing key."""
        verified = streaming_verified(trailer=False)
        chain = ChunkSignatureVerifier.for_request(verified)
        error = self.assertRaises(S3Error, chain.verify_chunk, "x" * 64, EMPTY_SHA256)
        self.assertNotIn(verified.signing_key.hex(), repr(error.extra))
        self.assertNotIn(repr(verified.signing_key), repr(chain))
