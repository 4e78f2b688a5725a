"""Per-request state shared by the body path, the API handlers and the access log."""

from __future__ import annotations

from random import getrandbits
from typing import TYPE_CHECKING

from attrs import define, field

from artifactd.errors import S3Error
from artifactd.http.actions import Target
from artifactd.records import Bucket

if TYPE_CHECKING:
    from artifactd.storage.engine import StagedBody


def new_request_id() -> str:
    """16 hex digits, as S3's request ids.  Unique enough to find a request in the logs, not a
    secret: from the PRNG (os.urandom costs a system call per request)."""
    return f"{getrandbits(64):016X}"


@define
class RequestContext:
    request_id: str
    started: float
    method: str
    peer: str
    target: Target | None = None
    bucket: Bucket | None = None  # the target's bucket, when the gate has read it
    action: str = "Unknown"
    principal: str | None = None
    error: S3Error | None = None  # found before the body; the handler raises it
    error_code: str | None = None  # the S3 error code sent, for the access log
    staged: StagedBody | None = None  # a streamed body, once complete
    staged_consumed: bool = False  # handed to the engine (which now owns the staging file)
    payload: bytes = b""  # a small (XML) body
    checksum_algorithm: str | None = None
    checksum_value: str | None = None  # base64, computed over the received body
    bytes_in: int = 0
    logged: bool = False
    headers: dict[str, str] = field(factory=dict)
    """The request's headers by lower-case name, latin-1 decoded; the last value of a repeated
    header, as twisted's ``Request.getHeader`` gives it."""
