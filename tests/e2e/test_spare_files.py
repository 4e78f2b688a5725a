# twisted.trial's assertion methods are unannotated.
# mypy: disable-error-code="no-untyped-call"
"""Deleted blobs' files kept as spares and written over by the next large upload, through a
real daemon and boto3: the bytes read back are always the ones written, a download in flight
keeps its own bytes, and a spare's space is freed after ``storage.spare_seconds``."""

from __future__ import annotations

import os
import time

from artifactd.storage.layout import Layout
from tests.e2e.support import DaemonTestCase

MiB = 1024 * 1024
SIZE = 24 * MiB  # more than loopback socket buffers hold: a download of it keeps its file open


class SpareFileTests(DaemonTestCase):
    config_toml = "[storage]\nspare_seconds = 2\n"

    def setUp(self) -> None:
        super().setUp()
        self.client = self.daemon.client()
        self.bucket = self.bucket_name()
        self.client.create_bucket(Bucket=self.bucket)

    def spares(self) -> list[str]:
        staging = Layout(self.daemon.data_dir).staging
        return [name for name in os.listdir(staging) if name.startswith("spare-")]

    def wait_for(self, condition: object, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():  # type: ignore[operator]
                return
            time.sleep(0.1)
        self.fail(f"not so after {timeout} s")

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def test_a_deleted_object_file_is_written_over_and_then_freed(self) -> None:
        self.wait_for(lambda: not self.spares())  # none left by another test
        first = os.urandom(SIZE)
        self.put("first", first)
        self.client.delete_object(Bucket=self.bucket, Key="first")
        self.assertEqual(len(self.spares()), 1)
        # a shorter body of about its size writes over it: nothing of the first may show
        second = os.urandom(SIZE - 3 * MiB - 5)
        self.put("second", second)
        self.assertEqual(self.spares(), [])
        self.assertEqual(self.get("second"), second)
        head = self.client.head_object(Bucket=self.bucket, Key="second")
        self.assertEqual(head["ContentLength"], len(second))
        # an overwrite releases the old body: kept a while, then removed
        third = os.urandom(SIZE)
        self.put("second", third)
        self.assertEqual(len(self.spares()), 1)
        self.assertEqual(self.get("second"), third)
        self.wait_for(lambda: not self.spares())
        self.assertEqual(self.get("second"), third)

    def test_a_download_in_flight_keeps_the_bytes_it_started_with(self) -> None:
        """A GET streaming an object that is deleted and replaced meanwhile by a body of the
        same size (which a spare would fit) still gets the object's own bytes, whole."""
        old = os.urandom(SIZE)
        self.put("obj", old)
        stream = self.client.get_object(Bucket=self.bucket, Key="obj")["Body"]
        start = stream.read(MiB)
        self.client.delete_object(Bucket=self.bucket, Key="obj")
        new = os.urandom(SIZE)
        self.put("other", new)
        self.assertEqual(start + stream.read(), old)
        self.assertEqual(self.get("other"), new)


class SpareFileTLSTests(SpareFileTests):
    """The same over TLS, where boto3 sends ``aws-chunked`` bodies with a trailing checksum:
    they are staged through the reactor's sink, which learns the body's size from
    ``x-amz-decoded-content-length``."""

    tls = True
