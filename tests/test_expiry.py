"""The periodic abort of idle multipart uploads."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from artifactd.expiry import UploadExpiry
from artifactd.records import Bucket, Upload
from artifactd.storage.blobs import FileBlobStore
from artifactd.storage.engine import Engine
from artifactd.storage.kv import MemoryKV
from artifactd.storage.layout import Layout
from artifactd.storage.metadata import KVMetadataStore


def run_inline(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    try:
        return succeed(f(*args, **kwargs))
    except BaseException:
        return fail()


class ExpiryTests(SynchronousTestCase):
    def setUp(self) -> None:
        root = os.path.abspath(self.mktemp())
        blobs = FileBlobStore(Layout(root))
        blobs.prepare()
        self.meta = KVMetadataStore(MemoryKV())
        self.engine = Engine(blobs, self.meta, run_inline)
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.meta.create_bucket(Bucket("bkt", 0.0))

    def _upload(self, key: str, age: float) -> Upload:
        upload = Upload("bkt", key, f"id-{key}", self.clock.seconds() - age)
        self.meta.create_upload(upload)
        return upload

    def test_aborts_only_old_uploads(self) -> None:
        """A pass aborts uploads older than max_age and keeps younger ones."""
        self._upload("old", 7200)
        young = self._upload("young", 60)
        expiry = UploadExpiry(self.meta, self.engine, self.clock, max_age=3600, interval=600)
        self.assertEqual(self.successResultOf(expiry.expire()), 1)
        self.assertEqual([u.upload_id for u in self.meta.all_uploads()], [young.upload_id])

    def test_runs_every_interval(self) -> None:
        """Once started it runs now and then every interval, and stop() ends it."""
        expiry = UploadExpiry(self.meta, self.engine, self.clock, max_age=3600, interval=600)
        expiry.start()
        self._upload("later", 3000)
        self.clock.advance(599)
        self.assertEqual(len(list(self.meta.all_uploads())), 1)
        self.clock.advance(1)
        self.assertEqual(len(list(self.meta.all_uploads())), 1)  # 3600 s old: not yet older
        self.clock.advance(600)
        self.assertEqual(list(self.meta.all_uploads()), [])
        expiry.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
