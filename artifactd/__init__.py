"""artifactd: an S3-compatible artifact store built on Twisted."""

__version__ = "0.1.0"
