"""Pure request classification: which S3 action a request is, from its method, path shape and
query.  S3 routes on query parameters (``?uploads``, ``?uploadId=``), which URL routers cannot
express, so this table is the router; S3Resource dispatches on its result."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote_to_bytes

from attrs import frozen

from artifactd import errors

# Sub-resources S3 defines that artifactd does not implement: answered 501 NotImplemented,
# never treated as a plain GET/PUT on the bucket or object.
# (``tagging`` is implemented on objects only and ``versions`` for GET on a bucket only; see
# classify.)  The list follows botocore's S3 model: tests/test_operations.py classifies every
# operation in it.
UNSUPPORTED_SUBRESOURCES = frozenset(
    [
        "abac",
        "accelerate",
        "acl",
        "analytics",
        "annotation",
        "attributes",
        "cors",
        "default-storage-class",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metadataAnnotationTable",
        "metadataConfiguration",
        "metadataInventoryTable",
        "metadataJournalTable",
        "metadataTable",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "part",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "renameObject",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "session",
        "torrent",
        "website",
    ]
)


@frozen
class Target:
    """The addressed resource: the service (no bucket), a bucket, or an object."""

    bucket: str | None
    key: str | None
    query: Mapping[str, str]  # decoded names to first decoded value

    @property
    def resource(self) -> str:
        if self.bucket is None:
            return "/"
        return f"/{self.bucket}" + (f"/{self.key}" if self.key is not None else "")


def parse_query(raw_query: bytes) -> dict[str, str]:
    """Decode a query string the way S3 does: ``+`` is a literal plus, first value wins."""
    out: dict[str, str] = {}
    if not raw_query:
        return out
    for part in raw_query.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        try:
            n = (unquote_to_bytes(name) if b"%" in name else name).decode("utf-8")
            v = (unquote_to_bytes(value) if b"%" in value else value).decode("utf-8")
        except UnicodeDecodeError:
            raise errors.InvalidURI() from None
        out.setdefault(n, v)
    return out


def parse_target(
    raw_uri: bytes, base_path: str, host_bucket: str | None = None
) -> tuple[Target, bytes, bytes]:
    """Split a request URI into the target and the raw (still encoded) path and query.

    Path-style addressing below ``base_path``: ``/``, ``/bucket``, ``/bucket/``, ``/bucket/key``.
    The key is everything after the first slash following the bucket, percent-decoded once,
    keeping ``//`` and trailing slashes.  Virtual-hosted style (``host_bucket``, the bucket
    named by the Host header): the path below ``base_path`` is ``/`` (the bucket) or ``/key``.
    """
    raw_path, _, raw_query = raw_uri.partition(b"?")
    base = base_path.rstrip("/").encode()
    if base:
        if raw_path != base and not raw_path.startswith(base + b"/"):
            raise errors.NoSuchBucket(f"This server serves S3 below {base_path!r}.")
        raw_path_in = raw_path[len(base) :] or b"/"
    else:
        raw_path_in = raw_path
    if not raw_path_in.startswith(b"/"):
        raise errors.InvalidURI()
    try:
        path = unquote_to_bytes(raw_path_in).decode("utf-8")
    except UnicodeDecodeError:
        raise errors.InvalidURI() from None
    query = parse_query(raw_query)
    rest = path[1:]
    if host_bucket is not None:
        return Target(host_bucket, rest or None, query), raw_path, raw_query
    if not rest:
        return Target(None, None, query), raw_path, raw_query
    bucket, slash, key = rest.partition("/")
    if not slash or key == "":
        return Target(bucket, None, query), raw_path, raw_query
    return Target(bucket, key, query), raw_path, raw_query


def classify(method: str, target: Target, headers: Mapping[str, str]) -> str:
    """The S3 action name for the request; raises NotImplemented / MethodNotAllowed."""
    q = target.query
    unsupported = sorted(UNSUPPORTED_SUBRESOURCES.intersection(q))
    if "x-amz-request-route" in headers:
        raise _not_implemented("WriteGetObjectResponse")
    if target.bucket is None:
        if "max-directory-buckets" in q:
            raise _not_implemented("ListDirectoryBuckets")
        if method in ("GET", "HEAD"):
            return "ListBuckets"
        raise errors.MethodNotAllowed(
            resource="/", extra={"Method": method, "ResourceType": "SERVICE"}
        )
    if target.key is None:
        if unsupported:
            raise _not_implemented(unsupported[0])
        if "tagging" in q:
            raise _not_implemented("tagging")  # bucket tagging
        if "versions" in q:
            if method == "GET":
                return "ListObjectVersions"
            raise _not_implemented("versions")
        if method == "GET":
            if "uploads" in q:
                return "ListMultipartUploads"
            if "location" in q:
                return "GetBucketLocation"
            if "versioning" in q:
                return "GetBucketVersioning"
            if q.get("list-type") == "2":
                return "ListObjectsV2"
            return "ListObjects"
        if method == "HEAD":
            return "HeadBucket"
        if method == "PUT":
            if "versioning" in q:
                raise _not_implemented("versioning")
            return "CreateBucket"
        if method == "DELETE":
            return "DeleteBucket"
        if method == "POST" and "delete" in q:
            return "DeleteObjects"
        raise errors.MethodNotAllowed(
            resource=target.resource, extra={"Method": method, "ResourceType": "BUCKET"}
        )
    if unsupported:
        raise _not_implemented(unsupported[0])
    if "versions" in q:
        raise _not_implemented("versions")
    if "tagging" in q:
        tagging = _OBJECT_TAGGING.get(method)
        if tagging is None:
            raise _not_implemented("tagging")
        return tagging
    if method == "PUT":
        copy = "x-amz-copy-source" in headers
        if "uploadId" in q or "partNumber" in q:
            return "UploadPartCopy" if copy else "UploadPart"
        return "CopyObject" if copy else "PutObject"
    if method == "GET":
        return "ListParts" if "uploadId" in q else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    if method == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    raise errors.MethodNotAllowed(
        resource=target.resource, extra={"Method": method, "ResourceType": "OBJECT"}
    )


_OBJECT_TAGGING = {
    "GET": "GetObjectTagging",
    "PUT": "PutObjectTagging",
    "DELETE": "DeleteObjectTagging",
}


def _not_implemented(what: str) -> errors.S3Error:
    return errors.NotImplementedError_(
        f"artifactd does not implement '{what}'.", extra={"Header": what}
    )
