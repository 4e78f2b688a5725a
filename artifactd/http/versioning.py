"""Version ids in a bucket that has never had versioning: each object is one version whose id
is ``null`` (S3's name for the version of an unversioned object).  Pure."""

from __future__ import annotations

from collections.abc import Mapping

from artifactd import errors

NULL_VERSION = "null"


def check_version_id(query: Mapping[str, str]) -> None:
    """Accept a request without ``versionId`` or with ``versionId=null``; any other id names a
    version that cannot exist here: 400 InvalidArgument, as S3 answers an id it never issued."""
    value = query.get("versionId")
    if value is None or value == NULL_VERSION:
        return
    if value == "":
        raise errors.InvalidArgument(
            "Version id cannot be the empty string",
            extra={"ArgumentName": "versionId", "ArgumentValue": value},
        )
    raise errors.InvalidArgument(
        "Invalid version id specified", extra={"ArgumentName": "versionId", "ArgumentValue": value}
    )


def check_version_marker(key_marker: str, version_id_marker: str) -> None:
    """ListObjectVersions' ``version-id-marker``: only with a ``key-marker``, and only ``null``."""
    if not version_id_marker:
        return
    if not key_marker:
        raise errors.InvalidArgument(
            "A version-id marker cannot be specified without a key marker.",
            extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_id_marker},
        )
    if version_id_marker != NULL_VERSION:
        raise errors.InvalidArgument(
            "Invalid version id specified",
            extra={"ArgumentName": "version-id-marker", "ArgumentValue": version_id_marker},
        )


# The actions whose ``versionId`` query argument names the version they act on.
VERSION_ID_ACTIONS = frozenset(
    {
        "GetObject",
        "HeadObject",
        "DeleteObject",
        "GetObjectTagging",
        "PutObjectTagging",
        "DeleteObjectTagging",
    }
)
