"""S3 XML documents: rendering responses and parsing request bodies (with defusedxml, so entity
expansion, external entities and DTDs are refused)."""

from __future__ import annotations

import datetime
import email.utils
import functools
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

import defusedxml
import defusedxml.ElementTree as SafeET

from artifactd import errors, integrity
from artifactd.records import ObjectRecord, ObjectSummary

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
OWNER_ID = "artifactd"
_DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'

Child = tuple[str, Any]  # (tag, text | list[Child] | None)


def iso8601(ts: float) -> str:
    """S3's timestamp form in XML: ``2026-11-28T01:02:03.000Z``.

    The instant is ``datetime.fromtimestamp(ts)``'s: rounded half-even to the microsecond, then
    truncated to the millisecond."""
    fraction, whole = math.modf(ts)
    micros = round(fraction * 1e6)
    if micros >= 1_000_000:
        whole, micros = whole + 1, micros - 1_000_000
    elif micros < 0:
        whole, micros = whole - 1, micros + 1_000_000
    minute, second = divmod(int(whole), 60)
    text = _MINUTES.get(minute)
    if text is None:
        text = _iso8601_minute(minute)
    return text + _SECONDS[second] + _MILLIS[micros // 1000]


_SECONDS = [f":{n:02d}." for n in range(60)]
_MILLIS = [f"{n:03d}Z" for n in range(1000)]


_MINUTES: dict[int, str] = {}  # a listing's objects share few minutes


def _iso8601_minute(minute: int) -> str:
    """``YYYY-MM-DDTHH:MM`` of a minute since the epoch (remembered, up to 4096 of them)."""
    moment = datetime.datetime.fromtimestamp(minute * 60, tz=datetime.UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M")
    if len(_MINUTES) >= 4096:
        _MINUTES.clear()
    _MINUTES[minute] = text
    return text


@functools.lru_cache(maxsize=1024)
def _http_date(seconds: int) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def http_date(ts: float) -> str:
    """RFC 7231 date for Last-Modified and Date headers."""
    return _http_date(int(ts))


def _escape(text: str) -> str:
    """Character data escaped as ElementTree escapes it."""
    if "&" in text:
        text = text.replace("&", "&amp;")
    if "<" in text:
        text = text.replace("<", "&lt;")
    if ">" in text:
        text = text.replace(">", "&gt;")
    return text


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return _escape(str(value))


class Raw(str):
    """Markup already rendered: a child ``(anything, Raw(...))`` is written as it is."""


def _render(out: list[str], tag: str, value: Any) -> None:
    """Append ``<tag>value</tag>`` (``<tag />`` when empty) to ``out``."""
    if isinstance(value, Raw):
        out.append(value)
        return
    if isinstance(value, list):
        out.append(f"<{tag}>")
        mark = len(out)
        for child_tag, child in value:
            if child is not None:
                _render(out, child_tag, child)
        if len(out) == mark:
            out[-1] = f"<{tag} />"
        else:
            out.append(f"</{tag}>")
        return
    text = _text(value)
    out.append(f"<{tag}>{text}</{tag}>" if text else f"<{tag} />")


def document(
    root: str, children: Iterable[Child], *, namespace: bool = True, text: str | None = None
) -> bytes:
    """Serialise ``<root xmlns=...>children</root>`` with an XML declaration.

    Children are ``(tag, value)`` pairs; a value is text (``str()`` of it; booleans as
    ``true``/``false``), a list of children, or None (left out).  The bytes are exactly those
    ElementTree writes for the same tree (``tests/test_s3xml.py`` checks it)."""
    head = f'<{root} xmlns="{NS}"' if namespace else f"<{root}"
    out = [head + ">", _escape(text) if text else ""]
    mark = len(out)
    for tag, value in children:
        if value is not None:
            _render(out, tag, value)
    if len(out) == mark and not text:
        out = [head + " />"]
    else:
        out.append(f"</{root}>")
    return _DECL + "".join(out).encode("utf-8", "xmlcharrefreplace")


# Characters XML 1.0 cannot carry at all (not even as character references).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """``text`` with every character XML 1.0 forbids percent-encoded (as UTF-8)."""
    return _NOT_XML_CHAR.sub(lambda m: quote(m.group(), safe=""), text)


def error_document(error: errors.S3Error, request_id: str) -> bytes:
    """The ``<Error>`` document.  Values echoed from the request (keys, query arguments) may hold
    characters XML 1.0 forbids; those are percent-encoded so the document always parses."""
    children: list[Child] = [("Code", error.code), ("Message", _xml_safe(error.message))]
    children.extend((name, _xml_safe(value)) for name, value in error.extra.items())
    if error.resource is not None:
        children.append(("Resource", _xml_safe(error.resource)))
    children.append(("RequestId", request_id))
    children.append(("HostId", request_id))
    return document("Error", children, namespace=False)


def owner() -> list[Child]:
    return [("ID", OWNER_ID), ("DisplayName", OWNER_ID)]


def contents(objects: Iterable[ObjectSummary], encoding_type: str | None, owner: bool) -> Raw:
    """The ``<Contents>`` entries of a ListBucketResult, rendered in one pass (a page holds up to
    1000): the same markup :func:`document` writes for the children ``Key``, ``LastModified``,
    ``ETag``, ``Size``, ``StorageClass``, the checksum pair when there is one, and ``Owner`` when
    ``owner``."""
    return contents_rows(((o.key, o) for o in objects), encoding_type, owner)


def contents_rows(
    entries: Iterable[tuple[str, str | ObjectSummary]], encoding_type: str | None, owner: bool
) -> Raw:
    """:func:`contents` of (key, listing row) pairs, a row being :func:`listing_row`'s text
    stored with the record, or the record's summary when it has none."""
    end = f"{_OWNER}</Contents>" if owner else "</Contents>"
    entries = list(entries)
    # Keys are checked for the page at once: usually none needs URL-encoding or escaping.
    keys = "".join([key for key, _ in entries])
    plain = (encoding_type is None or _URL_SAFE_KEY.fullmatch(keys) is not None) and not (
        "&" in keys or "<" in keys or ">" in keys
    )
    out: list[str] = []
    append = out.append
    for key, entry in entries:
        if not plain:
            key = _escape(encode_key(key, encoding_type))
        row = entry if type(entry) is str else _row(*entry[1:])
        append(f"<Contents><Key>{key}</Key>{row}{end}")
    return Raw("".join(out))


def listing_row(record: ObjectRecord) -> str:
    """The object's listing entry after its ``<Key>``: ``LastModified``, ``ETag``, ``Size``,
    ``StorageClass`` and the checksum pair.  The metadata store keeps it with the record
    (written when the record is), so a listing does not decode and render each record."""
    algorithm = record.checksum.algorithm if record.checksum is not None else None
    return _row(record.size, record.etag, record.last_modified, algorithm, record.checksum_type)


def _row(
    size: int, etag: str, mtime: float, algorithm: str | None, checksum_type: str | None
) -> str:
    checksum = _checksum_elements(algorithm, checksum_type) if algorithm is not None else ""
    return (
        f"<LastModified>{iso8601(mtime)}</LastModified>"
        f'<ETag>"{_escape(etag)}"</ETag><Size>{size}</Size>'
        f"<StorageClass>STANDARD</StorageClass>{checksum}"
    )


_OWNER = f"<Owner><ID>{OWNER_ID}</ID><DisplayName>{OWNER_ID}</DisplayName></Owner>"


@functools.lru_cache(maxsize=64)
def _checksum_elements(algorithm: str, checksum_type: str | None) -> str:
    (_, name), (_, kind) = integrity.listing_elements(algorithm, checksum_type)
    return (
        f"<ChecksumAlgorithm>{_escape(name)}</ChecksumAlgorithm>"
        f"<ChecksumType>{_escape(kind)}</ChecksumType>"
    )


def encode_key(key: str, encoding_type: str | None) -> str:
    """Keys in listings, URL-encoded when the client asked for ``encoding-type=url``."""
    if encoding_type == "url" and not _URL_SAFE_KEY.fullmatch(key):
        return quote(key, safe="/~-_.")
    return key


_URL_SAFE_KEY = re.compile("[A-Za-z0-9/~._-]*")  # what quote(key, safe="/~-_.") leaves as it is


# ------------------------------------------------------------------ parsing
def parse(body: bytes, root: str) -> ET.Element:
    """Parse a request body whose document element must be ``root`` (namespace optional)."""
    if not body.strip():
        raise errors.MalformedXML()
    try:
        el: ET.Element = SafeET.fromstring(body, forbid_dtd=True)
    except (ET.ParseError, defusedxml.DefusedXmlException, ValueError):
        raise errors.MalformedXML() from None
    if _local(el.tag) != root:
        raise errors.MalformedXML()
    return el


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def children(el: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in el if _local(c.tag) == name]


def text(el: ET.Element, name: str) -> str | None:
    found = children(el, name)
    if not found:
        return None
    return found[0].text or ""


def parse_complete_upload(body: bytes) -> list[tuple[int, str, Mapping[str, str]]]:
    """``(part number, etag without quotes, checksums)`` for each ``<Part>``, in document order."""
    root = parse(body, "CompleteMultipartUpload")
    parts: list[tuple[int, str, Mapping[str, str]]] = []
    for part in children(root, "Part"):
        number = text(part, "PartNumber")
        etag = text(part, "ETag")
        if (
            number is None
            or etag is None
            or not (number.strip().isascii() and number.strip().isdigit())
        ):
            raise errors.MalformedXML()
        checksums = {
            _local(c.tag): (c.text or "") for c in part if _local(c.tag).startswith("Checksum")
        }
        parts.append((int(number), etag.strip().strip('"'), checksums))
    if not parts:
        raise errors.MalformedXML(
            "The XML you provided was not well-formed or did not validate against our published"
            " schema: a CompleteMultipartUpload needs at least one Part."
        )
    return parts


def parse_create_bucket(body: bytes) -> str | None:
    """The LocationConstraint of a CreateBucketConfiguration, if any."""
    if not body.strip():
        return None
    root = parse(body, "CreateBucketConfiguration")
    return text(root, "LocationConstraint")
