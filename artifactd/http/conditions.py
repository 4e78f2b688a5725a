"""Pure evaluation of HTTP conditional headers against an object, as S3 applies them.

GET/HEAD (RFC 7232 order): ``If-Match`` / ``If-Unmodified-Since`` failing gives 412
PreconditionFailed; then ``If-None-Match`` / ``If-Modified-Since`` failing gives 304 NotModified.
A present ``If-Match`` that holds makes ``If-Unmodified-Since`` irrelevant, and a present
``If-None-Match`` that holds makes ``If-Modified-Since`` irrelevant.  Unparseable dates are
ignored.  Times compare at whole seconds (HTTP dates carry no more).

Copy sources (``x-amz-copy-source-if-*``) use the same rules, except that every failure is 412.
"""

from __future__ import annotations

import email.utils
import math

from attrs import frozen

from artifactd import errors


@frozen
class Conditions:
    if_match: str | None = None
    if_none_match: str | None = None
    if_modified_since: str | None = None
    if_unmodified_since: str | None = None

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


def etag_matches(header: str, etag: str | None) -> bool:
    """Whether an ``If-Match``/``If-None-Match`` list names ``etag`` (unquoted; None = absent
    object).  ``*`` matches any existing object; weak tags compare by their opaque part."""
    if etag is None:
        return False
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


def parse_http_date(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None or parsed.tzinfo is None:
        return None
    return parsed.timestamp()


def check_read(conditions: Conditions, etag: str, last_modified: float) -> None:
    """Raise PreconditionFailed or NotModified for a GET/HEAD of an existing object."""
    _check(conditions, etag, last_modified, not_modified=errors.NotModified)


def check_copy_source(conditions: Conditions, etag: str, last_modified: float) -> None:
    """Raise PreconditionFailed if the copy-source conditions do not hold."""
    _check(conditions, etag, last_modified, not_modified=errors.PreconditionFailed)


def _check(
    c: Conditions, etag: str, last_modified: float, not_modified: type[errors.S3Error]
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
        if etag_matches(c.if_none_match, etag):
            raise not_modified(extra={"Condition": "If-None-Match"})
    else:
        since = parse_http_date(c.if_modified_since)
        if since is not None and mtime <= since:
            raise not_modified(extra={"Condition": "If-Modified-Since"})
