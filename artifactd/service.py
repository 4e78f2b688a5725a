"""The service tree: opens the data directory and recovers in ``startService``; drains and closes
in ``stopService``.  Nothing here runs before twistd has forked and dropped privileges."""

from __future__ import annotations

import fcntl
import os
from typing import IO, Any, ParamSpec, TypeVar

from twisted.application.service import Service
from twisted.internet import endpoints
from twisted.internet.defer import Deferred, DeferredList, inlineCallbacks
from twisted.internet.interfaces import IListeningPort, IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from artifactd import credentials, logs
from artifactd.config import Config
from artifactd.diskpool import DiskPool
from artifactd.expiry import UploadExpiry
from artifactd.http import s3xml
from artifactd.http.api import S3Api
from artifactd.http.gate import Gate
from artifactd.http.site import S3Site
from artifactd.http.writes import WriteGathering
from artifactd.memory import freeze_startup_objects, raise_young_threshold
from artifactd.records import RecoveryReport
from artifactd.storage.blobs import FileBlobStore
from artifactd.storage.engine import Engine
from artifactd.storage.kv import LevelDBKV, OrderedKV
from artifactd.storage.layout import Layout
from artifactd.storage.metadata import KVMetadataStore
from artifactd.storage.tiered import TieredBlobStore

P = ParamSpec("P")
T = TypeVar("T")

SPARE_CHECK_SECONDS = 5.0


