"""Pure path layout of the data directory.  Object keys never become paths: blobs are named by
their SHA-256, so no client input reaches the filesystem."""

from __future__ import annotations

import os
import re

from attrs import frozen

_DIGEST = re.compile(r"\A[0-9a-f]{64}\Z")


def is_digest(text: str) -> bool:
    """Whether ``text`` is a lowercase hex SHA-256."""
    return _DIGEST.match(text) is not None


@frozen
class Layout:
    root: str

    @property
    def blobs(self) -> str:
        return os.path.join(self.root, "blobs")

    @property
    def staging(self) -> str:
        return os.path.join(self.root, "staging")

    @property
    def metadata(self) -> str:
        return os.path.join(self.root, "metadata")

    @property
    def lock(self) -> str:
        return os.path.join(self.root, ".artifactd.lock")

    @property
    def credentials(self) -> str:
        return os.path.join(self.root, "root-credentials")

    def blob(self, digest: str) -> str:
        """``blobs/ab/cd/<digest>``; raises ValueError for anything but a hex SHA-256."""
        if not is_digest(digest):
            raise ValueError(f"not a sha256 digest: {digest!r}")
        return os.path.join(self.blobs, digest[0:2], digest[2:4], digest)
