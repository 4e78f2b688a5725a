"""Conditional writes (pure): ``If-None-Match: *`` and ``If-Match: <etag>`` on PutObject and
CompleteMultipartUpload, as S3 applies them.

A condition is checked twice.  The gate checks it against the object as the request is admitted
(``at_commit=False``), so a body that would be refused is never received; the metadata store checks
it again inside the mutation that replaces the object, under its lock (``at_commit=True``), which
is what makes it atomic: of two concurrent ``If-None-Match: *`` writes of one key exactly one
succeeds.

* ``If-None-Match: *`` and an object exists: 412 ``PreconditionFailed``.
* ``If-Match`` and the object's ETag is not listed: 412 ``PreconditionFailed``.
* ``If-Match`` and no object: 404 ``NoSuchKey`` when the request is admitted; at commit the object
  existed at admission and was deleted meanwhile by a concurrent request, which S3 reports as 409
  ``ConditionalRequestConflict``.
* ``If-None-Match`` with anything but ``*``, or both headers together: 501 ``NotImplemented``.
"""

from __future__ import annotations

from collections.abc import Mapping

from attrs import frozen

from artifactd import errors


@frozen
class WriteCondition:
    """What a conditional write requires of the object it replaces."""

    if_none_match: bool = False  # If-None-Match: * (the key must be free)
    if_match: str | None = None  # the If-Match header as sent: ETags, quoted or not, or "*"


def write_condition(headers: Mapping[str, str]) -> WriteCondition | None:
    """The condition carried by a write's (lower-case) headers, or None for an unconditional
    write.  Raises ``NotImplemented`` for the forms S3 does not accept on writes."""
    if_match = headers.get("if-match")
    if_none_match = headers.get("if-none-match")
    if if_match is None and if_none_match is None:
        return None
    if if_match is not None and if_none_match is not None:
        raise errors.NotImplementedError_(
            "If-Match and If-None-Match cannot be combined on a write.",
            extra={"Header": "If-Match, If-None-Match"},
        )
    if if_none_match is not None:
        if if_none_match.strip() != "*":
            raise errors.NotImplementedError_(
                "If-None-Match on a write only accepts '*'.", extra={"Header": "If-None-Match"}
            )
        return WriteCondition(if_none_match=True)
    assert if_match is not None
    return WriteCondition(if_match=if_match)


def etag_listed(header: str, etag: str) -> bool:
    """Whether an ``If-Match`` value names ``etag`` (unquoted): ``*``, or a comma-separated list of
    ETags compared without their quotes (and without a weak ``W/`` prefix)."""
    for candidate in header.split(","):
        tag = candidate.strip()
        if tag == "*":
            return True
        if tag.startswith("W/"):
            tag = tag[2:]
        if tag.strip('"') == etag:
            return True
    return False


def check_write(
    condition: WriteCondition | None,
    current_etag: str | None,
    *,
    at_commit: bool,
    key: str = "",
) -> None:
    """Raise the S3 error if ``condition`` does not hold for the object whose ETag (unquoted) is
    ``current_etag`` (None: no object).  ``at_commit`` chooses the error for an ``If-Match`` whose
    object is gone: 404 on admission, 409 (deleted by a concurrent request) at commit."""
    if condition is None:
        return
    if condition.if_none_match:
        if current_etag is not None:
            raise errors.PreconditionFailed(extra={"Condition": "If-None-Match"})
        return
    if condition.if_match is None:
        return
    if current_etag is None:
        if at_commit:
            raise errors.ConditionalRequestConflict(
                "The object was deleted by a concurrent request; fetch its ETag and retry."
            )
        raise errors.NoSuchKey(extra={"Key": key} if key else None)
    if not etag_listed(condition.if_match, current_etag):
        raise errors.PreconditionFailed(extra={"Condition": "If-Match"})