class DataDirInUse(SystemExit):
    """Another artifactd holds the data directory's lock.

    A ``SystemExit`` with status 1, so ``twistd`` (which calls ``startService`` directly) exits
    non-zero without printing a traceback; the reason is logged as a critical event first.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.code = 1


def metadata_store(kv: OrderedKV) -> KVMetadataStore:
    """The daemon's metadata store over ``kv``: object records are stored with their listing
    rows (S3 XML), as :meth:`KVMetadataStore.list_rows` serves them.  Whatever fills a data
    directory for the daemon (the benchmark's bulk loader) builds its store here too."""
    return KVMetadataStore(kv, listing_row=s3xml.listing_row)


class ArtifactdService(Service):
    log = Logger()

    def __init__(self, config: Config, reactor: Any) -> None:
        self.config = config
        self._reactor = reactor
        self._lock_file: IO[bytes] | None = None
        self._pool: DiskPool | None = None
        self._meta: KVMetadataStore | None = None
        self._ports: list[IListeningPort] = []
        self._expiry: UploadExpiry | None = None
        self._blobs: TieredBlobStore | None = None
        self._spare_release: LoopingCall | None = None
        self.engine: Engine | None = None
        self.site: S3Site | None = None
        self._writes = WriteGathering(reactor)
        self.ready: Deferred[None] = Deferred()

    # ------------------------------------------------------------- start
    def startService(self) -> None:
        super().startService()  # type: ignore[no-untyped-call]
        # the JSON log lines of each reactor turn are written together while the reactor runs
        self._reactor.callWhenRunning(logs.gather_writes, self._reactor)
        # responses leave just before the reactor polls, without a watch on their sockets
        self._writes.install()
        config = self.config
        layout = Layout(os.path.abspath(config.data_dir))
        os.makedirs(layout.root, mode=0o750, exist_ok=True)
        self._lock(layout.lock)
        pair = self._credentials(layout)
        pool = DiskPool(self._reactor, config.disk_threads)
        self._pool = pool
        run = pool.run

        self._meta = metadata_store(LevelDBKV(layout.metadata))
        files = FileBlobStore(layout, spare_seconds=config.spare_seconds)
        blobs = TieredBlobStore(files, self._meta)
        self._blobs = blobs
        blobs.prepare()
        engine = Engine(blobs, self._meta, run, call_from_thread=self._reactor.callFromThread)
        self.engine = engine
        clock: IReactorTime = self._reactor
        gate = Gate(config, self._meta, credentials.StaticAuthenticator(pair), clock.seconds)
        api = S3Api(config, engine, self._meta, clock)
        self.site = S3Site(
            api.resource(),
            gate=gate,
            engine=engine,
            blobs=blobs,
            run=run,
            clock=clock,
            call_from_thread=self._reactor.callFromThread,
            max_request_head_bytes=config.max_request_head_bytes,
            max_headers=config.max_headers,
            writes=self._writes,
        )
        self.log.info(
            "artifactd starting: data_dir={data_dir} listen={listen}",
            data_dir=layout.root,
            listen=list(config.listen),
        )
        d = engine.recover()
        d.addCallback(self._recovered)
        d.addCallback(lambda _: self._listen())
        d.addCallback(lambda _: self._start_expiry())
        d.addCallback(lambda _: self._start_spare_release())
        d.addCallbacks(self.ready.callback, self._start_failed)

    def _lock(self, path: str) -> None:
        f = open(path, "ab")  # noqa: SIM115 - held for the process lifetime
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            self.log.critical(
                "the data directory {data_dir} is in use by another artifactd process;"
                " run one daemon per data directory",
                data_dir=os.path.dirname(path),
            )
            raise DataDirInUse(
                f"the data directory {os.path.dirname(path)} is in use by another artifactd"
                " process; run one daemon per data directory"
            ) from None
        self._lock_file = f

    def _credentials(self, layout: Layout) -> credentials.KeyPair:
        config = self.config
        if config.root_access_key is not None and config.root_secret_key is not None:
            self.log.info(
                "root credentials from configuration: access_key={access_key}",
                access_key=config.root_access_key,
            )
            return credentials.KeyPair(config.root_access_key, config.root_secret_key)
        pair, created = credentials.load_or_create(layout.credentials)
        self.log.info(
            "root credentials {how} {path} (access_key={access_key}); the secret is in that file",
            how="generated and stored in" if created else "read from",
            path=layout.credentials,
            access_key=pair.access_key,
        )
        return pair

    def _recovered(self, report: RecoveryReport) -> None:
        freeze_startup_objects()
        raise_young_threshold()
        self.log.info(
            "recovery: removed {staging_removed} staging files and {orphan_blobs_removed} orphan"
            " blobs, fixed {refcounts_fixed} reference counts",
            staging_removed=report.staging_removed,
            orphan_blobs_removed=report.orphan_blobs_removed,
            refcounts_fixed=report.refcounts_fixed,
        )
        if report.missing_blobs:
            self.log.critical(
                "{count} referenced blobs are missing from the blob store: {digests}",
                count=len(report.missing_blobs),
                digests=list(report.missing_blobs[:20]),
            )

    @inlineCallbacks
    def _listen(self) -> Any:
        assert self.site is not None
        for description in self.config.listen:
            endpoint = endpoints.serverFromString(self._reactor, description)
            port = yield endpoint.listen(self.site)
            self._ports.append(port)
            address = port.getHost()
            self.log.info(
                "listening on {description} ({host}:{port})",
                description=description,
                host=getattr(address, "host", "?"),
                port=getattr(address, "port", "?"),
            )

    def _start_expiry(self) -> None:
        assert self._meta is not None and self.engine is not None
        self._expiry = UploadExpiry(
            self._meta,
            self.engine,
            self._reactor,
            max_age=self.config.upload_expiry_seconds,
            interval=self.config.expiry_interval_seconds,
        )
        self._expiry.start()

    def _start_spare_release(self) -> None:
        """The files of deleted blobs kept as spares go after ``spare_seconds`` (checked every
        SPARE_CHECK_SECONDS)."""
        if not self.config.spare_seconds:
            return
        blobs, pool = self._blobs, self._pool
        assert blobs is not None and pool is not None
        loop = LoopingCall(pool.run, blobs.release_spares)
        loop.clock = self._reactor
        loop.start(SPARE_CHECK_SECONDS, now=False).addErrback(
            lambda f: self.log.failure("releasing spare files stopped", f)
        )
        self._spare_release = loop

    def _start_failed(self, failure: Any) -> None:
        self.log.failure("artifactd failed to start", failure)
        reactor: IReactorCore = self._reactor
        if reactor.running:
            # twistd has no exit status of its own: without this the process would exit 0 and
            # systemd's Restart=on-failure would not see the failure.  After shutdown, i.e.
            # once stopService has closed the database.
            reactor.addSystemEventTrigger("after", "shutdown", os._exit, 1)
            reactor.stop()

    # -------------------------------------------------------------- stop
    @inlineCallbacks
    def stopService(self) -> Any:
        super().stopService()  # type: ignore[no-untyped-call]
        logs.stop_gathering()  # what shutdown logs is written at once
        self._writes.uninstall()  # what is queued is sent; the sockets are watched again
        failures: list[Any] = []
        if self._expiry is not None:
            self._expiry.stop()
        if self._spare_release is not None and self._spare_release.running:
            self._spare_release.stop()
        self._spare_release = None
        results = yield DeferredList(
            [d for d in (port.stopListening() for port in self._ports) if d is not None],
            consumeErrors=True,
        )
        failures.extend(r for ok, r in results if not ok)
        self._ports = []
        if self.engine is not None:
            yield self.engine.close()
            self.engine.stop()
        if self._pool is not None and self._blobs is not None:
            try:  # deleted blobs' space is free when the daemon has stopped
                yield self._pool.run(self._blobs.release_spares, 0)
            except Exception:
                failures.append(Failure())
        if self._pool is not None:
            self._pool.stop()  # joins the disk threads: nothing uses the database after this
            self._pool = None
        if self._meta is not None:
            self._meta.close()
            self._meta = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
        self.log.info("artifactd stopped")
        if failures:
            failures[0].raiseException()
