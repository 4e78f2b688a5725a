"""Pure evaluation of HTTP conditional headers against an object, as S3 applies them.

GET/HEAD follow RFC 7232 §6 and the S3 GetObject/HeadObject reference:

1. ``If-Match`` (when present) must list the object's ETag, else 412 ``PreconditionFailed``;
   when absent, ``If-Unmodified-Since`` must not be older than the object, else 412.  A present
   ``If-Match`` makes ``If-Unmodified-Since`` irrelevant (S3: "If-Match true and
   If-Unmodified-Since false: 200 OK").
2. ``If-None-Match`` (when present) must not list the object's ETag, else 304 Not Modified; when
   absent, the object must be newer than ``If-Modified-Since``, else 304.  A present
   ``If-None-Match`` makes ``If-Modified-Since`` irrelevant (S3: "If-None-Match false and
   If-Modified-Since true: 304").

412 wins over 304 (step 1 runs first).  ETag lists are compared as RFC 7232 §2.3.2 says: strong
comparison for ``If-Match`` (a weak ``W/"…"`` tag never matches), weak comparison for
``If-None-Match``; ``*`` matches any existing object; S3 also takes an unquoted ETag.  Dates are
HTTP-dates in any of the three forms RFC 7231 §7.1.1.1 requires a recipient to accept (IMF-fixdate,
RFC 850, asctime, the last two read as UTC); an unparseable date is ignored (RFC 7232 §3.3, §3.4),
and so is an ``If-Modified-Since`` later than the server's clock (RFC 2616 §14.25: such a date is
invalid).  Times compare at whole seconds, the resolution of ``Last-Modified``.

Copy sources (``x-amz-copy-source-if-*``) use the same rules, except that every failure is 412.
"""

from __future__ import annotations

import datetime
import email.utils
import math
from collections.abc import Callable

from attrs import frozen

from artifactd import errors

HEADERS = ("if-match", "if-none-match", "if-modified-since", "if-unmodified-since")


@frozen
class Conditions:
    """The four conditional headers of a request (raw values; None when absent)."""

    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

    @classmethod
    def from_headers(cls, get: Callable[[str], str | None], prefix: str = "") -> Conditions:
        """Read the headers through ``get`` (lower-case name to value); ``prefix`` is
        ``"x-amz-copy-source-"`` for a copy source's conditions."""
        match, none_match, modified, unmodified = (get(prefix + name) for name in HEADERS)
        return cls(match, none_match, modified, unmodified)

    @property
    def present(self) -> bool:
        return any(
            v is not None
            for v in (
                self.if_match,
                self.if_none_match,
                self.if_modified_since,
                self.if_unmodified_since,
            )
        )


def etag_matches(header: str, etag: str | None, *, weak: bool = False) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag`` (unquoted; None = absent
    object).  ``*`` matches any existing object.  With ``weak`` (If-None-Match) a ``W/`` tag
    compares by its opaque part; without it (If-Match) a ``W/`` tag never matches."""
    if etag is None:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag[:2] in ("W/", "w/"):
            if not weak:
                continue
            tag = tag[2:].strip()
        if len(tag) >= 2 and tag[0] == '"' and tag[-1] == '"':
            tag = tag[1:-1]
        if tag == etag:
            return True
    return False


def parse_http_date(value: str | None) -> float | None:
    """POSIX seconds of an HTTP-date, or None when absent or not a date."""
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
        if parsed.tzinfo is None:  # asctime form (and "-0000"): UTC
            parsed = parsed.replace(tzinfo=datetime.UTC)
        return parsed.timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def check_read(
    conditions: Conditions, etag: str, last_modified: float, *, now: float | None = None
) -> None:
    """Raise PreconditionFailed or NotModified for a GET/HEAD of an existing object; ``now``
    (POSIX seconds) makes a future ``If-Modified-Since`` ignored."""
    _check(conditions, etag, last_modified, now, not_modified=errors.NotModified)


def check_copy_source(
    conditions: Conditions, etag: str, last_modified: float, *, now: float | None = None
) -> None:
    """Raise PreconditionFailed if the copy-source conditions do not hold."""
    _check(conditions, etag, last_modified, now, not_modified=errors.PreconditionFailed)


def _check(
    c: Conditions,
    etag: str,
    last_modified: float,
    now: float | None,
    not_modified: type[errors.S3Error],
) -> None:
    mtime = math.floor(last_modified)
    if c.if_match is not None:
        if not etag_matches(c.if_match, etag):
            raise errors.PreconditionFailed(extra={"Condition": "If-Match"})
    else:
        since = parse_http_date(c.if_unmodified_since)
        if since is not None and mtime > since:
            raise errors.PreconditionFailed(extra={"Condition": "If-Unmodified-Since"})
    if c.if_none_match is not None:
        if etag_matches(c.if_none_match, etag, weak=True):
            raise not_modified(extra={"Condition": "If-None-Match"})
    else:
        since = parse_http_date(c.if_modified_since)
        if since is not None and (now is None or since <= now) and mtime <= since:
            raise not_modified(extra={"Condition": "If-Modified-Since"})
