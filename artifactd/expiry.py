"""Aborting multipart uploads that have been idle longer than the configured age."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import inlineCallbacks
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from artifactd import errors
from artifactd.interfaces import IMetadataStore
from artifactd.storage.engine import Engine


class UploadExpiry:
    """Every ``interval`` seconds, abort uploads initiated more than ``max_age`` seconds ago.

    Reactor thread; the aborts themselves run in the engine's disk pool.  One pass at a time.
    """

    log = Logger()

    def __init__(
        self,
        meta: IMetadataStore,
        engine: Engine,
        clock: IReactorTime,
        *,
        max_age: float,
        interval: float,
    ) -> None:
        self._meta = meta
        self._engine = engine
        self._clock = clock
        self._max_age = max_age
        self._interval = interval
        self._loop: LoopingCall | None = None

    def start(self) -> None:
        self._loop = LoopingCall(self.expire)
        self._loop.clock = self._clock
        self._loop.start(self._interval, now=True).addErrback(
            lambda f: self.log.failure("upload expiry stopped", f)
        )

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    @inlineCallbacks
    def expire(self) -> Any:
        """One pass; fires with the number of uploads aborted."""
        cutoff = self._clock.seconds() - self._max_age
        stale = [u for u in self._meta.all_uploads() if u.initiated < cutoff]
        aborted = 0
        for upload in stale:
            try:
                yield self._engine.abort_upload(upload)
            except errors.NoSuchUpload:
                continue  # completed or aborted meanwhile
            aborted += 1
            self.log.info(
                "expired multipart upload {upload_id} of {bucket}/{key}",
                upload_id=upload.upload_id,
                bucket=upload.bucket,
                key=upload.key,
            )
        return aborted
