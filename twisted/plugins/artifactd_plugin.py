"""The twistd dropin: ``twistd artifactd`` builds the service in :mod:`artifactd.tap`."""

from twisted.application.service import ServiceMaker

artifactd = ServiceMaker(
    "artifactd",
    "artifactd.tap",
    "An S3-compatible artifact store with streaming bodies and LevelDB metadata.",
    "artifactd",
)
