"""Pure validation of bucket names, object keys and user metadata, as S3 defines them."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence

from artifactd import errors

MAX_KEY_BYTES = 1024
MAX_METADATA_BYTES = 2048

_BUCKET = re.compile(r"\A[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]\Z")


def check_bucket_name(name: str) -> None:
    """Raise InvalidBucketName unless ``name`` follows S3's general-purpose bucket naming rules."""
    ok = (
        _BUCKET.match(name) is not None
        and ".." not in name
        and ".-" not in name
        and "-." not in name
        and not name.startswith(("xn--", "sthree-", "amzn-s3-demo-"))
        and not name.endswith(("-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"))
        and not _is_ip(name)
    )
    if not ok:
        raise errors.InvalidBucketName(resource=name, extra={"BucketName": name})


def _is_ip(name: str) -> bool:
    try:
        ipaddress.IPv4Address(name)
    except ValueError:
        return False
    return True


def check_key(key: str) -> None:
    """Raise for an empty key or one over 1024 UTF-8 bytes."""
    if not key:
        raise errors.InvalidArgument("Object key must not be empty.")
    if "\x00" in key:
        raise errors.InvalidArgument("Object keys must not contain NUL characters.")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise errors.KeyTooLongError(
            extra={"Size": str(len(key.encode("utf-8", "surrogatepass"))), "MaxSizeAllowed": "1024"}
        )


def parse_count(text: str | None) -> int | None:
    """A non-negative decimal of ASCII digits, at most 19 of them (so ``int`` is cheap and never
    raises), else None."""
    if text is None or not (0 < len(text) <= 19 and text.isascii() and text.isdigit()):
        return None
    return int(text)


def user_metadata(
    headers: Iterable[tuple[bytes, Sequence[bytes]]],
) -> list[tuple[str, str]]:
    """The ``x-amz-meta-*`` headers as sorted (lower-case name without the prefix, value) pairs;
    repeated headers are joined with commas."""
    metadata: list[tuple[str, str]] = []
    for raw_name, values in headers:
        name = raw_name.decode("latin-1").lower()
        if name.startswith("x-amz-meta-"):
            value = ",".join(v.decode("utf-8", "replace") for v in values)
            metadata.append((name[len("x-amz-meta-") :], value))
    metadata.sort()
    return metadata


def metadata_size(pairs: list[tuple[str, str]]) -> int:
    """S3 counts the UTF-8 bytes of each name (without ``x-amz-meta-``) and value."""
    return sum(len(k.encode()) + len(v.encode()) for k, v in pairs)


def check_metadata(pairs: list[tuple[str, str]]) -> None:
    if metadata_size(pairs) > MAX_METADATA_BYTES:
        raise errors.MetadataTooLarge(
            extra={"Size": str(metadata_size(pairs)), "MaxSizeAllowed": str(MAX_METADATA_BYTES)}
        )
