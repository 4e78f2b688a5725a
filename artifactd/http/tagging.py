"""Object tags as S3 defines them: the ``x-amz-tagging`` header (URL query form), the
``<Tagging>`` document of Put/GetObjectTagging, and the limits.  Pure.

The limits (S3 user guide, "Categorizing your objects using tags"): at most 10 tags, unique
keys; a key of 1 to 128 and a value of 0 to 256 characters, counted as S3 stores them, in UTF-16
code units; letters, numbers and white space in any script and ``_ . : / = + @ -``; the ``aws:``
key prefix is reserved.  A tag set is kept in key order, the order S3 returns it in.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote_to_bytes

from artifactd import errors
from artifactd.http import s3xml
from artifactd.http.s3xml import Child

Tags = tuple[tuple[str, str], ...]

MAX_TAGS = 10
MAX_KEY_LENGTH = 128
MAX_VALUE_LENGTH = 256
_SYMBOLS = frozenset("_.:/=+@- ")

HEADER_ERROR = (
    "The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL query parameters"
    " without tag name duplicates."
)


def utf16_length(text: str) -> int:
    """Characters as S3 counts them in a tag: UTF-16 code units (an emoji counts two)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _allowed(text: str) -> bool:
    return all(ch in _SYMBOLS or unicodedata.category(ch)[0] in ("L", "N", "Z") for ch in text)


def check_tags(pairs: list[tuple[str, str]]) -> Tags:
    """Enforce S3's limits on a tag set whose keys are already unique; returns it in key
    order.  Raises BadRequest (more than 10 tags) or InvalidTag."""
    if len(pairs) > MAX_TAGS:
        raise errors.BadRequest("Object tags cannot be greater than 10")
    for key, value in pairs:
        if not key or utf16_length(key) > MAX_KEY_LENGTH or not _allowed(key):
            raise errors.InvalidTag(
                "The TagKey you have provided is invalid", extra={"TagKey": key}
            )
        if key.startswith("aws:"):
            raise errors.InvalidTag(
                "Your TagKey cannot be prefixed with aws:", extra={"TagKey": key}
            )
        if utf16_length(value) > MAX_VALUE_LENGTH or not _allowed(value):
            raise errors.InvalidTag(
                "The TagValue you have provided is invalid",
                extra={"TagKey": key, "TagValue": value},
            )
    return tuple(sorted(pairs))


def parse_header(raw: bytes) -> Tags:
    """The tag set of an ``x-amz-tagging`` header: ``k1=v1&k2=v2``, form-encoded (``+`` is a
    space, ``%XX`` a UTF-8 byte).  Empty pairs are skipped and ``k`` alone has the empty value;
    a pair with an empty key or a second ``=``, undecodable text and repeated keys are
    InvalidArgument, as S3 answers them."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for piece in raw.split(b"&"):
        if not piece:
            continue
        if piece.count(b"=") > 1 or piece.startswith(b"="):
            raise _header_error()
        name, _, value = piece.partition(b"=")
        try:
            key = unquote_to_bytes(name.replace(b"+", b" ")).decode("utf-8")
            text = unquote_to_bytes(value.replace(b"+", b" ")).decode("utf-8")
        except UnicodeDecodeError:
            raise _header_error() from None
        if key in seen:
            raise _header_error()
        seen.add(key)
        pairs.append((key, text))
    return check_tags(pairs)


def _header_error() -> errors.S3Error:
    return errors.InvalidArgument(HEADER_ERROR, extra={"ArgumentName": "x-amz-tagging"})


def parse_document(body: bytes) -> Tags:
    """The tag set of a PutObjectTagging body,
    ``<Tagging><TagSet><Tag><Key/><Value/></Tag>...</TagSet></Tagging>`` (namespace optional;
    an empty TagSet removes every tag).  MalformedXML unless the document has that shape;
    InvalidTag for a repeated key."""
    root = s3xml.parse(body, "Tagging")
    tag_sets = s3xml.children(root, "TagSet")
    if len(tag_sets) != 1 or len(root) != 1:
        raise errors.MalformedXML()
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    tag_elements = s3xml.children(tag_sets[0], "Tag")
    if len(tag_elements) != len(tag_sets[0]):
        raise errors.MalformedXML()
    for tag in tag_elements:
        keys = s3xml.children(tag, "Key")
        values = s3xml.children(tag, "Value")
        if len(keys) != 1 or len(values) != 1 or len(tag) != 2 or len(keys[0]) or len(values[0]):
            raise errors.MalformedXML()
        key, value = keys[0].text or "", values[0].text or ""
        if key in seen:
            raise errors.InvalidTag(
                "Cannot provide multiple Tags with the same key", extra={"TagKey": key}
            )
        seen.add(key)
        pairs.append((key, value))
    return check_tags(pairs)


def document(tags: Tags) -> bytes:
    """The GetObjectTagging response."""
    tag_set: list[Child] = [("Tag", [("Key", k), ("Value", v)]) for k, v in tags]
    return s3xml.document("Tagging", [("TagSet", tag_set)])
