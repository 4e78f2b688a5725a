"""Every operation in botocore's S3 model, serialised by botocore itself, is classified either
as that very operation or refused with 501 NotImplemented -- never as another operation (a 200
that answers a different question, or a 404/405 that looks like a missing bucket).  Checked
path-style and virtual-hosted style."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore import xform_name
from botocore.config import Config as BotoConfig
from botocore.model import OperationModel, Shape
from twisted.trial.unittest import SynchronousTestCase

from artifactd import errors
from artifactd.http.actions import classify, parse_target
from artifactd.http.api import HANDLER_CLASSES
from artifactd.http.vhost import bucket_from_host

DOMAIN = "s3.test"
IMPLEMENTED = frozenset(action for cls in HANDLER_CLASSES for action in cls.actions)
# Request parameters beyond the required ones, where the required ones alone leave two
# operations on the wire identical (ListDirectoryBuckets without parameters is ListBuckets'
# GET /: artifactd answers it as ListBuckets, which is all a server can do).
EXTRA: dict[str, dict[str, Any]] = {"ListDirectoryBuckets": {"MaxDirectoryBuckets": 10}}
NAMES = {"Bucket": "bkt", "Key": "some/key", "CopySource": "bkt/src", "RenameSource": "bkt/src"}


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__()
        self.request = request


def stub(shape: Shape, name: str = "") -> Any:
    """A value for ``shape`` with every required member filled in."""
    kind = shape.type_name
    if kind == "structure" and shape.is_tagged_union:
        first = next(iter(shape.members))
        return {first: stub(shape.members[first], first)}
    if kind == "structure":
        return {m: stub(shape.members[m], m) for m in shape.required_members}
    if kind == "list":
        return [stub(shape.member)]
    if kind == "map":
        return {}
    if kind == "string":
        if shape.enum:
            return shape.enum[0]
        value = NAMES.get(name, "x")
        return value.ljust(int(shape.metadata.get("min", 0)), "x")
    if kind in ("integer", "long"):
        return max(1, int(shape.metadata.get("min", 1)))
    if kind in ("float", "double"):
        return 1.0
    if kind == "boolean":
        return True
    if kind == "timestamp":
        return datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    if kind == "blob":
        return b"x"
    raise AssertionError(f"no stub for {kind}")


def wire_requests(addressing: str) -> Iterator[tuple[str, str, str, dict[str, str]]]:
    """``(operation, method, raw URI, lower-case headers)`` as botocore sends each operation."""
    client = boto3.client(
        "s3",
        endpoint_url=f"http://{DOMAIN}",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        region_name="us-east-1",
        config=BotoConfig(s3={"addressing_style": addressing}, retries={"max_attempts": 1}),
    )

    def capture(request: Any, **kwargs: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send.s3", capture)
    model = client.meta.service_model
    for name in model.operation_names:
        op: OperationModel = model.operation_model(name)
        params = stub(op.input_shape) if op.input_shape is not None else {}
        params.update(EXTRA.get(name, {}))
        try:
            getattr(client, xform_name(name))(**params)
        except _Captured as c:
            req = c.request
        else:  # pragma: no cover
            raise AssertionError(f"{name} was not sent")
        parts = urlsplit(req.url)
        uri = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            k.lower(): (v.decode() if isinstance(v, bytes) else str(v))
            for k, v in req.headers.items()
        }
        headers.setdefault("host", parts.netloc)
        yield name, req.method, uri, headers


def verdict(method: str, uri: str, headers: dict[str, str]) -> str:
    """The action artifactd classifies the request as, or ``"501"``."""
    host_bucket = bucket_from_host(headers.get("host"), (DOMAIN,))
    try:
        target = parse_target(uri.encode(), "", host_bucket)[0]
        action = classify(method, target, headers)
    except errors.NotImplementedError_:
        return "501"
    return action if action in IMPLEMENTED else "501"  # dispatch answers 501 for the rest


class BotocoreModelTests(SynchronousTestCase):
    def check(self, addressing: str) -> dict[str, str]:
        verdicts: dict[str, str] = {}
        for name, method, uri, headers in wire_requests(addressing):
            got = verdict(method, uri, headers)
            verdicts[name] = got
            self.assertIn(got, (name, "501"), f"{name}: {method} {uri} -> {got}")
        return verdicts

    def test_path_style(self) -> None:
        """Path-style: every operation is itself or 501; the ones artifactd serves are all
        recognised (none falls through to 501)."""
        verdicts = self.check("path")
        self.assertGreater(len(verdicts), 100)
        served = {name for name, got in verdicts.items() if got != "501"}
        self.assertEqual(served, IMPLEMENTED & set(verdicts))

    def test_virtual_hosted_style(self) -> None:
        """Virtual-hosted style gives every operation the same verdict as path-style."""
        self.assertEqual(self.check("virtual"), self.check("path"))

    def test_named_unsupported_operations(self) -> None:
        """The operations issue 3 names, among others, answer 501."""
        verdicts = dict(
            (name, verdict(method, uri, headers))
            for name, method, uri, headers in wire_requests("path")
        )
        for name in (
            "PutBucketPolicy",
            "GetBucketAcl",
            "PutObjectAcl",
            "GetObjectAttributes",
            "SelectObjectContent",
            "RestoreObject",
            "PutBucketLifecycleConfiguration",
            "GetBucketCors",
            "WriteGetObjectResponse",
            "RenameObject",
            "PutBucketTagging",
            "GetBucketTagging",
            "DeleteBucketTagging",
            "PutBucketVersioning",
            "CreateSession",
            "ListDirectoryBuckets",
        ):
            self.assertEqual(verdicts[name], "501", name)
        for name in (
            "GetObjectTagging",
            "PutObjectTagging",
            "DeleteObjectTagging",
            "ListObjectVersions",
            "ListBuckets",
            "HeadBucket",
            "GetBucketVersioning",
        ):
            self.assertEqual(verdicts[name], name)
